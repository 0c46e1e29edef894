-- The cosine distance to the query of every embedding of a model that a tenant holds ($1: tenant,
-- $2: model, $3: the query vector): the exact search of a small tenant. The distances are
-- computed where the rows are (pgvector's <=>, full precision); only ids and distances travel.
SELECT e.node_id, e.embedding <=> $3 AS distance
  FROM fractality.node_embeddings e
 WHERE e.user_id = $1 AND e.model = $2
