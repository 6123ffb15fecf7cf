-- Derived data, maintained by the ingester in the same transaction as the events, so the
-- dashboards never scan raw events for their common views (TimescaleDB's Apache edition has
-- no continuous aggregates). Days are local days in China Standard Time (Asia/Shanghai).

-- The latest event of every device.
CREATE TABLE device_latest (
    device_id   text PRIMARY KEY,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    kind        text NOT NULL,
    seq         bigint NOT NULL,
    payload     jsonb NOT NULL
);

-- Events per building, hour and kind.
CREATE TABLE building_hourly (
    building_id text NOT NULL,
    hour        timestamptz NOT NULL,
    kind        text NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (building_id, hour, kind)
);
CREATE INDEX building_hourly_hour ON building_hourly (hour DESC);

-- Which credentials were seen at each unit on each local day: count(*) per (unit, day) is
-- the number of distinct people (cards, faces, app accounts) a door reader observed.
CREATE TABLE unit_daily_credentials (
    unit_id        text NOT NULL,
    day            date NOT NULL,
    credential_ref text NOT NULL,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    events         integer NOT NULL,
    PRIMARY KEY (unit_id, day, credential_ref)
);
CREATE INDEX unit_daily_credentials_day ON unit_daily_credentials (day);

-- The highest sequence number stored per device; gaps below it are reported by
-- sequence_gaps() from the events themselves.
ALTER TABLE devices ADD COLUMN last_seq bigint;

-- Exact missing sequence ranges per device, among events with device time since `since`.
CREATE FUNCTION sequence_gaps(since timestamptz)
RETURNS TABLE (device_id text, first_missing bigint, last_missing bigint, missing bigint)
LANGUAGE sql STABLE AS $$
    SELECT device_id, prev + 1, seq - 1, seq - prev - 1
    FROM (
        SELECT device_id, seq, lag(seq) OVER (PARTITION BY device_id ORDER BY seq) AS prev
        FROM (SELECT DISTINCT device_id, seq FROM events WHERE ts >= since) AS s
    ) AS ordered
    WHERE seq > prev + 1
    ORDER BY device_id, prev
$$;
