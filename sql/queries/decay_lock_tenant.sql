-- apply_consciousness_decay for tenant $3, its first statement: decay_lock.sql (read its notes
-- on the locks and why they are a statement of their own) restricted to the tenant's nodes, a
-- query of its own so that each kept plan fits its case. Returns the row's place (ctid) and its
-- energy now.
SELECT ctid::text, fractality.current_atp(atp, atp_at, now()) AS energy
  FROM fractality.nodes
 WHERE user_id = $3
   AND atp > $2
   AND $1 < 1
   AND fractality.current_atp(atp, atp_at, now()) > $2
 ORDER BY id
   FOR NO KEY UPDATE
