-- The priorities written back to buffer $1 and not yet folded, in the order they were written:
-- slots, the priority the tree holds for each, the one it gets.
SELECT p.slots, p.olds, p.priorities
  FROM fractality.replay_pending p
 WHERE p.buffer_id = $1
 ORDER BY p.seq
