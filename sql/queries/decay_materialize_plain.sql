-- materialize_decay, one batch the fast way: the nodes in blocks [$2, $3) whose decayed value
-- differs from the stored one, written back with atp_at = $1 (the transaction's now()) by a
-- plain UPDATE (run with a short lock_timeout).
UPDATE fractality.nodes n
   SET atp = fractality.current_atp(n.atp, n.atp_at, $1), atp_at = $1
 WHERE n.ctid >= pg_catalog.format('(%s,0)', $2::bigint)::tid
   AND n.ctid <  pg_catalog.format('(%s,0)', $3::bigint)::tid
   AND n.atp_at < $1
   AND fractality.current_atp(n.atp, n.atp_at, $1) <> n.atp
