-- Embedding models of any dimension side by side: register_model (idempotent, fixed once it
-- holds embeddings, administrators only for new ones), an HNSW index per partition and model,
-- models above 2 000 dimensions indexed as halfvec, find_resonant / resonance_with / thaw /
-- freeze per model, tenant graphs (build_tenant_graphs), bad input.
\set VERBOSITY terse
BEGIN;
CREATE ROLE fractality_regress_models NOLOGIN;
GRANT USAGE ON SCHEMA fractality TO fractality_regress_models;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_regress_models;

SELECT fractality.register_model('tiny', 8);
SELECT fractality.register_model('tiny', 8) AS again;
SELECT fractality.register_model('wide', 2500);
SELECT fractality.register_model('mid', 1536);
SELECT model, dims, fractality.model_index_type(dims) AS index_type
  FROM fractality.embedding_models ORDER BY model;
-- one index per partition and model, attached to the model's index on the parent
SELECT i.inhparent::regclass AS model_index, count(*) AS partitions
  FROM pg_inherits i
 WHERE i.inhparent IN ('fractality.node_embeddings_tiny_hnsw'::regclass,
                       'fractality.node_embeddings_wide_hnsw'::regclass)
 GROUP BY 1 ORDER BY 1;
SELECT pg_get_indexdef('fractality.node_embeddings_p00_wide_hnsw'::regclass) AS halfvec_index;

-- an application role: a known model again is fine, a new one needs the owner
SET LOCAL ROLE fractality_regress_models;
SELECT fractality.register_model('tiny', 8) AS known;
SELECT FROM regress.each_error(ARRAY['SELECT fractality.register_model(''mine'', 16)']);

-- six nodes with a 384-d default embedding and an 8-d tiny one: in 'tiny' the odd and the even
-- nodes are two clusters, in 'default' all six are close
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT count(fractality.upsert_node('m-' || i, 'node ' || i,
           embedding => (SELECT array_agg(CASE WHEN d = 1 THEN 10 ELSE (i * d % 7) / 50.0 END)
                           FROM generate_series(1, 384) d)::vector)) AS default_embeddings
  FROM generate_series(1, 6) i;
SELECT count(fractality.upsert_node('m-' || i, model => 'tiny',
           embedding => (SELECT array_agg(CASE WHEN d = (i % 2) + 1 THEN 1 ELSE i / 100.0 END)
                           FROM generate_series(1, 8) d)::vector)) AS tiny_embeddings
  FROM generate_series(1, 6) i;
-- rows are kept whole up to a page (toast_tuple_target 8160 on every partition): 1 536-d
-- embeddings (6 KB) stay in their rows, 2 500-d ones (10 KB) go to the partition's TOAST table
SELECT count(fractality.upsert_node('m-' || i, model => 'mid',
           embedding => (SELECT array_agg(sin(i * 7919 + d * 104729)) FROM generate_series(1, 1536) d)::vector))
       AS mid_embeddings
  FROM generate_series(1, 6) i;
SELECT count(DISTINCT tableoid) AS partitions_used,
       min(pg_column_size(embedding)) FILTER (WHERE model = 'mid') AS mid_bytes,
       (SELECT pg_relation_size(c.reltoastrelid) FROM pg_class c
         WHERE c.oid = min(e.tableoid::oid)) AS toast_bytes
  FROM fractality.node_embeddings e;
SELECT count(fractality.upsert_node('w-' || i, model => 'wide',
           embedding => (SELECT array_agg(CASE WHEN d % 3 = i % 3 THEN 1 ELSE 0.01 * i END)
                           FROM generate_series(1, 2500) d)::vector)) AS wide_embeddings
  FROM generate_series(1, 6) i;
SELECT model, count(*) AS embeddings FROM fractality.node_embeddings GROUP BY model ORDER BY model;
SELECT (SELECT pg_relation_size(c.reltoastrelid) FROM pg_class c
         WHERE c.oid = min(e.tableoid::oid)) > 0 AS wide_in_toast
  FROM fractality.node_embeddings e;

-- per model, by the exact scan and through the index
SET LOCAL fractality.exact_scan_limit = 2000;
SELECT 'exact' AS path, string_agg(node_key, ',' ORDER BY node_key) AS tiny
  FROM fractality.find_resonant('m-1', 0.9, 20, 'tiny');
SELECT count(*) AS default_neighbours FROM fractality.find_resonant('m-1', 0.9, 20);
SELECT string_agg(node_key, ',' ORDER BY node_key) AS wide FROM fractality.find_resonant('w-1', 0.9, 20, 'wide');
SET LOCAL fractality.exact_scan_limit = 0;
SELECT 'index' AS path, string_agg(node_key, ',' ORDER BY node_key) AS tiny
  FROM fractality.find_resonant('m-1', 0.9, 20, 'tiny');
SELECT count(*) AS default_neighbours FROM fractality.find_resonant('m-1', 0.9, 20);
SELECT string_agg(node_key, ',' ORDER BY node_key) AS wide FROM fractality.find_resonant('w-1', 0.9, 20, 'wide');
RESET fractality.exact_scan_limit;

-- resonance per model
SELECT n.node_key, round(r.similarity::numeric, 3) AS similarity, round(r.resonance::numeric, 3) AS resonance
  FROM fractality.resonance_with((SELECT id FROM fractality.nodes WHERE node_key = 'm-1'),
                                 (SELECT array_agg(id ORDER BY node_key) FROM fractality.nodes WHERE node_key LIKE 'm-%'),
                                 'tiny') r
  JOIN fractality.nodes n ON n.id = r.node_id;
SELECT round(fractality.calculate_resonance(a.id, b.id, 'tiny')::numeric, 3) AS tiny,
       round(fractality.calculate_resonance(a.id, b.id)::numeric, 3) AS "default",
       fractality.calculate_resonance(a.id, b.id, 'wide') AS wide_none
  FROM fractality.nodes a, fractality.nodes b WHERE a.node_key = 'm-1' AND b.node_key = 'm-2';

-- thaw shows every model's embedding; freeze(thaw) writes them all back
SELECT jsonb_array_length(d->'embedding') AS tiny_dims,
       (SELECT string_agg(k || ':' || jsonb_array_length(d->'embeddings'->k), ',' ORDER BY k)
          FROM jsonb_object_keys(d->'embeddings') k) AS embeddings
  FROM fractality.thaw('m-2', 0, 'tiny') d;
CREATE TEMP TABLE emb_before AS SELECT node_id, model, embedding::text FROM fractality.node_embeddings;
CREATE TEMP TABLE thawed AS SELECT fractality.thaw('m-2', 0, 'tiny') AS d;
UPDATE fractality.node_embeddings SET embedding = array_fill(0.5, ARRAY[8])::vector
 WHERE model = 'tiny' AND node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'm-2');
SELECT fractality.freeze(d, 'tiny') IS NOT NULL AS frozen FROM thawed;
SELECT count(*) AS differing
  FROM ((SELECT node_id, model, embedding::text FROM fractality.node_embeddings EXCEPT ALL TABLE emb_before)
        UNION ALL
        (TABLE emb_before EXCEPT ALL SELECT node_id, model, embedding::text FROM fractality.node_embeddings)) d;

-- bad input: clear errors, nothing written
CREATE TEMP TABLE counts_before AS
SELECT (SELECT count(*) FROM fractality.nodes) AS nodes, (SELECT count(*) FROM fractality.node_embeddings) AS embeddings;
SELECT FROM regress.each_error(ARRAY[
        'SELECT fractality.upsert_node(''x'', embedding => ''[1,2,3]'', model => ''tiny'')',
        'SELECT fractality.upsert_node(''x'', embedding => ''[1,2,3]'', model => ''nomodel'')',
        'SELECT fractality.upsert_node(''x'', embedding => ''[1,2,3]'', model => ''Tiny'')',
        'SELECT * FROM fractality.find_resonant(''m-1'', 0.5, 5, ''nomodel'')',
        'SELECT * FROM fractality.resonance_with((SELECT id FROM fractality.nodes WHERE node_key = ''m-1''), ''{}'', ''no model'')',
        'SELECT fractality.freeze(''{"node_key": "x", "embeddings": {"tiny": [1, 2]}}'')',
        'SELECT fractality.freeze(''{"node_key": "x", "embeddings": {"nomodel": [1, 2]}}'')',
        'INSERT INTO fractality.node_embeddings (node_id, model, embedding)
         SELECT id, ''wide'', ''[1,2]'' FROM fractality.nodes WHERE node_key = ''m-1''']);
SELECT (SELECT count(*) FROM fractality.nodes) = c.nodes AND (SELECT count(*) FROM fractality.node_embeddings) = c.embeddings
       AS nothing_written
  FROM counts_before c;
RESET ROLE;

-- a model that holds embeddings is fixed; one that holds none may change
SELECT FROM regress.each_error(ARRAY['SELECT fractality.register_model(''tiny'', 9)']);
SELECT fractality.register_model('spare', 4);
SELECT fractality.register_model('spare', 5);
SELECT dims FROM fractality.embedding_models WHERE model = 'spare';
-- the dimension check looks a model up once per statement: every row of a statement is checked,
-- and a model registered after a statement that did not know it is known to the next one
SELECT FROM regress.each_error(ARRAY[
        'INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
         SELECT id, user_id, ''spare'', CASE WHEN node_key = ''m-2'' THEN ''[1,2,3,4]''::vector ELSE ''[1,2,3,4,5]'' END
           FROM fractality.nodes WHERE node_key IN (''m-2'', ''m-3'') ORDER BY node_key DESC',
        'INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
         SELECT id, user_id, ''later'', ''[1,2,3]'' FROM fractality.nodes WHERE node_key = ''m-2''']);
SELECT fractality.register_model('later', 3);
INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
SELECT id, user_id, 'later', '[1,2,3]' FROM fractality.nodes WHERE node_key = 'm-2';
SELECT model, count(*) FROM fractality.node_embeddings WHERE model IN ('spare', 'later') GROUP BY model ORDER BY model;
SELECT pg_get_indexdef('fractality.node_embeddings_p00_spare_hnsw'::regclass) AS spare_index;
-- the bulk-load path: drop a model's index, load, build it (the seconds per partition vary)
SELECT fractality.drop_model_index('tiny') AS dropped, fractality.drop_model_index('tiny') AS dropped_again;
SELECT count(*) AS partitions_built FROM fractality.build_model_index('tiny');
SELECT count(*) AS built_again FROM fractality.build_model_index('tiny');
SELECT FROM regress.each_error(ARRAY[
        'SELECT fractality.register_model(''a-b'', 8)',
        'SELECT fractality.register_model(''toolong_toolong_toolong_toolong_x'', 8)',
        'SELECT fractality.register_model(''huge'', 4001)',
        'SELECT fractality.register_model(''none'', 0)',
        'SELECT fractality.register_model(''n'', NULL)',
        'SELECT fractality.build_model_index(''nomodel'')',
        'SELECT fractality.drop_model_index(''nomodel'')']);
-- tenant graphs: a tenant holding at least min_rows embeddings of a model gets an HNSW index of
-- its own (on its partition, named after it), which its searches go through with the same
-- answers; a row written later is in it; it goes when the tenant shrinks under half of min_rows,
-- or holds none, and with drop_model_index
SET LOCAL fractality.user_id = 'bbbbbbbb-0000-0000-0000-000000000000';
SELECT count(fractality.upsert_node('b-' || i, model => 'tiny',
           embedding => (SELECT array_agg(CASE WHEN d = 1 THEN 1 ELSE i / 100.0 END)
                           FROM generate_series(1, 8) d)::vector)) AS other_tenant
  FROM generate_series(1, 2) i;
SELECT index_name, partition_name, tenant_rows, action FROM fractality.build_tenant_graphs('tiny', 5);
SELECT count(*) AS built_again FROM fractality.build_tenant_graphs('tiny', 5);
SELECT pg_get_indexdef(('fractality.t' || left(md5('aaaaaaaa-0000-0000-0000-000000000000'), 24) || '_tiny_hnsw')::regclass)
       AS tenant_graph;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SET LOCAL fractality.exact_scan_limit = 0;
CREATE TEMP TABLE tiny_query AS
SELECT e.embedding AS q FROM fractality.node_embeddings e JOIN fractality.nodes n ON n.id = e.node_id
 WHERE n.node_key = 'm-1' AND e.model = 'tiny';
CREATE TEMP TABLE through_graph AS
SELECT r.* FROM tiny_query, fractality.recall_explain(q, 10, model => 'tiny') r;
SELECT path, count(*) AS candidates,
       pg_stat_get_xact_numscans(('fractality.t' || left(md5('aaaaaaaa-0000-0000-0000-000000000000'), 24) || '_tiny_hnsw')::regclass) > 0
           AS graph_scanned
  FROM through_graph GROUP BY path;
SELECT 'tenant_graph' AS path, string_agg(node_key, ',' ORDER BY node_key) AS tiny
  FROM fractality.find_resonant('m-1', 0.9, 20, 'tiny');
SET LOCAL fractality.tenant_graphs = off;
CREATE TEMP TABLE through_shared AS
SELECT r.* FROM tiny_query, fractality.recall_explain(q, 10, model => 'tiny') r;
SELECT (SELECT DISTINCT path FROM through_shared) AS path_off,
       (SELECT count(*) FROM (SELECT node_id, position, score FROM through_graph
                              EXCEPT SELECT node_id, position, score FROM through_shared) d) AS differing;
RESET fractality.tenant_graphs;
SELECT fractality.upsert_node('m-7', model => 'tiny',
           embedding => '[0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, -5]') IS NOT NULL AS written_after;
SELECT node_key, round(similarity::numeric, 3) AS similarity
  FROM fractality.recall('[0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, -5]', 1, model => 'tiny');
RESET fractality.exact_scan_limit;
-- an application role may not build them, nor may one granted EXECUTE (it does not own the
-- partitions); bad input
SET LOCAL ROLE fractality_regress_models;
SELECT FROM regress.each_error(ARRAY['SELECT fractality.build_tenant_graphs(''tiny'', 1)']);
RESET ROLE;
GRANT EXECUTE ON FUNCTION fractality.build_tenant_graphs(text, bigint) TO fractality_regress_models;
SET LOCAL ROLE fractality_regress_models;
SELECT FROM regress.each_error(ARRAY['SELECT fractality.build_tenant_graphs(''tiny'', 1)']);
RESET ROLE;
SELECT FROM regress.each_error(ARRAY[
        'SELECT fractality.build_tenant_graphs(''nomodel'')',
        'SELECT fractality.build_tenant_graphs(NULL)',
        'SELECT fractality.build_tenant_graphs(''tiny'', NULL)',
        'SELECT fractality.build_tenant_graphs(''tiny'', 0)']);
-- shrinking under half of min_rows (7 -> 3 of 7), then holding none, then the bulk-load path
DELETE FROM fractality.node_embeddings e USING fractality.nodes n
 WHERE n.id = e.node_id AND e.model = 'tiny' AND n.node_key IN ('m-1', 'm-2', 'm-3', 'm-4');
SELECT partition_name, tenant_rows, action FROM fractality.build_tenant_graphs('tiny', 7);
SELECT tenant_rows, action FROM fractality.build_tenant_graphs('tiny', 1) ORDER BY tenant_rows;
-- the graph made again under the same name: the search's plan kept for the tenant (made above,
-- with the first graph) is made again for the new one, and answers as the exact path does
SET LOCAL fractality.exact_scan_limit = 0;
CREATE TEMP TABLE through_rebuilt AS
SELECT node_key, similarity FROM fractality.find_resonant('m-5', 0.0, 20, 'tiny');
SELECT count(*) AS found,
       pg_stat_get_xact_numscans(('fractality.t' || left(md5('aaaaaaaa-0000-0000-0000-000000000000'), 24) || '_tiny_hnsw')::regclass) > 0
           AS rebuilt_graph_scanned
  FROM through_rebuilt;
SET LOCAL fractality.exact_scan_limit = 1000;
SELECT count(*) AS differing_from_exact
  FROM (SELECT node_key, similarity FROM through_rebuilt
        EXCEPT SELECT node_key, similarity FROM fractality.find_resonant('m-5', 0.0, 20, 'tiny')) d;
RESET fractality.exact_scan_limit;
DELETE FROM fractality.node_embeddings e WHERE e.model = 'tiny'
   AND e.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT partition_name, tenant_rows, action FROM fractality.build_tenant_graphs('tiny', 1);
SELECT count(*) AS built FROM fractality.build_tenant_graphs('tiny', 1);
SELECT count(*) AS tenant_graphs FROM pg_class c WHERE c.relname ~ '^t[0-9a-f]{24}_tiny_hnsw$';
-- a backend keeps the plans of at most 128 tenants' own-graph searches (src/spi/tenant_plans.rs),
-- the least recently used going first: 130 tenants searched in turn, then the first three again
-- (their plans made anew), each through its own graph and by the exact path, the same rows
SELECT count(fractality.upsert_node_for(('cccccccc-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid,
           'g-' || i, model => 'tiny',
           embedding => (SELECT array_agg(sin(t * 31 + i * 7 + d)) FROM generate_series(1, 8) d)::vector))
       AS many_tenants
  FROM generate_series(1, 130) t, generate_series(1, 2) i;
SELECT count(*) AS many_graphs FROM fractality.build_tenant_graphs('tiny', 2) WHERE action = 'built';
CREATE FUNCTION pg_temp.graph_against_exact(t int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    src uuid;
    through_graph text;
    exact text;
BEGIN
    SELECT n.id INTO src FROM fractality.nodes n
     WHERE n.user_id = ('cccccccc-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid AND n.node_key = 'g-1';
    PERFORM set_config('fractality.exact_scan_limit', '0', true);
    SELECT string_agg(r.node_key || ' ' || r.similarity, ',') INTO through_graph
      FROM fractality.find_resonant(src, -1, 20, 'tiny') r;
    PERFORM set_config('fractality.exact_scan_limit', '1000', true);
    SELECT string_agg(r.node_key || ' ' || r.similarity, ',') INTO exact
      FROM fractality.find_resonant(src, -1, 20, 'tiny') r;
    RETURN CASE WHEN through_graph IS NOT NULL AND through_graph = exact THEN 0 ELSE 1 END;
END $$;
SELECT count(*) AS searches, sum(pg_temp.graph_against_exact(t)) AS differing
  FROM (SELECT t FROM generate_series(1, 130) t UNION ALL SELECT t FROM generate_series(1, 3) t) s;
RESET fractality.exact_scan_limit;
SELECT count(*) FILTER (WHERE pg_stat_get_xact_numscans(c.oid) > 0) AS graphs_scanned
  FROM pg_class c WHERE c.relname ~ '^t[0-9a-f]{24}_tiny_hnsw$';
SELECT fractality.drop_model_index('tiny') AS dropped;
SELECT count(*) AS tenant_graphs_left FROM pg_class c WHERE c.relname ~ '^t[0-9a-f]{24}_tiny_hnsw$';
ROLLBACK;
