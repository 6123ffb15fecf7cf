-- The kinds of device are declared once, in the device kind registry (devices/kinds.py).
-- villagetwin.migrate writes the registry into this table after every run (sync_device_kinds),
-- and devices.kind references it instead of a CHECK that repeated the list (0001).
CREATE TABLE device_kinds (
    kind      text PRIMARY KEY CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    label_zh  text NOT NULL,
    label_en  text NOT NULL
);
INSERT INTO device_kinds (kind, label_zh, label_en) VALUES
    ('gate', '出入口闸机', 'gate'),
    ('camera', '摄像机', 'camera'),
    ('access', '门禁', 'door access'),
    ('app', '居民应用', 'resident app');
ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
ALTER TABLE devices ADD CONSTRAINT devices_kind_fkey
    FOREIGN KEY (kind) REFERENCES device_kinds (kind);
GRANT SELECT ON device_kinds TO vt_dashboard;
