-- fractality demo session (run by scripts/demo.sh through psql, echoing each query)
\pset footer off
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

\echo '== an agent''s episodes: native episode returns, discounted at 0.95 (last five) =='
SELECT episode_id, steps, round(total::numeric, 3) AS total, round(discounted::numeric, 3) AS discounted,
       round(mean::numeric, 4) AS mean, round(goal::numeric, 1) AS goal
  FROM fractality.episode_returns(0, fractality.epoch_us(now()), 0.95)
 ORDER BY episode_id DESC LIMIT 5;

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

\echo '== health =='
SELECT metric, object, value FROM fractality.database_health
 WHERE metric <> 'table_bytes' OR object IN ('nodes', 'node_embeddings', 'experience_events')
 ORDER BY metric, object;
