-- materialize_decay, one batch the way that never waits: the same rows as
-- decay_materialize_plain.sql ($1: now, blocks [$2, $3)), locked first with SKIP LOCKED, so rows
-- a concurrent transaction holds are left out (for the next run).
UPDATE fractality.nodes n
   SET atp = fractality.current_atp(n.atp, n.atp_at, $1), atp_at = $1
  FROM (SELECT ctid
          FROM fractality.nodes
         WHERE ctid >= pg_catalog.format('(%s,0)', $2::bigint)::tid
           AND ctid <  pg_catalog.format('(%s,0)', $3::bigint)::tid
           AND atp_at < $1
           AND fractality.current_atp(atp, atp_at, $1) <> atp
           FOR NO KEY UPDATE SKIP LOCKED) b
 WHERE n.ctid = b.ctid
   AND n.ctid >= pg_catalog.format('(%s,0)', $2::bigint)::tid
   AND n.ctid <  pg_catalog.format('(%s,0)', $3::bigint)::tid
