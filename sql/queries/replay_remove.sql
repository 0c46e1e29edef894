-- Where the events ($1: ids, $2: their timestamps) are held, in every buffer: buffer and slot.
SELECT b.buffer_id, b.block * 120 + k.k - 1
  FROM unnest($1::bytea[], $2::bigint[]) e(event_id, ts)
  JOIN fractality.replay_blocks b ON b.span @> e.ts
 CROSS JOIN LATERAL pg_catalog.unnest(pg_catalog.array_positions(b.timestamps, e.ts)) k(k)
 WHERE substring(b.event_ids FROM (k.k - 1) * 16 + 1 FOR 16) = e.event_id
