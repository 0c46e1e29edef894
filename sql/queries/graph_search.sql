-- search_nodes: the $2 nodes best matching the web-search query $1 over their label and
-- description (node_text's GIN index), by ts_rank_cd: (id, key, label, rank, current energy);
-- the session's tenant's nodes, or every node the caller may see when it has none.
SELECT n.node_id, n.node_key, n.label,
       ts_rank_cd(t.search, q)::float8 AS rank,
       n.atp
  FROM fractality.node_text t
  JOIN fractality.node_energy n ON n.node_id = t.node_id AND n.user_id = t.user_id,
       websearch_to_tsquery('english', $1) q
 WHERE t.search @@ q
   AND (fractality.current_user_id() IS NULL OR t.user_id = fractality.current_user_id())
 ORDER BY rank DESC, n.node_key, n.node_id
 LIMIT $2
