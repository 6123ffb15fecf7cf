-- Broker credentials: a device authenticates with its id and a password whose hash (the
-- Mosquitto password-file format) is kept here; platform services have accounts of their own.
ALTER TABLE devices ADD COLUMN password_hash text;
ALTER TABLE devices ADD COLUMN credentials_issued_at timestamptz;

CREATE TABLE service_accounts (
    username      text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('ingester')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
