-- The village model, the device registry, events and dead letters.
-- Geometries are GeoJSON (WGS-84) in jsonb: the platform does its geometry in Python
-- (shapely), so it needs no PostGIS on the database host.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE grid_cells (
    grid_code   text PRIMARY KEY,
    name        text NOT NULL,
    grid_worker text,
    boundary    jsonb NOT NULL
);

CREATE TABLE buildings (
    building_id text PRIMARY KEY,             -- standard address code (一标三实 join key)
    address     text NOT NULL,
    grid_code   text REFERENCES grid_cells (grid_code),
    storeys     integer NOT NULL CHECK (storeys BETWEEN 1 AND 200),
    height_m    real NOT NULL CHECK (height_m > 0),
    landlord    text,
    use         text NOT NULL DEFAULT 'residential',
    footprint   jsonb NOT NULL,
    lon         double precision NOT NULL,    -- centroid, for labels and picking
    lat         double precision NOT NULL
);
CREATE INDEX buildings_grid ON buildings (grid_code);

CREATE TABLE units (
    unit_id     text PRIMARY KEY,             -- room code: <building_id>-<room>
    building_id text NOT NULL REFERENCES buildings ON DELETE CASCADE,
    floor       integer NOT NULL,
    room        text NOT NULL,
    area_m2     real,
    use         text NOT NULL DEFAULT 'rental',
    UNIQUE (building_id, room)
);

CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('gate', 'camera', 'access', 'app')),
    building_id text REFERENCES buildings ON DELETE SET NULL,
    grid_code   text,
    floor       integer,
    door        text,
    lon         double precision,
    lat         double precision,
    registered_at timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    online      boolean,
    last_seen   timestamptz,
    status_changed_at timestamptz
);

CREATE TABLE events (
    ts          timestamptz NOT NULL,         -- the device's time
    received_at timestamptz NOT NULL,         -- when the ingester received it
    event_id    uuid NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    building_id text,
    unit_id     text,
    credential_ref text,
    payload     jsonb NOT NULL,
    -- A redelivery or a device retry carries the same id and time: stored once.
    CONSTRAINT events_once UNIQUE (event_id, ts)
);
SELECT create_hypertable('events', by_range('ts', INTERVAL '1 day'));
CREATE INDEX events_building_ts ON events (building_id, ts DESC);
CREATE INDEX events_device_ts ON events (device_id, ts DESC);

-- Every refused message, with its reason, where an operator can see it.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    device_id    text,
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload      bytea NOT NULL,              -- as received, cut at the size limit
    payload_size integer NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at DESC);
