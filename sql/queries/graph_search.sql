-- search_nodes: the $2 nodes best matching the web-search query $1 over their label and
-- description (the GIN index on node_search), by ts_rank_cd: (id, key, label, rank, current
-- energy); the session's tenant's nodes, or every node the caller may see when it has none.
SELECT n.node_id, n.node_key, n.label,
       ts_rank_cd(fractality.node_search(n.label, n.metadata), q)::float8 AS rank,
       n.atp
  FROM fractality.node_energy n, websearch_to_tsquery('english', $1) q
 WHERE fractality.node_search(n.label, n.metadata) @@ q
   AND (fractality.current_user_id() IS NULL OR n.user_id = fractality.current_user_id())
 ORDER BY rank DESC, n.node_key, n.node_id
 LIMIT $2
