-- The memories of tenant $1 with the keys $2: each key, its memory, whether it has an
-- embedding of model $3, and whether it has expired (remember deletes such a memory, as
-- run_maintenance would, and stores the one told again as new). The tenant is the parameter,
-- not the outer row's column, in the subquery: the plan then prunes node_embeddings'
-- partitions when it starts instead of opening every one's index each call.
SELECT n.node_key, n.id,
       EXISTS (SELECT 1 FROM fractality.node_embeddings e
                WHERE e.user_id = $1 AND e.node_id = n.id AND e.model = $3),
       n.expires_at IS NOT NULL AND n.expires_at <= now()
  FROM fractality.nodes n
 WHERE n.user_id = $1 AND n.node_key = ANY ($2)
