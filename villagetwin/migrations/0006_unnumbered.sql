-- Events bridged from vendor formats that carry no sequence number have seq 0: the gap
-- report leaves them out.
CREATE OR REPLACE FUNCTION sequence_gaps(since timestamptz)
RETURNS TABLE (device_id text, first_missing bigint, last_missing bigint, missing bigint)
LANGUAGE sql STABLE AS $$
    SELECT device_id, prev + 1, seq - 1, seq - prev - 1
    FROM (
        SELECT device_id, seq, lag(seq) OVER (PARTITION BY device_id ORDER BY seq) AS prev
        FROM (SELECT DISTINCT device_id, seq FROM events WHERE ts >= since AND seq > 0) AS s
    ) AS ordered
    WHERE seq > prev + 1
    ORDER BY device_id, prev
$$;
