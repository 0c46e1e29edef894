-- Every embedding of a model that a tenant holds ($1: tenant, $2: model): the exact search of a
-- small tenant computes each similarity natively.
SELECT e.node_id, e.embedding
  FROM fractality.node_embeddings e
 WHERE e.user_id = $1 AND e.model = $2
