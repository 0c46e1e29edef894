-- A replay buffer by name ($1) or id ($2), with its settings and counters.
SELECT b.buffer_id, b.name, b.alpha, b.beta, b.epsilon, b.capacity, b.max_priority,
       b.next_seq, b.size, b.levels, b.pending
  FROM fractality.replay_buffers b
 WHERE b.name = $1 OR b.buffer_id = $2
