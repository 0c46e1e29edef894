-- fractality demo data: three minds (users) holding ideas on four themes, with clustered
-- 384-d embeddings, a small graph per mind, three days of energy streams, and an agent's
-- experience (episodes of events, two policy versions, a configuration).
-- Deterministic: setseed() fixes every random() below.
\set ON_ERROR_STOP on
SET fractality.notify = off;   -- a bulk load: no notification per row
SELECT setseed(0.42);

CREATE TEMP TABLE demo_users (user_id uuid, name text);
INSERT INTO demo_users VALUES
    ('a11ce000-0000-4000-8000-000000000001', 'alice'),
    ('b0b00000-0000-4000-8000-000000000002', 'bob'),
    ('ca201000-0000-4000-8000-000000000003', 'carol');

CREATE TEMP TABLE demo_themes (theme int, slug text, label text, description text);
INSERT INTO demo_themes VALUES
    (1, 'quantum-consciousness', 'Quantum consciousness', 'minds as entangled quantum processes'),
    (2, 'memory-consolidation', 'Memory consolidation', 'sleep replays the day into long-term memory'),
    (3, 'reward-shaping', 'Reward shaping', 'dense rewards guide exploration toward the goal'),
    (4, 'graph-resonance', 'Graph resonance', 'ideas that fire together wire together');

-- one random direction per theme
CREATE TEMP TABLE demo_centres AS
SELECT theme, array_agg(random() * 2 - 1 ORDER BY d) AS c
  FROM demo_themes, generate_series(1, 384) d
 GROUP BY theme;

-- every mind holds five facets of every theme
INSERT INTO fractality.nodes (user_id, node_key, label, type, metadata, atp, atp_at)
SELECT u.user_id,
       t.slug || '-' || f,
       t.label || ' #' || f,
       'concept',
       jsonb_build_object('description', t.description, 'theme', t.slug, 'facet', f),
       round((0.35 + random() * 0.65)::numeric, 3),
       now() - (random() * interval '6 hours')
  FROM demo_users u, demo_themes t, generate_series(1, 5) f;

-- embedding = normalize(theme centre + noise): cosine about 0.8 within a theme, about 0 across
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding, model_version)
SELECT n.id, n.user_id,
       fractality.normalize_vector(
           (SELECT array_agg((c.c[d] + (random() * 2 - 1) * 0.5)::real ORDER BY d)
              FROM generate_series(1, 384) d)::vector),
       'demo-clusters-v1'
  FROM fractality.nodes n
  JOIN demo_themes t ON n.metadata ->> 'theme' = t.slug
  JOIN demo_centres c ON c.theme = t.theme;

-- each theme's facet 1 is the parent of facets 2..5; facet 2 resonates with the next theme
INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight)
SELECT p.user_id, p.id, ch.id, 'child', round((0.5 + random() * 0.5)::numeric, 2)
  FROM fractality.nodes p
  JOIN fractality.nodes ch ON ch.user_id = p.user_id
   AND ch.metadata ->> 'theme' = p.metadata ->> 'theme'
   AND (ch.metadata ->> 'facet')::int > 1
 WHERE (p.metadata ->> 'facet')::int = 1;
INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight)
SELECT a.user_id, a.id, b.id, 'resonates_with', round((random() * 2 - 1)::numeric, 2)
  FROM fractality.nodes a
  JOIN demo_themes ta ON ta.slug = a.metadata ->> 'theme'
  JOIN demo_themes tb ON tb.theme = ta.theme % 4 + 1
  JOIN fractality.nodes b ON b.user_id = a.user_id AND b.metadata ->> 'theme' = tb.slug
   AND b.metadata ->> 'facet' = '2'
 WHERE a.metadata ->> 'facet' = '2';

-- three days of hourly energy and attention per node
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score)
SELECT date_trunc('hour', now()) - h * interval '1 hour',
       n.id, n.user_id,
       least(1, greatest(0, n.atp * (0.8 + 0.2 * sin(h / 6.0)) + (random() - 0.5) * 0.05)),
       round(random()::numeric, 3)
  FROM fractality.nodes n, generate_series(0, 71) h;

-- the agent runtime: two versions of a policy, a configuration, and 40 episodes of 25 steps
INSERT INTO fractality.adna_policies (state_bin_id, rule_id, action_weights, metadata, version, version_hash, is_active)
VALUES ('bin-explore', 'curious-v1', '{"1": 0.6, "2": 0.4}', '{"note": "first draft"}', 1, 1001, false);
INSERT INTO fractality.adna_policies (state_bin_id, rule_id, action_weights, metadata, version, version_hash, parent_policy_id)
SELECT 'bin-explore', 'curious-v2', '{"1": 0.7, "2": 0.3}', '{"note": "more exploration"}', 2, 1002, policy_id
  FROM fractality.adna_policies WHERE version_hash = 1001;
INSERT INTO fractality.configuration_store (component_name, config_key, config_value)
VALUES ('action_controller', 'exploration_rate', '0.15');

INSERT INTO fractality.experience_events ("timestamp", episode_id, step_number, event_type, flags,
    state_l1, state_l2, state_l3, state_l4, state_l5, state_l6, state_l7, state_l8,
    action_l1, action_l2, action_l3, action_l4, action_l5, action_l6, action_l7, action_l8,
    reward_homeostasis, reward_curiosity, reward_efficiency, reward_goal,
    adna_version_hash, sequence_number, event_id)
SELECT fractality.epoch_us(now() - interval '3 days' + (e * 25 + s) * interval '4 minutes'),
       e, s, (s % 3)::smallint, 0::smallint,
       random(), random(), random(), random(), random(), random(), random(), random(),
       random(), random(), random(), random(), random(), random(), random(), random(),
       (random() - 0.3) * 0.2, random() * 0.1, -0.01, CASE WHEN s = 25 AND random() < 0.6 THEN 1 ELSE 0 END,
       CASE WHEN e < 20 THEN 1001 ELSE 1002 END,
       e * 25 + s,
       decode(md5('demo-event-' || e || '-' || s), 'hex')
  FROM generate_series(1, 40) e, generate_series(1, 25) s;

INSERT INTO fractality.action_metadata (event_id, event_timestamp, intent_type, executor_id, parameters)
SELECT event_id, "timestamp", 'explore', 'agent-demo', jsonb_build_object('step', step_number)
  FROM fractality.experience_events WHERE event_type = 1;

-- a role for the demo's tenant view (neither owner nor BYPASSRLS)
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fractality_demo_app') THEN
        CREATE ROLE fractality_demo_app LOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA fractality TO fractality_demo_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_demo_app;

ANALYZE;
