-- apply_consciousness_decay, its second statement: the rows decay_lock.sql (or
-- decay_lock_tenant.sql) locked, by their places $3 (ctid, as text: the versions locked, which
-- only this transaction can change now, so the places hold), each keeping $1 of its energy now,
-- never below $2, written as of now (atp_at = now(), as materialize_decay writes it; a row
-- another session wrote after this transaction began keeps its later atp_at, and its energy as
-- of then, which current_atp gives for an atp_at after now(): the time between is not decayed
-- twice). The rows are this transaction's since the first statement, and this statement's
-- snapshot sees them as locked, so the energy decayed here is the one the first statement read
-- (PostgreSQL 15's RETURNING sees only the new row: the caller takes the old value from there).
-- A TID scan: no index probe per row. Returns id and new energy.
UPDATE fractality.nodes n
   SET atp = greatest(fractality.current_atp(n.atp, n.atp_at, now()) * $1, $2),
       atp_at = greatest(n.atp_at, now())
 WHERE n.ctid = ANY ($3::text[]::pg_catalog.tid[])
RETURNING n.id, n.atp
