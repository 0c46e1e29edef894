-- The timestamps of events $1 in the event-id registry (an id missing from the answer is not
-- stored).
SELECT r.event_id, r."timestamp" FROM fractality.experience_event_ids r WHERE r.event_id = ANY($1::bytea[])
