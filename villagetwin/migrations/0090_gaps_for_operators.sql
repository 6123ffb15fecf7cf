-- sequence_gaps() for every caller: the dashboard's role reads events through its scoped view
-- (vt_scope.events, migration 0061), which needs a signed-in session; operators' tools (the
-- `villagetwin gaps` command as the database owner, the ingester's role) have no dashboard
-- session and read the table itself. One branch runs, so the view is never evaluated for them.
CREATE OR REPLACE FUNCTION sequence_gaps(since timestamptz)
RETURNS TABLE (device_id text, first_missing bigint, last_missing bigint, missing bigint)
LANGUAGE plpgsql STABLE SET search_path = public AS $$
BEGIN
    IF pg_has_role(current_user, 'vt_dashboard', 'USAGE')
       AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN QUERY
        SELECT o.device_id, o.prev + 1, o.seq - 1, o.seq - o.prev - 1
        FROM (
            SELECT s.device_id, s.seq, lag(s.seq) OVER (PARTITION BY s.device_id ORDER BY s.seq) AS prev
            FROM (SELECT DISTINCT e.device_id, e.seq FROM vt_scope.events e WHERE e.ts >= since) AS s
        ) AS o
        WHERE o.seq > o.prev + 1
        ORDER BY o.device_id, o.prev;
    ELSE
        RETURN QUERY
        SELECT o.device_id, o.prev + 1, o.seq - 1, o.seq - o.prev - 1
        FROM (
            SELECT s.device_id, s.seq, lag(s.seq) OVER (PARTITION BY s.device_id ORDER BY s.seq) AS prev
            FROM (SELECT DISTINCT e.device_id, e.seq FROM public.events e WHERE e.ts >= since) AS s
        ) AS o
        WHERE o.seq > o.prev + 1
        ORDER BY o.device_id, o.prev;
    END IF;
END
$$;
