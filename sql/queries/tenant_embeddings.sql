-- The cosine distance to the query of every embedding of a model that a tenant holds ($1: tenant,
-- $2: model, $3: the query vector): the exact search of a small tenant. The distances are
-- computed where the rows are (pgvector's <=>); only ids and distances travel. pgvector sums in
-- single precision, which overflows for components beyond about 1e19: then (NaN) the distance is
-- fractality's, summed in double precision.
SELECT e.node_id,
       coalesce(nullif(e.embedding OPERATOR({{vector}}.<=>) $3, 'NaN'), 1 - fractality.cosine_similarity(e.embedding, $3))
  FROM fractality.node_embeddings e
 WHERE e.user_id = $1 AND e.model = $2
