-- The consensus of model $5 that the members (ids $1 of tenants $2) hold most of: more than half
-- of its links are to them (the most such links first, then the one linked to the source, $3 of
-- tenant $4). Another group that shares a member or two with it makes a consensus of its own
-- rather than taking this one over; a consensus is kept per seed and model, so another model's
-- is never taken over. A member is its (id, tenant): an id is unique within a tenant only.
SELECT l.consensus_id FROM fractality.consensus_links l
  JOIN fractality.consensus_nodes c ON c.id = l.consensus_id
  JOIN unnest($1::uuid[], $2::uuid[]) AS m (node_id, user_id)
    ON m.node_id = l.node_id AND m.user_id = l.user_id
 WHERE c.model = $5
 GROUP BY l.consensus_id
HAVING 2 * count(*) > (SELECT count(*) FROM fractality.consensus_links a
                        WHERE a.consensus_id = l.consensus_id)
 ORDER BY count(*) DESC, bool_or(l.node_id = $3 AND l.user_id = $4) DESC, l.consensus_id
 LIMIT 1
