-- vt_ingester (0080, 0081) for what the ingester touches of the tables and row-level security
-- added meanwhile:
--   0031: a retained config claiming another place is kept as a pending change
--         (store.py's _CONFIG reads the rejected claims and inserts the new one);
--   0001/issue 12: the registry is loaded with each device's building's units (unit scope);
--   0061: row-level security on the tables it writes or reads. Their only policy is the
--         dashboard's (SELECT TO vt_dashboard), so without one of its own the ingester, which
--         owns nothing, would see no row and insert none. The ingester is not scoped by
--         session: its policy admits every row; its column grants still keep it from personal
--         data (people, tenancies, app users are not granted at all).
GRANT SELECT (device_id, building_id, floor, door, status),
      INSERT (device_id, building_id, floor, door, claimed_at)
    ON device_place_changes TO vt_ingester;
GRANT SELECT (unit_id, building_id) ON units TO vt_ingester;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['devices', 'device_latest', 'device_status_history',
                             'building_hourly', 'village_hourly', 'unit_daily_credentials',
                             'dead_letters', 'incidents', 'buildings', 'units',
                             'device_place_changes']
    LOOP
        -- Only where row-level security is on (a later migration may turn it on elsewhere:
        -- then it adds the ingester's policy beside vt_protect's).
        IF (SELECT relrowsecurity FROM pg_class WHERE oid = t::regclass) THEN
            EXECUTE format('CREATE POLICY vt_ingester_rows ON %I TO vt_ingester'
                           ' USING (true) WITH CHECK (true)', t);
        END IF;
    END LOOP;
END
$$;
