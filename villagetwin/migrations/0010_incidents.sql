-- Incidents residents report through the app move through reported -> assigned -> resolved.
-- The ingester opens one per app.incident event, in the same transaction as the event.
CREATE TABLE incidents (
    incident_id  uuid PRIMARY KEY,             -- the app.incident event's id
    reported_at  timestamptz NOT NULL,
    device_id    text NOT NULL,
    building_id  text,
    category     text NOT NULL,
    description  text NOT NULL,
    lon          double precision,
    lat          double precision,
    photo_ref    text,
    status       text NOT NULL DEFAULT 'reported'
                 CHECK (status IN ('reported', 'assigned', 'resolved')),
    assigned_to  text,
    resolved_at  timestamptz,
    updated_by   text,
    updated_at   timestamptz
);
CREATE INDEX incidents_open ON incidents (status, reported_at DESC) WHERE status <> 'resolved';

GRANT SELECT ON incidents TO vt_dashboard;
GRANT UPDATE (status, assigned_to, resolved_at, updated_by, updated_at) ON incidents
    TO vt_dashboard;
