-- fractality: archiving and retention
-- The cold tier of experience events (experience_events_archive, action_metadata_archive), moving
-- events and stream points into it, partitions ahead, retention policies and run_maintenance().
--
-- Events: hot and cold are two partitioned tables of the same row type, with disjoint time ranges
-- (plus a default partition each). A hot partition that lies wholly before the cutoff moves with
-- DETACH PARTITION + ATTACH PARTITION: its rows are not rewritten, and since every hot partition
-- carries its bound as a CHECK constraint (partition_bound, see _create_month_partition), ATTACH
-- does not even scan them. The partition that straddles the cutoff is split by moving rows: the
-- recent ones into a new hot partition when most are old, else the old ones into the cold
-- partition of the same range (see _archive_events_before).
-- Stream points are packed per node (consciousness_archive) instead: there the per-row overhead
-- and the index dominate, and a packed row holds up to 1000 points.
--
-- Every step runs in the caller's transaction: an error, a cancel or a crash half way leaves
-- every event and every point exactly once, in the hot or the cold tier. Archivers of one kind
-- are serialised by a lock of the owner's (fractality._lock, bootstrap.sql), held until the
-- transaction ends. The DDL steps need the owner of the
-- tables (the administrator, or the pg_cron job of the administrator).

-- ---- the cold tier of events ------------------------------------------------------------------

CREATE TABLE fractality.experience_events_archive (
    LIKE fractality.experience_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE
) PARTITION BY RANGE ("timestamp");

COMMENT ON TABLE fractality.experience_events_archive IS
    'Cold tier of experience_events: the same rows, moved by fractality.archive_old_events; read with query_events(..., include_archived => true).';

-- rows whose time range no archive partition covers (late events of archived months)
CREATE TABLE fractality.experience_events_archive_default
    PARTITION OF fractality.experience_events_archive DEFAULT;

-- each partition has its own indexes, as in the hot tier (an attached partition brings its
-- own; none is declared on the parent, see streams.sql: pg_dump)
CREATE INDEX experience_events_archive_default_time ON fractality.experience_events_archive_default
    USING brin ("timestamp") WITH (pages_per_range = 32);
CREATE INDEX experience_events_archive_default_event_id ON fractality.experience_events_archive_default
    USING hash (event_id);
-- no primary key: the whole row is its identity for logical replication (experience.sql)
ALTER TABLE fractality.experience_events_archive REPLICA IDENTITY FULL;
ALTER TABLE fractality.experience_events_archive_default REPLICA IDENTITY FULL;

CREATE TABLE fractality.action_metadata_archive (
    LIKE fractality.action_metadata INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE,
    CONSTRAINT action_metadata_archive_pkey PRIMARY KEY (event_id)
);

COMMENT ON TABLE fractality.action_metadata_archive IS
    'Cold tier of action_metadata: the metadata of archived events.';

CREATE INDEX action_metadata_archive_event_ref
    ON fractality.action_metadata_archive (event_timestamp, event_id);

-- A DELETE from the cold tier (an erasure, by hand) or its TRUNCATE takes the events' metadata
-- with them and frees their ids, as in the hot tier (experience.sql). The archivers move rows
-- between partitions by name, which fires none of these.
CREATE TRIGGER experience_events_archive_ids_deleted
    AFTER DELETE ON fractality.experience_events_archive
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._experience_events_unregister();

CREATE TRIGGER experience_events_archive_ids_truncated
    AFTER TRUNCATE ON fractality.experience_events_archive
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._experience_events_unregister();

CREATE TRIGGER experience_events_archive_cascade_delete
    AFTER DELETE ON fractality.experience_events_archive
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality.experience_events_cascade_delete();

CREATE TRIGGER experience_events_archive_cascade_truncate
    AFTER TRUNCATE ON fractality.experience_events_archive
    FOR EACH STATEMENT EXECUTE FUNCTION fractality.experience_events_cascade_truncate();

-- ---- helpers ------------------------------------------------------------------------------------

-- A microsecond count since the Unix epoch as a timestamptz, exactly: whole days and the
-- microseconds left, each exact as a float8 factor (the count itself is not beyond 2^53, after
-- June 2255), added to the epoch as a timestamp without zone (no daylight saving in between).
-- Operators named with their schema, as in epoch_us.
CREATE FUNCTION fractality._us_to_timestamptz(us bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ((timestamp '1970-01-01'
               OPERATOR(pg_catalog.+) ((us OPERATOR(pg_catalog./) 86400000000::bigint)::float8
                                       OPERATOR(pg_catalog.*) interval '1 day'))
              OPERATOR(pg_catalog.+) ((us OPERATOR(pg_catalog.%) 86400000000::bigint)::float8
                                      OPERATOR(pg_catalog.*) interval '1 microsecond'))
             AT TIME ZONE 'UTC' $$;

-- The partitions of a range-partitioned table of fractality with their bounds as text (NULL for
-- the default partition); a timestamptz bound in ISO form and UTC, whatever the session's
-- DateStyle and TimeZone (an abbreviation such as IST, read back, may name another zone). Its
-- pattern has no backslash, so it reads the same under standard_conforming_strings = off.
CREATE FUNCTION fractality._partition_bounds(parent regclass)
RETURNS TABLE (part regclass, lo text, hi text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET timezone = 'UTC'
AS $$
    SELECT c.oid::regclass, b[1], b[2]
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     '^FOR VALUES FROM [(]''?([^'')]*)''?[)] TO [(]''?([^'')]*)''?[)]$') b ON true
     WHERE i.inhparent = parent
$$;

-- Drops a partition (detached or not). The partitions made while the extension was created are
-- members of it; they leave it first, since PostgreSQL refuses to drop a member on its own.
CREATE FUNCTION fractality._drop_partition(part regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = part AND d.deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION fractality DROP TABLE %s', part);
    END IF;
    EXECUTE format('DROP TABLE %s', part);
END $$;

-- Name of the archive partition starting at lo: experience_events_archive_YYYY_MM for a month's
-- start, else with the day and time to the microsecond.
CREATE FUNCTION fractality._archive_partition_name(lo bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT 'experience_events_archive_'
           || CASE WHEN t = date_trunc('month', t) THEN to_char(t, 'YYYY_MM')
                   ELSE to_char(t, 'YYYY_MM_DD_HH24MISS_US') END
      FROM (SELECT fractality._us_to_timestamptz(lo) AT TIME ZONE 'UTC' AS t) s
$$;

-- A fresh table shaped like `parent` (columns, defaults, CHECK constraints) in schema fractality,
-- with the given bound as its partition_bound constraint; ready to be filled and attached.
CREATE FUNCTION fractality._new_event_table(name text, lo bigint, hi bigint) RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE TABLE fractality.%I (LIKE fractality.experience_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)', name);
    EXECUTE format('ALTER TABLE fractality.%I ADD CONSTRAINT partition_bound CHECK ("timestamp" >= %L AND "timestamp" < %L)',
                   name, lo, hi);
    PERFORM fractality._index_partition(format('fractality.%I', name)::regclass);
    RETURN format('fractality.%I', name)::regclass;
END $$;

-- Sets the partition_bound constraint of a detached event table (one scan of its rows).
CREATE FUNCTION fractality._set_event_bound(tbl regclass, lo bigint, hi bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS partition_bound, ADD CONSTRAINT partition_bound CHECK ("timestamp" >= %L AND "timestamp" < %L)',
                   tbl, lo, hi);
END $$;

-- Attaches a detached event table to the cold tier as [lo, hi), after taking in the rows of the
-- cold default partition that fall in that range (late events archived earlier), which ATTACH
-- would otherwise refuse. The table is renamed after its range first.
CREATE FUNCTION fractality._attach_to_archive(tbl regclass, lo bigint, hi bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := fractality._archive_partition_name(lo);
BEGIN
    EXECUTE format('WITH m AS (DELETE FROM fractality.experience_events_archive_default
                                WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING *)
                    INSERT INTO %s SELECT * FROM m', tbl) USING lo, hi;
    IF (SELECT c.relname FROM pg_class c WHERE c.oid = tbl) <> name THEN
        EXECUTE format('ALTER TABLE %s RENAME TO %I', tbl, name);
    END IF;
    PERFORM fractality._index_partition(tbl);
    EXECUTE format('ALTER TABLE fractality.experience_events_archive ATTACH PARTITION fractality.%I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
END $$;

-- The locks of a step that makes, moves or drops partitions of `targets` (consciousness_streams,
-- experience_events or both): ACCESS EXCLUSIVE on each, and for the streams SHARE ROW EXCLUSIVE on
-- nodes first (a stream partition's foreign key takes it; nodes before the streams, in the order
-- every writer of points takes them, pulse's and remember's statements included: no deadlock
-- with a forget, whose cascade waits for the streams), in the order nodes, streams, events. Taken
-- without queueing behind a long transaction: a lock request waiting in PostgreSQL's queue holds
-- up every session that asks after it, so an idle transaction that had read stream points, with
-- maintenance waiting behind it and holding nodes, stopped every tenant's writes, and deadlocked
-- (40P01) when it wrote a node. A try takes all of them or none: it waits at most 100 ms for the
-- first (twice as long at each try after, up to 1 s, so that writers that each hold it longer
-- than a short try do not keep every try out), takes the others only if they are free at once
-- (it never waits while holding one: a session that holds stream points or events and waits for
-- nodes behind it would be a deadlock, with that session, not maintenance, the one to fail, as a
-- load run found), and lets go of all of them when it misses one, then pauses 100 ms.
-- Tries go on for fractality.maintenance_lock_wait (10 s; 0: wait in the queue as long as it
-- takes), then 55P03. A caller that needs several tables takes them in one call: a try that
-- waited for one while holding another would hold up that one's writers.
CREATE FUNCTION fractality._lock_for_partitions(targets regclass[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    streams boolean := 'fractality.consciousness_streams'::regclass = ANY (targets);
    events boolean := 'fractality.experience_events'::regclass = ANY (targets);
    setting text := nullif(current_setting('fractality.maintenance_lock_wait', true), '');
    wait interval;
    deadline timestamptz;
    try_ms integer := 100;
    caller_timeout text := current_setting('lock_timeout');
BEGIN
    -- the setting as SHOW gives it ('10s'), or as set before the library that defines it is
    -- loaded: a bare number is milliseconds, as the setting reads it; unreadable or negative
    -- (which the library would refuse), the default
    BEGIN
        wait := CASE WHEN setting IS NULL THEN interval '10 s'
                     WHEN setting ~ '^[0-9]+(\.[0-9]*)?$' THEN make_interval(secs => setting::float8 / 1000)
                     ELSE setting::interval END;
    EXCEPTION WHEN OTHERS THEN
        wait := NULL;
    END;
    IF wait IS NULL OR wait < interval '0' THEN
        wait := interval '10 s';
    END IF;
    deadline := clock_timestamp() + wait;
    LOOP
        BEGIN
            -- with no wait set, one try in the queue under the caller's own lock_timeout
            IF wait > interval '0' THEN
                PERFORM set_config('lock_timeout', try_ms::text, true);
            END IF;
            -- the first table waits (up to the try); a table after it is taken only if it is
            -- free at once (NOWAIT): a try never waits while it holds a table, so no writer
            -- waiting behind what it holds can be what it waits for (a pulse of a transaction
            -- that had written stream points, or events, waits for nodes: 40P01)
            IF streams THEN
                LOCK TABLE fractality.nodes IN SHARE ROW EXCLUSIVE MODE;
                IF wait > interval '0' THEN
                    LOCK TABLE fractality.consciousness_streams IN ACCESS EXCLUSIVE MODE NOWAIT;
                ELSE
                    LOCK TABLE fractality.consciousness_streams IN ACCESS EXCLUSIVE MODE;
                END IF;
            END IF;
            IF events AND streams AND wait > interval '0' THEN
                LOCK TABLE fractality.experience_events IN ACCESS EXCLUSIVE MODE NOWAIT;
            ELSIF events THEN
                LOCK TABLE fractality.experience_events IN ACCESS EXCLUSIVE MODE;
            END IF;
            PERFORM set_config('lock_timeout', caller_timeout, true);
            RETURN;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            -- the try's locks went with it, and lock_timeout is the caller's again (a deadlock
            -- is seen here only where deadlock_timeout is below the try's wait: this try was
            -- the victim)
            IF wait = interval '0' THEN
                RAISE;
            END IF;
            IF clock_timestamp() >= deadline THEN
                RAISE lock_not_available USING
                    MESSAGE = format('could not lock %s for maintenance within %s',
                                     concat_ws(', ', CASE WHEN streams THEN 'fractality.nodes, fractality.consciousness_streams' END,
                                               CASE WHEN events THEN 'fractality.experience_events' END),
                                     wait),
                    HINT = 'A long transaction holds it (pg_stat_activity: idle in transaction; pg_locks): end it, or run the maintenance again later. fractality.maintenance_lock_wait sets how long to try.';
            END IF;
        END;
        PERFORM pg_sleep(0.1);
        try_ms := least(try_ms * 2, 1000);
    END LOOP;
END $$;

-- ---- events ------------------------------------------------------------------------------------

-- A new table of fractality's event columns holding the rows of `src` in [lo, hi), made with
-- CREATE TABLE AS (bulk, about twice as fast as INSERT ... SELECT), then given experience_events'
-- NOT NULLs, defaults and CHECK constraints and partition_bound [lo, hi) in one ALTER (one scan):
-- ready to be attached.
CREATE FUNCTION fractality._event_table_as(name text, src regclass, lo bigint, hi bigint) RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent regclass := 'fractality.experience_events'::regclass;
    alters text;
BEGIN
    EXECUTE format('CREATE TABLE fractality.%I AS SELECT * FROM %s WHERE "timestamp" >= %s AND "timestamp" < %s',
                   name, src, lo, hi);
    SELECT string_agg(x, ', ') INTO alters FROM (
        SELECT format('ALTER COLUMN %I SET NOT NULL', a.attname)
          FROM pg_attribute a
         WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
        UNION ALL
        SELECT format('ALTER COLUMN %I SET DEFAULT %s', a.attname, pg_get_expr(d.adbin, d.adrelid))
          FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE d.adrelid = parent
        UNION ALL
        SELECT format('ADD CONSTRAINT %I %s', c.conname, pg_get_constraintdef(c.oid))
          FROM pg_constraint c WHERE c.conrelid = parent AND c.contype = 'c'
        UNION ALL
        SELECT format('ADD CONSTRAINT partition_bound CHECK ("timestamp" >= %s AND "timestamp" < %s)', lo, hi)
    ) s(x);
    EXECUTE format('ALTER TABLE fractality.%I %s', name, alters);
    PERFORM fractality._index_partition(format('fractality.%I', name)::regclass);
    RETURN format('fractality.%I', name)::regclass;
END $$;

-- Moves every event with "timestamp" < cutoff_us (and its action_metadata) into the cold tier;
-- returns the number of events moved. archive_old_events and run_maintenance call it.
--
-- Per hot partition P = [lo, hi) that starts before the cutoff:
--   * no cold partition overlaps [lo, hi), and P lies wholly before the cutoff: P itself moves
--     (DETACH, ATTACH to the cold tier with the same bound; no row is read or written);
--   * no cold partition overlaps, P straddles the cutoff, and most of its rows are old: its recent
--     rows move into a new hot partition [cutoff, hi) (which takes P's name), and P moves whole;
--   * otherwise its old rows move row by row into the cold tier, where the cold partition of P's
--     range takes them (made, empty, with P's bound if there is none yet); so frequent runs move
--     each row once, into one cold partition a month. A wholly old P is then dropped.
-- The hot default partition's old rows move row by row too.
CREATE FUNCTION fractality._archive_events_before(cutoff_us bigint) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    p_lo bigint;
    p_hi bigint;
    n_old bigint;
    n_new bigint;
    moved bigint := 0;
    k bigint;
    hot_name text;
    side regclass;
    overlap boolean;
BEGIN
    IF cutoff_us IS NULL THEN
        RAISE null_value_not_allowed USING MESSAGE = 'cutoff_us must not be NULL';
    END IF;
    PERFORM fractality._check_read_committed('archiving events');
    PERFORM fractality._lock('archive_events');
    -- DETACH needs it anyway; taken first, so that no lock is ever upgraded half way. It also
    -- keeps writers out, so that a row move can be an INSERT ... SELECT and then a DELETE.
    PERFORM fractality._lock_for_partitions(ARRAY['fractality.experience_events'::regclass]);

    FOR r IN SELECT p.part, p.lo::bigint AS lo, p.hi::bigint AS hi
               FROM fractality._partition_bounds('fractality.experience_events') p
              WHERE p.lo IS NOT NULL AND p.lo::bigint < cutoff_us
              ORDER BY p.lo::bigint
    LOOP
        p_lo := r.lo;
        p_hi := r.hi;
        SELECT c.relname INTO hot_name FROM pg_class c WHERE c.oid = r.part;
        overlap := EXISTS (SELECT 1 FROM fractality._partition_bounds('fractality.experience_events_archive') a
                            WHERE a.lo IS NOT NULL AND a.lo::bigint < p_hi AND a.hi::bigint > p_lo);
        IF NOT overlap AND p_hi <= cutoff_us THEN
            -- wholly old: the partition itself moves, its rows stay where they lie
            EXECUTE format('SELECT count(*) FROM %s', r.part) INTO k;
            EXECUTE format('ALTER TABLE fractality.experience_events DETACH PARTITION %s', r.part);
            PERFORM fractality._set_event_bound(r.part, p_lo, p_hi)
              WHERE NOT EXISTS (SELECT 1 FROM pg_constraint
                                 WHERE conrelid = r.part AND conname = 'partition_bound');
            PERFORM fractality._attach_to_archive(r.part, p_lo, p_hi);
            moved := moved + k;
            CONTINUE;
        END IF;

        IF NOT overlap THEN
            EXECUTE format('SELECT count(*) FILTER (WHERE "timestamp" < $1), count(*) FILTER (WHERE "timestamp" >= $1) FROM %s',
                           r.part) INTO n_old, n_new USING cutoff_us;
            IF n_old = 0 THEN
                CONTINUE;
            END IF;
            IF n_new < n_old THEN
                -- straddles, mostly old: the recent rows move out, P goes cold whole
                side := fractality._event_table_as(left(hot_name, 50) || '_split', r.part, cutoff_us, p_hi);
                EXECUTE format('DELETE FROM %s WHERE "timestamp" >= $1', r.part) USING cutoff_us;
                EXECUTE format('ALTER TABLE fractality.experience_events DETACH PARTITION %s', r.part);
                PERFORM fractality._set_event_bound(r.part, p_lo, p_hi)
                  WHERE NOT EXISTS (SELECT 1 FROM pg_constraint
                                     WHERE conrelid = r.part AND conname = 'partition_bound');
                PERFORM fractality._attach_to_archive(r.part, p_lo, p_hi);
                EXECUTE format('ALTER TABLE %s RENAME TO %I', side, hot_name);
                PERFORM fractality._index_partition(side);
                EXECUTE format('ALTER TABLE fractality.experience_events ATTACH PARTITION fractality.%I FOR VALUES FROM (%L) TO (%L)',
                               hot_name, cutoff_us, p_hi);
                moved := moved + n_old;
                CONTINUE;
            END IF;
            -- straddles, mostly recent: a cold partition with P's bound takes the old rows
            side := fractality._new_event_table(left(hot_name, 50) || '_cold', p_lo, p_hi);
            PERFORM fractality._attach_to_archive(side, p_lo, p_hi);
        END IF;

        -- row by row (the cold tier routes them); writers are locked out meanwhile
        EXECUTE format('INSERT INTO fractality.experience_events_archive SELECT * FROM %s WHERE "timestamp" < $1',
                       r.part) USING cutoff_us;
        GET DIAGNOSTICS k = ROW_COUNT;
        EXECUTE format('DELETE FROM %s WHERE "timestamp" < $1', r.part) USING cutoff_us;
        moved := moved + k;
        IF p_hi <= cutoff_us THEN
            EXECUTE format('ALTER TABLE fractality.experience_events DETACH PARTITION %s', r.part);
            PERFORM fractality._drop_partition(r.part);
        END IF;
    END LOOP;

    -- old events the hot default partition caught: rows move (to their cold partition, or the
    -- cold default partition)
    INSERT INTO fractality.experience_events_archive
    SELECT * FROM fractality.experience_events_default WHERE "timestamp" < cutoff_us;
    GET DIAGNOSTICS k = ROW_COUNT;
    DELETE FROM fractality.experience_events_default WHERE "timestamp" < cutoff_us;
    moved := moved + k;

    -- and the metadata of every archived event. A row of the cold table under the same id can
    -- only be one written there by hand for no event (an id is written once, in either tier):
    -- the event's own metadata takes its place, rather than that row stopping every archiving
    -- run from then on (23505)
    INSERT INTO fractality.action_metadata_archive AS a
    SELECT * FROM fractality.action_metadata WHERE event_timestamp < cutoff_us
    ON CONFLICT (event_id) DO UPDATE
       SET event_timestamp = EXCLUDED.event_timestamp, intent_type = EXCLUDED.intent_type,
           executor_id = EXCLUDED.executor_id, parameters = EXCLUDED.parameters,
           created_at = EXCLUDED.created_at;
    DELETE FROM fractality.action_metadata WHERE event_timestamp < cutoff_us;
    -- archived events leave the replay buffers (the partitions moved without a DELETE)
    IF moved > 0 AND EXISTS (SELECT 1 FROM fractality.replay_buffers) THEN
        PERFORM fractality._replay_remove_before(cutoff_us);
    END IF;

    RETURN moved;
END $$;

-- The seed's function, done right: events older than days_threshold days leave the hot tier for
-- the cold tier (experience_events_archive), with their action_metadata. Returns how many moved;
-- a second run moves nothing. Ages count back from now in UTC (as the partitions are bounded),
-- so the same call moves the same rows whatever the caller's TimeZone.
CREATE FUNCTION fractality.archive_old_events(days_threshold integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $$
BEGIN
    IF days_threshold IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = 'days_threshold must not be NULL',
            HINT = 'Pass the age in days beyond which events are archived, e.g. 7.';
    END IF;
    IF days_threshold < 0 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for days_threshold: %s', days_threshold),
            HINT = 'days_threshold is a number of days >= 0.';
    END IF;
    PERFORM fractality._check_age('days_threshold', make_interval(days => days_threshold));
    RETURN fractality._archive_events_before(
        fractality.epoch_us(now() - make_interval(days => days_threshold)));
END $$;

-- Refuses (55000) a transaction above READ COMMITTED for `what`, a step that waits for the locks
-- of other sessions' writers and must then see what they wrote (moving, dropping or packing whole
-- partitions; changing a model's dimension): a snapshot older than the lock would not see the
-- rows written while it waited.
CREATE FUNCTION fractality._check_read_committed(what text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
        RAISE object_not_in_prerequisite_state USING
            MESSAGE = format('%s needs READ COMMITTED, not %s', what, current_setting('transaction_isolation')),
            HINT = 'Run it in a READ COMMITTED transaction (the default): it waits for other sessions'' writes and must then see them.';
    END IF;
END $$;

-- Deletes every event (and its metadata) with "timestamp" < cutoff_us from the hot tier; whole
-- partitions are dropped. Returns the number of events deleted. The 'drop' retention action.
CREATE FUNCTION fractality._drop_events_before(cutoff_us bigint) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    k bigint;
    gone bigint := 0;
BEGIN
    PERFORM fractality._check_read_committed('dropping events');
    PERFORM fractality._lock('archive_events');
    PERFORM fractality._lock_for_partitions(ARRAY['fractality.experience_events'::regclass]);
    DELETE FROM fractality.action_metadata WHERE event_timestamp < cutoff_us;
    FOR r IN SELECT p.part, p.lo::bigint AS lo, p.hi::bigint AS hi
               FROM fractality._partition_bounds('fractality.experience_events') p
              WHERE p.lo IS NULL OR p.lo::bigint < cutoff_us
    LOOP
        -- the dropped events' ids are free again (the archived ones stay registered)
        IF r.hi IS NOT NULL AND r.hi <= cutoff_us THEN
            EXECUTE format('WITH d AS (DELETE FROM fractality.experience_event_ids i USING %s p
                                        WHERE i.event_id = p.event_id AND i."timestamp" = p."timestamp")
                            SELECT count(*) FROM %s', r.part, r.part) INTO k;
            EXECUTE format('ALTER TABLE fractality.experience_events DETACH PARTITION %s', r.part);
            PERFORM fractality._drop_partition(r.part);
        ELSE
            EXECUTE format('WITH d AS (DELETE FROM %s WHERE "timestamp" < $1 RETURNING event_id, "timestamp"),
                                 i AS (DELETE FROM fractality.experience_event_ids i USING d
                                        WHERE i.event_id = d.event_id AND i."timestamp" = d."timestamp")
                            SELECT count(*) FROM d', r.part) INTO k USING cutoff_us;
        END IF;
        gone := gone + k;
    END LOOP;
    -- dropped events leave the replay buffers (the partitions dropped without a DELETE)
    IF gone > 0 AND EXISTS (SELECT 1 FROM fractality.replay_buffers) THEN
        PERFORM fractality._replay_remove_before(cutoff_us);
    END IF;
    RETURN gone;
END $$;

-- ---- streams -----------------------------------------------------------------------------------

-- Packs the stream rows that the query `src` yields (consciousness_streams' columns; $1 in it is
-- `cutoff`) into consciousness_archive: per node, up to 1000 points per row in time order, and
-- a row's resonance vectors of at most 4 000 000 elements in all but the first point's (each at
-- most 1 000 000, the table's check): written as text, 1 000 vectors of any size could pass the
-- 1 GB a value may hold, and every run would fail on them. Internal: the callers pass fixed SQL.
CREATE FUNCTION fractality._pack_stream_points(src text, cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3
AS $$
DECLARE
    k bigint;
BEGIN
    EXECUTE format($q$
        WITH src AS (%s),
        numbered AS (
            SELECT s.*, row_number() OVER w AS rn,
                   coalesce(sum(cardinality(s.resonance_vector)) OVER w, 0) AS elements
              FROM src s
            WINDOW w AS (PARTITION BY s.node_id, s.user_id ORDER BY s.time
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)),
        packed AS (
            INSERT INTO fractality.consciousness_archive
                (node_id, user_id, time_from, time_to, points, times, atp_levels, attention_scores,
                 resonance_vectors)
            SELECT node_id, user_id, min(time), max(time), count(*)::integer,
                   array_agg(time ORDER BY rn), array_agg(atp_level ORDER BY rn),
                   CASE WHEN bool_or(attention_score IS NOT NULL)
                        THEN array_agg(attention_score ORDER BY rn) END,
                   CASE WHEN bool_or(resonance_vector IS NOT NULL)
                        THEN array_agg(resonance_vector::text ORDER BY rn) END
              FROM numbered
             GROUP BY node_id, user_id, (rn - 1) / 1000, (elements - 1) / 4000000
            RETURNING points)
        SELECT coalesce(sum(points), 0) FROM packed $q$, src) INTO k USING cutoff;
    RETURN k;
END $$;

-- Moves every stream point with time < cutoff into consciousness_archive; returns how many.
-- The caller's row-level security holds: a tenant role moves its own points only. The owner
-- moves wholly old partitions by reading them once and dropping them.
CREATE FUNCTION fractality._archive_streams_before(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    moved bigint := 0;
    is_owner boolean;
BEGIN
    IF cutoff IS NULL THEN
        RAISE null_value_not_allowed USING MESSAGE = 'cutoff must not be NULL';
    END IF;
    PERFORM fractality._lock('archive_streams');
    SELECT NOT row_security_active(c.oid) AND pg_has_role(c.relowner, 'USAGE') INTO is_owner
      FROM pg_class c WHERE c.oid = 'fractality.consciousness_streams'::regclass;
    IF is_owner THEN
        -- a whole partition is packed from one read and then dropped: under a snapshot taken
        -- before the locks below, a point written meanwhile would be dropped unpacked
        PERFORM fractality._check_read_committed('archiving stream points as the owner');
    END IF;
    IF is_owner THEN
        -- nodes before the streams (see _lock_for_partitions): no deadlock with a forget, whose
        -- cascade waits for the streams while the packed rows' foreign key to nodes would wait
        -- for it. Readers of nodes are not held up: nothing below takes a stronger lock on nodes.
        PERFORM fractality._lock_for_partitions(ARRAY['fractality.consciousness_streams'::regclass]);
        FOR r IN SELECT p.part
                   FROM fractality._partition_bounds('fractality.consciousness_streams') p
                  WHERE p.hi IS NOT NULL AND p.hi::timestamptz <= cutoff
                  ORDER BY p.lo::timestamptz
        LOOP
            moved := moved + fractality._pack_stream_points(format('SELECT * FROM %s', r.part), cutoff);
            -- dropped attached: a detached partition's foreign key is its own, with triggers on
            -- nodes, and dropping them takes ACCESS EXCLUSIVE on nodes (every reader waits)
            PERFORM fractality._drop_partition(r.part);
        END LOOP;
    END IF;
    -- the rest: the straddling partition, the default one, and everything for a tenant role
    moved := moved + fractality._pack_stream_points(
        'DELETE FROM fractality.consciousness_streams WHERE time < $1 RETURNING *', cutoff);
    RETURN moved;
END $$;

-- Stream points older than `older_than` move into consciousness_archive, packed per node and
-- lossless. Returns how many points moved; a second run moves nothing. The age counts back from
-- now in UTC, whatever the caller's TimeZone (as archive_old_events).
CREATE FUNCTION fractality.archive_streams(older_than interval DEFAULT '3 months') RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
SET intervalstyle = 'postgres'
AS $$
BEGIN
    IF older_than IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = 'older_than must not be NULL',
            HINT = 'Pass the age beyond which stream points are archived, e.g. ''3 months''.';
    END IF;
    IF older_than < interval '0' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for older_than: %s', older_than),
            HINT = 'older_than is an interval >= 0, e.g. ''3 months''.';
    END IF;
    PERFORM fractality._check_age('older_than', older_than);
    RETURN fractality._archive_streams_before(now() - older_than);
END $$;

-- Deletes every stream point with time < cutoff (whole partitions are dropped by the owner).
CREATE FUNCTION fractality._drop_streams_before(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    k bigint;
    gone bigint := 0;
    is_owner boolean;
BEGIN
    PERFORM fractality._lock('archive_streams');
    SELECT NOT row_security_active(c.oid) AND pg_has_role(c.relowner, 'USAGE') INTO is_owner
      FROM pg_class c WHERE c.oid = 'fractality.consciousness_streams'::regclass;
    IF is_owner THEN
        -- nodes before the streams, as _archive_streams_before takes them
        PERFORM fractality._lock_for_partitions(ARRAY['fractality.consciousness_streams'::regclass]);
        FOR r IN SELECT p.part
                   FROM fractality._partition_bounds('fractality.consciousness_streams') p
                  WHERE p.hi IS NOT NULL AND p.hi::timestamptz <= cutoff
        LOOP
            EXECUTE format('SELECT count(*) FROM %s', r.part) INTO k;
            -- dropped attached, as _archive_streams_before drops one
            PERFORM fractality._drop_partition(r.part);
            gone := gone + k;
        END LOOP;
    END IF;
    DELETE FROM fractality.consciousness_streams WHERE time < cutoff;
    GET DIAGNOSTICS k = ROW_COUNT;
    RETURN gone + k;
END $$;

-- A node's stream points in [from, to), from the hot and the cold tier, in time order. Runs as
-- the caller: row-level security shows a tenant its own nodes' points only. With a tenant set
-- that has a node of the id, that node's (two tenants' nodes may share an id, and the owner sees
-- both).
CREATE FUNCTION fractality.stream_history(node uuid, "from" timestamptz, "to" timestamptz)
RETURNS TABLE ("time" timestamptz, atp_level float8, attention_score float8, resonance_vector real[],
               archived boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- the archive keeps vectors as text, whose NULL elements read back as NULL only with array_nulls
SET array_nulls = on
AS $$
DECLARE
    seen bigint;
    own uuid;
BEGIN
    IF node IS NULL OR "from" IS NULL OR "to" IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('stream_history: %s must not be NULL',
                             CASE WHEN node IS NULL THEN 'node' WHEN "from" IS NULL THEN 'from' ELSE 'to' END),
            HINT = 'Pass a node id and a time range [from, to); ''-infinity'' and ''infinity'' are allowed.';
    END IF;
    IF "from" > "to" THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid time range for stream_history: [%s, %s)', "from", "to"),
            HINT = 'Pass from <= to.';
    END IF;
    -- the nodes of the id the caller sees, and the session's tenant's among them
    SELECT count(*), (array_agg(n.user_id) FILTER (WHERE n.user_id = fractality.current_user_id()))[1]
      INTO seen, own
      FROM fractality.nodes n WHERE n.id = node;
    IF seen = 0 THEN
        RAISE no_data_found USING
            MESSAGE = format('node %s does not exist or is not visible', node),
            HINT = 'Check the id or key, and that fractality.user_id names the tenant that owns it (row-level security shows only its rows).';
    END IF;
    RETURN QUERY
    SELECT h.t, h.a, h.att, h.r, h.cold FROM (
        SELECT s.time AS t, s.atp_level AS a, s.attention_score AS att, s.resonance_vector AS r,
               false AS cold
          FROM fractality.consciousness_streams s
         WHERE s.node_id = node AND s.time >= "from" AND s.time < "to"
           AND (own IS NULL OR s.user_id = own)
        UNION ALL
        SELECT p.t, p.a, p.att, p.r::real[], true
          FROM fractality.consciousness_archive c,
               unnest(c.times, c.atp_levels, c.attention_scores, c.resonance_vectors) AS p(t, a, att, r)
         WHERE c.node_id = node AND c.time_to >= "from" AND c.time_from < "to"
           AND (own IS NULL OR c.user_id = own)
           AND p.t >= "from" AND p.t < "to"
    ) h
    ORDER BY h.t, h.cold DESC;
END $$;

-- ---- partitions ahead --------------------------------------------------------------------------

-- Creates the monthly partition of `parent` holding `month` unless a partition of that name
-- exists; rows of that month caught by the default partition move into it. Returns true when it
-- created one.
CREATE FUNCTION fractality._ensure_month_partition(parent regclass, month date) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET timezone = 'UTC'
AS $$
DECLARE
    streams boolean := parent = 'fractality.consciousness_streams'::regclass;
    lo timestamptz := date_trunc('month', month::timestamp) AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    part_name text;
    dflt text;
    lo_txt text;
    hi_txt text;
    key text;
    caught boolean;
BEGIN
    SELECT c.relname || '_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM'), c.relname || '_default'
      INTO part_name, dflt FROM pg_class c WHERE c.oid = parent;
    IF EXISTS (SELECT 1 FROM pg_class c
                WHERE c.relname = part_name AND c.relnamespace = 'fractality'::regnamespace) THEN
        RETURN false;
    END IF;
    -- CREATE ... PARTITION OF and ATTACH need it anyway (and a stream partition's foreign key
    -- SHARE ROW EXCLUSIVE on nodes, taken first); taken before the default partition is read
    PERFORM fractality._lock_for_partitions(ARRAY[parent]);
    IF streams THEN
        lo_txt := lo::text; hi_txt := hi::text; key := 'time';
    ELSE
        lo_txt := fractality.epoch_us(lo)::text; hi_txt := fractality.epoch_us(hi)::text; key := 'timestamp';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM fractality.%I WHERE %I >= %L AND %I < %L)',
                   dflt, key, lo_txt, key, hi_txt) INTO caught;
    IF NOT caught THEN
        RETURN fractality._create_month_partition(parent, month);
    END IF;
    -- the default partition caught rows of this month: they move into the new partition, which
    -- is attached once filled
    EXECUTE format('CREATE TABLE fractality.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                   part_name, parent);
    IF NOT streams THEN
        EXECUTE format('ALTER TABLE fractality.%I ADD CONSTRAINT partition_bound CHECK ("timestamp" >= %L AND "timestamp" < %L)',
                       part_name, lo_txt, hi_txt);
    END IF;
    EXECUTE format('WITH m AS (DELETE FROM fractality.%I WHERE %I >= %L AND %I < %L RETURNING *) INSERT INTO fractality.%I SELECT * FROM m',
                   dflt, key, lo_txt, key, hi_txt, part_name);
    PERFORM fractality._index_partition(format('fractality.%I', part_name)::regclass);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION fractality.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, part_name, lo_txt, hi_txt);
    IF streams THEN
        PERFORM fractality._protect_partition(format('fractality.%I', part_name)::regclass);
    END IF;
    RETURN true;
END $$;

-- The monthly partitions ensure_partitions(ahead) makes, of consciousness_streams and then of
-- experience_events, each in month order: from the current month (UTC) to `ahead` months after
-- it, and the months whose rows the default partitions caught (at most 24 a table, those nearest
-- the current month first) from 120 months before the current month to 24 after it, but an
-- events month the cold tier holds; those that exist left out. Rows of months outside that
-- window stay in the default partitions, where they are read and archived: any role may write
-- events, and a tenant stream points, of any time, and a partition a month of them made the
-- tables grow without end (every statement that cannot prune by time locks each partition).
CREATE FUNCTION fractality._months_to_partition(ahead integer)
RETURNS TABLE (parent regclass, month date)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- the current month, and the first and last months a caught row's month gets a partition in
WITH this AS (
    SELECT t.m, (t.m - interval '120 months')::date AS lo, (t.m + interval '24 months')::date AS hi
      FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS m) t),
ahead_months AS (
    SELECT (this.m + make_interval(months => g))::date AS m FROM this, generate_series(0, ahead) g),
-- the cold tier's ranges of events: a month one of them overlaps stays in the default partition
-- (ensure_partitions)
cold AS (
    SELECT a.lo::bigint AS lo, a.hi::bigint AS hi
      FROM fractality._partition_bounds('fractality.experience_events_archive') a
     WHERE a.lo IS NOT NULL),
streams AS (
    SELECT m FROM ahead_months
    UNION
    (SELECT d.m
       FROM (SELECT DISTINCT date_trunc('month', s.time AT TIME ZONE 'UTC')::date AS m
               FROM fractality.consciousness_streams_default s
              WHERE s.time >= '0001-01-01 00:00+00' AND s.time < '9999-12-01 00:00+00') d, this
      WHERE d.m BETWEEN this.lo AND this.hi
      ORDER BY abs(d.m - this.m), d.m
      LIMIT 24)),
events_wanted AS (
    SELECT m, true AS ahead FROM ahead_months
    UNION ALL
    SELECT DISTINCT date_trunc('month', fractality._us_to_timestamptz(e."timestamp") AT TIME ZONE 'UTC')::date, false
      FROM fractality.experience_events_default e
     WHERE e."timestamp" < 253399622400000000),  -- 9999-12-01: the names have four-digit years
events_warm AS (
    SELECT w.m, w.ahead FROM events_wanted w
     WHERE NOT EXISTS (
           SELECT 1 FROM cold a
            WHERE a.lo < fractality.epoch_us((w.m + interval '1 month')::timestamp AT TIME ZONE 'UTC')
              AND a.hi > fractality.epoch_us(w.m::timestamp AT TIME ZONE 'UTC'))),
events AS (
    SELECT m FROM events_warm WHERE ahead
    UNION
    (SELECT w.m FROM events_warm w, this
      WHERE NOT w.ahead AND w.m BETWEEN this.lo AND this.hi
      ORDER BY abs(w.m - this.m), w.m LIMIT 24)),
wanted AS (
    SELECT 'fractality.consciousness_streams'::regclass AS parent, m AS month, 1 AS tier FROM streams
    UNION ALL
    SELECT 'fractality.experience_events'::regclass, m, 2 FROM events)
SELECT w.parent, w.month
  FROM wanted w
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c
                    WHERE c.relnamespace = 'fractality'::regnamespace
                      AND c.relname = (SELECT r.relname FROM pg_class r WHERE r.oid = w.parent)
                                      || '_' || to_char(w.month, 'YYYY_MM'))
 ORDER BY w.tier, w.month
$$;

-- Creates the monthly partitions of consciousness_streams and experience_events from the current
-- month (UTC) to `ahead` months after it, and those of any other month whose rows the default
-- partitions caught (history imported after install, events from the future), moving the rows
-- into them as pg_partman's partition_data does; so that archiving and retention move whole
-- partitions whatever the date. The one exception: events of a month the cold tier already
-- holds (late events of an archived month) stay in the default partition, and the next archiving
-- run moves them into the cold tier. Of the months the default partitions caught, one call takes
-- at most 24 a table, those nearest the current month first, and leaves the rest (still read
-- where they are) to the next call: a writer of rows spread over centuries cannot make one call
-- create thousands of partitions and fail on its locks, which would stop run_maintenance for
-- every tenant. Nor can calls after it: months more than 120 before the current one or 24 after
-- it get no partition of their own (their rows stay in the default partition). Returns how many
-- partitions it created.
CREATE FUNCTION fractality.ensure_partitions(ahead integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parents regclass[];
    months date[];
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
    -- it waits for the writers' locks, then reads the default partitions for rows to move: a
    -- snapshot older than the lock would miss a row written meanwhile, and the new partition's
    -- check would fail on it (23514)
    PERFORM fractality._check_read_committed('creating partitions');
    -- the archivers' locks first, in one order (streams, events), then the partitions': an
    -- archiver takes its lock before its tables, and this takes tables below (the parents, and
    -- nodes for a stream partition), so an archiver running beside it waits for it whole
    -- instead of holding a table it is about to want (a deadlock)
    PERFORM fractality._lock('archive_streams');
    PERFORM fractality._lock('archive_events');
    PERFORM fractality._lock('partitions');
    -- the parents first (before their default partitions are read): the archivers lock them so
    LOCK TABLE fractality.consciousness_streams, fractality.experience_events IN ACCESS SHARE MODE;
    SELECT array_agg(t.parent ORDER BY t.n), array_agg(t.month ORDER BY t.n)
      INTO parents, months
      FROM fractality._months_to_partition(ahead) WITH ORDINALITY AS t (parent, month, n);
    IF parents IS NULL THEN
        RETURN 0;
    END IF;
    -- every table they need, in one try (see _lock_for_partitions)
    PERFORM fractality._lock_for_partitions(ARRAY(SELECT DISTINCT unnest(parents)));
    FOR i IN 1 .. cardinality(parents) LOOP
        created := created + fractality._ensure_month_partition(parents[i], months[i])::integer;
    END LOOP;
    RETURN created;
END $$;

-- ---- retention policies ------------------------------------------------------------------------

-- Refuses (22023, naming `name`) an age a cutoff is computed from, now() - age, that is not one:
-- a negative part ('1 month -29 days' is a day in March and less than none in February, so a
-- 'drop' policy of it would delete today's rows), or one reaching before the earliest timestamp
-- (a policy of it would make every run_maintenance fail).
CREATE FUNCTION fractality._check_age(name text, age interval) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
SET intervalstyle = 'postgres'
AS $$
DECLARE
    months bigint := extract(year FROM age)::bigint * 12 + extract(month FROM age)::bigint;
    days bigint := extract(day FROM age)::bigint;
BEGIN
    IF months < 0 OR days < 0
       OR age - make_interval(months => months::integer, days => days::integer) < interval '0' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for %s: %s', name, age),
            HINT = format('%s is an age with no negative part, e.g. ''30 days''.', name);
    END IF;
    BEGIN
        PERFORM now() - age;
    EXCEPTION WHEN datetime_field_overflow THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for %s: %s', name, age),
            HINT = format('%s reaches before the earliest timestamp: a shorter age.', name);
    END;
END $$;

-- Keep `relation` (experience_events or consciousness_streams) for `keep`, then 'archive' (into
-- the cold tier) or 'drop' its older rows; applied by run_maintenance(). Replaces the relation's
-- policy if it has one.
CREATE FUNCTION fractality.add_retention_policy(relation regclass, keep interval, action text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $$
BEGIN
    IF relation IS NULL OR keep IS NULL OR action IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('add_retention_policy: %s must not be NULL',
                             CASE WHEN relation IS NULL THEN 'relation' WHEN keep IS NULL THEN 'keep' ELSE 'action' END),
            HINT = 'Pass a relation, a positive interval and ''archive'' or ''drop''.';
    END IF;
    IF relation NOT IN ('fractality.experience_events'::regclass, 'fractality.consciousness_streams'::regclass) THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for relation: %s is not a partitioned table of fractality', relation),
            HINT = 'Retention applies to fractality.experience_events and fractality.consciousness_streams.';
    END IF;
    IF keep <= interval '0' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for keep: %s', keep),
            HINT = 'keep is a positive interval, e.g. ''30 days''.';
    END IF;
    PERFORM fractality._check_age('keep', keep);
    IF action NOT IN ('archive', 'drop') THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for action: %s', CASE WHEN length(action) <= 200 THEN quote_literal(action) ELSE format('%L (%s characters)', left(action, 197) || '...', length(action)) END),
            HINT = 'action is ''archive'' (move into the cold tier) or ''drop'' (delete).';
    END IF;
    INSERT INTO fractality.retention_policies AS p (relation, keep, action)
    VALUES (add_retention_policy.relation, add_retention_policy.keep, add_retention_policy.action)
    ON CONFLICT ON CONSTRAINT retention_policies_pkey DO UPDATE
       SET keep = excluded.keep, action = excluded.action, last_run = NULL, last_result = NULL;
END $$;

-- Removes the retention policy of `relation`; false when it had none.
CREATE FUNCTION fractality.remove_retention_policy(relation regclass) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF relation IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = 'remove_retention_policy: relation must not be NULL',
            HINT = 'Pass the relation whose policy to remove, e.g. ''fractality.experience_events''.';
    END IF;
    DELETE FROM fractality.retention_policies p WHERE p.relation = remove_retention_policy.relation;
    RETURN FOUND;
END $$;

-- ---- maintenance -------------------------------------------------------------------------------

-- The steps of one maintenance pass, those that need whole tables (`with_tables`: partitions
-- for the coming months, ensure_partitions with 3 months ahead; every retention policy applied,
-- its last_run and last_result updated, its age counted back from now in UTC) and those that
-- work on rows (`with_rows`: expired memories deleted, staged embeddings indexed, replay
-- priorities pending folded, decay materialised), in the caller's transaction; the report of
-- run_maintenance for those steps. A step whose tables a long transaction holds for longer than
-- fractality.maintenance_lock_wait is left to the next run and named in "busy" (the partitions,
-- or a retention policy's relation). A step that fails is rolled back alone and named in
-- "failed" (step, SQLSTATE, message) and in a WARNING; the others go on. A second session
-- calling it while one runs returns at once with {"skipped": true}.
CREATE FUNCTION fractality._run_maintenance(with_tables boolean, with_rows boolean) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $$
DECLARE
    p record;
    created integer;
    n bigint;
    done jsonb := '[]'::jsonb;
    busy jsonb := '[]'::jsonb;
    needed regclass[];
    policies regclass[];
    materialized bigint;
    expired bigint;
    expired_ids uuid[];
    expired_tenants uuid[];
    folded bigint;
    indexed bigint;
    steps text[];
    step text;
    failed jsonb := '[]'::jsonb;
    failed_state text;
    failed_message text;
BEGIN
    PERFORM fractality._check_read_committed('run_maintenance');
    IF NOT fractality._try_lock('run_maintenance') THEN
        RETURN jsonb_build_object('skipped', true);
    END IF;
    created := 0;
    expired := 0;
    indexed := 0;
    folded := 0;
    materialized := 0;
    steps := '{}';
    IF with_tables THEN
        -- partitions and retention before decay: materialize_decay leaves row locks on nodes, and
        -- a stream partition made or dropped after them would wait for SHARE ROW EXCLUSIVE on nodes
        -- behind a pulse that waits for one of those rows (a deadlock the load run found)
        -- the tables the partitions and the retention policies need, taken in one try with the
        -- archivers' locks and the partitions' first (ensure_partitions' order; see
        -- _lock_for_partitions): when a long transaction holds one of them for longer than
        -- fractality.maintenance_lock_wait, those steps are left to the next run and named in
        -- "busy", and the rest goes on
        -- the archivers' locks before any table is read (_months_to_partition reads the default
        -- partitions): an archiver holds its lock while it asks for ACCESS EXCLUSIVE on them, so
        -- reading them first and then waiting for its lock was a deadlock
        PERFORM fractality._lock('archive_streams');
        PERFORM fractality._lock('archive_events');
        PERFORM fractality._lock('partitions');
        SELECT coalesce(array_agg(DISTINCT m.parent), '{}') INTO needed FROM fractality._months_to_partition(3) m;
        SELECT coalesce(array_agg(r.relation ORDER BY r.relation::text), '{}') INTO policies
          FROM fractality.retention_policies r
         WHERE r.relation IN ('fractality.experience_events'::regclass, 'fractality.consciousness_streams'::regclass);
        BEGIN
            IF cardinality(needed) + cardinality(policies) > 0 THEN
                PERFORM fractality._lock_for_partitions(needed || policies);
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            busy := to_jsonb(CASE WHEN cardinality(needed) > 0 THEN ARRAY['partitions'] ELSE '{}'::text[] END
                             || policies::text[]);
        END;
        steps := CASE WHEN busy = '[]'::jsonb THEN ARRAY['partitions'] ELSE '{}'::text[] END
                 || CASE WHEN busy = '[]'::jsonb
                         THEN ARRAY(SELECT 'retention:' || r.relation::text FROM fractality.retention_policies r
                                     WHERE r.relation = ANY (policies) ORDER BY r.relation::text)
                         ELSE '{}'::text[] END;
    END IF;
    IF with_rows THEN
        steps := steps
                 || ARRAY['memories', 'embeddings']
                 -- priorities written back to replay buffers and still pending go into their sum
                 -- trees, the buffers in id order as every writer and learner locks them
                 || ARRAY(SELECT 'replay:' || b.name FROM fractality.replay_buffers b
                           WHERE EXISTS (SELECT 1 FROM fractality.replay_pending w WHERE w.buffer_id = b.buffer_id)
                           ORDER BY b.buffer_id)
                 || ARRAY['decay'];
    END IF;
    -- the steps, each in a block of its own: one that fails (a row no function would have
    -- written, which an application role granted every table can write; a lock held too long) is
    -- rolled back alone, named in "failed" and in a WARNING, and the others go on, so that no
    -- tenant's data can stop the upkeep of every tenant. A cancel still ends the run.
    FOREACH step IN ARRAY steps LOOP
        BEGIN
            IF step = 'partitions' THEN
                created := fractality.ensure_partitions(3);
            ELSIF step LIKE 'retention:%' THEN
                SELECT * INTO p FROM fractality.retention_policies r WHERE r.relation::text = substr(step, 11);
                IF p.relation = 'fractality.experience_events'::regclass THEN
                    IF p.action = 'archive' THEN
                        n := fractality._archive_events_before(fractality.epoch_us(now() - p.keep));
                    ELSE
                        n := fractality._drop_events_before(fractality.epoch_us(now() - p.keep));
                    END IF;
                ELSE
                    IF p.action = 'archive' THEN
                        n := fractality._archive_streams_before(now() - p.keep);
                    ELSE
                        n := fractality._drop_streams_before(now() - p.keep);
                    END IF;
                END IF;
                UPDATE fractality.retention_policies r SET last_run = now(), last_result = n
                 WHERE r.relation = p.relation;
                done := done || jsonb_build_object('relation', p.relation::text, 'action', p.action, 'rows', n);
            ELSIF step = 'memories' THEN
                -- memories past their expiry (remember's ttl) go, with what hangs off them; locked
                -- in the order of their ids first (then tenants, for an id two tenants hold), as
                -- pulse, remember, a decay tick and consensus lock several nodes, in a statement
                -- of their own: a DELETE that locked them in a subquery would read them as of its
                -- start, and wait for the old version's tuple lock of a row changed since, which
                -- a session waiting for this one may hold (40P01; sql/queries/decay_lock.sql).
                -- The next statement's snapshot sees them as locked. One a session holds is left
                -- for the next run (SKIP LOCKED): the run may hold tables that session waits
                -- for (the partitions' and retention's locks, taken first), and waiting for its
                -- row would be a deadlock.
                SELECT array_agg(l.id), array_agg(l.user_id) INTO expired_ids, expired_tenants
                  FROM (SELECT x.id, x.user_id FROM fractality.nodes x
                         WHERE x.expires_at <= now() ORDER BY x.id, x.user_id
                           FOR UPDATE SKIP LOCKED) l;
                DELETE FROM fractality.nodes n
                 USING ROWS FROM (unnest(expired_ids), unnest(expired_tenants)) AS l (id, user_id)
                 WHERE n.id = l.id AND n.user_id = l.user_id;
                GET DIAGNOSTICS expired = ROW_COUNT;
            ELSIF step = 'embeddings' THEN
                -- embeddings remember_many staged go into their HNSW indexes
                indexed := fractality.index_staged_embeddings();
            ELSIF step LIKE 'replay:%' THEN
                -- a buffer a session holds (a learner's transaction) is left for the next run,
                -- as the memories above: that session may wait for a table this run holds
                PERFORM 1 FROM fractality.replay_buffers b WHERE b.name = substr(step, 8)
                    FOR UPDATE SKIP LOCKED;
                IF FOUND THEN
                    folded := folded + fractality.fold_priorities(substr(step, 8));
                END IF;
            ELSE
                materialized := fractality.materialize_decay();
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT;
            failed := failed || jsonb_build_object('step', step, 'sqlstate', failed_state,
                                                   'message', failed_message);
            RAISE WARNING 'run_maintenance: step % failed (%): %', step, failed_state, failed_message;
        END;
    END LOOP;
    RETURN jsonb_build_object('skipped', false)
           || CASE WHEN with_tables
                   THEN jsonb_build_object('partitions_created', created, 'retention', done)
                   ELSE '{}'::jsonb END
           || CASE WHEN with_rows
                   THEN jsonb_build_object('memories_expired', expired, 'embeddings_indexed', indexed,
                                           'replay_priorities_folded', folded,
                                           'decay_materialized', materialized)
                   ELSE '{}'::jsonb END
           -- what a long transaction held this time (see above), only when there is any
           || CASE WHEN busy = '[]'::jsonb THEN '{}'::jsonb ELSE jsonb_build_object('busy', busy) END
           -- and the steps that failed, only when any did
           || CASE WHEN failed = '[]'::jsonb THEN '{}'::jsonb ELSE jsonb_build_object('failed', failed) END;
END $$;

-- One maintenance pass in one transaction: every step of _run_maintenance (read its notes),
-- partitions and retention first. Idempotent. Where a pass takes tables (a partition to make, a
-- retention policy), writers of them wait for the whole pass, its decay included: the procedure
-- maintain() below runs the same steps in two transactions. Schedule either with pg_cron, e.g.
--   SELECT cron.schedule('fractality-maintenance', '*/15 * * * *', 'CALL fractality.maintain()');
CREATE FUNCTION fractality.run_maintenance() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT fractality._run_maintenance(true, true) $$;

-- The report of maintain(): the two parts' reports as one, "failed" the steps of both, "busy"
-- the first's, {"skipped": true} alone where both were.
CREATE FUNCTION fractality._maintenance_report(tables jsonb, row_steps jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN (tables ->> 'skipped')::boolean AND (row_steps ->> 'skipped')::boolean
            THEN jsonb_build_object('skipped', true)
            ELSE (tables - 'failed') || (row_steps - 'failed')
                 || jsonb_build_object('skipped', (tables ->> 'skipped')::boolean OR (row_steps ->> 'skipped')::boolean)
                 || CASE WHEN tables ? 'failed' OR row_steps ? 'failed'
                         THEN jsonb_build_object('failed', coalesce(tables -> 'failed', '[]')
                                                           || coalesce(row_steps -> 'failed', '[]'))
                         ELSE '{}'::jsonb END
       END
$$;

-- One maintenance pass as run_maintenance() makes it, in two transactions: the steps that take
-- whole tables (partitions, retention), committed, and then those on rows (expired memories,
-- staged embeddings, replay priorities, decay), so that writers of those tables wait for the
-- first part alone. CALL it on its own, not in a transaction block (it commits: 2D000 there).
-- `report` comes back as run_maintenance's ("skipped": a part another session was running).
-- No SET clause (a procedure with one cannot commit): the names below are qualified.
CREATE PROCEDURE fractality.maintain(INOUT report jsonb DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    tables pg_catalog.jsonb;
BEGIN
    tables := fractality._run_maintenance(true, false);
    COMMIT;
    report := fractality._maintenance_report(tables, fractality._run_maintenance(false, true));
    COMMIT;
END $$;
