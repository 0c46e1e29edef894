-- write_events: the stored events (hot or archived) that hold one of the batch's ids $1
-- (bytea[]), whatever their timestamps, as (timestamp, event_id): primary-key probes of
-- experience_event_ids.
SELECT i."timestamp", i.event_id FROM fractality.experience_event_ids i
 WHERE i.event_id = ANY($1)
