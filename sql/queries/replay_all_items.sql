-- Every item of buffer $1 in slot order: slot and priority.
SELECT i.slot, i.priority FROM fractality.replay_items i WHERE i.buffer_id = $1 ORDER BY i.slot
