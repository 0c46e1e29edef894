-- fractality demo session (run by scripts/demo.sh through psql, echoing each query)
\pset footer off
\echo '== an agent''s memory loop: remember, recall, reinforce, decay, forget =='
-- A toy embedding for the demo: each word of the text adds to one of 384 dimensions (plug in a
-- real model's 384-d vectors instead, or register_model() for another dimension).
CREATE FUNCTION pg_temp.embed(t text) RETURNS vector LANGUAGE sql IMMUTABLE AS $$
    SELECT fractality.normalize_vector((SELECT array_agg(coalesce(w.n, 0) + 0.01 ORDER BY d)
      FROM generate_series(0, 383) d
      LEFT JOIN (SELECT abs(hashtext(x)) % 384 AS dim, count(*)::float8 AS n
                   FROM regexp_split_to_table(lower(t), '[^a-z]+') x WHERE length(x) > 2 GROUP BY 1) w
        ON w.dim = d)::vector) $$;
SET fractality.user_id = 'da7a0000-0000-4000-8000-00000000a9e7';
SELECT f.fact, r.created
  FROM unnest(ARRAY['The user prefers green tea in the morning',
                    'The user lives in Lyon, France',
                    'The project deadline is Friday',
                    'The user prefers green tea in the morning',
                    'The user has a cat named Miso']) WITH ORDINALITY f(fact, i),
       LATERAL fractality.remember(NULL, f.fact, pg_temp.embed(f.fact)) r
 ORDER BY f.i;
-- ten hours pass (the demo moves the memories' clock back): energy decays lazily, 0.95 an hour
UPDATE fractality.nodes SET atp_at = atp_at - interval '10 hours'
 WHERE user_id = fractality.current_user_id();
-- recall by meaning and words; the two memories used are reinforced (+0.2 energy each)
SELECT content, round(similarity::numeric, 3) AS similarity, round(text_rank::numeric, 3) AS text_rank,
       round(atp::numeric, 3) AS atp, round(score::numeric, 3) AS score
  FROM fractality.recall(pg_temp.embed('what does the user drink in the morning'), 2,
                         'tea morning', reinforce => 0.2);
SELECT label AS memory, round(atp::numeric, 3) AS atp_now,
       round(fractality.current_atp(stored_atp, atp_at, now() + interval '12 hours')::numeric, 3) AS atp_in_12_hours
  FROM fractality.node_energy WHERE user_id = fractality.current_user_id() ORDER BY atp DESC, label;
SELECT fractality.forget((SELECT node_key FROM fractality.nodes
                           WHERE user_id = fractality.current_user_id() AND label LIKE '%deadline%')) AS forgotten;
SELECT count(*) AS memories_left FROM fractality.nodes WHERE user_id = fractality.current_user_id();
RESET fractality.user_id;

\echo '== the data model =='
\dt fractality.*
\dv fractality.*

\echo '== what is loaded =='
SELECT (SELECT count(*) FROM fractality.nodes) AS nodes,
       (SELECT count(*) FROM fractality.node_embeddings) AS embeddings,
       (SELECT count(*) FROM fractality.edges) AS edges,
       (SELECT count(*) FROM fractality.consciousness_streams) AS stream_points,
       (SELECT count(*) FROM fractality.experience_events) AS events;

\echo '== energy of alice''s most active ideas, with their children =='
SELECT node_key, label, atp, child_count, last_activity
  FROM fractality.active_consciousness
 WHERE user_id = 'a11ce000-0000-4000-8000-000000000001'
 ORDER BY child_count DESC, atp DESC LIMIT 5;

\echo '== energy decays lazily (0.95 per hour, floor 0.1): stored value, when, and now =='
SELECT node_key, round(stored_atp::numeric, 3) AS stored_atp, atp_at, round(atp::numeric, 3) AS atp_now
  FROM fractality.node_energy
 WHERE user_id = 'a11ce000-0000-4000-8000-000000000001'
 ORDER BY atp_at LIMIT 3;

\echo '== a pulse feeds an idea (current energy + 0.3, at most 1) and records a stream point =='
SELECT node_key, round(fractality.pulse(id, 0.3)::numeric, 3) AS atp_after_pulse
  FROM fractality.nodes
 WHERE user_id = 'a11ce000-0000-4000-8000-000000000001' AND node_key = 'graph-resonance-1';

\echo '== the seed''s explicit tick over one mind, with the exact old values =='
SELECT n.node_key, round(d.old_atp::numeric, 4) AS old_atp, round(d.new_atp::numeric, 4) AS new_atp
  FROM fractality.apply_consciousness_decay(0.95, 0.1, 'a11ce000-0000-4000-8000-000000000001') d
  JOIN fractality.nodes n ON n.id = d.node_id
 ORDER BY d.old_atp DESC LIMIT 3;

\echo '== ideas held by several minds: native cosine similarity, read in place from pgvector datums =='
SELECT a.node_key AS alice_node, b.node_key AS bob_node,
       round(fractality.cosine_similarity(ea.embedding, eb.embedding)::numeric, 3) AS similarity,
       round((1 - (ea.embedding <=> eb.embedding))::numeric, 3) AS pgvector_says
  FROM fractality.nodes a JOIN fractality.node_embeddings ea ON ea.node_id = a.id
  JOIN fractality.nodes b ON b.user_id = 'b0b00000-0000-4000-8000-000000000002'
  JOIN fractality.node_embeddings eb ON eb.node_id = b.id
 WHERE a.user_id = 'a11ce000-0000-4000-8000-000000000001'
   AND a.node_key IN ('quantum-consciousness-1', 'reward-shaping-1')
   AND b.node_key IN ('quantum-consciousness-3', 'reward-shaping-3')
 ORDER BY 1, 2;

\echo '== resonance: alice''s ideas resonating with quantum-consciousness-1 (HNSW candidates, re-ranked natively) =='
SET fractality.user_id = 'a11ce000-0000-4000-8000-000000000001';
SELECT node_key, round(similarity::numeric, 3) AS similarity, atp, round(resonance::numeric, 3) AS resonance
  FROM fractality.find_resonant('quantum-consciousness-1', 0.7, 5);
RESET fractality.user_id;

\echo '== consensus: alice, bob and carol hold the same themes; a consensus node crystallises =='
SELECT n.node_key AS from_node, fractality.crystallize_consensus(n.id) IS NOT NULL AS formed
  FROM fractality.nodes n
 WHERE n.user_id = 'a11ce000-0000-4000-8000-000000000001' AND n.node_key LIKE '%-1' ORDER BY 1;
-- (a consensus publishes no label or metadata of anyone: its key names the seed node)
SELECT node_key, contributor_count AS minds, round(resonance_score::numeric, 3) AS group_resonance,
       (SELECT count(*) FROM fractality.consensus_links l WHERE l.consensus_id = c.id) AS linked_nodes
  FROM fractality.consensus_nodes c ORDER BY node_key;
SELECT depth, count(*) AS nodes, round(max(resonance_score)::numeric, 3) AS resonance
  FROM fractality.consensus_tree(0.7, 3) GROUP BY depth ORDER BY depth;

\echo '== an agent logs two steps of episode 41 as one JSON batch (write_events_json: serde reads the text) =='
SELECT fractality.write_events_json((
  SELECT jsonb_agg(jsonb_build_object(
           'event_id', md5('demo-live-' || s), 'timestamp', fractality.epoch_us(now()) - 10 + s,
           'episode_id', 41, 'step_number', s, 'event_type', 1, 'flags', 0,
           'adna_version_hash', 1002, 'sequence_number', 2000 + s, 'reward_goal', s - 1,
           'metadata', jsonb_build_object('intent_type', 'exploit', 'executor_id', 'agent-demo'))
         || (SELECT jsonb_object_agg(f || k, 0.5) FROM unnest(ARRAY['state_l', 'action_l']) f,
                    generate_series(1, 8) k))::text
    FROM generate_series(1, 2) s)) AS events_written;

\echo '== an agent''s episodes: native episode returns, discounted at 0.95 (last five) =='
SELECT episode_id, steps, round(total::numeric, 3) AS total, round(discounted::numeric, 3) AS discounted,
       round(mean::numeric, 4) AS mean, round(goal::numeric, 1) AS goal
  FROM fractality.episode_returns(0, fractality.epoch_us(now()), 0.95)
 ORDER BY episode_id DESC LIMIT 5;

\echo '== a learner''s replay: a prioritised buffer over the stored steps, a seeded batch, TD errors written back =='
SELECT fractality.create_replay_buffer('learner', alpha => 0.6, beta => 0.4, backfill => true) AS buffer_id;
SELECT name, size, levels, max_priority FROM fractality.replay_buffers;
SELECT episode_id, step_number, round(total_reward::numeric, 3) AS reward, next_state IS NOT NULL AS has_next,
       intent_type, round(probability::numeric, 5) AS p, round(weight::numeric, 3) AS weight
  FROM fractality.replay_batch('learner', 4, seed => 7);
-- a large |TD error| (50) for that batch becomes its priority (+ epsilon): drawn more often
SELECT fractality.update_priorities('learner', array_agg(event_id), array_agg(50.0::float8), array_agg(event_timestamp))
         AS priorities_written
  FROM fractality.sample_experiences('learner', 4, seed => 7);
SELECT round(priority::numeric, 3) AS priority, count(*) AS draws_of_1000, round(min(weight)::numeric, 3) AS weight
  FROM fractality.sample_experiences('learner', 1000, seed => 8) GROUP BY 1 ORDER BY 1 DESC;

\echo '== policy lineage: save a third version of bin-explore, then walk its ancestry =='
SELECT fractality.save_policy('bin-explore', 'curious-v3', '{"1": 0.8, "2": 0.2}') AS new_policy \gset
SELECT depth, ancestor_id, version, rule_id, is_active FROM fractality.policy_lineage(:new_policy);

\echo '== tenancy: as an application role, bob sees only his own minds'' nodes =='
SET ROLE fractality_demo_app;
SELECT count(*) AS visible_without_user_id FROM fractality.nodes;
SET fractality.user_id = 'b0b00000-0000-4000-8000-000000000002';
SELECT count(*) AS visible_to_bob, count(DISTINCT user_id) AS tenants FROM fractality.nodes;
RESET fractality.user_id;
RESET ROLE;

\echo '== the graph: alice''s ideas breadth first along resonance (native, cycles cut) =='
SET fractality.user_id = 'a11ce000-0000-4000-8000-000000000001';
SELECT t.node_key, t.depth, cardinality(t.path) AS path_len, round(t.accumulated_weight::numeric, 3) AS weight
  FROM fractality.traverse((SELECT id FROM fractality.nodes
                             WHERE user_id = fractality.current_user_id()
                               AND node_key = 'quantum-consciousness-2'), 5, 'resonates_with') t;

\echo '== the cheapest path of thought: edge cost 1 / (atp_a * atp_b) =='
SELECT p.step, n.node_key, n.atp, round(p.cost::numeric, 3) AS cost
  FROM fractality.consciousness_path(
         (SELECT id FROM fractality.nodes WHERE user_id = fractality.current_user_id() AND node_key = 'quantum-consciousness-1'),
         (SELECT id FROM fractality.nodes WHERE user_id = fractality.current_user_id() AND node_key = 'reward-shaping-2')) p
  JOIN fractality.nodes n ON n.id = p.node_id ORDER BY p.step;

\echo '== live updates (off by default: any session may LISTEN): SET fractality.notify = on, LISTEN, upsert a node =='
SET fractality.notify = on;
LISTEN consciousness_update;
SELECT fractality.upsert_node('insight-1', 'A new insight', '{"description": "resonance across minds"}', 0.8) IS NOT NULL AS upserted;
UNLISTEN consciousness_update;
RESET fractality.notify;
RESET fractality.user_id;

\echo '== retention: keep a day of events hot; run_maintenance archives the rest, still readable, and out of the replay buffer =='
SELECT fractality.add_retention_policy('fractality.experience_events', '1 day', 'archive');
SELECT r->'retention' AS retention FROM fractality.run_maintenance() r;
SELECT count(*) FILTER (WHERE archived) AS archived, count(*) AS all_events, count(intent_type) AS with_metadata
  FROM fractality.query_events(0, fractality.epoch_us(now()), 100000, true, true);
-- archived events have left the replay buffer (its tree with them)
SELECT name, size FROM fractality.replay_buffers;

\echo '== stream points older than two days, packed per node; one node''s history across both tiers =='
SELECT fractality.archive_streams('2 days') AS points_packed;
SELECT count(*) AS packed_rows, sum(points) AS points FROM fractality.consciousness_archive;
SELECT archived, count(*) AS points, min(time) < max(time) AS spans_time
  FROM fractality.stream_history((SELECT id FROM fractality.nodes ORDER BY node_key, user_id LIMIT 1),
                                 '-infinity', 'infinity')
 GROUP BY archived ORDER BY archived;

\echo '== health =='
SELECT metric, object, value FROM fractality.database_health
 WHERE metric <> 'table_bytes' OR object IN ('nodes', 'node_embeddings', 'experience_events')
 ORDER BY metric, object;
