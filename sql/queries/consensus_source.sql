-- The tenant and the stored embedding of model $2 of node $1, whatever its tenant (read by
-- _crystallize_consensus, as the owner, through the node_id index of each partition).
SELECT e.user_id, e.embedding
  FROM fractality.node_embeddings e
 WHERE e.node_id = $1 AND e.model = $2
