-- The staged embeddings of a model (remember_many's, not in the HNSW indexes yet) across every
-- tenant within cosine distance $3 of $1, nearest first, at most $4 ($2: the model): read
-- exactly beside the index scan of consensus_members.sql (by _crystallize_consensus, as the
-- owner), through node_embeddings_staged. An expired memory is left out, as in
-- consensus_members_exact.sql.
SELECT e.node_id, e.user_id, e.embedding, e.embedding OPERATOR({{vector}}.<=>) $1 AS distance
  FROM fractality.node_embeddings e
 WHERE e.staged AND e.model = $2 AND e.embedding OPERATOR({{vector}}.<=>) $1 <= $3
   AND coalesce((SELECT n.expires_at > now() FROM fractality.nodes n
                  WHERE n.id = e.node_id AND n.user_id = e.user_id), true)
 ORDER BY 4, 1
 LIMIT $4
