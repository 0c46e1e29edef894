-- The memories of tenant $1 with the keys $2: each key, its memory, and whether it has an
-- embedding of model $3. The tenant is the parameter, not the outer row's column, in the
-- subquery: the plan then prunes node_embeddings' partitions when it starts instead of opening
-- every one's index each call.
SELECT n.node_key, n.id,
       EXISTS (SELECT 1 FROM fractality.node_embeddings e
                WHERE e.user_id = $1 AND e.node_id = n.id AND e.model = $3)
  FROM fractality.nodes n
 WHERE n.user_id = $1 AND n.node_key = ANY ($2)
