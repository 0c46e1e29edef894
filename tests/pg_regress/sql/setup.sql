-- CREATE EXTENSION installs pgvector and btree_gin too (requires = 'vector, btree_gin') and everything
-- in schema fractality.
CREATE EXTENSION fractality CASCADE;
-- monthly partitions are made by maintenance (run_maintenance, or ensure_partitions), never by
-- the install script: this month's and the next
SELECT fractality.ensure_partitions(1) AS partitions_made;
SELECT extname, extnamespace::regnamespace AS schema, extrelocatable
  FROM pg_extension WHERE extname IN ('fractality', 'vector') ORDER BY extname;
