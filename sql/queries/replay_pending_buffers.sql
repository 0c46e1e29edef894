-- The buffers with priorities pending.
SELECT DISTINCT p.buffer_id FROM fractality.replay_pending p ORDER BY 1
