-- ---- event ids unique whatever their timestamps ------------------------------------------------
-- Every id written so far is registered (hot and cold tiers; an id stored twice, which 0.4.0 let
-- through with other timestamps or from concurrent writers, once). The update reads every event
-- once: about a second per million events.

--@ file experience.sql -- Every event id written, hot or archived||CREATE TABLE fractality.action_metadata (
INSERT INTO fractality.experience_event_ids (event_id, "timestamp")
SELECT e.event_id, e."timestamp" FROM fractality.experience_events e
UNION ALL
SELECT a.event_id, a."timestamp" FROM fractality.experience_events_archive a
ON CONFLICT (event_id) DO NOTHING;
