-- create_replay_buffer with backfill: the writers of events first (SHARE waits for those in
-- flight and holds off new ones until the buffer is committed), so that an event is either read
-- by the backfill or written after the buffer exists, and entered by its trigger.
LOCK TABLE fractality.experience_events IN SHARE MODE
