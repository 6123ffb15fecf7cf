-- Alerts raised by the rules worker (rules/), with who did what when. One open alert per rule
-- and subject: a repeat updates it (partial unique index). grid_code and building_id are
-- plain columns so that row-level security can later key on them.
CREATE TABLE alerts (
    alert_id    bigserial PRIMARY KEY,
    rule        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    subject     text NOT NULL,              -- what the alert is about: unit:…, building:…, …
    grid_code   text,
    building_id text,
    unit_id     text,
    device_id   text,
    poi_id      text,
    lon         double precision,
    lat         double precision,
    title       text NOT NULL,              -- Chinese first, English beside
    detail      jsonb NOT NULL DEFAULT '{}',
    evidence    text[] NOT NULL DEFAULT '{}', -- event ids, newest last (at most 50)
    occurrences integer NOT NULL DEFAULT 1,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'acknowledged', 'resolved', 'false_alarm')),
    assigned_to text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    version     integer NOT NULL DEFAULT 1,  -- +1 on every change; published over MQTT
    published_version integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, subject)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX alerts_subject ON alerts (rule, subject, closed_at DESC);
CREATE INDEX alerts_active ON alerts (severity, last_seen DESC)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX alerts_grid ON alerts (grid_code, status);
CREATE INDEX alerts_building ON alerts (building_id) WHERE status IN ('open', 'acknowledged');
CREATE INDEX alerts_unpublished ON alerts (alert_id) WHERE published_version < version;

CREATE TABLE alert_history (
    history_id bigserial PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,               -- a user, or 'rules' for the worker
    action     text NOT NULL,               -- opened, repeated, acknowledged, assigned, …
    note       text NOT NULL DEFAULT ''
);
CREATE INDEX alert_history_alert ON alert_history (alert_id, at);

-- What the worker keeps between cycles (its cursor over new events, door states), written in
-- the same transaction as the alerts those cycles produced.
CREATE TABLE rule_state (
    name       text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The few events the event rules read, by arrival: a partial index, so the ingester pays
-- for it only on these rare kinds and the worker never scans other events.
CREATE INDEX events_rule_inbox ON events (stored_at)
    WHERE kind IN ('access.alarm', 'access.door', 'gate.alarm')
       OR (kind = 'camera.detection' AND payload ->> 'cls' IN ('smoke', 'fire', 'ebike', 'crowd'));

GRANT SELECT ON alerts, alert_history TO vt_dashboard;
GRANT UPDATE (status, assigned_to, updated_at, closed_at, version) ON alerts TO vt_dashboard;
GRANT INSERT ON alert_history TO vt_dashboard;
GRANT USAGE ON SEQUENCE alert_history_history_id_seq TO vt_dashboard;
