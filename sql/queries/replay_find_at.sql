-- The items of events $2 (ids) at timestamps $3 in buffer $1, looked for in the block that starts
-- last at or before each timestamp (where an event is when experience arrives in time order):
-- event id, slot and the priority the tree holds. An event missing from the answer may be in
-- another block: replay_find_in_spans.sql looks in every block whose span holds its timestamp.
SELECT d.event_id, b.block * 120 + k.k - 1, b.priorities[k.k]
  FROM unnest($2::bytea[], $3::bigint[]) d(event_id, ts)
 CROSS JOIN LATERAL (
        SELECT s.block, s.timestamps, s.event_ids, s.priorities FROM fractality.replay_blocks s
         WHERE s.buffer_id = $1 AND lower(s.span) <= d.ts
         ORDER BY lower(s.span) DESC
         LIMIT 1) b
 CROSS JOIN LATERAL pg_catalog.unnest(pg_catalog.array_positions(b.timestamps, d.ts)) k(k)
 WHERE substring(b.event_ids FROM (k.k - 1) * 16 + 1 FOR 16) = d.event_id
