-- Blocks $2 of buffer $1's items, whole: block, timestamps, event ids, priorities.
SELECT b.block, b.timestamps, b.event_ids, b.priorities FROM fractality.replay_blocks b
 WHERE b.buffer_id = $1 AND b.block = ANY($2::bigint[])
