-- Blocks $3 of level $2 of buffer $1's sum tree written: block $3[i] gets entries
-- $4[(i - 1) * $5 + 1 .. i * $5] (the blocks' entries one after the other, $5 per block).
INSERT INTO fractality.replay_tree AS t (buffer_id, level, block, sums)
SELECT $1, $2, b.block, $4[(b.i - 1) * $5 + 1 : b.i * $5]
  FROM pg_catalog.unnest($3::bigint[]) WITH ORDINALITY b(block, i)
ON CONFLICT ON CONSTRAINT replay_tree_pkey DO UPDATE SET sums = EXCLUDED.sums
