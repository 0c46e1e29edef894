-- The items of events $2 in buffer $1, found through each event's timestamp in the event-id
-- registry: event id, slot and the priority the tree holds (an id missing from the answer is not
-- in the buffer).
SELECT i.event_id, i.slot, i.priority
  FROM fractality.experience_event_ids r
  JOIN fractality.replay_items i
    ON i.event_timestamp = r."timestamp" AND i.buffer_id = $1 AND i.event_id = r.event_id
 WHERE r.event_id = ANY($2::bytea[])
