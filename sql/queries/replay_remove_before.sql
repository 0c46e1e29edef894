-- Events older than $1 (archived or dropped) leave every buffer: the blocks holding only such
-- events deleted: buffer, block and how many items it held.
DELETE FROM fractality.replay_blocks b WHERE b.span << int8range($1, NULL)
RETURNING b.buffer_id, b.block, b.filled
