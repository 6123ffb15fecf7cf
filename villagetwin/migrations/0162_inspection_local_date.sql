-- Inspections get the village's local date (issue 15). record_inspection took the date from
-- the client, which used the server's date.today(): on a UTC server (the Docker image) an
-- inspection recorded at 04:02 China time got the previous day. Now the database computes
-- the date itself, in the village's time zone the dashboard runs in (DashboardSettings.
-- time_zone, VT_TIME_ZONE), and the client can no longer choose it.
--
-- vt_clock(): the current instant, now() unless the session (or a test database, with
-- ALTER DATABASE ... SET vt.clock) names another; lets a test record an inspection "at 04:00
-- China time" without waiting for the clock.
CREATE FUNCTION vt_clock() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('vt.clock', true), '')::timestamptz, now())
$$;

DROP FUNCTION record_inspection(text, date, text, text[], text[], date);
CREATE FUNCTION record_inspection(p_building_id text, p_time_zone text, p_findings text,
                                  p_hazards text[], p_photo_refs text[], p_next_visit date)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    id bigint;
    local_day date;
BEGIN
    IF NOT (vt_sees_all() OR p_building_id = ANY (vt_my_buildings())) THEN
        RAISE EXCEPTION 'inspection: building % is outside your grids', p_building_id
            USING ERRCODE = '42501';
    END IF;
    IF char_length(trim(coalesce(p_findings, ''))) = 0 THEN
        RAISE EXCEPTION 'inspection: write the findings' USING ERRCODE = '22023';
    END IF;
    BEGIN
        local_day := (vt_clock() AT TIME ZONE p_time_zone)::date;
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'inspection: % is not a time zone (e.g. Asia/Shanghai)', p_time_zone
            USING ERRCODE = '22023';
    END;
    INSERT INTO inspections (building_id, inspector, inspected_on, findings, hazards,
                             photo_refs, next_visit)
    VALUES (p_building_id, me, local_day, trim(p_findings), coalesce(p_hazards, '{}'),
            coalesce(p_photo_refs, '{}'), p_next_visit)
    RETURNING inspection_id INTO id;
    RETURN id;
END
$$;
REVOKE EXECUTE ON FUNCTION record_inspection(text, text, text, text[], text[], date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_inspection(text, text, text, text[], text[], date)
    TO vt_dashboard;
