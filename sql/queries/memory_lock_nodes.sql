-- remember_many: the stored memories of tenant $1 it deletes ($2: expired, told again) and
-- reinforces ($3), locked in one pass in the order of their ids, as every writer of several
-- memories locks them; each as its write needs: a delete FOR UPDATE, a reinforcement FOR NO KEY
-- UPDATE (as recall's and a decay tick's), which leaves the foreign keys' KEY SHARE free (a link,
-- an embedding or a consensus link to the memory written meanwhile does not wait for it).
SELECT u.id
  FROM (SELECT DISTINCT m.id, coalesce(m.id = ANY ($2), false) AS deleted
          FROM pg_catalog.unnest(pg_catalog.array_cat($2::uuid[], $3::uuid[])) AS m (id)
         ORDER BY m.id) u
  LEFT JOIN LATERAL (SELECT n.id FROM fractality.nodes n
                      WHERE u.deleted AND n.user_id = $1 AND n.id = u.id
                        FOR UPDATE) d ON true
  LEFT JOIN LATERAL (SELECT n.id FROM fractality.nodes n
                      WHERE NOT u.deleted AND n.user_id = $1 AND n.id = u.id
                        FOR NO KEY UPDATE) r ON true
