-- Alleys, roads and points of interest, for the map.
CREATE TABLE roads (
    road_id  text PRIMARY KEY,
    name     text NOT NULL,
    kind     text NOT NULL,                -- main_street, lane, alley
    width_m  real NOT NULL CHECK (width_m > 0),
    path     jsonb NOT NULL                -- GeoJSON LineString, WGS-84
);

CREATE TABLE points_of_interest (
    poi_id   text PRIMARY KEY,
    name     text NOT NULL,
    category text NOT NULL,
    lon      double precision NOT NULL,
    lat      double precision NOT NULL
);
