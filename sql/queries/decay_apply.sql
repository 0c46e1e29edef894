-- apply_consciousness_decay, its second statement: the nodes decay_lock.sql (or
-- decay_lock_tenant.sql) locked, $3 ids, $4 their tenants, $5 their energy now, each keeping $1
-- of that energy, never below $2, written as of now (atp_at = now(), as materialize_decay writes
-- it; a row another session wrote after this transaction began keeps its later atp_at, and its
-- energy as of then, which current_atp gives for an atp_at after now(): the time between is not
-- decayed twice). The rows are this transaction's since the first statement, so the energy
-- reported old is exactly the one decayed (PostgreSQL 15's RETURNING sees only the new row: the
-- old value comes from the first statement). Returns id, old and new energy.
UPDATE fractality.nodes n
   SET atp = greatest(l.energy * $1, $2), atp_at = greatest(n.atp_at, now())
  FROM ROWS FROM (pg_catalog.unnest($3::uuid[]), pg_catalog.unnest($4::uuid[]),
                 pg_catalog.unnest($5::float8[])) AS l (id, user_id, energy)
 WHERE n.id = l.id AND n.user_id = l.user_id
RETURNING n.id, l.energy, n.atp
