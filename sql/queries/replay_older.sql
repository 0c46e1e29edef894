-- The slots of every buffer holding events older than $1 (in blocks that hold newer ones too):
-- buffer and slot.
SELECT b.buffer_id, b.block * 120 + u.k - 1
  FROM fractality.replay_blocks b, pg_catalog.unnest(b.timestamps) WITH ORDINALITY u(ts, k)
 WHERE b.span && int8range(NULL, $1) AND u.ts >= 0 AND u.ts < $1
