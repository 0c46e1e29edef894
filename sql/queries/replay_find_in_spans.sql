-- The items of events $2 (ids) at timestamps $3 in buffer $1, looked for in every block whose
-- span holds the timestamp: event id, slot and the priority the tree holds (an event missing
-- from the answer is not in the buffer, or not at that timestamp).
SELECT d.event_id, b.block * 120 + k.k - 1, b.priorities[k.k]
  FROM unnest($2::bytea[], $3::bigint[]) d(event_id, ts)
  JOIN fractality.replay_blocks b ON b.span @> d.ts AND b.buffer_id = $1
 CROSS JOIN LATERAL pg_catalog.unnest(pg_catalog.array_positions(b.timestamps, d.ts)) k(k)
 WHERE substring(b.event_ids FROM (k.k - 1) * 16 + 1 FOR 16) = d.event_id
