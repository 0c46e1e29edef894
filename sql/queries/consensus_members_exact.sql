-- The embeddings of a model across every tenant within cosine distance $3 of $1, nearest first,
-- at most $4 ($2: the model): the candidates of a consensus while the model holds few embeddings
-- (read by _crystallize_consensus, as the owner). Every distance is computed, in full precision:
-- no member can be missed by an index's search.
SELECT e.node_id, e.user_id, e.embedding, e.embedding OPERATOR({{vector}}.<=>) $1 AS distance
  FROM fractality.node_embeddings e
 WHERE e.model = $2 AND e.embedding OPERATOR({{vector}}.<=>) $1 <= $3
 ORDER BY 4, 1
 LIMIT $4
