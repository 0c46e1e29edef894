-- The blocks of level $2 of buffer $1's sum tree numbered in [$3, $4).
SELECT t.block, t.sums FROM fractality.replay_tree t
 WHERE t.buffer_id = $1 AND t.level = $2 AND t.block >= $3 AND t.block < $4
