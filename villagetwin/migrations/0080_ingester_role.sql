-- The ingester's own database role: it writes events, dead letters and what is derived from
-- them, updates what devices report about themselves, and reads the registry. It owns no
-- table and reads no personal data (people, tenancies, app users are not granted).
-- Production sets its password from a secret at `villagetwin migrate` (VT_INGESTER_DB_PASSWORD).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vt_ingester') THEN
        CREATE ROLE vt_ingester LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO vt_ingester;
GRANT SELECT, INSERT, DELETE ON events, dead_letters TO vt_ingester;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO vt_ingester;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON building_hourly, village_hourly, unit_daily_credentials, device_latest TO vt_ingester;
GRANT SELECT, INSERT ON incidents, device_status_history TO vt_ingester;
GRANT SELECT (building_id) ON buildings TO vt_ingester;
GRANT SELECT (device_id, kind, building_id, floor, door, revoked_at, online, last_seen,
    status_changed_at, last_seq, config_at) ON devices TO vt_ingester;
GRANT UPDATE (building_id, floor, door, online, last_seen, status_changed_at, last_seq, config_at)
    ON devices TO vt_ingester;
-- Plain PostgreSQL: keeping partitions and retention, through SECURITY DEFINER functions.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'vt_compat') THEN
        GRANT USAGE ON SCHEMA vt_compat TO vt_ingester;
        GRANT SELECT ON vt_compat.hypertables TO vt_ingester;
        GRANT EXECUTE ON FUNCTION vt_compat.ensure_partitions(regclass, timestamptz, timestamptz),
            vt_compat.drop_partitions(regclass, timestamptz),
            vt_compat.delete_before(regclass, timestamptz, integer) TO vt_ingester;
    END IF;
END
$$;
