-- drop_replay_buffer: the items of the dropped buffer $1 (replay_items has no foreign key).
DELETE FROM fractality.replay_items WHERE buffer_id = $1
