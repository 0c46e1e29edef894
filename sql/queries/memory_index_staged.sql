-- Tenant $1's staged embeddings of model $2 of the nodes $3, which memory_lock_staged.sql locked,
-- moved into the model's HNSW index; the rows moved. (The tenant named too: the UPDATE reads the
-- tenant's partition alone.)
UPDATE fractality.node_embeddings e SET staged = false
 WHERE e.user_id = $1 AND e.model = $2 AND e.staged AND e.node_id = ANY ($3)
