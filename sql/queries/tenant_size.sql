-- How many embeddings of a model a tenant holds, counted up to a cap ($1: tenant, $2: model,
-- $3: cap): an index-only scan of the primary key's entries in the tenant's partition.
SELECT count(*) FROM (
    SELECT FROM fractality.node_embeddings e
     WHERE e.user_id = $1 AND e.model = $2
     LIMIT $3) x
