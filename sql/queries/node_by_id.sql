-- A node's tenant and current energy ($1: node id), as the caller sees it.
SELECT n.node_id, n.user_id, n.atp FROM fractality.node_energy n WHERE n.node_id = $1
