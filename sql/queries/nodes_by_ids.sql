-- Nodes' tenants and current energy ($1: node ids), as the caller sees them.
SELECT n.node_id, n.user_id, n.atp FROM fractality.node_energy n WHERE n.node_id = ANY($1)
