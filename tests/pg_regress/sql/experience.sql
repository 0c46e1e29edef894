-- The experience store through SQL: ingest, queries, policies, configuration, reward aggregates,
-- prioritised sampling. Everything inside one transaction, rolled back at the end.
\set VERBOSITY default
BEGIN;
-- a JSON batch: ids as 32 hex digits or a UUID, "timestamp" in microseconds; rewards default 0
CREATE TEMP TABLE ev AS
SELECT jsonb_build_object(
           'event_id', lpad(to_hex(g), 32, '0'), 'timestamp', 1000 * g, 'episode_id', 1 + g / 5,
           'step_number', g % 5, 'event_type', 1, 'flags', 0,
           'state_l1', 0.5, 'state_l2', 0.5, 'state_l3', 0.5, 'state_l4', 0.5,
           'state_l5', 0.5, 'state_l6', 0.5, 'state_l7', 0.5, 'state_l8', 0.5,
           'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
           'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
           'reward_homeostasis', (g % 3) * 0.25, 'reward_goal', CASE WHEN g % 5 = 4 THEN 1 ELSE 0 END,
           'adna_version_hash', 77, 'sequence_number', g) AS e
  FROM generate_series(0, 9) g;
SELECT fractality.write_events((SELECT jsonb_agg(e) FROM ev)) AS written;
-- one event with its metadata
SELECT fractality.write_event_with_metadata(
    (SELECT e || '{"event_id": "00000000-0000-0000-0000-0000000000aa", "timestamp": 50000, "episode_id": 9, "step_number": 0}' FROM ev LIMIT 1),
    '{"intent_type": "explore", "executor_id": "agent-1", "parameters": {"depth": 2}}');
-- and one through the column form
SELECT fractality.write_event('\x000000000000000000000000000000bb', 60000, 9, 1, 0::smallint, 0::smallint,
                              array_fill(0.25::real, ARRAY[8]), array_fill(0::real, ARRAY[8]), 77, 11,
                              reward_curiosity => 0.5);
SELECT "timestamp", encode(event_id, 'hex') AS event_id, episode_id, step_number, total_reward,
       intent_type, parameters
  FROM fractality.query_events(0, 100000, 20, with_metadata => true);
SELECT count(*) AS in_range FROM fractality.query_events(2000, 5000, 100);
SELECT "timestamp", total_reward FROM fractality.high_reward_events(0, 0.5, 3);

-- write_events_json (text, json): the same batch read by serde straight from its text
SAVEPOINT t;
-- (other ids: an event id is written once, whatever its timestamp)
SELECT fractality.write_events_json((SELECT jsonb_agg(e || jsonb_build_object('timestamp', (e->>'timestamp')::bigint + 1,
            'event_id', lpad(to_hex(1000 + (e->>'sequence_number')::int), 32, '0'))) FROM ev)::text) AS as_text,
       fractality.write_events_json((SELECT jsonb_agg(e || jsonb_build_object('timestamp', (e->>'timestamp')::bigint + 2,
            'event_id', lpad(to_hex(2000 + (e->>'sequence_number')::int), 32, '0'))) FROM ev)::json) AS as_json;
SELECT "timestamp" % 1000 AS form, count(*), sum(total_reward), sum(step_number), count(DISTINCT event_id)
  FROM fractality.query_events(0, 100000, 100) GROUP BY 1 ORDER BY 1;
ROLLBACK TO t;
-- text that is not JSON
SELECT fractality.write_events_json('[{"event_id": ]');
ROLLBACK TO t;
-- an element that is not an event: the error names write_events_json, the element and the field
SELECT fractality.write_events_json(jsonb_build_array((SELECT e FROM ev LIMIT 1) || '{"event_id": "00000000000000000000000000000c03", "step_number": "two"}')::text);
ROLLBACK TO t;
-- metadata that is not: the value named, a missing field called missing
SELECT fractality.write_event_with_metadata((SELECT e || '{"event_id": "00000000000000000000000000000c04"}' FROM ev LIMIT 1),
                                            '{"intent_type": 42, "executor_id": "agent-1"}');
ROLLBACK TO t;
SELECT fractality.write_event_with_metadata((SELECT e || '{"event_id": "00000000000000000000000000000c04"}' FROM ev LIMIT 1),
                                            '{"intent_type": "explore"}');
ROLLBACK TO t;
-- the column form's errors describe its arguments
SELECT fractality.write_event('\x000000000000000000000000000000bc', 60000, 9, 1, 0::smallint, 0::smallint,
                              array_fill(0.25::real, ARRAY[8]), array_fill('NaN'::real, ARRAY[8]), 77, 11);
ROLLBACK TO t;
SELECT count(*) AS none_written FROM fractality.experience_events WHERE event_id IN ('\x00000000000000000000000000000c03', '\x00000000000000000000000000000c04', '\x000000000000000000000000000000bc');

-- malformed batches are refused whole, naming the element and the field; nothing is written
SAVEPOINT s;
SELECT fractality.write_events(jsonb_build_array((SELECT e FROM ev LIMIT 1) || '{"event_id": "00000000000000000000000000000c01"}',
                                                 (SELECT e FROM ev LIMIT 1) - 'episode_id'));
ROLLBACK TO s;
SELECT fractality.write_events(jsonb_build_array((SELECT e FROM ev LIMIT 1) || '{"event_id": "000000000000000000000000000c01", "timestamp": 1}'));
ROLLBACK TO s;
SELECT fractality.write_events(jsonb_build_array((SELECT e FROM ev LIMIT 1) || '{"event_id": "00000000000000000000000000000c01", "reward_goal": "NaN"}'));
ROLLBACK TO s;
SELECT fractality.write_events(jsonb_build_array((SELECT e FROM ev LIMIT 1) || '{"event_id": "00000000000000000000000000000c01", "step_number": "two"}'));
ROLLBACK TO s;
SELECT fractality.write_events(jsonb_build_array((SELECT e FROM ev LIMIT 1) || '{"event_id": "00000000000000000000000000000c01", "timestamp": 1}',
                                                 (SELECT e FROM ev LIMIT 1) || '{"event_id": "00000000000000000000000000000c01", "timestamp": 1}'));
ROLLBACK TO s;
SELECT fractality.write_events((SELECT jsonb_agg(e) FROM ev WHERE (e->>'sequence_number')::int < 2));
ROLLBACK TO s;
SELECT fractality.write_events('{"not": "an array"}');
ROLLBACK TO s;
SELECT fractality.write_events(ARRAY['\x01'::bytea], ARRAY[1::bigint], ARRAY[1::bigint], ARRAY[0], ARRAY[0::smallint],
                               ARRAY[0::smallint], array_fill(0::real, ARRAY[8]), array_fill(0::real, ARRAY[8]),
                               ARRAY[0, 0, 0, 0]::real[], ARRAY[1], ARRAY[1]);
ROLLBACK TO s;
-- a NULL element of a column's array: 22004, as PostgreSQL's "array must not contain nulls"
SELECT fractality.write_events(ARRAY['\x00000000000000000000000000000c02'::bytea], ARRAY[NULL::bigint], ARRAY[1::bigint],
                               ARRAY[0], ARRAY[0::smallint], ARRAY[0::smallint], array_fill(0::real, ARRAY[8]),
                               array_fill(0::real, ARRAY[8]), ARRAY[0, 0, 0, 0]::real[], ARRAY[1], ARRAY[1]);
ROLLBACK TO s;
\set VERBOSITY sqlstate
SELECT fractality.write_events(ARRAY['\x00000000000000000000000000000c02'::bytea], ARRAY[NULL::bigint], ARRAY[1::bigint],
                               ARRAY[0], ARRAY[0::smallint], ARRAY[0::smallint], array_fill(0::real, ARRAY[8]),
                               array_fill(0::real, ARRAY[8]), ARRAY[0, 0, 0, 0]::real[], ARRAY[1], ARRAY[1]);
\set VERBOSITY default
ROLLBACK TO s;
SELECT * FROM fractality.query_events(10, 5, 1);
ROLLBACK TO s;
SELECT count(*) AS events_after_refusals FROM fractality.experience_events;

-- reward aggregates
SELECT episode_id, steps, round(total::numeric, 6) AS total, round(discounted::numeric, 6) AS discounted,
       round(mean::numeric, 6) AS mean, homeostasis, curiosity, efficiency, goal
  FROM fractality.episode_returns(0, 100000, 0.5);
-- episode 1 by hand: total rewards 0, 0.25, 0.5, 0, 1.25 at steps 0..4, in any order for the
-- step form: 0.25 / 2 + 0.5 / 4 + 1.25 / 16 = 0.328125
SELECT fractality.discounted_return(r, 0.5 ORDER BY s) AS ordered,
       fractality.discounted_return(r, 0.5, s) AS by_step
  FROM (VALUES (2, 0.5), (0, 0.0), (4, 1.25), (1, 0.25), (3, 0.0)) v(s, r);
SELECT fractality.total_reward(0.1, 0.2, 0.3, 0.4) = 0.1::real + 0.2::real + 0.3::real + 0.4::real AS same_as_index_expression;
SAVEPOINT s;
-- a sum beyond a real: the rewards named
SELECT fractality.total_reward(3e38, 3e38, 0, -1.5);
ROLLBACK TO s;
SELECT (fractality.reward_stats(x)).* FROM (VALUES (1.0), (2.0), (4.0), (NULL)) v(x);
SELECT fractality.reward_stats(x) FROM (VALUES (1.0)) v(x) WHERE false;
SAVEPOINT s;
SELECT * FROM fractality.episode_returns(0, 100000, 1.5);
ROLLBACK TO s;
-- the value named whole whatever the session prints floats with
SET LOCAL extra_float_digits = -15;
SELECT * FROM fractality.episode_returns(0, 100000, 1.5);
ROLLBACK TO s;
SELECT fractality.reward_stats(x) FROM (VALUES ('NaN'::float8)) v(x);
ROLLBACK TO s;

-- policies: each save makes the previous one its parent
SELECT fractality.save_policy('bin-r', 'rule-a', '{"0": 0.5, "1": 0.5}') IS NOT NULL AS saved;
SELECT fractality.save_policy('bin-r', 'rule-b', '{"0": 0.7, "1": 0.3}', '{"note": "greedier"}') IS NOT NULL AS saved;
SELECT fractality.save_policy('bin-r', 'rule-c', '{"0": 0.9, "1": 0.1}') AS last_id \gset
SELECT depth, version, rule_id, is_active FROM fractality.policy_lineage(:last_id);
SELECT load ->> 'rule_id' AS rule, load -> 'action_weights' AS weights, load ->> 'version' AS version
  FROM fractality.load_policy('bin-r') load;
SELECT fractality.load_policy('nobody') IS NULL AS no_policy;
SAVEPOINT s;
SELECT fractality.save_policy('bin-r', 'rule-d', '[1, 2]');
ROLLBACK TO s;
SELECT fractality.save_policy('bin-r', 'rule-d', '{"0": "high"}');
ROLLBACK TO s;
-- a number jsonb keeps but a double does not (a client would read an infinity)
SELECT fractality.save_policy('bin-r', 'rule-d', '{"0": 0.5, "1": -1e400}');
ROLLBACK TO s;
SELECT fractality.save_policy('', 'rule-d', '{}');
ROLLBACK TO s;
SELECT * FROM fractality.policy_lineage(-1);
ROLLBACK TO s;

-- configuration
SELECT fractality.save_config('action_controller', 'exploration_rate', '0.2') IS NOT NULL AS saved;
SELECT fractality.save_config('action_controller', 'exploration_rate', '0.1') IS NOT NULL AS saved;
SELECT fractality.load_config('action_controller', 'exploration_rate') AS current;
SELECT version, config_value, is_active, parent_config_id IS NOT NULL AS has_parent
  FROM fractality.config_history('action_controller', 'exploration_rate');
SELECT fractality.load_config('action_controller', 'missing') IS NULL AS no_value;

-- rewards roll into the policy whose version_hash the events carry, once
UPDATE fractality.adna_policies SET version_hash = 77 WHERE policy_id = :last_id;
-- (under a session's rounding of floats: the summary stored and the policy read keep every digit)
SET extra_float_digits = -15;
SELECT fractality.refresh_policy_rewards() AS rolled, fractality.refresh_policy_rewards() AS again;
SELECT (fractality.load_policy(p.state_bin_id) ->> 'avg_reward')::real = p.avg_reward AS loaded_exactly
  FROM fractality.adna_policies p WHERE p.policy_id = :last_id;
RESET extra_float_digits;
SELECT total_executions, round(avg_reward::numeric, 4) AS avg_reward
  FROM fractality.adna_policies WHERE policy_id = :last_id;
SELECT metric_type, metric_data ->> 'events' AS events,
       (metric_data #>> '{policies,0,avg_reward}')::real = p.avg_reward AS stored_exactly
  FROM fractality.learning_metrics, fractality.adna_policies p WHERE p.policy_id = :last_id;
SELECT round(reward_sum::numeric, 4) AS reward_sum,
       (reward_sum / total_executions)::real = avg_reward AS mean_of_the_sum
  FROM fractality.adna_policies WHERE policy_id = :last_id;
-- a policy of 10^8 executions at a mean of 1, then 200 roll-ups of one zero reward each: the mean
-- moves (a real recomputed from itself stayed 1, each change below half its precision)
SELECT fractality.save_policy('bin-long', 'rule-l', '{"0": 1}') AS long_id \gset
UPDATE fractality.adna_policies
   SET version_hash = 88, total_executions = 100000000, avg_reward = 1, reward_sum = 100000000
 WHERE policy_id = :long_id;
DO $$ BEGIN
    FOR k IN 1..200 LOOP
        INSERT INTO fractality.policy_reward_inbox VALUES (88, 1, 0);
        PERFORM fractality.refresh_policy_rewards();
    END LOOP;
END $$;
SELECT total_executions, reward_sum, avg_reward FROM fractality.adna_policies WHERE policy_id = :long_id;
-- a backlog beyond 2^31 - 1 events drains, at most that many a call (it overflowed the count)
INSERT INTO fractality.policy_reward_inbox VALUES (88, 2000000000, 0), (88, 2000000000, 0);
SELECT fractality.refresh_policy_rewards() AS first;
SELECT fractality.refresh_policy_rewards() AS second;
SELECT fractality.refresh_policy_rewards() AS third;
SELECT total_executions FROM fractality.adna_policies WHERE policy_id = :long_id;

-- prioritised sampling: reproducible with a seed; the zero-reward events are (almost) never drawn
SELECT (SELECT array_agg(event_id) FROM fractality.sample_experiences(20, seed => 5))
     = (SELECT array_agg(event_id) FROM fractality.sample_experiences(20, seed => 5)) AS same_sample;
SELECT count(*) AS draws, max(weight) AS max_weight,
       count(*) FILTER (WHERE priority < 0.001) AS zero_reward_draws
  FROM fractality.sample_experiences(1000, seed => 1);
SAVEPOINT s;
SELECT * FROM fractality.sample_experiences(-1);
ROLLBACK TO s;

-- metadata follows its event
DELETE FROM fractality.experience_events WHERE "timestamp" = 50000;
SELECT count(*) AS metadata_left FROM fractality.action_metadata;
ROLLBACK;
