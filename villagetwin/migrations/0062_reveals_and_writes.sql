-- Reveals and writes through functions that check the session (issue 14, items 3 and 5).
--
-- A reveal is two statements in two transactions. request_reveal() checks the person (one,
-- within the session's grids), the reason (a category and a free text of a minimum length)
-- and the hourly limit, and writes the audit row; it returns a ticket. reveal_person(ticket)
-- returns the clear values only when that audit row is committed: a client that rolls back
-- cannot have the data without the audit row.

CREATE TABLE reveal_requests (
    ticket     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    audit_id   bigint NOT NULL REFERENCES audit_log ON DELETE CASCADE,
    username   text NOT NULL,
    person_id  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    xact       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    used_at    timestamptz
);

CREATE TABLE reveal_categories (
    category text PRIMARY KEY,
    label    text NOT NULL
);
INSERT INTO reveal_categories VALUES
    ('fire_safety', '消防安全检查 fire-safety inspection'),
    ('rental_registration', '出租屋登记核查 rental registration check'),
    ('care_visit', '关爱走访 care visit'),
    ('police_request', '公安协查 police request (with a case number)'),
    ('data_correction', '数据更正 correcting a record');
GRANT SELECT ON reveal_categories TO vt_dashboard;

-- Whether the session may see this person (a tenant or landlord in its grids).
CREATE FUNCTION vt_may_see_person(p_person_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT vt_sees_all() OR EXISTS (
        SELECT 1 FROM tenancies t JOIN units u USING (unit_id)
        WHERE t.person_id = p_person_id AND u.building_id = ANY (vt_my_buildings())
    ) OR EXISTS (
        SELECT 1 FROM buildings b
        WHERE b.landlord_id = p_person_id AND b.building_id = ANY (vt_my_buildings())
    )
$$;

DROP FUNCTION reveal_person(text, text);

CREATE FUNCTION request_reveal(p_person_id text, p_category text, p_reason text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    s access_settings;
    used integer;
    audit bigint;
    t uuid;
BEGIN
    SELECT * INTO s FROM access_settings;
    IF p_person_id IS NULL OR NOT EXISTS (SELECT 1 FROM people WHERE person_id = p_person_id)
    THEN
        RAISE EXCEPTION 'reveal: no person %', p_person_id USING ERRCODE = '22023';
    END IF;
    IF NOT vt_may_see_person(p_person_id) THEN
        RAISE EXCEPTION 'reveal: % is outside your grids', p_person_id USING ERRCODE = '42501';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM reveal_categories WHERE category = p_category) THEN
        RAISE EXCEPTION 'reveal: reason category % is not one of %', p_category,
            (SELECT string_agg(category, ', ' ORDER BY category) FROM reveal_categories)
            USING ERRCODE = '22023';
    END IF;
    IF char_length(trim(coalesce(p_reason, ''))) < s.reveal_reason_min_chars THEN
        RAISE EXCEPTION 'reveal: describe the reason in at least % characters',
            s.reveal_reason_min_chars USING ERRCODE = '22023';
    END IF;
    -- one reveal at a time per user, so the count below cannot be raced
    PERFORM pg_advisory_xact_lock(hashtext('vt-reveal:' || me));
    SELECT count(*) INTO used FROM audit_log
    WHERE username = me AND action = 'reveal_person' AND at > now() - interval '1 hour';
    IF used >= s.reveals_per_hour THEN
        RAISE EXCEPTION 'reveal: limit of % reveals per hour reached', s.reveals_per_hour
            USING ERRCODE = '54000';
    END IF;
    INSERT INTO audit_log (username, action, subject, reason, category)
    VALUES (me, 'reveal_person', p_person_id, trim(p_reason), p_category)
    RETURNING audit_id INTO audit;
    INSERT INTO reveal_requests (audit_id, username, person_id)
    VALUES (audit, me, p_person_id) RETURNING ticket INTO t;
    RETURN t;
END
$$;

CREATE FUNCTION reveal_person(p_ticket uuid)
RETURNS TABLE (name text, id_number text, phone text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    r reveal_requests;
BEGIN
    SELECT * INTO r FROM reveal_requests WHERE ticket = p_ticket AND username = me;
    IF r.ticket IS NULL OR r.used_at IS NOT NULL OR r.created_at < now() - interval '5 minutes'
    THEN
        RAISE EXCEPTION 'reveal: no open reveal request %', p_ticket USING ERRCODE = '22023';
    END IF;
    IF pg_xact_status(r.xact) IS DISTINCT FROM 'committed' THEN
        RAISE EXCEPTION 'reveal: the audit row of this request is not committed yet'
            USING ERRCODE = '25000';
    END IF;
    IF NOT vt_may_see_person(r.person_id) THEN
        RAISE EXCEPTION 'reveal: % is outside your grids', r.person_id USING ERRCODE = '42501';
    END IF;
    UPDATE reveal_requests SET used_at = now() WHERE ticket = p_ticket;
    RETURN QUERY SELECT p.name, p.id_number, p.phone FROM people p
                 WHERE p.person_id = r.person_id;
END
$$;

-- Inspections: recorded under the session's user, for a building in its grids.
REVOKE INSERT ON inspections FROM vt_dashboard;
REVOKE USAGE ON SEQUENCE inspections_inspection_id_seq FROM vt_dashboard;
CREATE FUNCTION record_inspection(p_building_id text, p_inspected_on date, p_findings text,
                                  p_hazards text[], p_photo_refs text[], p_next_visit date)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    id bigint;
BEGIN
    IF NOT (vt_sees_all() OR p_building_id = ANY (vt_my_buildings())) THEN
        RAISE EXCEPTION 'inspection: building % is outside your grids', p_building_id
            USING ERRCODE = '42501';
    END IF;
    IF char_length(trim(coalesce(p_findings, ''))) = 0 THEN
        RAISE EXCEPTION 'inspection: write the findings' USING ERRCODE = '22023';
    END IF;
    INSERT INTO inspections (building_id, inspector, inspected_on, findings, hazards,
                             photo_refs, next_visit)
    VALUES (p_building_id, me, p_inspected_on, trim(p_findings), coalesce(p_hazards, '{}'),
            coalesce(p_photo_refs, '{}'), p_next_visit)
    RETURNING inspection_id INTO id;
    RETURN id;
END
$$;

-- Incidents: moved by admins and managers, or an inspector for a building in their grids.
REVOKE UPDATE ON incidents FROM vt_dashboard;
CREATE FUNCTION move_incident(p_incident_id uuid, p_status text, p_assigned_to text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    building text;
BEGIN
    IF p_status NOT IN ('assigned', 'resolved') THEN
        RAISE EXCEPTION 'incident: moves to assigned or resolved, not %', p_status
            USING ERRCODE = '22023';
    END IF;
    IF p_status = 'assigned' AND nullif(trim(p_assigned_to), '') IS NULL THEN
        RAISE EXCEPTION 'incident: say who it is assigned to' USING ERRCODE = '22023';
    END IF;
    SELECT building_id INTO building FROM incidents WHERE incident_id = p_incident_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT (vt_sees_all() OR building = ANY (vt_my_buildings())) THEN
        RAISE EXCEPTION 'incident: % is outside your grids', p_incident_id
            USING ERRCODE = '42501';
    END IF;
    UPDATE incidents SET status = p_status,
        assigned_to = coalesce(nullif(trim(p_assigned_to), ''), assigned_to),
        resolved_at = CASE WHEN p_status = 'resolved' THEN now() END,
        updated_by = me, updated_at = now()
    WHERE incident_id = p_incident_id AND status <> 'resolved';
    RETURN FOUND;
END
$$;

REVOKE EXECUTE ON FUNCTION vt_may_see_person(text), request_reveal(text, text, text),
    reveal_person(uuid), record_inspection(text, date, text, text[], text[], date),
    move_incident(uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vt_may_see_person(text), request_reveal(text, text, text),
    reveal_person(uuid), record_inspection(text, date, text, text[], text[], date),
    move_incident(uuid, text, text) TO vt_dashboard;
-- The audit log: read by admins (row-level security), never written, changed or deleted by
-- the dashboard's role except through the functions above.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_log FROM vt_dashboard;
