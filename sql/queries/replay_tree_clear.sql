-- _replay_rebuild: every block of replay buffer $1's sum tree deleted, before the tree is built anew
-- from its items.
DELETE FROM fractality.replay_tree WHERE buffer_id = $1
