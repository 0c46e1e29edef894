-- Items of buffer $1 of events $2: event id and slot.
SELECT i.event_id, i.slot
  FROM fractality.replay_items i
 WHERE i.buffer_id = $1 AND i.event_id = ANY($2)
