-- fractality: resonance and consensus
-- Settings of the native functions in src/resonance/ and src/consensus/, and the consensus
-- tree. Loaded after those functions are created.
--
-- The functions below get a search_path pinned to pg_catalog, pg_temp: their queries name
-- fractality's objects in full, and pgvector's with its schema looked up when they run
-- (src/vector.rs, qualify), so that no schema where others may create functions is searched.
--
-- crystallize_consensus reads candidates from the HNSW indexes in distance order with pgvector's
-- iterative scan (strict order), so that a filter cannot starve the scan and the caller can stop
-- once the distance passes the threshold. These are SET clauses of the functions: they hold
-- while the function runs and are restored when it returns. find_resonant, recall,
-- recall_explain and remember's duplicate check set the same themselves, once per call
-- (src/search.rs, Pinned): PostgreSQL applies a function's SET clauses again for every row a
-- value-per-call set-returning function returns. resonance_with reads no index this way and pins
-- only its search_path.
DO $$
DECLARE
    vector_schema name;
BEGIN
    SELECT n.nspname INTO vector_schema
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector';
    IF vector_schema IS NULL THEN
        RAISE EXCEPTION 'fractality requires pgvector: extension vector is not installed'
            USING ERRCODE = '42704', HINT = 'CREATE EXTENSION fractality CASCADE installs it.';
    END IF;
    -- pg_catalog alone on the path: the queries name pgvector's objects in full (with its schema
    -- looked up at run time, so that pgvector may move), and no schema where others may create
    -- functions is searched
    ALTER FUNCTION fractality.calculate_resonance(uuid, uuid, text)
        SET search_path = pg_catalog, pg_temp;
    -- consensus: crystallize_consensus reads the source as the caller; _crystallize_consensus,
    -- which must see across tenants, runs as the owner and exposes only aggregates and links
    ALTER FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text)
        SET search_path = pg_catalog, pg_temp;
    EXECUTE format('ALTER FUNCTION fractality._crystallize_consensus(uuid, %I.vector, float8, integer, text)
                        SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                        SET hnsw.iterative_scan = ''strict_order'' SET hnsw.ef_search = 100
                        SET hnsw.max_scan_tuples = 100000 SET enable_sort = off SET jit = off',
                   vector_schema);
    -- Granted, not public: a consensus tells its caller how many users hold ideas near a seed of
    -- the caller's choosing; a caller holding several tenants and calling it again and again with
    -- seeds and thresholds it picks learns, a bit at a time, where another tenant's vectors lie.
    -- The administrator grants it to the roles trusted with that (or runs it from pg_cron):
    --   GRANT EXECUTE ON FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text),
    --       fractality._crystallize_consensus(uuid, vector, float8, integer, text) TO curator;
    EXECUTE format('REVOKE EXECUTE ON FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text),
                        fractality._crystallize_consensus(uuid, %I.vector, float8, integer, text) FROM PUBLIC',
                   vector_schema);
END
$$;

-- The seed's traversal: from each consensus node whose resonance_score exceeds min_score (the
-- published score, to one decimal: a group of 0.84 is 0.8, not above 0.8; pass 0.75 for it), to
-- the caller's contributing nodes (depth 1, through consensus_links), then along edges
-- (from_node -> to_node, each node linked to once whatever the edges' types); resonance decays by
-- 0.9 a level; a node already on the path is not entered again (cycles cut). Runs as the caller: only the caller's links and nodes are seen.
CREATE FUNCTION fractality.consensus_tree(min_score float8 DEFAULT 0.8, max_depth integer DEFAULT 5)
RETURNS TABLE (consensus_id uuid, node_id uuid, node_key text, label text,
               resonance_score float8, depth integer, path uuid[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF min_score IS NULL OR max_depth IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('consensus_tree: %s must not be NULL', CASE WHEN min_score IS NULL THEN 'min_score' ELSE 'max_depth' END),
            HINT = 'Pass a resonance score in [-1, 1] and a number of levels from 0 to 100, or leave them out (0.8, 5).';
    END IF;
    IF min_score = 'NaN'::float8 OR min_score < -1 OR min_score > 1 THEN
        RAISE EXCEPTION 'invalid value for min_score: %', min_score::text
            USING ERRCODE = '22023', HINT = 'min_score is a resonance score in [-1, 1] (e.g. 0.8).';
    END IF;
    IF max_depth < 0 OR max_depth > 100 THEN
        RAISE EXCEPTION 'invalid value for max_depth: %', max_depth::text
            USING ERRCODE = '22023', HINT = 'max_depth is a number of levels from 0 to 100.';
    END IF;
    RETURN QUERY
    WITH RECURSIVE tree (consensus_id, node_id, node_key, label, resonance_score, depth, path) AS (
        SELECT cn.id, cn.id, cn.node_key, cn.label, cn.resonance_score, 0, ARRAY[cn.id]
          FROM fractality.consensus_nodes cn
         WHERE cn.resonance_score > min_score
        UNION ALL
        SELECT t.consensus_id, n.id, n.node_key, n.label, t.resonance_score * 0.9, t.depth + 1,
               t.path || n.id
          FROM tree t
          CROSS JOIN LATERAL (
                SELECT l.node_id AS next FROM fractality.consensus_links l
                 WHERE t.depth = 0 AND l.consensus_id = t.node_id
                UNION ALL
                -- each node it links to once, whatever the edges' types
                SELECT DISTINCT e.to_node FROM fractality.edges e
                 WHERE t.depth > 0 AND e.from_node = t.node_id) step
          JOIN fractality.nodes n ON n.id = step.next
         WHERE t.depth < max_depth
           AND NOT n.id = ANY (t.path)
    )
    SELECT t.consensus_id, t.node_id, t.node_key, t.label, t.resonance_score, t.depth, t.path
      FROM tree t
     ORDER BY t.resonance_score DESC, t.depth, t.consensus_id, t.path;
END
$$;

COMMENT ON FUNCTION fractality.consensus_tree(float8, integer) IS
    'From strong consensus nodes to the caller''s contributing nodes and along their edges; resonance decays 0.9 a level; cycles cut.';
