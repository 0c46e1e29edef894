-- recall's text candidates: tenant $1's unexpired memories matching $2 (web-search syntax)
-- through node_text's GIN index (tenant first), best ts_rank_cd first, at most $3; each with its
-- key, content, metadata and current energy, and its embedding of model $4 (NULL without one),
-- so that a candidate the vector side did not bring needs no further query.
WITH m AS (
    SELECT t.node_id, ts_rank_cd(t.search, q)::float8 AS rank
      FROM fractality.node_text t, websearch_to_tsquery('english', $2) q
     WHERE t.user_id = $1 AND t.search @@ q
       AND (t.expires_at IS NULL OR t.expires_at > now())
     ORDER BY rank DESC, t.node_id
     LIMIT $3
)
SELECT m.node_id, m.rank, n.node_key, n.label, n.metadata, n.atp, e.embedding
  FROM m
  JOIN fractality.node_energy n ON n.node_id = m.node_id AND n.user_id = $1
  LEFT JOIN fractality.node_embeddings e
         ON e.user_id = $1 AND e.node_id = m.node_id AND e.model = $4
 ORDER BY m.rank DESC, m.node_id
