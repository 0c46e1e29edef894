-- Items of buffer $1 in slots $2: slot, event timestamp, event id, priority.
SELECT i.slot, i.event_timestamp, i.event_id, i.priority
  FROM fractality.replay_items i
 WHERE i.buffer_id = $1 AND i.slot = ANY($2)
