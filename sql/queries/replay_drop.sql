-- drop_replay_buffer: the replay buffer named $1 dropped (its items and tree go with it, ON DELETE
-- CASCADE); one row processed when there was one.
DELETE FROM fractality.replay_buffers WHERE name = $1
