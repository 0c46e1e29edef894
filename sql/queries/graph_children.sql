-- children: the nodes that node $1 links to with relationship type $2, strongest edge first:
-- (id, key, label, edge weight, current energy).
SELECT n.id, n.node_key, n.label, e.weight, fractality.current_atp(n.atp, n.atp_at)
  FROM fractality.edges e JOIN fractality.nodes n ON n.id = e.to_node
 WHERE e.from_node = $1 AND e.relationship_type = $2
 ORDER BY e.weight DESC, n.node_key
