-- The items of events $2 (ids) at timestamps $3 in buffer $1: event id, slot and the priority the
-- tree holds (an event missing from the answer is not in the buffer, or not at that timestamp).
SELECT i.event_id, i.slot, i.priority
  FROM unnest($2::bytea[], $3::bigint[]) d(event_id, ts)
  JOIN fractality.replay_items i
    ON i.event_timestamp = d.ts AND i.buffer_id = $1 AND i.event_id = d.event_id
