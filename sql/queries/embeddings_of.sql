-- The embeddings of a model of some nodes of one tenant ($1: tenant, $2: node ids, $3: model):
-- primary-key probes in the tenant's partition.
SELECT e.node_id, e.embedding
  FROM fractality.node_embeddings e
 WHERE e.user_id = $1 AND e.node_id = ANY($2) AND e.model = $3
