-- The embeddings of a model across every tenant within cosine distance $3 of $1, nearest first,
-- at most $4 ($2: the model): the candidates of a consensus while the model holds few embeddings
-- (read by _crystallize_consensus, as the owner). Every distance is computed, in full precision:
-- no member can be missed by an index's search. An expired memory holds no idea and takes no
-- place (a lookup of its node for each row within the distance: a subquery, not a join, so that
-- no plan reads every node).
SELECT e.node_id, e.user_id, e.embedding, e.embedding OPERATOR({{vector}}.<=>) $1 AS distance
  FROM fractality.node_embeddings e
 WHERE e.model = $2 AND e.embedding OPERATOR({{vector}}.<=>) $1 <= $3
   AND coalesce((SELECT n.expires_at > now() FROM fractality.nodes n
                  WHERE n.id = e.node_id AND n.user_id = e.user_id), true)
 ORDER BY 4, 1
 LIMIT $4
