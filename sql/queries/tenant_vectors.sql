-- Every embedding of a model that a tenant holds ($1: tenant, $2: model), staged or indexed:
-- remember_many reads a small tenant whole, once, and checks each memory of its batch against
-- all of them in memory instead of searching the tenant once per memory (src/memory/pool.rs).
SELECT e.node_id, e.embedding
  FROM fractality.node_embeddings e
 WHERE e.user_id = $1 AND e.model = $2
