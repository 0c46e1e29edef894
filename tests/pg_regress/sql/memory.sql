-- The agent memory API: remember (deduplicating by key and by similarity, reinforcing), recall
-- by a query vector and words (energy-weighted, the edge to a context, reinforcement on use),
-- recall_explain, expiry apart from decay, forget, remember_many, bad input. As an application
-- role under row-level security; one transaction, rolled back.
\set VERBOSITY terse
BEGIN;
CREATE ROLE fractality_regress_memory NOLOGIN;
GRANT USAGE ON SCHEMA fractality TO fractality_regress_memory;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_regress_memory;
-- 384-d directions: fact i points along axis i (and a little along its neighbours); a component
-- of i / 1000 on the last axis keeps the similarities of unrelated facts distinct (no ties)
CREATE FUNCTION pg_temp.v(i int, noise float8 DEFAULT 0) RETURNS vector LANGUAGE sql AS $$
    SELECT (SELECT array_agg(CASE WHEN d = i THEN 1.0 WHEN abs(d - i) = 1 THEN 0.3 WHEN d = 384 THEN i / 1000.0
                                  ELSE noise * ((d * 7 + i) % 5) / 5 END
                             ORDER BY d) FROM generate_series(1, 384) d)::vector $$;
SET LOCAL ROLE fractality_regress_memory;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';

-- an agent remembers five facts; the third is told twice (once with another key): one memory
SELECT created FROM fractality.remember(NULL, 'Paris is the capital of France', pg_temp.v(10), '{"source": "atlas"}');
SELECT created FROM fractality.remember(NULL, 'The Seine flows through Paris', pg_temp.v(20));
SELECT created FROM fractality.remember('tea', 'Alice drinks green tea every morning', pg_temp.v(30), '{"about": "alice"}');
SELECT created FROM fractality.remember(NULL, 'Bob prefers coffee', pg_temp.v(40));
SELECT created FROM fractality.remember(NULL, 'The meeting is on Tuesday', pg_temp.v(50), ttl => '1 hour');
SELECT created FROM fractality.remember('tea', 'Alice drinks green tea every morning', pg_temp.v(30), '{"confirmed": true}');
SELECT created FROM fractality.remember(NULL, 'Alice has green tea in the morning', pg_temp.v(30, 0.01));
SELECT node_key, label, metadata, type, expires_at IS NOT NULL AS expires
  FROM fractality.nodes ORDER BY label;
-- told three times: two pulses of fractality.remember_energy on top of full energy (capped at
-- 1), each recorded in the stream
SELECT n.node_key, count(s.*) AS stream_points
  FROM fractality.nodes n LEFT JOIN fractality.consciousness_streams s ON s.node_id = n.id
 GROUP BY n.node_key ORDER BY n.node_key;

-- recall by a query vector near the tea memory: similarity, energy and score, best first
UPDATE fractality.nodes SET atp = 0.2 WHERE node_key <> 'tea';
SELECT node_key, content, round(similarity::numeric, 3) AS similarity, text_rank,
       round(atp::numeric, 3) AS atp, edge_weight, round(score::numeric, 3) AS score
  FROM fractality.recall(pg_temp.v(30, 0.05), 3);
-- words too: reciprocal-rank fusion of the vector and the full-text ranking
SELECT node_key, content, round(text_rank::numeric, 3) AS text_rank, round(score::numeric, 3) AS score
  FROM fractality.recall(pg_temp.v(11), 2, 'capital France');
-- the edge to a context node lifts its neighbour; the weights can change per call
SELECT fractality.link('tea', (SELECT node_key FROM fractality.nodes WHERE label LIKE 'Bob%'), 'related', 0.9) IS NOT NULL AS linked;
SELECT content, edge_weight, round(score::numeric, 3) AS score
  FROM fractality.recall(pg_temp.v(40), 2, context => 'tea');
SELECT content, round(score::numeric, 3) AS similarity_only
  FROM fractality.recall(pg_temp.v(40), 2, w_sim => 1, w_energy => 0, w_edge => 0);
-- why: every candidate with its parts, and how the tenant was searched
SELECT position, left(node_key, 10) AS node_key, round(similarity::numeric, 3) AS similarity, vector_rank,
       round(relevance::numeric, 3) AS relevance, round(atp::numeric, 3) AS atp, edge_weight,
       round(score::numeric, 3) AS score, returned, path
  FROM fractality.recall_explain(pg_temp.v(40), 2, context => 'tea') WHERE position <= 4;
SET LOCAL fractality.exact_scan_limit = 0;
SELECT DISTINCT path FROM fractality.recall_explain(pg_temp.v(40), 2);
SELECT content FROM fractality.recall(pg_temp.v(40), 1);
RESET fractality.exact_scan_limit;

-- reinforcement on access: 0 writes nothing; 0.5 feeds each returned memory and records it
CREATE TEMP TABLE points_before AS SELECT count(*) AS n FROM fractality.consciousness_streams;
SELECT count(*) AS recalled FROM fractality.recall(pg_temp.v(40), 2);
SELECT (SELECT count(*) FROM fractality.consciousness_streams) - n AS new_points FROM points_before;
SELECT content, round(atp::numeric, 3) AS atp FROM fractality.recall(pg_temp.v(40), 1, reinforce => 0.5);
SELECT (SELECT count(*) FROM fractality.consciousness_streams) - n AS new_points FROM points_before;
SELECT label, round(atp::numeric, 3) AS atp_now FROM fractality.node_energy WHERE label LIKE 'Bob%';

-- expiry apart from decay: an expired memory is never recalled, run_maintenance deletes it
UPDATE fractality.nodes SET expires_at = now() - interval '1 second' WHERE label LIKE 'The meeting%';
SELECT count(*) AS meeting_recalled FROM fractality.recall(pg_temp.v(50), 5) WHERE content LIKE 'The meeting%';
-- nor found by its words (node_text keeps the expiry beside the text)
SELECT count(*) AS meeting_by_words FROM fractality.recall(pg_temp.v(1), 5, 'meeting Tuesday')
 WHERE content LIKE 'The meeting%';
SELECT count(*) AS meeting_text_rows, bool_and(expires_at < now()) AS expired
  FROM fractality.node_text WHERE search @@ to_tsquery('english', 'meeting');
RESET ROLE;
SELECT r->'memories_expired' AS expired FROM fractality.run_maintenance() r;
SET LOCAL ROLE fractality_regress_memory;
SELECT count(*) AS meetings FROM fractality.nodes WHERE label LIKE 'The meeting%';

-- forget: the node, its embedding, edges and stream points go
SELECT fractality.forget('tea') AS forgotten, fractality.forget('tea') AS again;
SELECT (SELECT count(*) FROM fractality.nodes WHERE node_key = 'tea') AS nodes,
       (SELECT count(*) FROM fractality.edges) AS edges,
       (SELECT count(*) FROM fractality.node_embeddings) AS embeddings,
       (SELECT count(*) FROM fractality.node_text) = (SELECT count(*) FROM fractality.nodes) AS one_text_a_node;

-- a batch: the same rules, duplicates within the batch become one memory
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS reinforced
  FROM fractality.remember_many(jsonb_build_array(
         jsonb_build_object('content', 'Carol likes jazz', 'embedding', pg_temp.v(60)::real[]),
         jsonb_build_object('content', 'Carol likes jazz music', 'embedding', pg_temp.v(60, 0.01)::real[]),
         jsonb_build_object('content', 'Dave runs marathons', 'embedding', pg_temp.v(70)::real[],
                            'node_key', 'dave', 'metadata', '{"sport": true}'::jsonb, 'ttl', '30 days'),
         jsonb_build_object('content', 'The Seine flows through Paris', 'embedding', pg_temp.v(20)::real[])));
-- the batch's new memories are staged (outside the HNSW index) and found all the same, by the
-- exact path and through the index; index_staged_embeddings (run_maintenance calls it) indexes them
SELECT count(*) FILTER (WHERE staged) AS staged, count(*) AS embeddings FROM fractality.node_embeddings;
SELECT node_key, path FROM fractality.recall_explain(pg_temp.v(70), 1) WHERE returned;
SET LOCAL fractality.exact_scan_limit = 0;
SELECT node_key, path FROM fractality.recall_explain(pg_temp.v(70), 1) WHERE returned;
-- told again in a batch: found among the staged memories by the tenant's search (a batch of
-- one) and by the batch's one read of the whole tenant (a batch of two)
SELECT created FROM fractality.remember_many(jsonb_build_array(
         jsonb_build_object('content', 'Dave runs a marathon', 'embedding', pg_temp.v(70, 0.01)::real[])));
SELECT created FROM fractality.remember_many(jsonb_build_array(
         jsonb_build_object('content', 'Dave runs marathons often', 'embedding', pg_temp.v(70, 0.02)::real[]),
         jsonb_build_object('content', 'Erin paints', 'embedding', pg_temp.v(80)::real[])));
SELECT label, (SELECT count(*) FROM fractality.consciousness_streams s WHERE s.node_id = n.id) AS points
  FROM fractality.nodes n WHERE node_key IN ('dave') OR label LIKE 'Erin%' ORDER BY label;
-- the arrays form, for clients that send arrays: the same rules (a key of the tenant's, a
-- content told twice, a near duplicate), NULL keys derived, NULL metadata and ttl elements
CREATE TEMP TABLE told ON COMMIT DROP AS
SELECT * FROM fractality.remember_many(
         ARRAY['dave', NULL, NULL, NULL],
         ARRAY['Dave ran Boston', 'Grace bakes bread', 'Grace bakes bread', 'Grace bakes loaves'],
         ARRAY[pg_temp.v(75), pg_temp.v(85), pg_temp.v(86), pg_temp.v(85, 0.01)],
         ARRAY['{"race": "boston"}', NULL, NULL, '{"kind": "bread"}']::jsonb[],
         ttls => ARRAY[NULL, '7 days', NULL, NULL]::interval[]) WITH ORDINALITY;
SELECT t.created, n.node_key LIKE 'memory-%' AS derived_key, n.label, n.metadata, n.expires_at IS NOT NULL AS expires
  FROM told t JOIN fractality.nodes n ON n.id = t.node_id
 ORDER BY t.ordinality;
SELECT fractality.index_staged_embeddings(1) AS indexed, fractality.index_staged_embeddings() AS the_rest,
       fractality.index_staged_embeddings() AS again;
SELECT node_key, path FROM fractality.recall_explain(pg_temp.v(70), 1) WHERE returned;
RESET fractality.exact_scan_limit;
-- past fractality.staged_limit a batch indexes the tenant's staged embeddings itself
SET LOCAL fractality.staged_limit = 0;
SELECT created FROM fractality.remember_many(jsonb_build_array(
         jsonb_build_object('content', 'Frank sails', 'embedding', pg_temp.v(90)::real[])));
RESET fractality.staged_limit;
SELECT count(*) FILTER (WHERE staged) AS staged, count(*) AS embeddings FROM fractality.node_embeddings;

-- another tenant remembers the same fact: a memory of its own, and never sees the first's
SET LOCAL fractality.user_id = 'bbbbbbbb-0000-0000-0000-000000000000';
SELECT created FROM fractality.remember(NULL, 'Carol likes jazz', pg_temp.v(60));
SELECT count(*) AS visible FROM fractality.recall(pg_temp.v(60), 10);
SELECT fractality.forget('dave') AS forgets_anothers;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT count(*) AS still_there FROM fractality.nodes WHERE node_key = 'dave';

-- bad input: clear errors, nothing written
CREATE TEMP TABLE before_bad AS SELECT (SELECT count(*) FROM fractality.nodes) AS n,
                                       (SELECT count(*) FROM fractality.consciousness_streams) AS s;
SELECT FROM regress.each_error(ARRAY[
        'SELECT * FROM fractality.remember(NULL, ''x'', ''[1,2,3]'')',
        'SELECT * FROM fractality.remember(NULL, ''x'', pg_temp.v(1), model => ''nomodel'')',
        'SELECT * FROM fractality.remember(NULL, ''x'', array_fill(0, ARRAY[384])::vector)',
        'SELECT * FROM fractality.remember(NULL, NULL, pg_temp.v(1))',
        'SELECT * FROM fractality.remember(NULL, '''', pg_temp.v(1))',
        'SELECT * FROM fractality.remember_many(NULL, ARRAY[''x'', ''  ''], ARRAY[pg_temp.v(1), pg_temp.v(2)])',
        'SELECT * FROM fractality.remember(NULL, ''x'', pg_temp.v(1), ''[1]'')',
        'SELECT * FROM fractality.remember(NULL, ''x'', pg_temp.v(1), dedup_threshold => 1.5)',
        'SELECT * FROM fractality.remember(NULL, ''x'', pg_temp.v(1), dedup_threshold => ''NaN'')',
        'SELECT * FROM fractality.remember(NULL, ''x'', pg_temp.v(1), ttl => ''-1 day'')',
        'SELECT * FROM fractality.remember(NULL, ''x'', pg_temp.v(1), ttl => ''100000000 years'')',
        'SELECT * FROM fractality.remember(repeat(''k'', 256), ''x'', pg_temp.v(1))',
        'SELECT * FROM fractality.remember_many(''{"content": "x"}'')',
        'SELECT * FROM fractality.remember_many(jsonb_build_array(jsonb_build_object(''content'', ''ok'', ''embedding'', pg_temp.v(2)::real[]), jsonb_build_object(''content'', ''bad'', ''embedding'', ARRAY[1, 2])))',
        'SELECT * FROM fractality.remember_many(''[{"content": "x", "embedding": [1], "ttl": "soon"}]'')',
        'SELECT * FROM fractality.remember_many(ARRAY[NULL], ARRAY[''x'', ''y''], ARRAY[pg_temp.v(1), pg_temp.v(2)])',
        'SELECT * FROM fractality.remember_many(NULL, ARRAY[''x'', NULL], ARRAY[pg_temp.v(1), pg_temp.v(2)])',
        'SELECT * FROM fractality.remember_many(NULL, ARRAY[''x''], ARRAY[NULL]::vector[])',
        'SELECT * FROM fractality.remember_many(NULL, ARRAY[''x''], ARRAY[''[1,2]'']::vector[])',
        'SELECT * FROM fractality.remember_many(NULL, ARRAY[''x''], ARRAY[[pg_temp.v(1)]])',
        'SELECT * FROM fractality.remember_many(NULL, ARRAY[''x''], ARRAY[pg_temp.v(1)], ttls => ARRAY[''-1 day'']::interval[])',
        'SELECT * FROM fractality.remember_many(NULL, ARRAY[''x''], ARRAY[pg_temp.v(1)], ttls => ARRAY[''10001 years'']::interval[])',
        'SELECT * FROM fractality.recall(''[1,2]'')',
        'SELECT * FROM fractality.recall(pg_temp.v(1), 0)',
        'SELECT * FROM fractality.recall(pg_temp.v(1), 1001)',
        'SELECT * FROM fractality.recall(pg_temp.v(1), model => ''nomodel'')',
        'SELECT * FROM fractality.recall(pg_temp.v(1), context => ''no-such-node'')',
        'SELECT * FROM fractality.recall(pg_temp.v(1), min_similarity => 2)',
        'SELECT * FROM fractality.recall(pg_temp.v(1), reinforce => -0.5)',
        'SELECT * FROM fractality.recall(pg_temp.v(1), w_energy => ''NaN'')',
        'SELECT * FROM fractality.recall(array_fill(0, ARRAY[384])::vector)',
        'SELECT * FROM fractality.recall(pg_temp.v(1), 3, repeat(''x '', 5001))',
        'SELECT * FROM fractality.search_nodes(repeat(''y'', 10001))',
        'SELECT * FROM fractality.recall_explain(pg_temp.v(1), k => -1)',
        'SELECT fractality.index_staged_embeddings(-1)']);
SET LOCAL fractality.user_id = '';
SELECT FROM regress.each_error(ARRAY['SELECT fractality.remember(NULL, ''x'', pg_temp.v(1))']);
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT (SELECT count(*) FROM fractality.nodes) = n AND (SELECT count(*) FROM fractality.consciousness_streams) = s
       AS nothing_written FROM before_bad;
-- an expired near duplicate does not hide a live one further down the distance order: five
-- expired notes nearer than the live one fill the scan's first batch
SELECT count(*) FILTER (WHERE r.created) AS created
  FROM generate_series(1, 5) i,
       LATERAL fractality.remember('old-' || i, 'Old note ' || i, pg_temp.v(100, i * 0.005), dedup_threshold => 1) r;
UPDATE fractality.nodes SET expires_at = now() - interval '1 second' WHERE label LIKE 'Old note%';
SELECT created FROM fractality.remember('live', 'Live note', pg_temp.v(100, 0.03), dedup_threshold => 1);
SELECT created, node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'live') AS the_live_one
  FROM fractality.remember(NULL, 'The note again', pg_temp.v(100));
-- and a live note near it (cosine about 0.9), for find_resonant below
SELECT created FROM fractality.remember('near', 'A note near the live one', pg_temp.v(100, 0.1), dedup_threshold => 1);
-- the searches set what they run with themselves, for the call (search::Pinned): a caller whose
-- search_path holds neither pgvector's schema nor fractality's and whose scan settings differ is
-- answered as any other, and keeps its own settings, after a call and after a failed one (the
-- tenant searched through its HNSW index, whose queries need pgvector's operators)
SET LOCAL fractality.exact_scan_limit = 0;
SELECT pg_temp.v(100, 0.03) AS q, (SELECT id FROM fractality.nodes WHERE node_key = 'live') AS live \gset
SET LOCAL hnsw.ef_search = 17;
SET LOCAL enable_sort = on;
SET LOCAL search_path = pg_catalog;
SELECT node_key FROM fractality.recall(:'q'::public.vector, 1);
-- (the near note; the five expired old notes nearer still are left out)
SELECT string_agg(node_key, ' ') AS resonant FROM fractality.find_resonant(:'live'::uuid, 0.5, 5);
SELECT round(similarity::numeric, 3) AS similarity FROM fractality.resonance_with(:'live'::uuid, ARRAY[:'live'::uuid]);
-- the arrays form of remember_many checks duplicates with the same settings: the live note
SELECT created, node_id = :'live'::uuid AS the_live_note
  FROM fractality.remember_many(ARRAY['live-again'], ARRAY['The live note again'], ARRAY[:'q'::public.vector]);
SELECT current_setting('search_path') AS search_path, current_setting('hnsw.ef_search') AS ef_search,
       current_setting('enable_sort') AS enable_sort;
SAVEPOINT failing;
SELECT node_key FROM fractality.recall(:'q'::public.vector, 1, model => 'nomodel');
ROLLBACK TO SAVEPOINT failing;
SELECT current_setting('search_path') AS search_path, current_setting('hnsw.ef_search') AS ef_search,
       current_setting('enable_sort') AS enable_sort;
ROLLBACK;
