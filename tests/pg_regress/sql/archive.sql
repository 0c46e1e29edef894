-- Archiving and retention through SQL: events into the cold tier and back, stream points packed
-- and read back, retention policies, run_maintenance, bad input. Data is placed relative to now()
-- and only counts are shown, so the output does not depend on the date (each point lies 3 hours
-- off any cutoff, more than a daylight-saving shift). One transaction, rolled back at the end.
\set VERBOSITY default
BEGIN;
SET LOCAL extra_float_digits = 3;
SET LOCAL fractality.notify = off;
-- 200 events, one every 12 hours back from 3 hours ago; metadata on every tenth
SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
           'event_id', lpad(to_hex(g), 32, '0'),
           'timestamp', fractality.epoch_us(now() - g * interval '12 hours' - interval '3 hours'),
           'episode_id', g / 10, 'step_number', g % 10, 'event_type', 1, 'flags', 0,
           'state_l1', 1.0 / 3, 'state_l2', -0.0, 'state_l3', 0.5, 'state_l4', 0.5,
           'state_l5', 0.5, 'state_l6', 0.5, 'state_l7', 0.5, 'state_l8', 0.5,
           'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
           'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', g * 1e-3,
           'reward_goal', 0.1, 'adna_version_hash', 7, 'sequence_number', g))
         FROM generate_series(0, 199) g)) AS written;
INSERT INTO fractality.action_metadata (event_timestamp, event_id, intent_type, executor_id, parameters)
SELECT "timestamp", event_id, 'explore', 'agent-1', jsonb_build_object('g', sequence_number)
  FROM fractality.experience_events WHERE sequence_number % 10 = 0;
CREATE TEMP TABLE before_archive AS
SELECT "timestamp", event_id, state::text, action::text, total_reward::text, intent_type, parameters
  FROM fractality.query_events(0, 9223372036854775807, 1000, true, true);

-- events older than 7 days (14 ... 199: 186 of them) move into the cold tier; a second run moves none
SELECT fractality.archive_old_events(7) AS archived, fractality.archive_old_events(7) AS again;
SELECT (SELECT count(*) FROM fractality.experience_events) AS hot,
       (SELECT count(*) FROM fractality.experience_events_archive) AS cold,
       (SELECT count(*) FROM fractality.action_metadata) AS metadata_hot,
       (SELECT count(*) FROM fractality.action_metadata_archive) AS metadata_cold;
-- read back bit for bit with their metadata, flagged archived; left out unless asked for
SELECT count(*) AS differing
  FROM (SELECT "timestamp", event_id, state::text, action::text, total_reward::text, intent_type, parameters
          FROM fractality.query_events(0, 9223372036854775807, 1000, true, true)
        EXCEPT ALL TABLE before_archive) d;
SELECT count(*) FILTER (WHERE archived) AS archived, count(*) AS all_events,
       count(intent_type) AS with_metadata
  FROM fractality.query_events(0, 9223372036854775807, 1000, true, true);
SELECT count(*) AS hot_only FROM fractality.query_events(0, 9223372036854775807, 1000);

-- stream points: one node, 500 points one every 6 hours back from 3 hours ago
INSERT INTO fractality.nodes (id, user_id, node_key, label)
VALUES ('00000000-0000-0000-0000-0000000000d1', '11111111-1111-1111-1111-111111111111', 'arch', 'archived');
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score, resonance_vector)
SELECT now() - g * interval '6 hours' - interval '3 hours', '00000000-0000-0000-0000-0000000000d1',
       '11111111-1111-1111-1111-111111111111', (g % 10) / 10.0,
       CASE WHEN g % 2 = 0 THEN g END,
       CASE WHEN g % 3 = 0 THEN ARRAY[1.0 / 3, 'NaN', NULL]::real[] END
  FROM generate_series(0, 499) g;
CREATE TEMP TABLE before_streams AS
SELECT time, atp_level, attention_score, resonance_vector::text
  FROM fractality.stream_history('00000000-0000-0000-0000-0000000000d1', '-infinity', 'infinity');
-- points older than 30 days (120 ... 499: 380 of them) packed into one row
SELECT fractality.archive_streams('30 days') AS points, fractality.archive_streams('30 days') AS again;
SELECT count(*) AS rows, sum(points) AS points, bool_and(attention_scores IS NOT NULL) AS attention,
       bool_and(resonance_vectors IS NOT NULL) AS vectors
  FROM fractality.consciousness_archive;
SELECT count(*) AS differing
  FROM (SELECT time, atp_level, attention_score, resonance_vector::text
          FROM fractality.stream_history('00000000-0000-0000-0000-0000000000d1', '-infinity', 'infinity')
        EXCEPT ALL TABLE before_streams) d;
SELECT count(*) FILTER (WHERE archived) AS archived, count(*) AS points,
       bool_and(resonance_vector IS NULL OR resonance_vector::text = '{0.33333334,NaN,NULL}') AS vectors_intact
  FROM fractality.stream_history('00000000-0000-0000-0000-0000000000d1', '-infinity', 'infinity');

-- retention policies
SELECT fractality.add_retention_policy('fractality.consciousness_streams', '10 days', 'archive');
SELECT fractality.add_retention_policy('fractality.experience_events', '3 days', 'drop');
SELECT relation, keep, action, last_run IS NULL AS never_run FROM fractality.retention_policies ORDER BY relation::text;
-- streams: 40 ... 119 (80 points) archived; events: 6 ... 13 (8 events) dropped
SELECT r->'retention' AS retention, r->'skipped' AS skipped
  FROM fractality.run_maintenance() r;
SELECT r->'retention' AS retention_again FROM fractality.run_maintenance() r;
SELECT relation, last_result FROM fractality.retention_policies ORDER BY relation::text;
SELECT fractality.remove_retention_policy('fractality.experience_events') AS removed,
       fractality.remove_retention_policy('fractality.experience_events') AS removed_again;

-- bad input: clear errors, nothing moved
SAVEPOINT s;
SELECT fractality.archive_old_events(-1);
ROLLBACK TO s;
SELECT fractality.archive_old_events(NULL);
ROLLBACK TO s;
SELECT fractality.archive_streams('-1 day');
ROLLBACK TO s;
SELECT fractality.archive_streams('NaN');
ROLLBACK TO s;
SELECT fractality.add_retention_policy('fractality.nodes', '1 day', 'archive');
ROLLBACK TO s;
SELECT fractality.add_retention_policy('fractality.no_such_table', '1 day', 'archive');
ROLLBACK TO s;
SELECT fractality.add_retention_policy('fractality.experience_events', '0 days', 'drop');
ROLLBACK TO s;
SELECT fractality.add_retention_policy('fractality.experience_events', '1 day', 'shred');
ROLLBACK TO s;
SELECT fractality.ensure_partitions(-1);
ROLLBACK TO s;
SELECT * FROM fractality.stream_history('00000000-0000-0000-0000-00000000ffff', '-infinity', 'infinity');
ROLLBACK TO s;
SELECT (SELECT count(*) FROM fractality.experience_events) AS hot,
       (SELECT count(*) FROM fractality.experience_events_archive) AS cold;
ROLLBACK;
