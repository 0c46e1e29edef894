-- drop_replay_buffer: the replay buffer named $1 dropped (its tree and pending priorities go with
-- it, ON DELETE CASCADE; its items by replay_drop_items); its id, no row when there was none.
DELETE FROM fractality.replay_buffers WHERE name = $1 RETURNING buffer_id
