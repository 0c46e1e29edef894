-- A fold: blocks $2 of buffer $1's items get priorities $3 (block $2[i] the entries
-- (i - 1) * 120 + 1 .. i * 120).
UPDATE fractality.replay_blocks b
   SET priorities = $3[(w.i - 1) * 120 + 1 : w.i * 120]
  FROM pg_catalog.unnest($2::bigint[]) WITH ORDINALITY w(block, i)
 WHERE b.buffer_id = $1 AND b.block = w.block
