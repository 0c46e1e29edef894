-- update_priorities: the priorities $4 of buffer $1's slots $2 (the tree holds $3 for them)
-- appended, to be folded into the items and the tree later.
INSERT INTO fractality.replay_pending (buffer_id, slots, olds, priorities)
VALUES ($1, $2, $3, $4)
