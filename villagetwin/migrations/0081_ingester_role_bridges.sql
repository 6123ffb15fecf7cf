-- vt_ingester (0080) for what 0020 added: vendor bridges' zones and encodings are read with
-- the registry, their status flags updated; an event met again merges its payload's
-- credential and `until` fields (store.py's ON CONFLICT ... DO UPDATE).
GRANT SELECT (time_zone, text_encoding, vendor_status), UPDATE (vendor_status) ON devices
    TO vt_ingester;
GRANT UPDATE (payload, received_at, credential_ref) ON events TO vt_ingester;
