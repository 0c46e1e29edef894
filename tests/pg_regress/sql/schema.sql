-- The data model: tables, their columns, partitions, indexes, triggers and views.
-- Partition names carry the current month, so they are counted, not listed.
SELECT c.relname, c.relkind, c.relrowsecurity AS rls, c.relpersistence
  FROM pg_class c
 WHERE c.relnamespace = 'fractality'::regnamespace
   AND c.relkind IN ('r', 'p', 'v')
   AND NOT c.relispartition
 ORDER BY c.relkind, c.relname;

SELECT inhparent::regclass AS parent, count(*) AS partitions,
       count(*) FILTER (WHERE c.relname LIKE '%\_default') AS default_partitions
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE inhparent IN ('fractality.consciousness_streams'::regclass, 'fractality.experience_events'::regclass)
 GROUP BY 1 ORDER BY inhparent::regclass::text;

-- columns of the tenant tables and the experience store, with types and defaults
SELECT table_name, column_name, data_type, is_nullable, column_default, is_generated
  FROM information_schema.columns
 WHERE table_schema = 'fractality'
   AND table_name IN ('nodes', 'node_text', 'node_embeddings', 'edges', 'consciousness_streams',
                      'consciousness_archive', 'consensus_nodes', 'consensus_links',
                      'experience_events', 'action_metadata', 'adna_policies',
                      'configuration_store', 'learning_metrics', 'retention_policies')
 ORDER BY table_name, ordinal_position;

-- the embedding columns are pgvector vectors of any dimension (each model's is checked against
-- embedding_models); node_embeddings is hash-partitioned by tenant, an HNSW index per model
SELECT attrelid::regclass, attname, format_type(atttypid, atttypmod)
  FROM pg_attribute
 WHERE attrelid IN ('fractality.node_embeddings'::regclass, 'fractality.consensus_centroids'::regclass)
   AND atttypid = 'vector'::regtype
 ORDER BY attrelid::regclass::text, 2;
SELECT model, dims FROM fractality.embedding_models;
SELECT pg_get_partkeydef('fractality.node_embeddings'::regclass) AS partition_key,
       count(*) AS partitions,
       count(*) FILTER (WHERE c.relrowsecurity) AS with_row_security,
       count(*) FILTER (WHERE 'toast_tuple_target=8160' = ANY (c.reloptions)) AS rows_kept_whole,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
                                       WHERE i.indrelid = c.oid AND x.relname = c.relname || '_default_hnsw')) AS with_default_index
  FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
 WHERE h.inhparent = 'fractality.node_embeddings'::regclass;

-- indexes of the parents (partition indexes are inherited)
SELECT tablename, indexname, indexdef
  FROM pg_indexes
 WHERE schemaname = 'fractality'
   AND tablename IN ('nodes', 'node_text', 'node_embeddings', 'edges', 'consciousness_streams',
                     'consciousness_archive', 'consensus_nodes', 'consensus_links',
                     'experience_events', 'action_metadata', 'adna_policies',
                     'configuration_store', 'learning_metrics', 'retention_policies')
 ORDER BY tablename, indexname;

SELECT tgrelid::regclass AS "table", tgname, tgenabled
  FROM pg_trigger
 WHERE tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'fractality'::regnamespace)
   AND NOT tgisinternal
   AND tgparentid = 0  -- a partition's clone of its parent's trigger is the parent's
 ORDER BY tgrelid::regclass::text, 2;

-- storage options: every view runs with the caller's rights; nodes leave room for HOT updates;
-- node_embeddings' partitions keep rows of up to a page whole (rows_kept_whole above)
SELECT relname, relkind, reloptions FROM pg_class
 WHERE relnamespace = 'fractality'::regnamespace AND reloptions IS NOT NULL
   AND relkind <> 'i'  -- partitions' indexes carry their month in their names
   AND relname !~ '^node_embeddings_p[0-9]+$'  -- counted with the partitions above
 ORDER BY 1;

-- defaults as a client sees them
BEGIN;
SET LOCAL fractality.user_id = '11111111-1111-1111-1111-111111111111';
INSERT INTO fractality.nodes (node_key, label) VALUES ('first-thought', 'First thought');
SELECT user_id, node_key, atp, energy, metadata, type,
       atp_at = now() AS atp_at_now, created_at = now() AS created_now,
       fractality.node_search(label, metadata) AS search
  FROM fractality.nodes;
ROLLBACK;
