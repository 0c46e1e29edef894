-- parents: the nodes that link to node $1 with relationship type $2, strongest edge first:
-- (id, key, label, edge weight, current energy); at most $3 (one more than a call returns).
SELECT n.node_id, n.node_key, n.label, e.weight, n.atp
  FROM fractality.edges e JOIN fractality.node_energy n ON n.node_id = e.from_node
 WHERE e.to_node = $1 AND e.relationship_type = $2
 ORDER BY e.weight DESC, n.node_key
 LIMIT $3
