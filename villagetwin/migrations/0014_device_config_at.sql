-- When the device's config message that set floor, door and building was received: batches
-- commit out of order (several writers, several ingesters), and an older config must not
-- overwrite a newer one.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS config_at timestamptz;
