-- Every availability change (a device's retained status, or its MQTT last will), so a day can
-- be replayed with the devices as they were.
CREATE TABLE device_status_history (
    device_id text NOT NULL,
    at        timestamptz NOT NULL,
    online    boolean NOT NULL,
    PRIMARY KEY (device_id, at)
);
CREATE INDEX device_status_history_at ON device_status_history (at);
GRANT SELECT ON device_status_history TO vt_dashboard;
