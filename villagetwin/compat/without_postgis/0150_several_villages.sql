-- Migration 0150 (several villages) as applied on a PostgreSQL without PostGIS (the embedded
-- wheel): villagetwin.migrate runs this file instead of villagetwin/migrations/0150, after
-- 0051's stand-in (0051_postgis.sql here). The same, except that places loaded before the
-- migration into a database of several villages are not placed by the villages' boundaries
-- (no spatial functions); a new database has none.
--
-- Several villages on one district platform (issue 16, "Several villages").
--
-- The village key lives on the places: grid cells, buildings, roads and points of interest
-- each belong to one village (villages.village_key, migration 0051). Units belong to a village
-- through their building, devices through their building (else their grid cell). Events and
-- the derived tables are NOT given a column: they carry building_id already (the ingester fills
-- it from the device registry), and a building's village is one index lookup away
-- (village_of_building), so the ingester's COPY into the hypertable is unchanged.
--
-- Users are scoped to villages as well as grids: app_users.villages (NULL: every village).
-- A manager limited to villages sees all of them (every grid, every building, also buildings
-- outside every grid cell) and nothing of the others; an inspector sees their grids, which
-- belong to one village each; an admin, and a manager without villages, see everything.

-- A village's time zone is an IANA name PostgreSQL knows (Asia/Shanghai by default).
CREATE FUNCTION vt_is_time_zone(p_name text) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_name) $$;
ALTER TABLE villages ADD CONSTRAINT villages_time_zone_known CHECK (vt_is_time_zone(time_zone));

ALTER TABLE grid_cells ADD COLUMN village_key text REFERENCES villages ON UPDATE CASCADE;
ALTER TABLE buildings ADD COLUMN village_key text REFERENCES villages ON UPDATE CASCADE;
ALTER TABLE roads ADD COLUMN village_key text REFERENCES villages ON UPDATE CASCADE;
ALTER TABLE points_of_interest ADD COLUMN village_key text REFERENCES villages ON UPDATE CASCADE;
CREATE INDEX grid_cells_village ON grid_cells (village_key);
CREATE INDEX buildings_village ON buildings (village_key);
CREATE INDEX roads_village ON roads (village_key);
CREATE INDEX points_of_interest_village ON points_of_interest (village_key);

-- An imported building's source key (0050) is unique within its village: two villages' files
-- may both number their features 00001.
DROP INDEX buildings_source_key;
CREATE UNIQUE INDEX buildings_source_key ON buildings (village_key, source_key)
    WHERE source_key IS NOT NULL;

-- Places loaded before: a database with one village had everything in it; with several, a
-- place goes to the village whose boundary holds it.
DO $$
BEGIN
    IF (SELECT count(*) FROM villages) = 1 THEN
        UPDATE grid_cells SET village_key = (SELECT village_key FROM villages);
        UPDATE buildings SET village_key = (SELECT village_key FROM villages);
        UPDATE roads SET village_key = (SELECT village_key FROM villages);
        UPDATE points_of_interest SET village_key = (SELECT village_key FROM villages);
    END IF;  -- (several villages before: placed by their boundaries only with PostGIS)
END
$$;

-- The village of a building, and of a device (its building's, else its grid cell's).
CREATE FUNCTION village_of_building(p_building_id text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT village_key FROM buildings WHERE building_id = p_building_id $$;
CREATE FUNCTION village_of_device(p_device_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(b.village_key, g.village_key)
    FROM devices d LEFT JOIN buildings b USING (building_id)
        LEFT JOIN grid_cells g ON g.grid_code = d.grid_code
    WHERE d.device_id = p_device_id
$$;

-- Users limited to villages (NULL: all). An inspector's grids must lie in them.
ALTER TABLE app_users ADD COLUMN villages text[];

-- The villages the session's user is limited to; NULL: not limited.
CREATE FUNCTION vt_user_villages() RETURNS text[] LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$
    SELECT u.villages FROM app_users u WHERE u.username = (vt_session()).username
$$;

-- Admins, and managers limited to no village, see every row.
CREATE OR REPLACE FUNCTION vt_sees_all() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$
    SELECT s.role = 'admin' OR (s.role = 'manager' AND vt_user_villages() IS NULL)
    FROM vt_session() s
$$;

-- The villages a limited manager sees whole ('{}' for everyone else: admins and unlimited
-- managers pass vt_sees_all() first, inspectors see their grids).
CREATE FUNCTION vt_managed_villages() RETURNS text[] LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$
    SELECT CASE WHEN s.role = 'manager' THEN coalesce(vt_user_villages(), '{}') ELSE '{}' END
    FROM vt_session() s
$$;

-- The session's grids: a limited manager's are every cell of their villages; an inspector's
-- are their own cells, within their villages when they are limited to some.
CREATE OR REPLACE FUNCTION vt_my_grids() RETURNS text[] LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public AS $$
DECLARE
    s record := vt_session();
    limited text[] := vt_user_villages();
BEGIN
    IF s.role = 'manager' AND limited IS NOT NULL THEN
        RETURN (SELECT coalesce(array_agg(grid_code), '{}') FROM grid_cells
                WHERE village_key = ANY (limited));
    END IF;
    IF s.role = 'inspector' AND limited IS NOT NULL THEN
        RETURN (SELECT coalesce(array_agg(grid_code), '{}') FROM grid_cells
                WHERE grid_code = ANY (s.grids) AND village_key = ANY (limited));
    END IF;
    RETURN s.grids;
END
$$;

-- The buildings the session sees: every one for vt_sees_all(); a limited manager's villages'
-- (with those outside every grid cell); an inspector's grids'.
CREATE OR REPLACE FUNCTION vt_my_buildings() RETURNS text[] LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = public AS $$
DECLARE
    managed text[];
BEGIN
    IF vt_sees_all() THEN
        RETURN (SELECT coalesce(array_agg(building_id), '{}') FROM buildings);
    END IF;
    managed := vt_managed_villages();
    RETURN (SELECT coalesce(array_agg(building_id), '{}') FROM buildings
            WHERE grid_code = ANY (vt_my_grids()) OR village_key = ANY (managed));
END
$$;

-- The villages the session sees anything of: all for vt_sees_all(); a limited manager's; the
-- villages of an inspector's grids.
CREATE FUNCTION vt_my_villages() RETURNS text[] LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public AS $$
BEGIN
    IF vt_sees_all() THEN
        RETURN (SELECT coalesce(array_agg(village_key), '{}') FROM villages);
    END IF;
    RETURN (SELECT coalesce(array_agg(DISTINCT v), '{}') FROM (
        SELECT unnest(vt_managed_villages()) AS v
        UNION SELECT village_key FROM grid_cells WHERE grid_code = ANY (vt_my_grids())
    ) AS mine WHERE v IS NOT NULL);
END
$$;

REVOKE EXECUTE ON FUNCTION vt_user_villages(), vt_managed_villages(), vt_my_villages(),
    village_of_building(text), village_of_device(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vt_user_villages(), vt_managed_villages(), vt_my_villages(),
    village_of_building(text), village_of_device(text) TO vt_dashboard;

-- vt_protect gains the scope `village` (the column holds a village key).
CREATE OR REPLACE FUNCTION vt_protect(tbl regclass, scope text, col text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    everyone constant text := '(SELECT vt_sees_all())';
    own text := CASE WHEN col IS NOT NULL THEN format('%s.%I', tbl, col) END;
    rule text;
BEGIN
    rule := CASE scope
        WHEN 'grid' THEN format('%s OR %s = ANY ((SELECT vt_my_grids())::text[])', everyone, own)
        WHEN 'building' THEN format('%s OR %s = ANY ((SELECT vt_my_buildings())::text[])',
                                    everyone, own)
        WHEN 'village' THEN format('%s OR %s = ANY ((SELECT vt_my_villages())::text[])',
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
        RAISE EXCEPTION 'vt_protect: unknown scope % (grid, building, village, unit, device,'
                        ' person, managers, admins)', scope;
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS vt_scope ON %s', tbl);
    EXECUTE format('CREATE POLICY vt_scope ON %s FOR ALL TO vt_dashboard USING (%s)'
                   ' WITH CHECK (%s)', tbl, rule, rule);
END
$$;

-- Places of a village: roads, points of interest and the villages themselves.
SELECT vt_protect('villages', 'village', 'village_key');
SELECT vt_protect('roads', 'village', 'village_key');
SELECT vt_protect('points_of_interest', 'village', 'village_key');

-- A limited manager also sees what of their villages lies outside every grid cell: a second
-- (permissive, so OR-ed) policy on the tables scoped by grid code.
CREATE POLICY vt_village ON buildings FOR SELECT TO vt_dashboard
    USING (village_key = ANY ((SELECT vt_managed_villages())::text[]));
CREATE POLICY vt_village ON devices FOR SELECT TO vt_dashboard
    USING (building_id = ANY ((SELECT vt_my_buildings())::text[]));
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['alerts', 'cases'] LOOP
        IF to_regclass(name) IS NOT NULL AND EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name = name AND column_name = 'grid_code')
           AND EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name = name AND column_name = 'building_id')
        THEN
            EXECUTE format('CREATE POLICY vt_village ON %I FOR SELECT TO vt_dashboard USING'
                           ' (building_id = ANY ((SELECT vt_my_buildings())::text[]))', name);
        END IF;
    END LOOP;
END
$$;

GRANT SELECT (village_key) ON buildings TO vt_dashboard;
