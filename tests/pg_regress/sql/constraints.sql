-- Constraints reject bad rows; each error names the constraint.
\set VERBOSITY terse
BEGIN;
INSERT INTO fractality.nodes (id, user_id, node_key) VALUES
    ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'a'),
    ('00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-000000000001', 'b'),
    ('00000000-0000-0000-0000-00000000000c', '00000000-0000-0000-0000-000000000002', 'c');
SAVEPOINT s;
INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES ('00000000-0000-0000-0000-000000000001', 'hot', 1.01);
ROLLBACK TO s;
INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES ('00000000-0000-0000-0000-000000000001', 'neg', -0.01);
ROLLBACK TO s;
INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES ('00000000-0000-0000-0000-000000000001', 'nan', 'NaN');
ROLLBACK TO s;
INSERT INTO fractality.nodes (user_id, node_key, atp_at) VALUES ('00000000-0000-0000-0000-000000000001', 'inf', 'infinity');
ROLLBACK TO s;
INSERT INTO fractality.nodes (user_id, node_key) VALUES ('00000000-0000-0000-0000-000000000001', 'a');
ROLLBACK TO s;
INSERT INTO fractality.nodes (user_id, node_key) VALUES ('00000000-0000-0000-0000-000000000001', '');
ROLLBACK TO s;
INSERT INTO fractality.nodes (user_id, node_key) VALUES ('00000000-0000-0000-0000-000000000001', repeat('k', 256));
ROLLBACK TO s;
INSERT INTO fractality.nodes (user_id, node_key, metadata) VALUES ('00000000-0000-0000-0000-000000000001', 'arr', '[1,2]');
ROLLBACK TO s;
-- no tenant: user_id defaults to fractality.user_id, which is unset
INSERT INTO fractality.nodes (node_key) VALUES ('orphan');
ROLLBACK TO s;
-- the same key in another tenant is fine
INSERT INTO fractality.nodes (user_id, node_key) VALUES ('00000000-0000-0000-0000-000000000002', 'a');
SAVEPOINT s;
-- edges: weight in [-1, 1], both ends in the edge's tenant, unique per type
INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-00000000000b', 1.5);
ROLLBACK TO s;
INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-00000000000c', 0.5);
ROLLBACK TO s;
INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-00000000000b', -0.25);
SAVEPOINT s;
INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-00000000000b', 0.75);
ROLLBACK TO s;
SELECT relationship_type, weight FROM fractality.edges;
-- embeddings: the model's dimension (384 for 'default'), the node's tenant
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', '[1,2,3]');
ROLLBACK TO s;
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000002', array_fill(0.5, ARRAY[384])::vector);
ROLLBACK TO s;
-- streams: energy in [0, 1], finite attention
-- (points of 2001 land in the default partition: the messages name it, not a month)
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
VALUES ('2001-01-01', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 2);
ROLLBACK TO s;
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score)
VALUES ('2001-01-01', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 0.5, 'NaN');
ROLLBACK TO s;
-- a point far in the past lands in the default partition, not an error
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
VALUES ('2001-01-01', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 0.5);
SELECT tableoid::regclass, atp_level FROM fractality.consciousness_streams;
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', array_fill(0.5, ARRAY[384])::vector);
SELECT (SELECT count(*) FROM fractality.edges) AS edges,
       (SELECT count(*) FROM fractality.node_embeddings) AS embeddings,
       (SELECT count(*) FROM fractality.consciousness_streams) AS points;
-- deleting a node takes its edges, embedding and stream points with it
DELETE FROM fractality.nodes WHERE id = '00000000-0000-0000-0000-00000000000a';
SELECT (SELECT count(*) FROM fractality.edges) AS edges,
       (SELECT count(*) FROM fractality.node_embeddings) AS embeddings,
       (SELECT count(*) FROM fractality.consciousness_streams) AS points;
ROLLBACK;

BEGIN;
-- experience events: 16-byte ids, finite rewards
INSERT INTO fractality.experience_events ("timestamp", episode_id, step_number, event_type, flags,
    state_l1, state_l2, state_l3, state_l4, state_l5, state_l6, state_l7, state_l8,
    action_l1, action_l2, action_l3, action_l4, action_l5, action_l6, action_l7, action_l8,
    reward_homeostasis, reward_curiosity, reward_efficiency, reward_goal,
    adna_version_hash, sequence_number, event_id)
VALUES (1000, 1, 1, 0, 0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 0.1, 0.2, 0.3, 0.4, 7, 1,
        '\x000102030405060708090a0b0c0d0e0f');
SAVEPOINT s;
INSERT INTO fractality.experience_events ("timestamp", episode_id, step_number, event_type, flags,
    state_l1, state_l2, state_l3, state_l4, state_l5, state_l6, state_l7, state_l8,
    action_l1, action_l2, action_l3, action_l4, action_l5, action_l6, action_l7, action_l8,
    adna_version_hash, sequence_number, event_id)
VALUES (1000, 1, 2, 0, 0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 7, 2, '\x0001');
ROLLBACK TO s;
INSERT INTO fractality.experience_events ("timestamp", episode_id, step_number, event_type, flags,
    state_l1, state_l2, state_l3, state_l4, state_l5, state_l6, state_l7, state_l8,
    action_l1, action_l2, action_l3, action_l4, action_l5, action_l6, action_l7, action_l8,
    reward_goal, adna_version_hash, sequence_number, event_id)
VALUES (1000, 1, 2, 0, 0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 'NaN', 7, 2,
        '\x100102030405060708090a0b0c0d0e0f');
ROLLBACK TO s;
SELECT episode_id, step_number, reward_homeostasis + reward_curiosity + reward_efficiency + reward_goal AS total,
       archived, octet_length(event_id) AS id_bytes
  FROM fractality.experience_events;
-- metadata must point at an event: checked at commit (a restore loads the metadata first), or
-- when the constraint is set IMMEDIATE
INSERT INTO fractality.action_metadata (event_id, event_timestamp, intent_type, executor_id, parameters)
VALUES ('\xffffffffffffffffffffffffffffffff', 0, 'explore', 'agent-1', '{}');
SET CONSTRAINTS fractality.action_metadata_event IMMEDIATE;
ROLLBACK TO s;
INSERT INTO fractality.action_metadata (event_id, event_timestamp, intent_type, executor_id, parameters)
SELECT event_id, "timestamp", 'explore', 'agent-1', '{"depth": 2}' FROM fractality.experience_events;
SELECT intent_type, executor_id, parameters FROM fractality.action_metadata;
-- deleting the event deletes its metadata
DELETE FROM fractality.experience_events;
SELECT count(*) AS metadata_left FROM fractality.action_metadata;
-- one active policy per state bin, one active configuration per (component, key)
INSERT INTO fractality.adna_policies (state_bin_id, rule_id, action_weights, version_hash)
VALUES ('bin-1', 'r1', '{"1": 0.5}', 101);
INSERT INTO fractality.adna_policies (state_bin_id, rule_id, action_weights, version_hash, is_active)
VALUES ('bin-1', 'r0', '{"1": 0.4}', 100, false);
SAVEPOINT s;
INSERT INTO fractality.adna_policies (state_bin_id, rule_id, action_weights, version_hash)
VALUES ('bin-1', 'r2', '{"1": 0.6}', 102);
ROLLBACK TO s;
INSERT INTO fractality.configuration_store (component_name, config_key, config_value)
VALUES ('action_controller', 'exploration_rate', '0.1'), ('action_controller', 'exploration_rate', '0.2');
ROLLBACK TO s;
-- retention: a positive keep and a known action
INSERT INTO fractality.retention_policies (relation, keep, action)
VALUES ('fractality.experience_events', '-1 day', 'archive');
ROLLBACK TO s;
INSERT INTO fractality.retention_policies (relation, keep, action)
VALUES ('fractality.experience_events', '7 days', 'compress');
ROLLBACK TO s;
INSERT INTO fractality.retention_policies (relation, keep, action)
VALUES ('fractality.experience_events', '7 days', 'archive');
SELECT relation, keep, action FROM fractality.retention_policies;
ROLLBACK;

-- the partition helper refuses tables it does not manage and non-finite months
SELECT fractality._create_month_partition('fractality.nodes', current_date);
SELECT fractality._create_month_partition('fractality.experience_events', 'infinity');
SELECT fractality._create_month_partition(NULL, current_date);
