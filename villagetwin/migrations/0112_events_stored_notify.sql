-- New events announce themselves (issue 13, event -> alert latency): every statement that adds
-- rows to events (the ingester's COPY of a batch, its staging INSERT, a bridge's) sends a
-- notification on channel vt_events_stored, delivered when its transaction commits, i.e. when
-- the rows become visible. The rules worker LISTENs and reads its inbox at once instead of
-- waiting for its next poll (rules/worker.py; the poll stays as the fallback).
-- A statement-level trigger: once per batch, not per row, and it leaves COPY's multi-row
-- inserts alone (only row triggers before insert turn them off). Notifications of one
-- transaction with the same payload are folded into one.
CREATE FUNCTION vt_events_stored_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vt_events_stored', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_stored_notify AFTER INSERT ON events
FOR EACH STATEMENT EXECUTE FUNCTION vt_events_stored_notify();
