-- fractality: the agent memory API
-- remember, remember_many, recall, recall_explain and forget are in src/memory/; here, the
-- settings their searches run with (as for find_resonant in sql/resonance.sql): pgvector's
-- schema pinned on the search_path, and the tenant's HNSW index read in distance order,
-- iteratively (the tenant filter must not starve the scan), in strict order (recall's stop rule
-- relies on it), the index order rather than a sort of the tenant's rows; and no JIT (with
-- enable_sort off a sort's cost is huge, which would otherwise compile every plan that sorts).
DO $$
DECLARE
    vector_schema name;
    f text;
BEGIN
    SELECT n.nspname INTO vector_schema
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector';
    FOREACH f IN ARRAY ARRAY[
        format('fractality.remember(text, text, %I.vector, jsonb, text, float8, interval)', vector_schema),
        'fractality.remember_many(jsonb, text, float8)',
        format('fractality.recall(%I.vector, integer, text, text, text, float8, float8, float8, float8, float8)', vector_schema),
        format('fractality.recall_explain(%I.vector, integer, text, text, text, float8, float8, float8, float8)', vector_schema)] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp
                            SET hnsw.iterative_scan = ''strict_order'' SET hnsw.ef_search = 40
                            SET hnsw.max_scan_tuples = 100000 SET enable_sort = off SET jit = off',
                       f, vector_schema);
    END LOOP;
END
$$;
