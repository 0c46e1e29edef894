-- Blocks $2 of buffer $1's items written whole: block $2[i] gets the entries
-- (i - 1) * 120 + 1 .. i * 120 of timestamps $3 and priorities $5, bytes (i - 1) * 1920 + 1 ..
-- i * 1920 of event ids $4, $6[i] items, timestamps from $7[i] to $8[i].
INSERT INTO fractality.replay_blocks AS t (buffer_id, block, timestamps, event_ids, priorities, filled, span)
SELECT $1, w.block, $3[(w.i - 1) * 120 + 1 : w.i * 120], substring($4 FROM (w.i::integer - 1) * 1920 + 1 FOR 1920),
       $5[(w.i - 1) * 120 + 1 : w.i * 120], $6[w.i], int8range($7[w.i], $8[w.i], '[]')
  FROM pg_catalog.unnest($2::bigint[]) WITH ORDINALITY w(block, i)
ON CONFLICT ON CONSTRAINT replay_blocks_pkey DO UPDATE
   SET timestamps = EXCLUDED.timestamps, event_ids = EXCLUDED.event_ids,
       priorities = EXCLUDED.priorities, filled = EXCLUDED.filled, span = EXCLUDED.span
