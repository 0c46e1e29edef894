-- consciousness_path, one batch of the frontier: the edges (of any type) leaving the nodes $1
-- (uuid[]), as (from, to, current energy of to).
SELECT e.from_node, e.to_node, fractality.current_atp(n.atp, n.atp_at)
  FROM fractality.edges e JOIN fractality.nodes n ON n.id = e.to_node
 WHERE e.from_node = ANY($1)
