-- How many items replay buffer $1 holds.
SELECT coalesce(sum(b.filled), 0)::bigint FROM fractality.replay_blocks b WHERE b.buffer_id = $1
