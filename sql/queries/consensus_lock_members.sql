-- The members of a consensus about to be written (ids $1 of tenants $2) locked against a delete
-- (KEY SHARE, what their links' foreign key takes), one by one in the order of (id, tenant) as
-- the sorted pairs come (a lookup of the primary key each: the call runs with enable_sort off, so
-- no ORDER BY over nodes, which would read its whole primary key in order); those still there are
-- returned: one deleted since it was read (forget, run_maintenance) is left out, and so is an
-- expired memory (run_maintenance's to delete: it holds no idea any more).
SELECT n.id, n.user_id
  FROM (SELECT DISTINCT m.node_id, m.user_id
          FROM unnest($1::uuid[], $2::uuid[]) AS m (node_id, user_id)
         ORDER BY m.node_id, m.user_id) p
 CROSS JOIN LATERAL (SELECT x.id, x.user_id, x.expires_at FROM fractality.nodes x
                      WHERE x.id = p.node_id AND x.user_id = p.user_id
                        FOR KEY SHARE) n
 WHERE n.expires_at IS NULL OR n.expires_at > now()
