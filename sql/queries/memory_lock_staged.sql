-- Tenant $1's staged embeddings of model $2 (remember_many's, past fractality.staged_limit),
-- locked in the order of their keys, as index_staged_embeddings locks them: two callers never
-- wait for each other in a circle. Returns their nodes; memory_index_staged.sql then moves them
-- into the model's HNSW index, in a statement of its own (an UPDATE that locked them in a
-- subquery could wait for a stale version's tuple lock: decay_lock.sql).
SELECT s.node_id FROM fractality.node_embeddings s
 WHERE s.user_id = $1 AND s.model = $2 AND s.staged
 ORDER BY s.node_id
   FOR NO KEY UPDATE OF s
