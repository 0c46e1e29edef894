-- apply_consciousness_decay for tenant $3: decay_apply.sql (read its notes on the energy, the
-- row locks and RETURNING) restricted to the tenant's nodes, a query of its own so that each
-- kept plan fits its case. Returns id, old and new energy.
UPDATE fractality.nodes n
   SET atp = greatest(o.energy * $1, $2), atp_at = o.at
  FROM (SELECT id, user_id, fractality.current_atp(atp, atp_at, now()) AS energy,
               greatest(atp_at, now()) AS at
          FROM fractality.nodes
         WHERE user_id = $3
           AND atp > $2
           AND $1 < 1
           AND fractality.current_atp(atp, atp_at, now()) > $2
         ORDER BY id
           FOR NO KEY UPDATE) o
 WHERE n.id = o.id AND n.user_id = o.user_id
RETURNING n.id, o.energy, n.atp
