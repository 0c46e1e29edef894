-- recall's text candidates: tenant $1's unexpired memories matching $2 (web-search syntax)
-- through node_text's GIN index (tenant first), best ts_rank_cd first, at most $3.
SELECT t.node_id, ts_rank_cd(t.search, q)::float8 AS rank
  FROM fractality.node_text t, websearch_to_tsquery('english', $2) q
 WHERE t.user_id = $1 AND t.search @@ q
   AND (t.expires_at IS NULL OR t.expires_at > now())
 ORDER BY rank DESC, t.node_id
 LIMIT $3
