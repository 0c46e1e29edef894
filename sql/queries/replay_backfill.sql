-- The hot events already stored that pass buffer $1's filter enter it, oldest first (with a
-- capacity, the newest `capacity` of them), at its largest priority, 120 to a block; how many
-- entered.
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
    INSERT INTO fractality.replay_blocks (buffer_id, block, timestamps, event_ids, priorities, filled, span)
    SELECT b.buffer_id, k.seq / 120,
           pg_catalog.array_agg(k."timestamp" ORDER BY k.seq) || pg_catalog.array_fill(-1::bigint, ARRAY[120 - count(*)::integer]),
           string_agg(k.event_id, ''::bytea ORDER BY k.seq) || decode(repeat('00', 16 * (120 - count(*)::integer)), 'hex'),
           pg_catalog.array_fill(b.max_priority, ARRAY[count(*)::integer]) || pg_catalog.array_fill(0::float8, ARRAY[120 - count(*)::integer]),
           count(*), int8range(min(k."timestamp"), max(k."timestamp"), '[]')
      FROM kept k, b
     GROUP BY b.buffer_id, b.max_priority, k.seq / 120
    RETURNING filled)
SELECT coalesce(sum(filled), 0)::bigint FROM ins
