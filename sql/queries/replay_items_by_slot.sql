-- Items of buffer $1 in slots $2: slot, event timestamp, event id, priority (each slot read at
-- its offset in its block of replay_blocks; empty slots left out).
SELECT s.slot, b.timestamps[s.slot % 120 + 1], substring(b.event_ids FROM (s.slot % 120)::integer * 16 + 1 FOR 16),
       b.priorities[s.slot % 120 + 1]
  FROM (SELECT DISTINCT pg_catalog.unnest($2::bigint[]) AS slot) s
  JOIN fractality.replay_blocks b ON b.buffer_id = $1 AND b.block = s.slot / 120
 WHERE b.timestamps[s.slot % 120 + 1] >= 0
