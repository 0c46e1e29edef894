-- Events ($1: ids, $2: their timestamps) leave every buffer: the items removed (buffer, slot).
DELETE FROM fractality.replay_items i
 USING unnest($1::bytea[], $2::bigint[]) e(event_id, ts)
 WHERE i.event_id = e.event_id AND i.event_timestamp = e.ts
RETURNING i.buffer_id, i.slot
