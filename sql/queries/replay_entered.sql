-- A replay buffer's counters ($1: buffer, $2: next sequence number, $3: size, $4: tree levels,
-- $5: the largest priority so far).
UPDATE fractality.replay_buffers
   SET next_seq = $2, size = $3, levels = $4, max_priority = $5
 WHERE buffer_id = $1
