-- Blocks $3 of level $2 of buffer $1's sum tree.
SELECT t.block, t.sums FROM fractality.replay_tree t
 WHERE t.buffer_id = $1 AND t.level = $2 AND t.block = ANY($3)
