-- The consensus most of the members ($1) are already linked to (the source $2's first on a tie).
SELECT l.consensus_id FROM fractality.consensus_links l
 WHERE l.node_id = ANY($1)
 GROUP BY l.consensus_id
 ORDER BY count(*) DESC, bool_or(l.node_id = $2) DESC, l.consensus_id
 LIMIT 1
