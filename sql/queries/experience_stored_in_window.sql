-- write_events on a schema of 0.4.0 or earlier served by this library until ALTER EXTENSION
-- fractality UPDATE has run (no experience_event_ids): the stored events of the batch's time
-- window [$1, $2] (microseconds), in the hot tier and in the cold one, as (timestamp, event_id).
SELECT "timestamp", event_id FROM fractality.experience_events
 WHERE "timestamp" BETWEEN $1 AND $2
UNION ALL
SELECT "timestamp", event_id FROM fractality.experience_events_archive
 WHERE "timestamp" BETWEEN $1 AND $2
