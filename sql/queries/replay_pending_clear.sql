-- Buffer $1's pending priorities, once folded into its items and tree.
DELETE FROM fractality.replay_pending WHERE buffer_id = $1
