-- The rules worker's own database role (issue 18): the production compose's `rules` service
-- connects as vt_rules, not as the ingester (which has no rights on alerts or cases) nor as
-- the superuser. What rules/store.py, rules/case_store.py and rules/worker.py touch, no more:
--   reads   new events (the inbox, migration 0040; evidence samples), the derived tables
--           (unit_daily_credentials, building_hourly), device status history, the registry
--           (devices without their credentials, buildings, units, points of interest), the
--           tenancies and the masked people columns the window rules need (people_masked),
--           resident-app incidents and grid staff;
--   writes  alerts and their history, cases (opened from incidents; escalations) and their
--           history, its saved state (rule_state); case numbers through new_case_no (0041).
-- LISTEN vt_events_stored (0112) needs no grant. No access to app_users, sessions, the audit
-- log, the clear personal columns, or the reveal functions (EXECUTE revoked from PUBLIC, 0062).
-- Production sets its password from a secret at `villagetwin migrate` (VT_RULES_DB_PASSWORD).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vt_rules') THEN
        CREATE ROLE vt_rules LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO vt_rules;

-- Reads.
GRANT SELECT (stored_at, event_id, ts, device_id, kind, building_id, unit_id, payload)
    ON events TO vt_rules;
GRANT SELECT ON unit_daily_credentials, building_hourly, rule_state, grid_staff TO vt_rules;
GRANT SELECT (device_id, at, online) ON device_status_history TO vt_rules;
GRANT SELECT (device_id, kind, building_id, grid_code, lon, lat, revoked_at, online,
              status_changed_at, last_seen) ON devices TO vt_rules;
GRANT SELECT (building_id, grid_code, lon, lat) ON buildings TO vt_rules;
GRANT SELECT (unit_id, building_id) ON units TO vt_rules;
GRANT SELECT (poi_id, name, lon, lat) ON points_of_interest TO vt_rules;
GRANT SELECT (unit_id, person_id, start_date, end_date) ON tenancies TO vt_rules;
-- people_masked is a security-invoker view: its reader needs the masked columns of people.
GRANT SELECT (person_id, name_masked, id_number_masked, phone_masked, born_year, role,
              care_target, credential_ref) ON people TO vt_rules;
GRANT SELECT ON people_masked TO vt_rules;
GRANT SELECT (incident_id, reported_at, category, description, building_id, lon, lat,
              photo_ref) ON incidents TO vt_rules;

-- Writes.
GRANT SELECT, INSERT, UPDATE ON alerts TO vt_rules;
GRANT INSERT ON alert_history TO vt_rules;
GRANT SELECT, INSERT ON cases TO vt_rules;
GRANT UPDATE (escalated_to, escalated_at, updated_at) ON cases TO vt_rules;
GRANT INSERT ON case_history TO vt_rules;
GRANT INSERT, UPDATE ON rule_state TO vt_rules;
GRANT USAGE ON SEQUENCE alerts_alert_id_seq, alert_history_history_id_seq, cases_case_id_seq,
    case_history_history_id_seq TO vt_rules;
GRANT EXECUTE ON FUNCTION new_case_no(timestamptz) TO vt_rules;

-- Row-level security (0061, 0064, 0150): the policies there are the dashboard's; the worker is
-- not scoped by session, so each table it uses that has row security gets an all-rows policy
-- for it (as 0082 does for vt_ingester). Read-only tables get a SELECT policy only.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['devices', 'device_status_history', 'buildings', 'units',
                             'points_of_interest', 'tenancies', 'people', 'incidents',
                             'unit_daily_credentials', 'building_hourly', 'grid_staff',
                             'rule_state']
    LOOP
        IF (SELECT relrowsecurity FROM pg_class WHERE oid = t::regclass) THEN
            EXECUTE format('CREATE POLICY vt_rules_rows ON %I FOR SELECT TO vt_rules'
                           ' USING (true)', t);
        END IF;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['alerts', 'alert_history', 'cases', 'case_history']
    LOOP
        IF (SELECT relrowsecurity FROM pg_class WHERE oid = t::regclass) THEN
            EXECUTE format('CREATE POLICY vt_rules_rows ON %I TO vt_rules'
                           ' USING (true) WITH CHECK (true)', t);
        END IF;
    END LOOP;
END
$$;
