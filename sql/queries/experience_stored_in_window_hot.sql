-- write_events on a schema of 0.1.0 (no cold tier) served by this library until ALTER
-- EXTENSION fractality UPDATE has run: the stored events of the batch's time window [$1, $2]
-- (microseconds), as (timestamp, event_id).
SELECT "timestamp", event_id FROM fractality.experience_events
 WHERE "timestamp" BETWEEN $1 AND $2
