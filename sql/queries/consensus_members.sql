-- The embeddings of one model across every tenant in order of cosine distance to $1, at most
-- $2: the candidates of a consensus (read by _crystallize_consensus, as the owner). A template
-- (src/models.rs): each partition's HNSW index of the model, merged in distance order;
-- the staged rows, outside the indexes, are read apart (consensus_members_staged.sql). An expired
-- memory is left out, as in consensus_members_exact.sql (a filter on the index's rows: their order
-- stands, and the LIMIT counts live ones).
SELECT e.node_id, e.user_id, e.embedding,
       (e.embedding::{{vector}}.{{type}}({{dims}})) OPERATOR({{vector}}.<=>) ($1::{{vector}}.{{type}}({{dims}})) AS distance
  FROM fractality.node_embeddings e
 WHERE e.model = {{model}} AND NOT e.staged
   AND coalesce((SELECT n.expires_at > now() FROM fractality.nodes n
                  WHERE n.id = e.node_id AND n.user_id = e.user_id), true)
 ORDER BY (e.embedding::{{vector}}.{{type}}({{dims}})) OPERATOR({{vector}}.<=>) ($1::{{vector}}.{{type}}({{dims}}))
 LIMIT $2
