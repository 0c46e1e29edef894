-- Blocks $2 of buffer $1's items deleted (their last items gone).
DELETE FROM fractality.replay_blocks WHERE buffer_id = $1 AND block = ANY($2::bigint[])
