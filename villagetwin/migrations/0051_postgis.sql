-- The village model's places as PostGIS geometries (SRID 4326, WGS-84) with GiST indexes, so
-- that the spatial work happens in the database and a GIS user opens the village in QGIS
-- directly (docs/qgis.md). The GeoJSON columns the platform writes stay the source: each
-- geometry is a generated column computed from them, so no writer changes and the two can
-- never disagree. Polygons are stored as MultiPolygon and paths as MultiLineString, one type
-- per layer as GIS software expects.
CREATE EXTENSION IF NOT EXISTS postgis;

ALTER TABLE buildings ADD COLUMN geom geometry(MultiPolygon, 4326)
    GENERATED ALWAYS AS (ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(footprint), 4326))) STORED;
CREATE INDEX buildings_geom ON buildings USING gist (geom);

ALTER TABLE grid_cells ADD COLUMN geom geometry(MultiPolygon, 4326)
    GENERATED ALWAYS AS (ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(boundary), 4326))) STORED;
CREATE INDEX grid_cells_geom ON grid_cells USING gist (geom);

ALTER TABLE roads ADD COLUMN geom geometry(MultiLineString, 4326)
    GENERATED ALWAYS AS (ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(path), 4326))) STORED;
CREATE INDEX roads_geom ON roads USING gist (geom);

ALTER TABLE points_of_interest ADD COLUMN geom geometry(Point, 4326)
    GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED;
CREATE INDEX points_of_interest_geom ON points_of_interest USING gist (geom);

ALTER TABLE devices ADD COLUMN geom geometry(Point, 4326)
    GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED;
CREATE INDEX devices_geom ON devices USING gist (geom);

ALTER TABLE objects ADD COLUMN geom geometry(Point, 4326)
    GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED;
CREATE INDEX objects_geom ON objects USING gist (geom);

-- The village itself: its boundary, the projected CRS its metric work uses (estimated per
-- village, a UTM zone) and its time zone.
CREATE TABLE villages (
    village_key   text PRIMARY KEY,
    name          text NOT NULL,
    boundary      geometry(MultiPolygon, 4326),
    projected_crs text NOT NULL,                  -- e.g. EPSG:32649
    time_zone     text NOT NULL DEFAULT 'Asia/Shanghai'
);
CREATE INDEX villages_boundary ON villages USING gist (boundary);

-- Units with their building's footprint, so that a GIS user sees rooms on the map.
CREATE VIEW units_in_buildings AS
    SELECT u.unit_id, u.building_id, u.floor, u.room, u.area_m2, u.use, b.geom
    FROM units u JOIN buildings b USING (building_id);

-- Which building a point falls in (the smallest, should footprints overlap); NULL if none.
CREATE FUNCTION building_at(p_lon double precision, p_lat double precision) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT building_id FROM buildings
    WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326))
    ORDER BY ST_Area(geom), building_id LIMIT 1
$$;

-- Which grid cell a building is in: the cell holding a point inside its footprint
-- (ST_PointOnSurface: a courtyard building's centroid may be in the courtyard).
CREATE FUNCTION grid_of_building(p_building_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT g.grid_code FROM buildings b JOIN grid_cells g
        ON ST_Within(ST_PointOnSurface(b.geom), g.geom)
    WHERE b.building_id = p_building_id
    ORDER BY g.grid_code LIMIT 1
$$;

-- Gives every building without a grid the cell it is in; returns what it assigned.
CREATE FUNCTION assign_buildings_to_grids()
RETURNS TABLE (building_id text, grid_code text) LANGUAGE sql AS $$
    UPDATE buildings b SET grid_code = found.grid_code
    FROM (
        SELECT DISTINCT ON (b2.building_id) b2.building_id, g.grid_code
        FROM buildings b2 JOIN grid_cells g ON ST_Within(ST_PointOnSurface(b2.geom), g.geom)
        WHERE b2.grid_code IS NULL
        ORDER BY b2.building_id, g.grid_code
    ) found
    WHERE b.building_id = found.building_id
    RETURNING b.building_id, b.grid_code
$$;

GRANT SELECT ON villages, units_in_buildings TO vt_dashboard;
GRANT SELECT (geom) ON devices TO vt_dashboard;
