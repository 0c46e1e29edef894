-- write_events: the action metadata of a batch's events, one row per element of the arrays
-- $1 event timestamps (bigint[]), $2 event ids (bytea[]), $3 intent types (text[]), $4 executor
-- ids (text[]), $5 parameters (jsonb[]).
INSERT INTO fractality.action_metadata (event_timestamp, event_id, intent_type, executor_id, parameters)
SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::jsonb[])
