-- apply_consciousness_decay over every tenant: the explicit tick as one UPDATE. Every node above
-- the floor $2 whose energy would change keeps $1 of it, never below $2 (decay_apply_tenant.sql is
-- the same for one tenant: two queries, so that each kept plan fits its case).
-- The rows are locked first, in id order as every writer of several nodes locks them (recall's
-- reinforcement, remember_many: so that two of them never wait for each other), with FOR NO KEY
-- UPDATE (which under READ COMMITTED returns the latest committed version of a row a concurrent
-- transaction changed, re-checked against the WHERE), so
-- the locked row's value is exactly the one the UPDATE decays: the old value comes from there,
-- the new from RETURNING (PostgreSQL 15's RETURNING sees only the new row). Returns id, old and
-- new energy.
UPDATE fractality.nodes n
   SET atp = greatest(o.atp * $1, $2)
  FROM (SELECT id, user_id, atp
          FROM fractality.nodes
         WHERE atp > $2
           AND greatest(atp * $1, $2) <> atp
         ORDER BY id, user_id
           FOR NO KEY UPDATE) o
 WHERE n.id = o.id AND n.user_id = o.user_id
RETURNING n.id, o.atp, n.atp
