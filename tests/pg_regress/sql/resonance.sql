-- Resonance and consensus: the score, pair resonance, resonant search within a tenant,
-- consensus across tenants (2 users: none; 3 users: one, idempotent), the consensus tree.
\set VERBOSITY terse
BEGIN;
CREATE ROLE fractality_regress_resonance NOLOGIN;
GRANT USAGE ON SCHEMA fractality TO fractality_regress_resonance;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_regress_resonance;
-- crystallize_consensus is granted, not public (see sql/resonance.sql): this role is a curator
GRANT EXECUTE ON FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text),
    fractality._crystallize_consensus(uuid, vector, float8, integer, text) TO fractality_regress_resonance;

-- the weighted sum, validated
SELECT fractality.resonance_score(0.8, 0.5, 0.6, 1.0) AS seed_weights,
       fractality.resonance_score(0.8, 0.5, 0.6, 1.0, 1, 0, 0) AS similarity_only,
       fractality.resonance_score(NULL, 0.5, 0.6, 1.0) AS null_arg;
SELECT FROM regress.each_error(ARRAY[
        'SELECT fractality.resonance_score(''NaN'', 0.5, 0.5, 0)',
        'SELECT fractality.resonance_score(0.5, 1.5, 0.5, 0)',
        'SELECT fractality.resonance_score(0.5, 0.5, 0.5, 0, 0.5, ''Infinity'', 0.2)',
        'SELECT fractality.resonance_score(0.5, 0.5, 0.5, -2)']);

-- three minds, two themes, three facets each: facets of a theme have cosine about 0.9
CREATE TEMP TABLE minds (user_id uuid, name text, n int);
INSERT INTO minds VALUES ('aaaaaaaa-0000-0000-0000-000000000000', 'alice', 1),
                         ('bbbbbbbb-0000-0000-0000-000000000000', 'bob', 2),
                         ('cccccccc-0000-0000-0000-000000000000', 'carol', 3);
INSERT INTO fractality.nodes (id, user_id, node_key, label, metadata, atp)
SELECT ('00000000-0000-0000-0000-000000' || m.n || t || f || '000')::uuid, m.user_id,
       format('%s-%s', CASE t WHEN 1 THEN 'dreams' ELSE 'tides' END, f),
       format('%s #%s', CASE t WHEN 1 THEN 'Dreams' ELSE 'Tides' END, f),
       jsonb_build_object('theme', CASE t WHEN 1 THEN 'dreams' ELSE 'tides' END, 'facet', f, 'mind', m.name),
       round((0.4 + 0.1 * f + 0.05 * m.n)::numeric, 2)
  FROM minds m, generate_series(1, 2) t, generate_series(1, 3) f;
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
SELECT n.id, n.user_id, fractality.normalize_vector(
         (SELECT array_agg((sin(d * (t.t * 0.7) + t.t) + 0.3 * cos(d * (f.f * 1.3 + u.n)))::real ORDER BY d)
            FROM generate_series(1, 384) d)::vector)
  FROM fractality.nodes n
  JOIN minds u ON u.user_id = n.user_id
  CROSS JOIN LATERAL (SELECT CASE WHEN n.node_key LIKE 'dreams%' THEN 1 ELSE 2 END AS t) t
  CROSS JOIN LATERAL (SELECT split_part(n.node_key, '-', 2)::int AS f) f
 WHERE u.name IN ('alice', 'bob');
INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
SELECT user_id, id, (SELECT id FROM fractality.nodes x WHERE x.user_id = n.user_id AND x.node_key = 'dreams-1'), 0.5
  FROM fractality.nodes n WHERE n.node_key = 'dreams-2' AND n.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';

-- pair resonance: 0.5 x similarity + 0.3 x energy product + 0.2 x edge (either direction)
SELECT a.node_key AS a, b.node_key AS b,
       round(fractality.calculate_resonance(a.id, b.id)::numeric, 4) AS native,
       round((0.5 * (1 - (ea.embedding <=> eb.embedding)) + 0.3 * a.atp * b.atp
              + 0.2 * coalesce((SELECT weight FROM fractality.edges e
                                 WHERE (e.from_node, e.to_node) IN ((a.id, b.id), (b.id, a.id))), 0))::numeric, 4) AS seed_formula
  FROM fractality.nodes a JOIN fractality.node_embeddings ea ON ea.node_id = a.id,
       fractality.nodes b JOIN fractality.node_embeddings eb ON eb.node_id = b.id
 WHERE a.user_id = 'aaaaaaaa-0000-0000-0000-000000000000' AND b.user_id = a.user_id
   AND a.node_key = 'dreams-1' AND b.node_key IN ('dreams-2', 'dreams-3', 'tides-1')
 ORDER BY b.node_key;
-- carol's nodes have no embedding yet: NULL; a missing node: P0002
SELECT fractality.calculate_resonance('00000000-0000-0000-0000-000000111000', '00000000-0000-0000-0000-000000311000') AS no_embedding;
SELECT FROM regress.each_error(ARRAY['SELECT fractality.calculate_resonance(''00000000-0000-0000-0000-000000111000'', ''00000000-0000-0000-0000-00000000dead'')']);

-- as alice's application role: her resonant nodes, never bob's, never the source
SET LOCAL ROLE fractality_regress_resonance;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT node_key, label, round(similarity::numeric, 3) AS similarity, atp, round(resonance::numeric, 3) AS resonance
  FROM fractality.find_resonant('dreams-2');
SELECT node_key FROM fractality.find_resonant('dreams-2', 0.7, 1);
SELECT count(*) AS above_0_9 FROM fractality.find_resonant('dreams-2', 0.9, 20);
-- bob's node is invisible to alice: P0002 as if it did not exist
SELECT FROM regress.each_error(ARRAY['SELECT fractality.calculate_resonance(''00000000-0000-0000-0000-000000111000'', ''00000000-0000-0000-0000-000000211000'')']);
SELECT FROM regress.each_error(ARRAY[
        'SELECT * FROM fractality.find_resonant(''dreams-2'', 0.7, 0)',
        'SELECT * FROM fractality.find_resonant(''dreams-2'', 0.7, 1000000)',
        'SELECT * FROM fractality.find_resonant(''dreams-2'', 1.5)',
        'SELECT * FROM fractality.find_resonant(''no-such-key'')',
        'SELECT * FROM fractality.find_resonant(''00000000-0000-0000-0000-000000211000''::uuid)']);

-- consensus: alice and bob alone are two users, too few for the default of three
SELECT fractality.crystallize_consensus('00000000-0000-0000-0000-000000111000') IS NULL AS too_few;
-- alice may not crystallise from bob's node
SELECT FROM regress.each_error(ARRAY['SELECT fractality.crystallize_consensus(''00000000-0000-0000-0000-000000211000'')']);
RESET ROLE;
-- carol thinks about dreams too
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
SELECT n.id, n.user_id, fractality.normalize_vector(
         (SELECT array_agg((sin(d * 0.7 + 1) + 0.3 * cos(d * (f * 1.3 + 3)))::real ORDER BY d)
            FROM generate_series(1, 384) d)::vector)
  FROM fractality.nodes n, LATERAL (SELECT split_part(n.node_key, '-', 2)::int AS f) f
 WHERE n.user_id = 'cccccccc-0000-0000-0000-000000000000' AND n.node_key LIKE 'dreams%';
SET LOCAL ROLE fractality_regress_resonance;
SELECT fractality.crystallize_consensus('00000000-0000-0000-0000-000000111000') = fractality.crystallize_consensus('00000000-0000-0000-0000-000000112000') AS same_consensus;
RESET ROLE;
SELECT contributor_count, (SELECT count(*) FROM fractality.consensus_links) AS links
  FROM fractality.consensus_nodes;
-- the few embeddings above were compared exactly (fractality.consensus_exact_limit); through the
-- partitions' HNSW indexes the same consensus finds the same members
SET LOCAL ROLE fractality_regress_resonance;
SET LOCAL fractality.consensus_exact_limit = 0;
SELECT fractality.crystallize_consensus('00000000-0000-0000-0000-000000112000') = c.id AS same_through_the_index
  FROM fractality.consensus_nodes c;
RESET fractality.consensus_exact_limit;
RESET ROLE;
SELECT node_key, label, metadata, contributor_count, round(resonance_score::numeric, 3) AS group_resonance,
       (SELECT count(*) FROM fractality.consensus_links l WHERE l.consensus_id = c.id) AS links
  FROM fractality.consensus_nodes c;
SET LOCAL ROLE fractality_regress_resonance;
-- alice sees the aggregate and her own links only, their similarity to the seed to one decimal
SELECT n.node_key, round(l.similarity::numeric, 3) AS similarity_to_seed
  FROM fractality.consensus_links l JOIN fractality.nodes n ON n.id = l.node_id ORDER BY 1;
SELECT depth, node_key, round(resonance_score::numeric, 3) AS resonance
  FROM fractality.consensus_tree(0.7, 5) ORDER BY depth, node_key;
-- a second edge between the same two nodes, of another type, adds no row: a node once a path
SELECT fractality.link('dreams-2', 'dreams-1', 'echo', 0.4) IS NOT NULL AS linked;
SELECT depth, node_key, round(resonance_score::numeric, 3) AS resonance
  FROM fractality.consensus_tree(0.7, 5) ORDER BY depth, node_key;
SELECT FROM regress.each_error(ARRAY['SELECT fractality.consensus_tree(''NaN'', 5)']);
-- calculate_resonance reads a pair through SQL as the caller, so every policy holds as in any
-- query: policies of the caller's roles only, permissive ones OR-ed, restrictive ones AND-ed, a
-- policy created between two calls of one call site, a policy with a sub-query
CREATE FUNCTION pg_temp.res(a uuid, b uuid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN coalesce(round(fractality.calculate_resonance(a, b)::numeric, 4)::text, 'null');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
CREATE TEMP TABLE pairs (a text, b text, note text);
INSERT INTO pairs VALUES
    ('dreams-1', 'dreams-2', 'joined by an edge of weight 0.5'),
    ('dreams-2', 'dreams-3', ''),
    ('dreams-3', 'bob dreams-3', 'bob''s node'),
    ('dreams-1', 'carol dreams-1', 'carol''s node');
CREATE FUNCTION pg_temp.key_id(k text) RETURNS uuid LANGUAGE sql AS $$
    SELECT ('00000000-0000-0000-0000-000000'
            || CASE WHEN k LIKE 'bob %' THEN 2 WHEN k LIKE 'carol %' THEN 3 ELSE 1 END
            || CASE WHEN k LIKE '%dreams%' THEN 1 ELSE 2 END || right(k, 1) || '000')::uuid $$;
GRANT SELECT ON pairs TO fractality_regress_resonance;
CREATE FUNCTION pg_temp.show() RETURNS TABLE (a text, b text, resonance text, note text)
LANGUAGE sql AS $$
    SELECT p.a, p.b, pg_temp.res(pg_temp.key_id(p.a), pg_temp.key_id(p.b)), p.note FROM pairs p $$;
SET LOCAL ROLE fractality_regress_resonance;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT * FROM pg_temp.show();
-- no tenant set: nothing is visible
SET LOCAL fractality.user_id = '';
SELECT * FROM pg_temp.show();
RESET ROLE;
-- a restrictive policy on energy: alice's dreams-1 (ATP 0.55) disappears; a permissive policy
-- of another role changes nothing; a permissive one of alice's role shows her bob's dreams-3
-- node, but not its embedding (that table's policy still holds): NULL
CREATE POLICY regress_energetic ON fractality.nodes AS RESTRICTIVE FOR SELECT USING (atp > 0.6);
CREATE POLICY regress_other_role ON fractality.nodes FOR SELECT TO pg_monitor USING (true);
CREATE POLICY regress_bob_dreams ON fractality.nodes FOR SELECT TO fractality_regress_resonance
    USING (node_key = 'dreams-3');
SET LOCAL ROLE fractality_regress_resonance;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT * FROM pg_temp.show();
-- find_resonant keeps what alice may see: dreams-1 is gone here too, from the exact scan of her
-- tenant and from the HNSW scan over every tenant (run as the table's owner; limit 0)
SELECT node_key FROM fractality.find_resonant('dreams-2', 0.5, 20) ORDER BY 1;
SET LOCAL fractality.exact_scan_limit = 0;
SELECT node_key FROM fractality.find_resonant('dreams-2', 0.5, 20) ORDER BY 1;
SELECT current_user;
RESET fractality.exact_scan_limit;
RESET ROLE;
DROP POLICY regress_energetic ON fractality.nodes;
DROP POLICY regress_other_role ON fractality.nodes;
DROP POLICY regress_bob_dreams ON fractality.nodes;
-- a policy with a sub-query hides the edge from dreams-2: the pair loses 0.2 x 0.5
CREATE POLICY regress_subquery ON fractality.edges AS RESTRICTIVE FOR SELECT
    USING (from_node NOT IN (SELECT n.id FROM fractality.nodes n WHERE n.node_key = 'dreams-2'));
SET LOCAL ROLE fractality_regress_resonance;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT * FROM pg_temp.show() LIMIT 1;
RESET ROLE;
DROP POLICY regress_subquery ON fractality.edges;
-- a restrictive policy on embeddings hides the vector of alice's dreams-3: find_resonant leaves
-- the node out (and calculate_resonance gives NULL)
CREATE POLICY regress_no_vector ON fractality.node_embeddings AS RESTRICTIVE FOR SELECT
    USING (node_id <> '00000000-0000-0000-0000-000000113000');
SET LOCAL ROLE fractality_regress_resonance;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT node_key FROM fractality.find_resonant('dreams-2', 0.5, 20) ORDER BY 1;
SET LOCAL fractality.exact_scan_limit = 0;
SELECT node_key FROM fractality.find_resonant('dreams-2', 0.5, 20) ORDER BY 1;
RESET fractality.exact_scan_limit;
SELECT fractality.calculate_resonance(pg_temp.key_id('dreams-2'), pg_temp.key_id('dreams-3')) AS hidden_vector;
RESET ROLE;
DROP POLICY regress_no_vector ON fractality.node_embeddings;
-- one call site (PL/pgSQL keeps the expression across statements of a transaction): a policy
-- created between two calls holds for the second
CREATE FUNCTION pg_temp.hide_nodes() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    CREATE POLICY regress_hide ON fractality.nodes AS RESTRICTIVE FOR SELECT USING (false);
END $$;
CREATE FUNCTION pg_temp.before_after() RETURNS TABLE (call text, resonance text)
LANGUAGE plpgsql AS $$
BEGIN
    call := 'before'; resonance := pg_temp.res(pg_temp.key_id('dreams-1'), pg_temp.key_id('dreams-2'));
    RETURN NEXT;
    PERFORM pg_temp.hide_nodes();
    call := 'after'; resonance := pg_temp.res(pg_temp.key_id('dreams-1'), pg_temp.key_id('dreams-2'));
    RETURN NEXT;
END $$;
SET LOCAL ROLE fractality_regress_resonance;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT * FROM pg_temp.before_after();
RESET ROLE;
ROLLBACK;
