-- materialize_decay's plan: the blocks of fractality.nodes now, its rows per block as the
-- statistics last saw them (0 without statistics), the transaction's now(), and the session's
-- lock_timeout (restored after the batches). No parameters.
SELECT pg_catalog.pg_relation_size('fractality.nodes'::regclass)
         / pg_catalog.current_setting('block_size')::bigint,
       CASE WHEN c.relpages > 0 AND c.reltuples > 0
            THEN c.reltuples / c.relpages ELSE 0 END::float8,
       pg_catalog.now(),
       pg_catalog.current_setting('lock_timeout')
  FROM pg_catalog.pg_class c
 WHERE c.oid = 'fractality.nodes'::regclass
