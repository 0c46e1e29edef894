-- Nodes of a tenant and their current energy ($1: tenant, $2: at most this many), as the caller
-- sees them: resonance_with reads a tenant in one pass when it wants most of it, instead of
-- probing the primary key for each node.
SELECT n.node_id, n.user_id, n.atp FROM fractality.node_energy n WHERE n.user_id = $1 LIMIT $2
