-- The id of node $2 (its key) of tenant $1, as the caller sees it (no row: no such node).
SELECT n.id FROM fractality.nodes n WHERE n.user_id = $1 AND n.node_key = $2
