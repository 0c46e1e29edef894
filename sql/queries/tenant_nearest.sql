-- A tenant's embeddings of one model in order of cosine distance to $2 through the model's HNSW
-- index in the tenant's partition ($1: tenant, $2: the query vector, $3: at most so many; a
-- LIMIT, even as a parameter, also gives the generic plan a cheaper start than none). A template:
-- {{model}}, {{type}} and {{dims}} are the model's (src/models.rs); the ORDER BY and the WHERE
-- are the index's expression and predicate (staged rows are read apart: tenant_staged.sql; the
-- digest of the tenant is a tenant graph's predicate, build_tenant_graphs); {{exact}} is the full-precision distance
-- (src/search.rs): for a `vector` index the order distance itself, the same computation, so that
-- a row's embedding is read and compared once (6 KB at 1 536 dimensions); in halfvec
-- above 2 000 dimensions, where the index's distance only orders, one in full precision. Run with
-- hnsw.iterative_scan = strict_order (the tenant filter must not starve the scan) and
-- enable_sort = off (the index order, not a sort of the tenant's rows), which the calling
-- functions set; read through a cursor until the distance passes what the caller needs. Only ids
-- and distances travel; a distance pgvector's single-precision sums overflow on (NaN) is
-- fractality's, in double.
SELECT s.node_id,
       coalesce(nullif({{exact}}, 'NaN'), 1 - fractality.cosine_similarity(s.embedding, $2)) AS distance,
       s.order_distance
  FROM (SELECT e.node_id, e.embedding,
               (e.embedding::{{vector}}.{{type}}({{dims}})) OPERATOR({{vector}}.<=>) ($2::{{vector}}.{{type}}({{dims}})) AS order_distance
          FROM fractality.node_embeddings e
         WHERE e.user_id = $1 AND e.model = {{model}} AND NOT e.staged
           AND left(md5(e.user_id::text), 24) = left(md5($1::text), 24)
         ORDER BY (e.embedding::{{vector}}.{{type}}({{dims}})) OPERATOR({{vector}}.<=>) ($2::{{vector}}.{{type}}({{dims}}))
         LIMIT $3) s
