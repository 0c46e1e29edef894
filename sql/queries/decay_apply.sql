-- apply_consciousness_decay, its second statement: the rows decay_lock.sql (or
-- decay_lock_tenant.sql) locked, by their places $1 (ctid, as text: the versions locked, which
-- only this transaction can change now, so the places hold), each given its new energy $2 (its
-- energy now, which the first statement read, times the rate, never below the floor: computed
-- natively, where a product too small for a double is 0, not SQL's 22003 "underflow", which a
-- node of energy 5e-324 made every tick raise), written as of now (atp_at = now(), as
-- materialize_decay writes it; a row another session wrote after this transaction began keeps
-- its later atp_at, and its energy as of then, which current_atp gives for an atp_at after now():
-- the time between is not decayed twice). The rows are this transaction's since the first
-- statement, and this statement's snapshot sees them as locked. A TID scan per place, the places
-- sorted into the table's order: no index probe per row. Returns id, new energy and
-- the old one $3 (by place: a node's id is its tenant's, and two tenants' nodes may share one).
UPDATE fractality.nodes n
   SET atp = u.atp,
       atp_at = greatest(n.atp_at, now())
  FROM (SELECT u.place, u.atp, u.old
          FROM unnest($1::text[]::pg_catalog.tid[], $2::float8[], $3::float8[]) AS u (place, atp, old)
         ORDER BY u.place) u
 WHERE n.ctid = u.place
RETURNING n.id, n.atp, u.old
