-- fractality: upgrade from 0.4.0 to 0.5.0
-- Run by ALTER EXTENSION fractality UPDATE (TO '0.5.0'), after the earlier upgrade scripts when
-- coming from an older version. tests/client/tests/upgrade.rs updates 0.1.0 to 0.4.0 installs
-- (their scripts kept in tests/upgrade/) and compares each with a fresh install.

-- ---- partitions: rows the default partitions caught move into monthly partitions ------------

-- Creates the monthly partitions of consciousness_streams and experience_events from the current
-- month (UTC) to `ahead` months after it, and those of any other month whose rows the default
-- partitions caught (history imported after install, events from the future), moving the rows
-- into them as pg_partman's partition_data does; so that archiving and retention move whole
-- partitions whatever the date. The one exception: events of a month the cold tier already
-- holds (late events of an archived month) stay in the default partition, and the next archiving
-- run moves them into the cold tier. Returns how many partitions it created.
CREATE OR REPLACE FUNCTION fractality.ensure_partitions(ahead integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    m date;
    created integer := 0;
BEGIN
    IF ahead IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = 'ahead must not be NULL',
            HINT = 'Pass the number of months ahead to create, e.g. 3.';
    END IF;
    IF ahead < 0 OR ahead > 120 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for ahead: %s', ahead),
            HINT = 'ahead is a number of months in [0, 120].';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('fractality.partitions', 0));
    -- the parents first (before their default partitions are read): the archivers lock them so
    LOCK TABLE fractality.consciousness_streams, fractality.experience_events IN ACCESS SHARE MODE;
    FOR m IN SELECT (this_month + make_interval(months => g))::date FROM generate_series(0, ahead) g
             UNION
             SELECT DISTINCT date_trunc('month', s.time AT TIME ZONE 'UTC')::date
               FROM fractality.consciousness_streams_default s
              WHERE s.time >= '0001-01-01 00:00+00' AND s.time < '9999-12-01 00:00+00'
             ORDER BY 1
    LOOP
        created := created + fractality.ensure_month_partition('fractality.consciousness_streams', m)::integer;
    END LOOP;
    FOR m IN SELECT (this_month + make_interval(months => g))::date FROM generate_series(0, ahead) g
             UNION
             SELECT DISTINCT date_trunc('month', fractality.us_to_timestamptz(e."timestamp") AT TIME ZONE 'UTC')::date
               FROM fractality.experience_events_default e
              WHERE e."timestamp" < 253399622400000000  -- 9999-12-01: the names have four-digit years
             ORDER BY 1
    LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM fractality.partition_bounds('fractality.experience_events_archive') a
             WHERE a.lo IS NOT NULL
               AND a.lo::bigint < fractality.epoch_us((m + interval '1 month')::timestamp AT TIME ZONE 'UTC')
               AND a.hi::bigint > fractality.epoch_us(m::timestamp AT TIME ZONE 'UTC'));
        created := created + fractality.ensure_month_partition('fractality.experience_events', m)::integer;
    END LOOP;
    RETURN created;
END $$;

