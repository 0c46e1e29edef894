-- Events older than $1 (archived or dropped) leave every buffer: the items removed.
DELETE FROM fractality.replay_items i WHERE i.event_timestamp < $1
RETURNING i.buffer_id, i.slot
