-- A new replay buffer (name, alpha, beta, epsilon, capacity, event type, policy version); its id.
INSERT INTO fractality.replay_buffers (name, alpha, beta, epsilon, capacity, event_type, policy_version)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING buffer_id
