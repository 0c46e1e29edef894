-- ---- event ids unique whatever their timestamps ------------------------------------------------
-- Every id written so far is registered (hot and cold tiers; the header has refused ids stored
-- twice). The update reads every event once here: about a second per million events.

--@ file experience.sql -- Every event id written, hot or archived||CREATE TABLE fractality.action_metadata (
INSERT INTO fractality.experience_event_ids (event_id, "timestamp")
SELECT e.event_id, e."timestamp" FROM fractality.experience_events e
UNION ALL
SELECT a.event_id, a."timestamp" FROM fractality.experience_events_archive a;


--@ file archive.sql -- A DELETE from the cold tier (an erasure, by hand)||-- ---- helpers

-- ---- the latest timestamp an event may have --------------------------------------------------
-- bigint's largest value is refused (as writes now refuse it): readers' ranges end before their
-- bound, and a replay block's inclusive int8range of timestamps cannot end there. An event stored
-- there by 0.4.0 has stopped the update before anything changed (the header).
ALTER TABLE fractality.experience_events
    DROP CONSTRAINT experience_events_timestamp_range,
    ADD CONSTRAINT experience_events_timestamp_range CHECK ("timestamp" >= 0 AND "timestamp" < 9223372036854775807);
ALTER TABLE fractality.experience_events_archive
    DROP CONSTRAINT experience_events_timestamp_range,
    ADD CONSTRAINT experience_events_timestamp_range CHECK ("timestamp" >= 0 AND "timestamp" < 9223372036854775807);
