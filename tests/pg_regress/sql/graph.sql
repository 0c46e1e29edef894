-- The graph API: nodes by key, links, neighbours, breadth-first traversal, cheapest paths,
-- thaw/freeze, full-text search; bad input is refused with a SQLSTATE and writes nothing; a
-- tenant role walks only its own graph.
\set SHOW_CONTEXT never
BEGIN;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-4000-8000-00000000000a';

-- nodes: insert, then update by key (NULL keeps, metadata merges)
SELECT fractality.upsert_node('mind', 'Mind', '{"description": "the quantum mind"}', 0.9) IS NOT NULL AS inserted;
SELECT fractality.upsert_node('mind', NULL, '{"tags": ["core"]}') =
       (SELECT id FROM fractality.nodes WHERE node_key = 'mind') AS same_node;
SELECT node_key, label, metadata, atp FROM fractality.nodes WHERE node_key = 'mind';
SELECT count(*) AS new_nodes FROM (
    SELECT fractality.upsert_node(k, initcap(k), jsonb_build_object('description', d), a)
      FROM (VALUES ('memory', 'sleep replays memory', 0.8), ('dream', 'dreams replay the day', 0.5),
                   ('river', 'a river of thought', 1.0), ('sea', 'where rivers end', 0.25),
                   ('island', 'alone', 0.7)) v(k, d, a)) t;
SELECT fractality.upsert_node('memory', embedding => array_fill(0.05::real, ARRAY[384])::vector) IS NOT NULL AS with_embedding;
SELECT n.node_key, vector_dims(e.embedding) AS dims
  FROM fractality.node_embeddings e JOIN fractality.nodes n ON n.id = e.node_id;

-- edges: upsert on (from, to, type)
SELECT count(DISTINCT id) AS edges FROM (
    SELECT fractality.link(f, t, r, w) AS id
      FROM (VALUES ('mind', 'memory', 'child', 0.9), ('mind', 'dream', 'child', 0.6),
                   ('memory', 'river', 'child', 0.5), ('dream', 'river', 'child', 0.8),
                   ('river', 'sea', 'child', 1.0), ('sea', 'mind', 'child', 1.0),
                   ('mind', 'sea', 'resonates_with', 0.3), ('dream', 'memory', 'contradicts', -0.5)) v(f, t, r, w)) e;
SELECT fractality.link('mind', 'memory', 'child', 0.95) IS NOT NULL AS relinked;
SELECT count(*) AS mind_memory_edges, max(e.weight) AS weight
  FROM fractality.edges e
 WHERE e.from_node = (SELECT id FROM fractality.nodes WHERE node_key = 'mind')
   AND e.to_node = (SELECT id FROM fractality.nodes WHERE node_key = 'memory');
SELECT node_key, label, weight, atp FROM fractality.children('mind');
SELECT node_key, weight FROM fractality.children('mind', 'resonates_with');
SELECT node_key, weight FROM fractality.parents('river');
SELECT fractality.unlink('mind', 'sea', 'resonates_with') AS removed,
       fractality.unlink('mind', 'sea', 'resonates_with') AS removed_again;

-- breadth first: each node once at its smallest depth, the cycle sea -> mind cut
SELECT t.node_key, t.depth,
       (SELECT string_agg(n.node_key, ' > ' ORDER BY i)
          FROM unnest(t.path) WITH ORDINALITY p(id, i) JOIN fractality.nodes n ON n.id = p.id) AS path,
       round(t.accumulated_weight::numeric, 4) AS accumulated_weight
  FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'mind')) t;
SELECT node_key, depth FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'mind'), 1);
-- paths are ordinary one-dimensional uuid[] values, root first, ending at the node
SELECT pg_typeof(path) AS type, array_dims(path) AS dims, path[1] = (SELECT id FROM fractality.nodes WHERE node_key = 'mind') AS from_root,
       path[depth + 1] = node_id AS to_node, path = path::text::uuid[] AS round_trips, count(*)
  FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'mind'))
 GROUP BY 1, 2, 3, 4, 5 ORDER BY 2;
SELECT node_key, depth FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'dream'), 3, 'contradicts');

-- cheapest path: cost 1 / (atp_a * atp_b) per edge
SELECT p.step, n.node_key, round(p.cost::numeric, 4) AS cost
  FROM fractality.consciousness_path((SELECT id FROM fractality.nodes WHERE node_key = 'mind'),
                                     (SELECT id FROM fractality.nodes WHERE node_key = 'sea')) p
  JOIN fractality.nodes n ON n.id = p.node_id ORDER BY p.step;
SELECT count(*) AS no_path FROM fractality.consciousness_path(
    (SELECT id FROM fractality.nodes WHERE node_key = 'mind'),
    (SELECT id FROM fractality.nodes WHERE node_key = 'island'));
SELECT count(*) AS over_budget FROM fractality.consciousness_path(
    (SELECT id FROM fractality.nodes WHERE node_key = 'mind'),
    (SELECT id FROM fractality.nodes WHERE node_key = 'sea'), 5.0);

-- thaw: one document; freeze: its inverse, points appended once
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score)
SELECT '2026-03-01 00:00+00'::timestamptz + i * interval '1 hour', n.id, n.user_id, i / 10.0, 0.5
  FROM fractality.nodes n, generate_series(1, 4) i WHERE n.node_key = 'river';
SELECT d ->> 'node_key' AS node_key, d ->> 'label' AS label, d -> 'atp' AS atp,
       d -> 'metadata' AS metadata, d -> 'embedding' AS embedding,
       jsonb_path_query_array(d, '$.edges.outgoing[*].to_key') AS outgoing,
       jsonb_path_query_array(d, '$.edges.incoming[*].from_key') AS incoming,
       jsonb_path_query_array(d, '$.stream[*].atp_level') AS stream
  FROM fractality.thaw('river', 2) d;
SELECT fractality.freeze(fractality.thaw('river') || '{"node_key": "river-copy", "label": "River copy"}')
       IS NOT NULL AS frozen;
SELECT fractality.freeze(fractality.thaw('river') || '{"node_key": "river-copy", "label": "River copy"}')
       = (SELECT id FROM fractality.nodes WHERE node_key = 'river-copy') AS refrozen_same_node;
SELECT d ->> 'label' AS label, jsonb_array_length(d -> 'stream') AS points,
       jsonb_path_query_array(d, '$.edges.outgoing[*].to_key') AS outgoing
  FROM fractality.thaw('river-copy') d;
SELECT fractality.freeze('{"node_key": "river", "atp": 0.4,
                           "stream": [{"time": "2026-03-02T00:00:00Z", "atp_level": 0.4}]}')
       = (SELECT id FROM fractality.nodes WHERE node_key = 'river') AS froze_buffer;
SELECT atp, (SELECT count(*) FROM fractality.consciousness_streams s WHERE s.node_id = n.id) AS points
  FROM fractality.nodes n WHERE node_key = 'river';

-- full-text search over label and description, ranked
SELECT node_key, round(rank::numeric, 3) AS rank, atp FROM fractality.search_nodes('replay');
SELECT node_key FROM fractality.search_nodes('river -end', 5);

-- bad input: a clear error, a SQLSTATE, nothing written
\set VERBOSITY default
SELECT count(*) AS edges_before FROM fractality.edges;
SAVEPOINT s;
SELECT fractality.link('mind', 'nowhere');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.link('mind', 'mind');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.link('mind', 'island', 'child', 1.5);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.link('mind', 'island', 'child', 'NaN');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.link('mind', 'island', '');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.link('', '');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.forget(repeat('k', 256));
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.unlink('mind', 'nowhere');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.upsert_node('bad', atp => 1.5);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.upsert_node('bad', metadata => '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.upsert_node('bad', embedding => '[1, 2, 3]');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT * FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'mind'), -1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT * FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'mind'), 1000);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT * FROM fractality.traverse('00000000-0000-0000-0000-000000000000');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT * FROM fractality.consciousness_path((SELECT id FROM fractality.nodes WHERE node_key = 'mind'),
                                            '00000000-0000-0000-0000-000000000000');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT * FROM fractality.consciousness_path((SELECT id FROM fractality.nodes WHERE node_key = 'mind'),
                                            (SELECT id FROM fractality.nodes WHERE node_key = 'sea'), 'NaN');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.thaw('nowhere');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT * FROM fractality.search_nodes('river', 0);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- a freeze that fails half way (a bad stream point after a valid node) writes nothing
SELECT fractality.freeze('{"node_key": "half", "stream": [{"time": "2026-03-02T00:00:00Z", "atp_level": 0.4},
                                                           {"time": "2026-03-03T00:00:00Z", "atp_level": 7}]}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT fractality.freeze('{"node_key": "half", "edges": {"outgoing": [{"to_key": "nowhere"}]}}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT count(*) AS edges_after, (SELECT count(*) FROM fractality.nodes WHERE node_key = 'half') AS half_nodes
  FROM fractality.edges;
\set VERBOSITY terse

-- tenancy: as an application role, Bob neither sees nor walks Alice's graph
CREATE ROLE fractality_regress_graph NOLOGIN;
GRANT USAGE ON SCHEMA fractality TO fractality_regress_graph;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_regress_graph;
CREATE TEMP TABLE alice_root AS SELECT id FROM fractality.nodes WHERE node_key = 'mind';
GRANT SELECT ON alice_root TO fractality_regress_graph;
SET LOCAL ROLE fractality_regress_graph;
SET LOCAL fractality.user_id = 'bbbbbbbb-0000-4000-8000-00000000000b';
SAVEPOINT t;
\set VERBOSITY sqlstate
SELECT * FROM fractality.traverse((SELECT id FROM alice_root));
\set VERBOSITY terse
ROLLBACK TO t;
SELECT fractality.link('mind', 'memory');
ROLLBACK TO t;
SELECT count(*) AS bob_finds FROM fractality.search_nodes('river');
SELECT fractality.upsert_node('mind', 'Bob''s mind') IS NOT NULL AS bob_has_his_own;
SELECT node_key, depth FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'mind'));
-- Alice, through the same role, still walks hers
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-4000-8000-00000000000a';
SELECT count(*) AS alice_walks FROM fractality.traverse((SELECT id FROM alice_root));
RESET ROLE;
ROLLBACK;

-- database_health works without pg_stat_statements and lists its metrics
SELECT DISTINCT metric FROM fractality.database_health ORDER BY 1;
