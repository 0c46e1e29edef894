-- ---- pg_dump: monthly partitions are ordinary tables, each with its own index ----------------
-- 0.4.0's install script made the first monthly partitions, so they were members of the
-- extension (pg_dump skipped them, rows and all), and the parents declared the indexes (which
-- pg_restore then met twice). From 0.5.0 the parents declare none: every partition has its own
-- index (built here for the partitions there are: a BRIN per event partition is quick, a
-- (node_id, time) btree per stream partition takes about as long as the parent's took), and
-- monthly partitions leave the extension.

--@ file! bootstrap.sql -- Gives a partition of consciousness_streams or of experience_events(_archive), or a table about||-- Creates the monthly partition of `parent` (consciousness_streams, ranged on timestamptz, or
--@ file! bootstrap.sql -- Creates the monthly partition of `parent` (consciousness_streams, ranged on timestamptz, or||COMMENT ON FUNCTION fractality._create_month_partition
--@ file! archive.sql -- A fresh table shaped like `parent`||-- ---- events
--@ file! archive.sql -- A new table of fractality's event columns holding the rows of `src` in [lo, hi), made with||-- Moves every event with "timestamp" < cutoff_us
--@ file! archive.sql -- Creates the monthly partition of `parent` holding `month` unless a partition of that name||-- Creates the monthly partitions of consciousness_streams and experience_events from the current

-- the tables without a primary key replicate with the whole row as identity (experience.sql);
-- their partitions get it from _index_partition below
ALTER TABLE fractality.consciousness_streams REPLICA IDENTITY FULL;
ALTER TABLE fractality.experience_events REPLICA IDENTITY FULL;
ALTER TABLE fractality.experience_events_archive REPLICA IDENTITY FULL;
ALTER TABLE fractality.policy_reward_inbox REPLICA IDENTITY FULL;

DROP INDEX fractality.consciousness_streams_node_time;
DROP INDEX fractality.experience_events_time;
DROP INDEX fractality.experience_events_archive_time;

DO $$
DECLARE
    r record;
    ext oid := (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'fractality');
BEGIN
    FOR r IN SELECT i.inhrelid::regclass AS part, c.relname
               FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent IN ('fractality.consciousness_streams'::regclass,
                                    'fractality.experience_events'::regclass,
                                    'fractality.experience_events_archive'::regclass)
              ORDER BY c.relname
    LOOP
        PERFORM fractality._index_partition(r.part);
        IF r.relname !~ '_default$' AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_depend d
                WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = r.part
                  AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext
                  AND d.deptype = 'e') THEN
            EXECUTE format('ALTER EXTENSION fractality DROP TABLE %s', r.part);
        END IF;
    END LOOP;
END
$$;

-- action_metadata's reference to its event: checked at commit (a restore in one transaction
-- loads the metadata before the events)
--@ file! experience.sql CREATE FUNCTION fractality.action_metadata_check_event() RETURNS trigger||-- Checked at commit
DROP TRIGGER action_metadata_event ON fractality.action_metadata;
--@ file experience.sql CREATE CONSTRAINT TRIGGER action_metadata_event||-- The metadata of deleted events goes with them
-- partition bounds read and written in ISO form and UTC, whatever the session's settings
--@ file! archive.sql -- The partitions of a range-partitioned table of fractality with their bounds as text (NULL for||-- Drops a partition (detached or not).
