-- DROP EXTENSION leaves nothing behind; CREATE works again afterwards.
DROP EXTENSION fractality;
-- PostgreSQL creates the control file's schema before the script runs and cannot make it a
-- member of the extension that lives in it: it stays, empty, and DROP SCHEMA (RESTRICT, which
-- refuses a schema that holds anything) removes it.
SELECT count(*) AS objects_left_in_schema FROM pg_class WHERE relnamespace = 'fractality'::regnamespace;
SELECT count(*) AS functions_left_in_schema FROM pg_proc WHERE pronamespace = 'fractality'::regnamespace;
SELECT count(*) AS types_left_in_schema FROM pg_type WHERE typnamespace = 'fractality'::regnamespace;
DROP SCHEMA fractality;
SELECT count(*) AS leftover_relations FROM pg_class WHERE relname LIKE 'consciousness%' OR relname LIKE 'experience%'
    OR relname IN ('nodes', 'node_text', 'edges', 'node_embeddings', 'adna_policies', 'configuration_store');
SELECT count(*) AS leftover_functions FROM pg_proc
 WHERE proname IN ('cosine_similarity', 'current_user_id', '_create_month_partition', 'notify_consciousness_update');
SELECT extname FROM pg_extension ORDER BY 1;
CREATE EXTENSION fractality;
SELECT count(*) AS tables FROM pg_tables WHERE schemaname = 'fractality';
DROP EXTENSION fractality;
DROP EXTENSION vector;
DROP EXTENSION btree_gin;
