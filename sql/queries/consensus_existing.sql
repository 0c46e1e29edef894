-- The consensus of model $5 most of the members (ids $1 of tenants $2) are already linked to (the
-- source, $3 of tenant $4, first on a tie): a consensus is kept per seed and model, so another
-- model's is never taken over. A member is its (id, tenant): an id is unique within a tenant only.
SELECT l.consensus_id FROM fractality.consensus_links l
  JOIN fractality.consensus_nodes c ON c.id = l.consensus_id
  JOIN unnest($1::uuid[], $2::uuid[]) AS m (node_id, user_id)
    ON m.node_id = l.node_id AND m.user_id = l.user_id
 WHERE c.model = $5
 GROUP BY l.consensus_id
 ORDER BY count(*) DESC, bool_or(l.node_id = $3 AND l.user_id = $4) DESC, l.consensus_id
 LIMIT 1
