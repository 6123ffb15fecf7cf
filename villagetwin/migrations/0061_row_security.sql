-- Grid scope, enforced by PostgreSQL on every place-bound table (issue 14, item 1).
--
-- Each table the dashboard reads gets one row-level security policy for vt_dashboard, made
-- by vt_protect(table, scope, column). The scopes:
--   grid      the column holds a grid code: the session's grids
--   building  the column holds a building id: buildings in the session's grids
--   unit      the column holds a unit id: units the session can see
--   device    the column holds a device id: devices the session can see
--   person    the column holds a person id: tenants and landlords the session can see
--   managers  admins and managers only;  admins  admins only
-- Admins and managers see every row. Each session function is wrapped in a sub-select, so
-- PostgreSQL computes it once per query (an InitPlan), not once per row. The table owner
-- (the ingester, migrations) is not subject to the policies: ingesting is not slowed.
-- Adding a new table that holds place-bound data is one line:
--     SELECT vt_protect('alerts', 'grid', 'grid_code');

CREATE FUNCTION vt_protect(tbl regclass, scope text, col text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    everyone constant text := '(SELECT vt_sees_all())';
    -- the column qualified by its table: the sub-selects below have such columns too
    own text := CASE WHEN col IS NOT NULL THEN format('%s.%I', tbl, col) END;
    rule text;
BEGIN
    -- unit, device and person: a correlated EXISTS on the referenced table's key (an index
    -- lookup per row); an IN (sub-select) would hash every visible row of it on every query.
    rule := CASE scope
        WHEN 'grid' THEN format('%s OR %s = ANY ((SELECT vt_my_grids())::text[])', everyone, own)
        WHEN 'building' THEN format('%s OR %s = ANY ((SELECT vt_my_buildings())::text[])',
                                    everyone, own)
        WHEN 'unit' THEN format('%s OR EXISTS (SELECT 1 FROM public.units u WHERE u.unit_id = %s'
                                ' AND u.building_id = ANY ((SELECT vt_my_buildings())::text[]))',
                                everyone, own)
        WHEN 'device' THEN format('%s OR EXISTS (SELECT 1 FROM public.devices d'
                                  ' WHERE d.device_id = %s'
                                  ' AND d.grid_code = ANY ((SELECT vt_my_grids())::text[]))',
                                  everyone, own)
        WHEN 'person' THEN format('%s OR EXISTS (SELECT 1 FROM public.tenancies t'
                                  ' JOIN public.units u USING (unit_id) WHERE t.person_id = %s'
                                  ' AND u.building_id = ANY ((SELECT vt_my_buildings())::text[]))'
                                  ' OR EXISTS (SELECT 1 FROM public.buildings b'
                                  ' WHERE b.landlord_id = %s'
                                  ' AND b.building_id = ANY ((SELECT vt_my_buildings())::text[]))',
                                  everyone, own, own)
        WHEN 'managers' THEN everyone
        WHEN 'admins' THEN '(SELECT vt_is_admin())'
    END;
    IF rule IS NULL THEN
        RAISE EXCEPTION 'vt_protect: unknown scope % (grid, building, unit, device, person,'
                        ' managers, admins)', scope;
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS vt_scope ON %s', tbl);
    -- FOR ALL: where a migration grants the dashboard a write, it too stays within the grids.
    EXECUTE format('CREATE POLICY vt_scope ON %s FOR ALL TO vt_dashboard USING (%s)'
                   ' WITH CHECK (%s)', tbl, rule, rule);
END
$$;
REVOKE EXECUTE ON FUNCTION vt_protect(regclass, text, text) FROM PUBLIC;

-- Landlords are people (item 4): buildings point at them, their names leave buildings.
ALTER TABLE buildings ADD COLUMN landlord_id text REFERENCES people ON DELETE SET NULL;
CREATE INDEX buildings_landlord ON buildings (landlord_id);

-- A name loaded into buildings.landlord is moved at commit to the landlord's people row (the
-- one of that name, else a new one) and removed from buildings.
CREATE FUNCTION vt_link_landlord() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    name_ text;
    person text;
BEGIN
    SELECT landlord INTO name_ FROM buildings WHERE building_id = NEW.building_id;
    IF name_ IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.person_id INTO person FROM people p
    WHERE p.role = 'landlord' AND p.name = name_ ORDER BY p.person_id LIMIT 1;
    IF person IS NULL THEN
        person := 'LL-' || left(md5(name_), 12);
        INSERT INTO people (person_id, name, role) VALUES (person, name_, 'landlord')
        ON CONFLICT (person_id) DO NOTHING;
    END IF;
    UPDATE buildings SET landlord_id = person, landlord = NULL
    WHERE building_id = NEW.building_id;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER buildings_landlord_link AFTER INSERT OR UPDATE OF landlord
ON buildings DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.landlord IS NOT NULL)
EXECUTE FUNCTION vt_link_landlord();
UPDATE buildings SET landlord = landlord WHERE landlord IS NOT NULL;
SET CONSTRAINTS buildings_landlord_link IMMEDIATE;

-- People: masked values are stored beside the clear ones, so the masked view can be a plain
-- security-invoker view over people under row-level security (its joins use the key).
ALTER TABLE people
    ADD COLUMN name_masked text GENERATED ALWAYS AS (mask_name(name)) STORED,
    ADD COLUMN id_number_masked text GENERATED ALWAYS AS (mask_id_number(id_number)) STORED,
    ADD COLUMN phone_masked text GENERATED ALWAYS AS (mask_phone(phone)) STORED,
    ADD COLUMN born_year integer GENERATED ALWAYS AS (extract(year FROM born)::int) STORED,
    ADD COLUMN anonymised_at timestamptz;
CREATE OR REPLACE VIEW people_masked WITH (security_invoker = true) AS
    SELECT person_id, name_masked AS name, id_number_masked AS id_number,
           phone_masked AS phone, born_year, role, care_target, credential_ref
    FROM people;
GRANT SELECT (person_id, name_masked, id_number_masked, phone_masked, born_year, role,
              care_target, credential_ref) ON people TO vt_dashboard;

-- Buildings: every column but the (now always empty) landlord name.
REVOKE SELECT ON buildings FROM vt_dashboard;
GRANT SELECT (building_id, address, grid_code, storeys, height_m, use, footprint, lon, lat,
              landlord_id) ON buildings TO vt_dashboard;

-- Events: TimescaleDB copies a hypertable's grants to its chunks but not its row-level
-- security, so a role that may read `events` could read every chunk directly
-- (_timescaledb_internal._hyper_1_N_chunk) past any policy. The dashboard's role therefore has
-- no grant on public.events at all; it reads vt_scope.events, a security-barrier view with the
-- grid filter, which its search path puts before public.
CREATE SCHEMA vt_scope;
REVOKE ALL ON public.events FROM vt_dashboard;
CREATE VIEW vt_scope.events WITH (security_barrier) AS
    SELECT * FROM public.events e
    WHERE (SELECT vt_sees_all()) OR e.building_id = ANY ((SELECT vt_my_buildings())::text[]);
GRANT USAGE ON SCHEMA vt_scope TO vt_dashboard;
GRANT SELECT ON vt_scope.events TO vt_dashboard;
DO $$
BEGIN
    EXECUTE format('ALTER ROLE vt_dashboard IN DATABASE %I SET search_path = vt_scope, public',
                   current_database());
END
$$;
-- sequence_gaps() reads events as its caller: through the view for the dashboard.
CREATE OR REPLACE FUNCTION sequence_gaps(since timestamptz)
RETURNS TABLE (device_id text, first_missing bigint, last_missing bigint, missing bigint)
LANGUAGE sql STABLE SET search_path = vt_scope, public AS $$
    SELECT device_id, prev + 1, seq - 1, seq - prev - 1
    FROM (
        SELECT device_id, seq, lag(seq) OVER (PARTITION BY device_id ORDER BY seq) AS prev
        FROM (SELECT DISTINCT device_id, seq FROM events WHERE ts >= since) AS s
    ) AS ordered
    WHERE seq > prev + 1
    ORDER BY device_id, prev
$$;

SELECT vt_protect('grid_cells', 'grid', 'grid_code');
SELECT vt_protect('buildings', 'grid', 'grid_code');
SELECT vt_protect('units', 'building', 'building_id');
SELECT vt_protect('tenancies', 'unit', 'unit_id');
SELECT vt_protect('people', 'person', 'person_id');
SELECT vt_protect('devices', 'grid', 'grid_code');
SELECT vt_protect('device_latest', 'device', 'device_id');
SELECT vt_protect('device_status_history', 'device', 'device_id');
SELECT vt_protect('building_hourly', 'building', 'building_id');
SELECT vt_protect('village_hourly', 'managers');
SELECT vt_protect('unit_daily_credentials', 'unit', 'unit_id');
SELECT vt_protect('dead_letters', 'device', 'device_id');
SELECT vt_protect('inspections', 'building', 'building_id');
SELECT vt_protect('incidents', 'building', 'building_id');
SELECT vt_protect('organisations', 'building', 'building_id');
SELECT vt_protect('objects', 'building', 'building_id');
SELECT vt_protect('audit_log', 'admins');
