-- Key, label and current energy of some nodes ($1: node ids), as the caller sees them.
SELECT n.node_id, n.node_key, n.label, n.atp
  FROM fractality.node_energy n
 WHERE n.node_id = ANY($1)
