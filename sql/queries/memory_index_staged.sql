-- Tenant $1's staged embeddings of model $2 moved into the model's HNSW index (remember_many,
-- past fractality.staged_limit); the rows moved. Locked first in the order of their keys, as
-- index_staged_embeddings locks them: two callers never wait for each other in a circle. (The
-- tenant named outside the lock pass too: the UPDATE reads the tenant's partition alone.)
UPDATE fractality.node_embeddings e SET staged = false
  FROM (SELECT s.node_id FROM fractality.node_embeddings s
         WHERE s.user_id = $1 AND s.model = $2 AND s.staged
         ORDER BY s.node_id
           FOR NO KEY UPDATE OF s) x
 WHERE e.user_id = $1 AND e.model = $2 AND e.staged AND e.node_id = x.node_id
