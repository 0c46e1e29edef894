-- A new replay buffer (name, alpha, beta, epsilon, capacity, event type, policy version); its id,
-- or no row when the name is taken (a concurrent creator's commit is waited for).
INSERT INTO fractality.replay_buffers (name, alpha, beta, epsilon, capacity, event_type, policy_version)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name) DO NOTHING
RETURNING buffer_id
