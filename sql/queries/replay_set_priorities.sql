-- New priorities $3 for the items of events $2 in buffer $1; the items updated: event id and
-- slot (an id missing from the answer is not in the buffer).
UPDATE fractality.replay_items i
   SET priority = p.priority
  FROM unnest($2::bytea[], $3::float8[]) p(event_id, priority)
 WHERE i.buffer_id = $1 AND i.event_id = p.event_id
RETURNING i.event_id, i.slot
