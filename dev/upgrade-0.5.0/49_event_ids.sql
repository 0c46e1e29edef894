-- ---- event ids unique whatever their timestamps ------------------------------------------------
-- Every id written so far is registered (hot and cold tiers). The update reads every event
-- twice: about two seconds per million events.

--@ file experience.sql -- Every event id written, hot or archived||CREATE TABLE fractality.action_metadata (
INSERT INTO fractality.experience_event_ids (event_id, "timestamp")
SELECT e.event_id, e."timestamp" FROM fractality.experience_events e
UNION ALL
SELECT a.event_id, a."timestamp" FROM fractality.experience_events_archive a
ON CONFLICT (event_id) DO NOTHING;

-- an id that 0.4.0 stored more than once (at other timestamps, or from concurrent writers) stops
-- the update, which then changes nothing: 0.5.0 writes an id once, and registering one of the
-- copies would leave the others outside the rule (the replay buffers find an item through it)
DO $$
DECLARE
    extra bigint;
    sample bytea;
BEGIN
    SELECT (SELECT count(*) FROM fractality.experience_events)
         + (SELECT count(*) FROM fractality.experience_events_archive)
         - (SELECT count(*) FROM fractality.experience_event_ids) INTO extra;
    IF extra > 0 THEN
        SELECT d.event_id INTO sample
          FROM (SELECT e.event_id FROM fractality.experience_events e
                UNION ALL
                SELECT a.event_id FROM fractality.experience_events_archive a) d
         GROUP BY d.event_id HAVING count(*) > 1
         LIMIT 1;
        RAISE unique_violation USING
            MESSAGE = format('%s stored events repeat the id of another (such as %s), which 0.5.0 refuses: an event id is written once',
                             extra, encode(sample, 'hex')),
            HINT = 'Group both tiers (experience_events, experience_events_archive) by event_id to find them (docs/UPGRADES.md has the query), delete all but one of each, then update again.';
    END IF;
END $$;

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
