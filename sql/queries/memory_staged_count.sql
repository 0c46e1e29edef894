-- How many embeddings of model $2 tenant $1 holds staged (remember_many's, outside the HNSW
-- index), counted up to $3: through the partial index node_embeddings_staged.
SELECT count(*) FROM (
    SELECT FROM fractality.node_embeddings e
     WHERE e.user_id = $1 AND e.model = $2 AND e.staged
     LIMIT $3) x
