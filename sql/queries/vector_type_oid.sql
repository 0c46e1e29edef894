-- The OID of pgvector's type vector, in whatever schema pgvector is installed.
SELECT t.oid
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_extension e ON e.extnamespace = t.typnamespace
 WHERE e.extname = 'vector' AND t.typname = 'vector'
