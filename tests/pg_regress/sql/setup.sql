-- CREATE EXTENSION installs pgvector too (requires = 'vector') and everything in schema fractality.
CREATE EXTENSION fractality CASCADE;
SELECT extname, extnamespace::regnamespace AS schema, extrelocatable
  FROM pg_extension WHERE extname IN ('fractality', 'vector') ORDER BY extname;
