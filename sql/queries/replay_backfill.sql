-- The hot events already stored that pass buffer $1's filter enter it, oldest first (with a
-- capacity, the newest `capacity` of them), at its largest priority; how many entered.
WITH b AS (SELECT * FROM fractality.replay_buffers WHERE buffer_id = $1),
picked AS (
    SELECT e."timestamp", e.event_id,
           row_number() OVER (ORDER BY e."timestamp" DESC, e.event_id DESC) AS newest
      FROM fractality.experience_events e, b
     WHERE NOT e.archived
       AND (b.event_type IS NULL OR e.event_type = b.event_type)
       AND (b.policy_version IS NULL OR e.adna_version_hash = b.policy_version)),
kept AS (
    SELECT p.*, row_number() OVER (ORDER BY p."timestamp", p.event_id) - 1 AS seq
      FROM picked p, b
     WHERE b.capacity IS NULL OR p.newest <= b.capacity),
ins AS (
    INSERT INTO fractality.replay_items (buffer_id, slot, event_timestamp, event_id, priority)
    SELECT b.buffer_id, k.seq, k."timestamp", k.event_id, b.max_priority FROM kept k, b
    RETURNING 1)
SELECT count(*) FROM ins
