-- apply_consciousness_decay over every tenant, its first statement: every node whose energy now
-- (the lazy decay's current_atp at the transaction's now()) is above the floor $2, locked in id
-- order, as every writer of several nodes locks them (recall's reinforcement, remember_many: so
-- that two of them never wait for each other), FOR NO KEY UPDATE, which under READ COMMITTED
-- returns the latest committed version of a row a concurrent transaction changed, re-checked
-- against the WHERE and its energy computed from it. The stored atp is at least the energy now,
-- so it is tested first. Returns the row's place (ctid: the version locked, the latest) and its
-- energy now; decay_apply.sql then writes them.
-- Two statements, not one: an UPDATE's own scan reads the rows as of its statement's start, and
-- for a row changed since then it follows the row's newer versions again, taking the old
-- version's tuple lock, which a session waiting for this one may hold (40P01 in about 0.4 % of
-- the transactions of ticks, reinforcing recalls and links on six nodes by four sessions). After
-- this statement every row it returns is this transaction's, and the next statement's snapshot
-- sees its latest version.
SELECT ctid::text, fractality.current_atp(atp, atp_at, now()) AS energy
  FROM fractality.nodes
 WHERE atp > $2
   AND $1 < 1
   AND fractality.current_atp(atp, atp_at, now()) > $2
 ORDER BY id, user_id
   FOR NO KEY UPDATE
