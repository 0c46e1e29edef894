-- The items of events $2 in buffer $1: event id, slot and the priority the tree holds (an id
-- missing from the answer is not in the buffer).
SELECT i.event_id, i.slot, i.priority
  FROM fractality.replay_items i
 WHERE i.buffer_id = $1 AND i.event_id = ANY($2::bytea[])
