-- recall's context: node $2 of tenant $1 and the nodes joined to it by an edge, either
-- direction, with the edge's weight (NULL for the context itself).
SELECT c.id, NULL::float8 FROM fractality.nodes c WHERE c.user_id = $1 AND c.node_key = $2
UNION ALL
SELECT e.to_node, e.weight FROM fractality.nodes c JOIN fractality.edges e ON e.from_node = c.id
 WHERE c.user_id = $1 AND c.node_key = $2
UNION ALL
SELECT e.from_node, e.weight FROM fractality.nodes c JOIN fractality.edges e ON e.to_node = c.id
 WHERE c.user_id = $1 AND c.node_key = $2
