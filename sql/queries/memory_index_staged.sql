-- Tenant $1's staged embeddings of model $2 moved into the model's HNSW index (remember_many,
-- past fractality.staged_limit); the rows moved.
UPDATE fractality.node_embeddings e SET staged = false
 WHERE e.user_id = $1 AND e.model = $2 AND e.staged
