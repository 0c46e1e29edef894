-- A memory of tenant $1 by key ($2), and whether it has an embedding of model $3.
SELECT n.id,
       EXISTS (SELECT 1 FROM fractality.node_embeddings e
                WHERE e.user_id = n.user_id AND e.node_id = n.id AND e.model = $3)
  FROM fractality.nodes n
 WHERE n.user_id = $1 AND n.node_key = $2
