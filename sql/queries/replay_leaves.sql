-- The items of buffer $1 in blocks $2: block and the priorities of its 120 slots (0: empty).
SELECT b.block, b.priorities FROM fractality.replay_blocks b
 WHERE b.buffer_id = $1 AND b.block = ANY($2::bigint[])
