-- Bridged (vendor) devices: the zone their vendor times without a UTC offset are read in and
-- the text encoding of their payloads (NULL: the village's zone, VT_INGEST__TIME_ZONE; UTF-8,
-- else GB18030, detected), and the vendor status flags their heartbeats and status messages
-- report (e.g. {"videoloss": {"active": false, "at": "…"}}).
ALTER TABLE devices ADD COLUMN IF NOT EXISTS time_zone text;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS text_encoding text;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS vendor_status jsonb NOT NULL DEFAULT '{}'::jsonb;
GRANT SELECT (time_zone, text_encoding, vendor_status) ON devices TO vt_dashboard;
