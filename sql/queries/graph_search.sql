-- search_nodes: the $2 nodes best matching the web-search query $1 over their label and
-- description (node_text's GIN index), by ts_rank_cd: (id, key, label, rank, current energy);
-- the session's tenant's nodes (the index searched within the tenant), or every node the caller
-- may see when it has none (the second branch, which runs only then). Expired memories are left
-- out, as recall leaves them. The call does not pin its search path: the text search functions
-- are named with their schema and their configuration typed, so that no function of another schema
-- on the caller's path matches better.
SELECT n.node_id, n.node_key, n.label, pg_catalog.ts_rank_cd(t.search, q)::float8 AS rank, n.atp
  FROM fractality.node_text t
  JOIN fractality.node_energy n ON n.node_id = t.node_id AND n.user_id = t.user_id,
       pg_catalog.websearch_to_tsquery('english'::pg_catalog.regconfig, $1) q
 WHERE t.user_id = fractality.current_user_id() AND t.search @@ q
   AND (t.expires_at IS NULL OR t.expires_at > now())
UNION ALL
SELECT n.node_id, n.node_key, n.label, pg_catalog.ts_rank_cd(t.search, q)::float8, n.atp
  FROM fractality.node_text t
  JOIN fractality.node_energy n ON n.node_id = t.node_id AND n.user_id = t.user_id,
       pg_catalog.websearch_to_tsquery('english'::pg_catalog.regconfig, $1) q
 WHERE fractality.current_user_id() IS NULL AND t.search @@ q
   AND (t.expires_at IS NULL OR t.expires_at > now())
 ORDER BY rank DESC, node_key, node_id
 LIMIT $2
