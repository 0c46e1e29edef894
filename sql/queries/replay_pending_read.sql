-- The priorities written back to buffer $1 and not yet folded, in the order they were written:
-- each write's table (its OID) and number, and for the writes after number $2 (every one with
-- -1; a sampler holds the earlier ones, src/replay/pending.rs, Seen) its slots, the priority the
-- tree holds for each, the one it gets.
SELECT p.tableoid::bigint, p.seq,
       CASE WHEN p.seq > $2 THEN p.slots END,
       CASE WHEN p.seq > $2 THEN p.olds END,
       CASE WHEN p.seq > $2 THEN p.priorities END
  FROM fractality.replay_pending p
 WHERE p.buffer_id = $1
 ORDER BY p.seq
