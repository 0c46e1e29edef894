-- Every block of buffer $1's items: block and the priorities of its 120 slots (0: empty).
SELECT b.block, b.priorities FROM fractality.replay_blocks b WHERE b.buffer_id = $1
