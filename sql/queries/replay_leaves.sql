-- The items of buffer $1 in leaf blocks $2 ($3 slots a block): slot and priority.
SELECT i.slot, i.priority
  FROM unnest($2::bigint[]) b(block)
  JOIN fractality.replay_items i
    ON i.buffer_id = $1 AND i.slot >= b.block * $3 AND i.slot < (b.block + 1) * $3
