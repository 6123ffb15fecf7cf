-- A device's place (building, floor, door) is set by an operator in the registry. What a
-- device claims about it in its retained config, where that differs, waits here for an
-- operator to accept or reject it (`villagetwin devices changes`); it never moves the device.
CREATE TABLE device_place_changes (
    change_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices ON DELETE CASCADE,
    building_id text,
    floor       integer,
    door        text,
    claimed_at  timestamptz NOT NULL,   -- when the ingester received the config
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'accepted', 'rejected')),
    decided_at  timestamptz,
    decided_by  text
);
-- One open claim per device and place: a retained config redelivered after every restart is
-- the same claim, not a new one (and a rejected claim is not reopened: ingest/store.py).
CREATE UNIQUE INDEX device_place_changes_open ON device_place_changes
    (device_id, building_id, floor, door) NULLS NOT DISTINCT WHERE status = 'pending';
