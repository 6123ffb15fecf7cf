-- When each event was written (commit time within a few milliseconds): with ts (device time)
-- and received_at it splits ingest lag into the network and broker part and the batching part.
ALTER TABLE events ADD COLUMN stored_at timestamptz NOT NULL DEFAULT clock_timestamp();
