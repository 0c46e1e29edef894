-- consciousness_path, one batch of the frontier: the edges (of any type) leaving the nodes $1
-- (uuid[]), as (from, to, current energy of to), at most $2 (what the search may still read).
SELECT e.from_node, e.to_node, n.atp
  FROM fractality.edges e JOIN fractality.node_energy n ON n.node_id = e.to_node
 WHERE e.from_node = ANY($1)
 LIMIT $2
