-- apply_consciousness_decay over every tenant: the explicit tick as one UPDATE. Every node whose
-- energy now (the lazy decay's current_atp at the transaction's now()) is above the floor $2
-- keeps $1 of it, never below $2, written as of now (atp_at = now(), as materialize_decay
-- writes it; a row another session wrote after this transaction began keeps its later atp_at,
-- and its energy as of then, which current_atp gives for an atp_at after now(): the time between
-- is not decayed twice): the tick comes on top of
-- the decay since atp_at, and the floor holds for the
-- energy every reader sees (decay_apply_tenant.sql is the same for one tenant: two queries, so
-- that each kept plan fits its case). The stored atp is at least the energy now, so the
-- stored one is tested first. The rows are locked first, in id order as every writer of several
-- nodes locks them (recall's reinforcement, remember_many: so that two of them never wait for
-- each other), with FOR NO KEY UPDATE (which under READ COMMITTED returns the latest committed
-- version of a row a concurrent transaction changed, re-checked against the WHERE and its
-- energy computed from it), so the energy reported old is exactly the one the UPDATE decays:
-- the old value comes from there, the new from RETURNING (PostgreSQL 15's RETURNING sees only
-- the new row). Returns id, old and new energy.
UPDATE fractality.nodes n
   SET atp = greatest(o.energy * $1, $2), atp_at = o.at
  FROM (SELECT id, user_id, fractality.current_atp(atp, atp_at, now()) AS energy,
               greatest(atp_at, now()) AS at
          FROM fractality.nodes
         WHERE atp > $2
           AND $1 < 1
           AND fractality.current_atp(atp, atp_at, now()) > $2
         ORDER BY id, user_id
           FOR NO KEY UPDATE) o
 WHERE n.id = o.id AND n.user_id = o.user_id
RETURNING n.id, o.energy, n.atp
