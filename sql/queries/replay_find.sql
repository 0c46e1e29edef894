-- The items of events $2 in buffer $1, found through each event's timestamp in the event-id
-- registry, in the block that starts last at or before it (where an event is when experience
-- arrives in time order): event id, slot and the priority the tree holds. An id missing from the
-- answer is not stored, or is in another block (replay_registered.sql, then
-- replay_find_in_spans.sql).
SELECT r.event_id, b.block * 120 + k.k - 1, b.priorities[k.k]
  FROM fractality.experience_event_ids r
 CROSS JOIN LATERAL (
        SELECT s.block, s.timestamps, s.event_ids, s.priorities FROM fractality.replay_blocks s
         WHERE s.buffer_id = $1 AND lower(s.span) <= r."timestamp"
         ORDER BY lower(s.span) DESC
         LIMIT 1) b
 CROSS JOIN LATERAL pg_catalog.unnest(pg_catalog.array_positions(b.timestamps, r."timestamp")) k(k)
 WHERE r.event_id = ANY($2::bytea[])
   AND substring(b.event_ids FROM (k.k - 1) * 16 + 1 FOR 16) = r.event_id
