-- Every replay buffer locked, in one order, before items are taken out of them (writers and
-- learners lock their buffer first too: no deadlock).
SELECT b.buffer_id FROM fractality.replay_buffers b ORDER BY b.buffer_id FOR UPDATE
