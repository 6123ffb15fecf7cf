-- Alerts and cases are moved only through functions that check the session (issues 13 and 14,
-- item 5). Until now the dashboard's role updated alerts and cases and inserted their history
-- rows itself, naming whatever user the client said. Each function below takes the user from
-- the database-known session (vt_user(), migration 0060), refuses an alert or case outside the
-- session's grids (admins and managers see all), checks the move, and writes the history row
-- under that user in the same statement. Then the table privileges are revoked.
--
-- The workflow's moves are the rows of case_moves, the same table as rules/cases.py MOVES
-- (tests/test_alert_case_writes.py holds the two equal).

CREATE TABLE case_moves (
    status text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    PRIMARY KEY (status, action)
);
INSERT INTO case_moves VALUES
    ('reported', 'dispatch', 'dispatched'),
    ('dispatched', 'dispatch', 'dispatched'),
    ('dispatched', 'handle', 'handled'),
    ('handled', 'close', 'closed'),
    ('handled', 'reopen', 'dispatched'),
    ('closed', 'reopen', 'dispatched');
GRANT SELECT ON case_moves TO vt_dashboard;

-- Whether the session may act on a row of this grid (or, without a grid, this building).
CREATE FUNCTION vt_may_act_on(p_grid_code text, p_building_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT vt_sees_all()
        OR p_grid_code = ANY (vt_my_grids())
        OR (p_grid_code IS NULL AND p_building_id = ANY (vt_my_buildings()))
$$;

-- A name an alert or case may be given to: a dashboard user or a grid's staff.
CREATE FUNCTION vt_known_assignee(p_name text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT EXISTS (SELECT 1 FROM app_users WHERE username = p_name AND disabled_at IS NULL)
        OR EXISTS (SELECT 1 FROM grid_staff WHERE username = p_name)
$$;

-- acknowledge (open -> acknowledged), resolve or false_alarm (open or acknowledged -> closed,
-- with a note of at least 2 characters). Returns the new status.
CREATE FUNCTION vt_move_alert(p_alert_id bigint, p_action text, p_note text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    a alerts;
    allowed text[];
    target text;
    note text := trim(coalesce(p_note, ''));
BEGIN
    SELECT * INTO a FROM alerts WHERE alert_id = p_alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert: no alert %', p_alert_id USING ERRCODE = '22023';
    END IF;
    IF NOT vt_may_act_on(a.grid_code, a.building_id) THEN
        RAISE EXCEPTION 'alert: #% is outside your grids', p_alert_id USING ERRCODE = '42501';
    END IF;
    CASE p_action
        WHEN 'acknowledge' THEN allowed := '{open}'; target := 'acknowledged';
        WHEN 'resolve' THEN allowed := '{open,acknowledged}'; target := 'resolved';
        WHEN 'false_alarm' THEN allowed := '{open,acknowledged}'; target := 'false_alarm';
        ELSE RAISE EXCEPTION 'alert: unknown action % (acknowledge, resolve, false_alarm)',
                 p_action USING ERRCODE = '22023';
    END CASE;
    IF p_action <> 'acknowledge' AND char_length(note) < 2 THEN
        RAISE EXCEPTION '请写处理说明 write a note saying what was found or done'
            USING ERRCODE = '22023';
    END IF;
    IF NOT a.status = ANY (allowed) THEN
        RAISE EXCEPTION 'alert #% is % (it is not %)', p_alert_id, a.status,
            array_to_string(allowed, ' or ') USING ERRCODE = '22023';
    END IF;
    UPDATE alerts SET status = target, updated_at = now(), version = version + 1,
        closed_at = CASE WHEN target IN ('resolved', 'false_alarm') THEN now() END
    WHERE alert_id = p_alert_id;
    INSERT INTO alert_history (alert_id, actor, action, note)
    VALUES (p_alert_id, me, target, note);
    RETURN target;
END
$$;

-- Names who follows an open or acknowledged alert up (which acknowledges it).
CREATE FUNCTION vt_assign_alert(p_alert_id bigint, p_assignee text, p_note text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    a alerts;
    who text := trim(coalesce(p_assignee, ''));
BEGIN
    SELECT * INTO a FROM alerts WHERE alert_id = p_alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert: no alert %', p_alert_id USING ERRCODE = '22023';
    END IF;
    IF NOT vt_may_act_on(a.grid_code, a.building_id) THEN
        RAISE EXCEPTION 'alert: #% is outside your grids', p_alert_id USING ERRCODE = '42501';
    END IF;
    IF who = '' THEN
        RAISE EXCEPTION 'say who the alert is assigned to' USING ERRCODE = '22023';
    END IF;
    IF NOT vt_known_assignee(who) THEN
        RAISE EXCEPTION 'alert: % is neither a dashboard user nor a grid worker', who
            USING ERRCODE = '22023';
    END IF;
    IF a.status NOT IN ('open', 'acknowledged') THEN
        RAISE EXCEPTION 'alert #% is closed (%)', p_alert_id, a.status USING ERRCODE = '22023';
    END IF;
    UPDATE alerts SET assigned_to = who, status = 'acknowledged', updated_at = now(),
        version = version + 1
    WHERE alert_id = p_alert_id;
    INSERT INTO alert_history (alert_id, actor, action, note)
    VALUES (p_alert_id, me, 'assigned', trim('→ ' || who || ' ' || coalesce(trim(p_note), '')));
END
$$;

-- An alert becomes a case (上报), or the case it already became is returned. The case's
-- category and priority come from the rule and severity, its deadline from its priority, by
-- the maps the caller's settings hold (rules/settings.py CaseParams, rules/cases.py
-- CATEGORY_OF_RULE), e.g. {"smoke_fire": "fire_hazard"}, {"critical": "urgent"},
-- {"urgent": 2}. The priority must be one of the cases table's; the deadline 0-720 hours.
CREATE FUNCTION vt_case_from_alert(p_alert_id bigint, p_note text, p_category_of_rule jsonb,
                                   p_priority_of_severity jsonb, p_deadline_hours jsonb)
RETURNS TABLE (case_id bigint, case_no text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    a alerts;
    c cases;
    priority text;
    hours double precision;
    note text := trim(coalesce(p_note, ''));
    description text;
BEGIN
    SELECT * INTO a FROM alerts WHERE alert_id = p_alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert: no alert %', p_alert_id USING ERRCODE = '22023';
    END IF;
    IF NOT vt_may_act_on(a.grid_code, a.building_id) THEN
        RAISE EXCEPTION 'alert: #% is outside your grids', p_alert_id USING ERRCODE = '42501';
    END IF;
    SELECT * INTO c FROM cases WHERE cases.alert_id = p_alert_id;
    IF FOUND THEN
        RETURN QUERY SELECT c.case_id, c.case_no;
        RETURN;
    END IF;
    priority := coalesce(p_priority_of_severity ->> a.severity, 'normal');
    hours := (p_deadline_hours ->> priority)::double precision;
    IF hours IS NULL OR hours <= 0 OR hours > 720 THEN
        RAISE EXCEPTION 'case: no deadline between 0 and 720 hours for priority %', priority
            USING ERRCODE = '22023';
    END IF;
    description := a.title || CASE WHEN note <> '' THEN ' · ' || note ELSE '' END;
    INSERT INTO cases (case_no, category, priority, source, alert_id, grid_code, building_id,
                       unit_id, lon, lat, description, reported_at, due_at)
    VALUES (new_case_no(now()), coalesce(p_category_of_rule ->> a.rule, 'other'), priority,
            'alert', p_alert_id, a.grid_code, a.building_id, a.unit_id, a.lon, a.lat,
            description, now(), now() + hours * interval '1 hour')
    RETURNING * INTO c;
    INSERT INTO case_history (case_id, actor, action, from_status, to_status, note)
    VALUES (c.case_id, me, 'reported', NULL, 'reported', left(description, 200));
    INSERT INTO alert_history (alert_id, actor, action, note)
    VALUES (p_alert_id, me, 'case', '工单 case ' || c.case_no);
    RETURN QUERY SELECT c.case_id, c.case_no;
END
$$;

-- One workflow move (case_moves): dispatch to a known worker, handle with feedback (an
-- inspector handles only a case dispatched to them), close, reopen with a note (a new
-- deadline from now by the case's priority, p_deadline_hours as above). Returns the status.
CREATE FUNCTION vt_move_case(p_case_id bigint, p_action text, p_assignee text, p_note text,
                             p_deadline_hours jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    c cases;
    next_status text;
    who text := trim(coalesce(p_assignee, ''));
    note text := trim(coalesce(p_note, ''));
    hours double precision;
BEGIN
    SELECT * INTO c FROM cases WHERE case_id = p_case_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'case: no case %', p_case_id USING ERRCODE = '22023';
    END IF;
    IF NOT vt_may_act_on(c.grid_code, c.building_id) THEN
        RAISE EXCEPTION 'case: % is outside your grids', c.case_no USING ERRCODE = '42501';
    END IF;
    SELECT target INTO next_status FROM case_moves WHERE status = c.status AND action = p_action;
    IF next_status IS NULL THEN
        RAISE EXCEPTION 'a % case cannot take %; allowed: %', c.status, quote_literal(p_action),
            coalesce((SELECT string_agg(action, ', ' ORDER BY action) FROM case_moves
                      WHERE status = c.status), 'none')
            USING ERRCODE = '22023';
    END IF;
    IF p_action = 'dispatch' AND who = '' THEN
        RAISE EXCEPTION 'dispatch needs a grid worker to dispatch to' USING ERRCODE = '22023';
    END IF;
    IF p_action = 'dispatch' AND NOT vt_known_assignee(who) THEN
        RAISE EXCEPTION 'dispatch: % is neither a dashboard user nor a grid worker', who
            USING ERRCODE = '22023';
    END IF;
    IF p_action IN ('handle', 'reopen') AND char_length(note) < 2 THEN
        RAISE EXCEPTION '% needs a note (what was done, or why it is reopened)', p_action
            USING ERRCODE = '22023';
    END IF;
    IF p_action = 'handle' AND NOT vt_sees_all() AND c.assigned_to IS DISTINCT FROM me THEN
        RAISE EXCEPTION 'case: % is dispatched to %, not to you', c.case_no, c.assigned_to
            USING ERRCODE = '42501';
    END IF;
    IF p_action = 'reopen' THEN
        hours := (p_deadline_hours ->> c.priority)::double precision;
        IF hours IS NULL OR hours <= 0 OR hours > 720 THEN
            RAISE EXCEPTION 'case: no deadline between 0 and 720 hours for priority %',
                c.priority USING ERRCODE = '22023';
        END IF;
    END IF;
    UPDATE cases SET
        status = next_status,
        updated_at = now(),
        assigned_to = CASE WHEN p_action = 'dispatch' THEN who ELSE assigned_to END,
        dispatched_at = CASE WHEN p_action = 'dispatch' THEN now() ELSE dispatched_at END,
        feedback = CASE WHEN p_action = 'handle' THEN note ELSE feedback END,
        handled_at = CASE p_action WHEN 'handle' THEN now() WHEN 'reopen' THEN NULL
                                   ELSE handled_at END,
        closed_at = CASE p_action WHEN 'close' THEN now() WHEN 'reopen' THEN NULL
                                  ELSE closed_at END,
        reopened = reopened + CASE WHEN p_action = 'reopen' THEN 1 ELSE 0 END,
        due_at = CASE WHEN p_action = 'reopen' THEN now() + hours * interval '1 hour'
                      ELSE due_at END
    WHERE case_id = p_case_id;
    INSERT INTO case_history (case_id, actor, action, from_status, to_status, note)
    VALUES (p_case_id, me,
            CASE p_action WHEN 'dispatch' THEN 'dispatched' WHEN 'handle' THEN 'handled'
                          WHEN 'close' THEN 'closed' ELSE 'reopened' END,
            c.status, next_status,
            CASE WHEN p_action = 'dispatch' THEN trim('→ ' || who || ' ' || note) ELSE note END);
    RETURN next_status;
END
$$;

REVOKE EXECUTE ON FUNCTION vt_may_act_on(text, text), vt_known_assignee(text),
    vt_move_alert(bigint, text, text), vt_assign_alert(bigint, text, text),
    vt_case_from_alert(bigint, text, jsonb, jsonb, jsonb),
    vt_move_case(bigint, text, text, text, jsonb), new_case_no(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vt_move_alert(bigint, text, text),
    vt_assign_alert(bigint, text, text), vt_case_from_alert(bigint, text, jsonb, jsonb, jsonb),
    vt_move_case(bigint, text, text, text, jsonb) TO vt_dashboard;

-- No direct writes any more (a table privilege revoked takes its column privileges with it).
REVOKE INSERT, UPDATE, DELETE ON alerts, alert_history, cases, case_history FROM vt_dashboard;
REVOKE USAGE ON SEQUENCE alert_history_history_id_seq, cases_case_id_seq,
    case_history_history_id_seq FROM vt_dashboard;
REVOKE EXECUTE ON FUNCTION new_case_no(timestamptz) FROM vt_dashboard;
