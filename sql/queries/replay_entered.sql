-- A replay buffer's counters ($1: buffer, $2: next sequence number, $3: size, $4: tree levels,
-- $5: the largest priority so far, $6: priorities written back since the last fold).
UPDATE fractality.replay_buffers
   SET next_seq = $2, size = $3, levels = $4, max_priority = $5, pending = $6
 WHERE buffer_id = $1
