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

--@ file archive.sql -- A DELETE from the cold tier (an erasure, by hand)||-- ---- helpers

-- ---- the latest timestamp an event may have --------------------------------------------------
-- bigint's largest value is refused (as writes now refuse it): readers' ranges end before their
-- bound, and a replay block's inclusive int8range of timestamps cannot end there. An event stored
-- there by 0.4.0 stops the update, which then changes nothing.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM fractality.experience_events WHERE "timestamp" = 9223372036854775807
               UNION ALL
               SELECT 1 FROM fractality.experience_events_archive WHERE "timestamp" = 9223372036854775807) THEN
        RAISE check_violation USING
            MESSAGE = 'an event has timestamp 9223372036854775807, which 0.5.0 refuses',
            HINT = 'Move it to 9223372036854775806 or delete it, then update again.';
    END IF;
END $$;
ALTER TABLE fractality.experience_events
    DROP CONSTRAINT experience_events_timestamp_range,
    ADD CONSTRAINT experience_events_timestamp_range CHECK ("timestamp" >= 0 AND "timestamp" < 9223372036854775807);
ALTER TABLE fractality.experience_events_archive
    DROP CONSTRAINT experience_events_timestamp_range,
    ADD CONSTRAINT experience_events_timestamp_range CHECK ("timestamp" >= 0 AND "timestamp" < 9223372036854775807);
