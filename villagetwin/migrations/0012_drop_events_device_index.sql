-- No query reads events by device (the devices page reads device_latest, the gap report scans
-- by time), and this index cost the ingester about a sixth of each commit: every event updated
-- four indexes, now three.
DROP INDEX IF EXISTS events_device_ts;
