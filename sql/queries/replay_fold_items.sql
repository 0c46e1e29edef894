-- A fold: the items of buffer $1 in slots $2 get the priorities $3.
UPDATE fractality.replay_items i
   SET priority = u.priority
  FROM unnest($2::bigint[], $3::float8[]) u(slot, priority)
 WHERE i.buffer_id = $1 AND i.slot = u.slot
