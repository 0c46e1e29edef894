-- The links of consensus $1 from nodes no longer among its members (ids $2 of tenants $3).
DELETE FROM fractality.consensus_links l
 WHERE l.consensus_id = $1
   AND NOT EXISTS (SELECT FROM unnest($2::uuid[], $3::uuid[]) AS m (node_id, user_id)
                    WHERE m.node_id = l.node_id AND m.user_id = l.user_id)
