-- The cosine distance to the query of a tenant's staged embeddings of a model ($1: tenant, $2:
-- model, $3: the query vector): the rows remember_many wrote that are not in the model's HNSW
-- index yet, read exactly (through node_embeddings_staged) beside the index scan of the rest.
-- As tenant_embeddings.sql: pgvector's distance, fractality's where pgvector's overflows.
SELECT e.node_id,
       coalesce(nullif(e.embedding OPERATOR({{vector}}.<=>) $3, 'NaN'), 1 - fractality.cosine_similarity(e.embedding, $3))
  FROM fractality.node_embeddings e
 WHERE e.user_id = $1 AND e.model = $2 AND e.staged
