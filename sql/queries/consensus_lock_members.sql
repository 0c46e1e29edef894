-- The members of a consensus about to be written (ids $1 of tenants $2) locked against a delete
-- (KEY SHARE, what their links' foreign key takes), in the order of their ids; those still there
-- are returned: one deleted since it was read (forget, run_maintenance) is left out.
SELECT n.id, n.user_id
  FROM fractality.nodes n
  JOIN unnest($1::uuid[], $2::uuid[]) AS m (node_id, user_id)
    ON n.id = m.node_id AND n.user_id = m.user_id
 ORDER BY n.id, n.user_id
   FOR KEY SHARE OF n
