-- How a tenant's search of a model goes ($1: tenant, $2: model, $3: cap, $4: whether to use
-- tenant graphs):
-- 1. whether the tenant has a graph of its own for the model (build_tenant_graphs in
--    sql/embeddings.sql names it so; a catalog lookup by name, no scan: not to_regclass, which
--    says DEBUG1 "relation ... does not exist" on every search of a tenant without one);
-- 2. when it has none, how many embeddings of the model it holds, counted up to the cap (an
--    index-only scan of the primary key's entries in its partition);
-- 3. whether it holds staged ones (remember_many's, outside the HNSW index: an index search
--    reads them apart, tenant_staged.sql, only when there are some).
SELECT g.own,
       CASE WHEN g.own THEN NULL
            ELSE (SELECT count(*) FROM (
                      SELECT FROM fractality.node_embeddings e
                       WHERE e.user_id = $1 AND e.model = $2
                       LIMIT $3) x)
       END,
       EXISTS (SELECT FROM fractality.node_embeddings e
                WHERE e.user_id = $1 AND e.model = $2 AND e.staged)
  FROM (SELECT $4 AND EXISTS (
                  SELECT FROM pg_catalog.pg_class c
                   WHERE c.relnamespace = 'fractality'::pg_catalog.regnamespace
                     AND c.relname = ('t' || left(md5($1::text), 24) || '_' || $2 || '_hnsw')::pg_catalog.name) AS own) g
