-- recall's text candidates: tenant $1's unexpired memories matching $2 (web-search syntax)
-- through the full-text index, best ts_rank_cd first, at most $3.
SELECT n.id, ts_rank_cd(fractality.node_search(n.label, n.metadata), q)::float8 AS rank
  FROM fractality.nodes n, websearch_to_tsquery('english', $2) q
 WHERE n.user_id = $1 AND fractality.node_search(n.label, n.metadata) @@ q
   AND (n.expires_at IS NULL OR n.expires_at > now())
 ORDER BY rank DESC, n.id
 LIMIT $3
