-- Who may read what, enforced by the database: the dashboard connects as vt_dashboard, which
-- reads personal data only through masked views, can reveal one record only through
-- reveal_person(), which writes the audit row first, and writes only inspections.

CREATE TABLE app_users (
    username      text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('admin', 'manager', 'inspector')),
    password_hash text NOT NULL,               -- argon2id
    grids         text[] NOT NULL DEFAULT '{}', -- an inspector's assigned grid cells
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

CREATE TABLE audit_log (
    audit_id  bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    username  text NOT NULL,
    action    text NOT NULL,
    subject   text NOT NULL,
    reason    text NOT NULL CHECK (length(trim(reason)) >= 4)
);

CREATE TABLE inspections (
    inspection_id bigserial PRIMARY KEY,
    building_id   text NOT NULL REFERENCES buildings ON DELETE CASCADE,
    inspector     text NOT NULL,
    inspected_on  date NOT NULL,
    findings      text NOT NULL,
    hazards       text[] NOT NULL DEFAULT '{}',
    photo_refs    text[] NOT NULL DEFAULT '{}',
    next_visit    date,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inspections_building ON inspections (building_id, inspected_on DESC);

-- Masking, as the page shows it: 4401**********1234, 138****5678, 张*.
CREATE FUNCTION mask_id_number(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value IS NULL THEN NULL
                WHEN char_length(value) <= 8 THEN repeat('*', char_length(value))
                ELSE left(value, 4) || repeat('*', char_length(value) - 8) || right(value, 4) END
$$;
CREATE FUNCTION mask_phone(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value IS NULL THEN NULL
                WHEN char_length(value) <= 7 THEN repeat('*', char_length(value))
                ELSE left(value, 3) || repeat('*', char_length(value) - 7) || right(value, 4) END
$$;
CREATE FUNCTION mask_name(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value IS NULL THEN NULL
                ELSE left(value, 1) || repeat('*', greatest(char_length(value) - 1, 1)) END
$$;

CREATE VIEW people_masked WITH (security_barrier) AS
    SELECT person_id, mask_name(name) AS name, mask_id_number(id_number) AS id_number,
           mask_phone(phone) AS phone, extract(year FROM born)::int AS born_year, role,
           care_target, credential_ref
    FROM people;

-- The one way to an unmasked ID number: the reason and the reader are recorded first.
CREATE FUNCTION reveal_person(p_person_id text, p_reason text)
RETURNS TABLE (name text, id_number text, phone text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    reader text := nullif(current_setting('vt.user', true), '');
BEGIN
    IF reader IS NULL THEN
        RAISE EXCEPTION 'reveal_person: no signed-in user (vt.user) on this session';
    END IF;
    IF p_reason IS NULL OR length(trim(p_reason)) < 4 THEN
        RAISE EXCEPTION 'reveal_person: state a reason (at least 4 characters)';
    END IF;
    INSERT INTO audit_log (username, action, subject, reason)
        VALUES (reader, 'reveal_person', p_person_id, trim(p_reason));
    RETURN QUERY SELECT p.name, p.id_number, p.phone FROM people p WHERE p.person_id = p_person_id;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vt_dashboard') THEN
        CREATE ROLE vt_dashboard LOGIN;
    END IF;
END
$$;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM vt_dashboard;
REVOKE EXECUTE ON FUNCTION reveal_person(text, text) FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO vt_dashboard;
GRANT SELECT ON grid_cells, buildings, units, roads, points_of_interest, objects, organisations,
    tenancies, events, dead_letters, building_hourly, unit_daily_credentials, device_latest,
    people_masked, inspections, audit_log, schema_migrations TO vt_dashboard;
GRANT SELECT (device_id, kind, building_id, grid_code, floor, door, lon, lat, registered_at,
    revoked_at, online, last_seen, status_changed_at, last_seq) ON devices TO vt_dashboard;
GRANT SELECT (username, role, password_hash, grids, disabled_at) ON app_users TO vt_dashboard;
GRANT INSERT ON inspections TO vt_dashboard;
GRANT USAGE ON SEQUENCE inspections_inspection_id_seq TO vt_dashboard;
GRANT EXECUTE ON FUNCTION reveal_person(text, text) TO vt_dashboard;
