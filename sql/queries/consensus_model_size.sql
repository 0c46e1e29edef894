-- How many embeddings of a model there are across every tenant, counted up to a cap ($1: model,
-- $2: cap), read by _crystallize_consensus as the owner: whether its exact path applies.
SELECT count(*) FROM (
    SELECT FROM fractality.node_embeddings e
     WHERE e.model = $1
     LIMIT $2) x
