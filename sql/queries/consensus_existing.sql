-- The consensus of model $3 most of the members ($1) are already linked to (the source $2's first
-- on a tie): a consensus is kept per seed and model, so another model's is never taken over.
SELECT l.consensus_id FROM fractality.consensus_links l
  JOIN fractality.consensus_nodes c ON c.id = l.consensus_id
 WHERE l.node_id = ANY($1) AND c.model = $3
 GROUP BY l.consensus_id
 ORDER BY count(*) DESC, bool_or(l.node_id = $2) DESC, l.consensus_id
 LIMIT 1
