-- drop_replay_buffer: the items of the dropped buffer $1 (replay_blocks has no foreign key).
DELETE FROM fractality.replay_blocks WHERE buffer_id = $1
