-- How many items replay buffer $1 holds.
SELECT count(*) FROM fractality.replay_items i WHERE i.buffer_id = $1
