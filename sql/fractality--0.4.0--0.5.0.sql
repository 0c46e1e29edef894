-- fractality: upgrade from 0.4.0 to 0.5.0
-- Run by ALTER EXTENSION fractality UPDATE (TO '0.5.0'), after the earlier upgrade scripts when
-- coming from an older version. tests/client/tests/upgrade.rs updates 0.1.0 to 0.4.0 installs
-- (their scripts kept in tests/upgrade/) and compares each with a fresh install.
--
-- 0.5.0 brings embedding models of any dimension in node_embeddings hash-partitioned by tenant
-- (an HNSW index per partition and model), keys that all include user_id, resonance_with,
-- consensus that needs three users and keeps its centroid from tenants, and partitions made for
-- rows the default partitions caught. The existing embeddings move into the partitioned table
-- (every row kept) as the 'default' model; the index is built once they are in, so the upgrade
-- takes about as long as building the index (minutes per million embeddings).

-- 0.5.0 puts SECURITY DEFINER functions into the schema, as the install does: a schema that a
-- role other than a superuser owns (who could rename it and plant one of the same name with
-- objects those functions would reach), or in which such a role may create, is refused before
-- anything changes (sql/bootstrap.sql checks the same at install, and objects in it too).
DO $$
DECLARE
    problem text;
    remedy text;
BEGIN
    SELECT x.problem, x.remedy INTO problem, remedy
      FROM (SELECT 1 AS k, pg_catalog.format('is owned by role %s, who is not a superuser', r.rolname) AS problem,
                   'make a superuser its owner (ALTER SCHEMA fractality OWNER TO ...) first' AS remedy
              FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
             WHERE n.nspname = 'fractality' AND NOT r.rolsuper
            UNION ALL
            SELECT 2, pg_catalog.format('lets %s create objects in it', coalesce(r.rolname, 'PUBLIC')),
                   'REVOKE CREATE ON SCHEMA fractality from every role but superusers first'
              FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
              LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
             WHERE n.nspname = 'fractality' AND a.privilege_type = 'CREATE' AND NOT coalesce(r.rolsuper, false)) x
     ORDER BY x.k
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'schema fractality %', problem
            USING ERRCODE = '42501',
                  HINT = 'fractality puts SECURITY DEFINER functions in its schema: ' || remedy || '.';
    END IF;
END $$;

-- An event id that 0.4.0 stored more than once (it refused a duplicate at the same timestamp
-- only, and two concurrent writers could both store one) stops the update before anything
-- changes: 0.5.0 writes an id once, and registering one of the copies would leave the others
-- outside that rule (docs/UPGRADES.md, "Before the update", has the query that lists them).
DO $$
DECLARE
    ids bigint;
    sample text;
BEGIN
    SELECT count(*), min(pg_catalog.encode(d.event_id, 'hex')) INTO ids, sample
      FROM (SELECT u.event_id
              FROM (SELECT e.event_id FROM fractality.experience_events e
                    UNION ALL
                    SELECT a.event_id FROM fractality.experience_events_archive a) u
             GROUP BY u.event_id HAVING count(*) > 1) d;
    IF ids > 0 THEN
        RAISE unique_violation USING
            MESSAGE = pg_catalog.format('%s event ids are each stored more than once (such as %s), which 0.5.0 refuses: an event id is written once',
                                        ids, sample),
            HINT = 'Keep one event of each id (docs/UPGRADES.md, "Before the update", lists them and says how), then update again.';
    END IF;
END $$;

-- An event stored by 0.4.0 at bigint's largest timestamp, which 0.5.0 refuses (49_event_ids.sql),
-- stops the update before anything changes.
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

-- ---- locks: rows the owner's maintenance and each tenant's memory writes lock, instead of advisory
-- keys any role could take and hold (bootstrap.sql says why)
-- ---- locks ----------------------------------------------------------------------------------------
-- What serialises the owner's maintenance and consensus steps and each tenant's memory writes: a
-- row of fractality.locks inserted and deleted again at once by the holder (fractality._lock for
-- the owner's, sql/queries/memory_lock.sql for a tenant's). The row is never seen by another
-- transaction, but until the holder's transaction ends its key is "in insertion", and a second
-- insert of the key waits for that end (then finds no row, and goes on); the table is empty
-- between transactions, so it keeps nothing of any tenant and a dump holds no row of it.
-- Advisory locks served before, but any role may take any advisory key, and pg_locks shows every
-- role the keys in use: a role with no grant at all held maintenance's key and every
-- run_maintenance was skipped, or read a tenant's key while that tenant wrote and held it after,
-- and the tenant's next remember waited for as long as the other session lived. Row-level security
-- lets a role insert only its own tenant's memory lock; the owner's (user_id the nil uuid, named
-- after what they serialise) only the owner.
CREATE TABLE fractality.locks (
    user_id uuid NOT NULL,
    name    text NOT NULL,
    CONSTRAINT locks_pkey PRIMARY KEY (user_id, name)
);

COMMENT ON TABLE fractality.locks IS
    'Keys inserted and deleted at once to serialise the owner''s maintenance and consensus steps (user_id the nil uuid) and each tenant''s memory writes (name ''remember''), until the transaction ends; empty between transactions.';

ALTER TABLE fractality.locks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_lock ON fractality.locks
    USING (user_id = fractality.current_user_id() AND name = 'remember')
    WITH CHECK (user_id = fractality.current_user_id() AND name = 'remember');

-- Takes the owner's lock `name` until the transaction ends, waiting while another transaction
-- holds it. Internal: the owner's maintenance and the consensus functions (run as the owner).
CREATE FUNCTION fractality._lock(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO fractality.locks (user_id, name) VALUES ('00000000-0000-0000-0000-000000000000', _lock.name);
    DELETE FROM fractality.locks l
     WHERE l.user_id = '00000000-0000-0000-0000-000000000000' AND l.name = _lock.name;
END
$$;

-- fractality._lock when no other transaction holds it (waiting at most 10 ms): whether it took
-- it. Internal, as _lock.
CREATE FUNCTION fractality._try_lock(name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10ms'
AS $$
BEGIN
    BEGIN
        PERFORM fractality._lock(_try_lock.name);
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;
    END;
    RETURN true;
END
$$;

-- ---- internal helpers: a leading underscore ----------------------------------------------------
-- The partition and archive steps (not for direct calls, not executable by PUBLIC) take a
-- leading underscore, as the other internal helpers have. They are renamed first, so that every
-- later section replaces (CREATE OR REPLACE) the renamed function, which keeps its privileges,
-- its comment and its membership of the extension. The bodies of 0.4.0 that name a renamed
-- helper and that no later section replaces are replaced here: _archive_partition_name,
-- archive_old_events, _archive_streams_before, archive_streams and _drop_streams_before. PUBLIC
-- loses EXECUTE on them (0.4.0 revoked nothing) by the internal helpers' REVOKE at the end
-- (security.sql).

ALTER FUNCTION fractality.protect_partition(regclass) RENAME TO _protect_partition;
ALTER FUNCTION fractality.create_month_partition(regclass, date) RENAME TO _create_month_partition;
ALTER FUNCTION fractality.us_to_timestamptz(bigint) RENAME TO _us_to_timestamptz;
ALTER FUNCTION fractality.partition_bounds(regclass) RENAME TO _partition_bounds;
ALTER FUNCTION fractality.drop_partition(regclass) RENAME TO _drop_partition;
ALTER FUNCTION fractality.archive_partition_name(bigint) RENAME TO _archive_partition_name;
ALTER FUNCTION fractality.new_event_table(text, bigint, bigint) RENAME TO _new_event_table;
ALTER FUNCTION fractality.set_event_bound(regclass, bigint, bigint) RENAME TO _set_event_bound;
ALTER FUNCTION fractality.attach_to_archive(regclass, bigint, bigint) RENAME TO _attach_to_archive;
ALTER FUNCTION fractality.event_table_as(text, regclass, bigint, bigint) RENAME TO _event_table_as;
ALTER FUNCTION fractality.archive_events_before(bigint) RENAME TO _archive_events_before;
ALTER FUNCTION fractality.drop_events_before(bigint) RENAME TO _drop_events_before;
ALTER FUNCTION fractality.pack_stream_points(text, timestamptz) RENAME TO _pack_stream_points;
ALTER FUNCTION fractality.archive_streams_before(timestamptz) RENAME TO _archive_streams_before;
ALTER FUNCTION fractality.drop_streams_before(timestamptz) RENAME TO _drop_streams_before;
ALTER FUNCTION fractality.ensure_month_partition(regclass, date) RENAME TO _ensure_month_partition;

-- Name of the archive partition starting at lo: experience_events_archive_YYYY_MM for a month's
-- start, else with the day and time to the microsecond.
CREATE OR REPLACE FUNCTION fractality._archive_partition_name(lo bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT 'experience_events_archive_'
           || CASE WHEN t = date_trunc('month', t) THEN to_char(t, 'YYYY_MM')
                   ELSE to_char(t, 'YYYY_MM_DD_HH24MISS_US') END
      FROM (SELECT fractality._us_to_timestamptz(lo) AT TIME ZONE 'UTC' AS t) s
$$;

-- The seed's function, done right: events older than days_threshold days leave the hot tier for
-- the cold tier (experience_events_archive), with their action_metadata. Returns how many moved;
-- a second run moves nothing. Ages count back from now in UTC (as the partitions are bounded),
-- so the same call moves the same rows whatever the caller's TimeZone.
CREATE OR REPLACE FUNCTION fractality.archive_old_events(days_threshold integer) RETURNS bigint
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
CREATE OR REPLACE FUNCTION fractality._check_read_committed(what text) RETURNS void
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

-- Moves every stream point with time < cutoff into consciousness_archive; returns how many.
-- The caller's row-level security holds: a tenant role moves its own points only. The owner
-- moves wholly old partitions by reading them once and dropping them.
CREATE OR REPLACE FUNCTION fractality._archive_streams_before(cutoff timestamptz) RETURNS bigint
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
CREATE OR REPLACE FUNCTION fractality.archive_streams(older_than interval DEFAULT '3 months') RETURNS bigint
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
CREATE OR REPLACE FUNCTION fractality._drop_streams_before(cutoff timestamptz) RETURNS bigint
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

-- ---- partitions: rows the default partitions caught move into monthly partitions ------------

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
CREATE OR REPLACE FUNCTION fractality.ensure_partitions(ahead integer DEFAULT 3) RETURNS integer
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
CREATE OR REPLACE FUNCTION fractality._check_age(name text, age interval) RETURNS void
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
CREATE OR REPLACE FUNCTION fractality.add_retention_policy(relation regclass, keep interval, action text)
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
CREATE OR REPLACE FUNCTION fractality.remove_retention_policy(relation regclass) RETURNS boolean
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

-- ---- pg_dump: monthly partitions are ordinary tables, each with its own index ----------------
-- 0.4.0's install script made the first monthly partitions, so they were members of the
-- extension (pg_dump skipped them, rows and all), and the parents declared the indexes (which
-- pg_restore then met twice). From 0.5.0 the parents declare none: every partition has its own
-- index (built here for the partitions there are: a BRIN per event partition is quick, a
-- (node_id, time) btree per stream partition takes about as long as the parent's took), and
-- monthly partitions leave the extension.

-- Gives a partition of consciousness_streams or of experience_events(_archive), or a table about
-- to become one, REPLICA IDENTITY FULL and its own indexes, named after it: (node_id, time DESC)
-- for stream points (<name>_node_time); for events a BRIN over "timestamp" (<name>_time) and a
-- hash over event_id (<name>_event_id), what a lookup of one event by (timestamp, event_id)
-- probes (action metadata's reference check: with the BRIN alone it read every page not yet
-- summarised, which made a batch with metadata quadratic at commit). An index it already has of
-- that kind (a table renamed since) takes the name. The parents declare no index: pg_dump dumps each
-- monthly partition, a table of its own, with its index, and pg_restore must not meet one made
-- for it by the parent (see streams.sql).
CREATE OR REPLACE FUNCTION fractality._index_partition(part regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel text;
    ident "char";
    streams boolean;
    want text;
    have text;
    k record;
BEGIN
    SELECT c.relname, c.relreplident INTO rel, ident FROM pg_class c WHERE c.oid = part;
    -- no primary key: the whole row is its identity for logical replication (experience.sql)
    IF ident <> 'f' THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', part);
    END IF;
    streams := EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = part AND a.attname = 'atp_level' AND NOT a.attisdropped);
    -- each index the partition needs: one of that kind on that first column (not one of the
    -- operator's on another) takes the name, or it is made
    FOR k IN SELECT * FROM (VALUES
                 (true,  '_node_time', 'btree', 'node_id',   'CREATE INDEX %I ON %s (node_id, time DESC)'),
                 (false, '_time',      'brin',  'timestamp', 'CREATE INDEX %I ON %s USING brin ("timestamp") WITH (pages_per_range = 32)'),
                 (false, '_event_id',  'hash',  'event_id',  'CREATE INDEX %I ON %s USING hash (event_id)'))
                 v (for_streams, suffix, am, col, ddl)
              WHERE v.for_streams = streams LOOP
        want := rel || k.suffix;
        SELECT ci.relname INTO have
          FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_am a ON a.oid = ci.relam
               JOIN pg_attribute t ON t.attrelid = part AND t.attnum = i.indkey[0]
         WHERE i.indrelid = part AND a.amname = k.am AND t.attname = k.col
         ORDER BY ci.relname = want DESC
         LIMIT 1;
        IF have IS NULL THEN
            EXECUTE format(k.ddl, want, part);
        ELSIF have <> want THEN
            EXECUTE format('ALTER INDEX fractality.%I RENAME TO %I', have, want);
        END IF;
    END LOOP;
END
$$;
-- Creates the monthly partition of `parent` (consciousness_streams, ranged on timestamptz, or
-- experience_events, ranged on bigint microseconds) that holds `month`, unless it exists.
-- Returns true when it created one. Identifiers are quoted with %I, bounds with %L.
CREATE OR REPLACE FUNCTION fractality._create_month_partition(parent regclass, month date) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET timezone = 'UTC'
AS $$
DECLARE
    lo      timestamptz := date_trunc('month', month::timestamp) AT TIME ZONE 'UTC';
    hi      timestamptz := (date_trunc('month', month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    part_name text;
    lo_txt  text;
    hi_txt  text;
BEGIN
    IF parent IS NULL OR month IS NULL THEN
        RAISE EXCEPTION '_create_month_partition: parent and month must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF month = 'infinity'::date OR month = '-infinity'::date THEN
        RAISE EXCEPTION '_create_month_partition: month % is not a finite date', month
            USING ERRCODE = '22023';
    END IF;
    IF parent = to_regclass('fractality.consciousness_streams') THEN
        lo_txt := lo::text;
        hi_txt := hi::text;
    ELSIF parent = to_regclass('fractality.experience_events') THEN
        lo_txt := fractality.epoch_us(lo)::text;
        hi_txt := fractality.epoch_us(hi)::text;
    ELSE
        RAISE EXCEPTION '_create_month_partition: % is not a partitioned table of fractality', parent
            USING ERRCODE = '22023',
                  HINT = 'Use fractality.consciousness_streams or fractality.experience_events.';
    END IF;

    SELECT c.relname || '_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM') INTO part_name
    FROM pg_class c WHERE c.oid = parent;

    IF EXISTS (SELECT 1 FROM pg_class c
               WHERE c.relname = part_name
                 AND c.relnamespace = 'fractality'::regnamespace) THEN
        RETURN false;
    END IF;

    EXECUTE format('CREATE TABLE fractality.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   part_name, parent, lo_txt, hi_txt);
    IF parent = to_regclass('fractality.experience_events') THEN
        -- the bound as a CHECK constraint too (free on an empty table): archiving can then move
        -- the partition into the cold tier with ATTACH PARTITION without scanning its rows
        EXECUTE format('ALTER TABLE fractality.%I ADD CONSTRAINT partition_bound CHECK ("timestamp" >= %L AND "timestamp" < %L)',
                       part_name, lo_txt, hi_txt);
    END IF;
    IF parent = to_regclass('fractality.consciousness_streams') THEN
        PERFORM fractality._protect_partition(format('fractality.%I', part_name)::regclass);
    END IF;
    PERFORM fractality._index_partition(format('fractality.%I', part_name)::regclass);
    RETURN true;
END
$$;
-- A fresh table shaped like `parent` (columns, defaults, CHECK constraints) in schema fractality,
-- with the given bound as its partition_bound constraint; ready to be filled and attached.
CREATE OR REPLACE FUNCTION fractality._new_event_table(name text, lo bigint, hi bigint) RETURNS regclass
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
CREATE OR REPLACE FUNCTION fractality._set_event_bound(tbl regclass, lo bigint, hi bigint) RETURNS void
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
CREATE OR REPLACE FUNCTION fractality._attach_to_archive(tbl regclass, lo bigint, hi bigint) RETURNS void
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
CREATE OR REPLACE FUNCTION fractality._lock_for_partitions(targets regclass[]) RETURNS void
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
-- A new table of fractality's event columns holding the rows of `src` in [lo, hi), made with
-- CREATE TABLE AS (bulk, about twice as fast as INSERT ... SELECT), then given experience_events'
-- NOT NULLs, defaults and CHECK constraints and partition_bound [lo, hi) in one ALTER (one scan):
-- ready to be attached.
CREATE OR REPLACE FUNCTION fractality._event_table_as(name text, src regclass, lo bigint, hi bigint) RETURNS regclass
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
-- Creates the monthly partition of `parent` holding `month` unless a partition of that name
-- exists; rows of that month caught by the default partition move into it. Returns true when it
-- created one.
CREATE OR REPLACE FUNCTION fractality._ensure_month_partition(parent regclass, month date) RETURNS boolean
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
CREATE OR REPLACE FUNCTION fractality._months_to_partition(ahead integer)
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
CREATE OR REPLACE FUNCTION fractality.action_metadata_check_event() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- its event in the hot tier: the one probe of every write
    IF EXISTS (SELECT 1 FROM fractality.experience_events e
                WHERE e."timestamp" = NEW.event_timestamp AND e.event_id = NEW.event_id) THEN
        RETURN NULL;
    END IF;
    -- else the row where it is now: moved to the cold tier since (archived in the same
    -- transaction), its event is looked for there; deleted, it is not checked, as a foreign
    -- key's check skips a row no longer there
    IF EXISTS (SELECT 1 FROM fractality.action_metadata m
                WHERE m.event_id = NEW.event_id AND m.event_timestamp = NEW.event_timestamp)
       OR (EXISTS (SELECT 1 FROM fractality.action_metadata_archive m
                    WHERE m.event_id = NEW.event_id AND m.event_timestamp = NEW.event_timestamp)
           AND NOT EXISTS (SELECT 1 FROM fractality.experience_events_archive e
                            WHERE e."timestamp" = NEW.event_timestamp AND e.event_id = NEW.event_id)) THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('insert or update on table "action_metadata" violates the reference "action_metadata_event": no event (%s, %s)',
                             NEW.event_timestamp, NEW.event_id),
            HINT = 'Write the event first (fractality.write_event), or both with fractality.write_event_with_metadata; restore a dump in one transaction (pg_restore --single-transaction).';
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER action_metadata_event ON fractality.action_metadata;
CREATE CONSTRAINT TRIGGER action_metadata_event
    AFTER INSERT OR UPDATE OF event_id, event_timestamp ON fractality.action_metadata
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fractality.action_metadata_check_event();
-- partition bounds read and written in ISO form and UTC, whatever the session's settings
-- The partitions of a range-partitioned table of fractality with their bounds as text (NULL for
-- the default partition); a timestamptz bound in ISO form and UTC, whatever the session's
-- DateStyle and TimeZone (an abbreviation such as IST, read back, may name another zone). Its
-- pattern has no backslash, so it reads the same under standard_conforming_strings = off.
CREATE OR REPLACE FUNCTION fractality._partition_bounds(parent regclass)
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

-- ---- keys: every primary and unique key of a tenant table includes user_id -----------------
-- nodes' key becomes (id, user_id) (id first: a node is still found by its id alone); the
-- foreign keys that pointed at the unique (id, user_id) point at it.

ALTER TABLE fractality.edges DROP CONSTRAINT edges_from, DROP CONSTRAINT edges_to;
ALTER TABLE fractality.consciousness_streams DROP CONSTRAINT consciousness_streams_node;
ALTER TABLE fractality.consciousness_archive DROP CONSTRAINT consciousness_archive_node;
ALTER TABLE fractality.consensus_links DROP CONSTRAINT consensus_links_node;
ALTER TABLE fractality.node_embeddings DROP CONSTRAINT node_embeddings_node;

ALTER TABLE fractality.nodes DROP CONSTRAINT nodes_id_user, DROP CONSTRAINT nodes_pkey;
ALTER TABLE fractality.nodes ADD CONSTRAINT nodes_pkey PRIMARY KEY (id, user_id);

ALTER TABLE fractality.edges DROP CONSTRAINT edges_pkey, DROP CONSTRAINT edges_unique;
ALTER TABLE fractality.edges
    ADD CONSTRAINT edges_pkey PRIMARY KEY (id, user_id),
    ADD CONSTRAINT edges_unique UNIQUE (from_node, to_node, relationship_type, user_id),
    ADD CONSTRAINT edges_from FOREIGN KEY (from_node, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    ADD CONSTRAINT edges_to FOREIGN KEY (to_node, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE fractality.consciousness_streams
    ADD CONSTRAINT consciousness_streams_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE fractality.consciousness_archive DROP CONSTRAINT consciousness_archive_pkey;
ALTER TABLE fractality.consciousness_archive
    ADD CONSTRAINT consciousness_archive_pkey PRIMARY KEY (id, user_id),
    ADD CONSTRAINT consciousness_archive_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE fractality.consensus_links DROP CONSTRAINT consensus_links_pkey;
ALTER TABLE fractality.consensus_links
    ADD CONSTRAINT consensus_links_pkey PRIMARY KEY (consensus_id, node_id, user_id),
    ADD CONSTRAINT consensus_links_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;

-- ---- streams: a stream point's resonance vector is bounded --------------------------------------
-- (the archive packs up to 1 000 points of a node in one row: vectors of any size could make that
-- row too large to write, and every archiving run fail). A point of 0.4.0 holding more than
-- 1 000 000 elements stops the update here with 23514: shorten it (or archive it elsewhere) first.
ALTER TABLE fractality.consciousness_streams
    ADD CONSTRAINT consciousness_streams_vector_size CHECK (cardinality(resonance_vector) <= 1000000);

-- and the archive's rows of them are bounded in size too
-- Packs the stream rows that the query `src` yields (consciousness_streams' columns; $1 in it is
-- `cutoff`) into consciousness_archive: per node, up to 1000 points per row in time order, and
-- a row's resonance vectors of at most 4 000 000 elements in all but the first point's (each at
-- most 1 000 000, the table's check): written as text, 1 000 vectors of any size could pass the
-- 1 GB a value may hold, and every run would fail on them. Internal: the callers pass fixed SQL.
CREATE OR REPLACE FUNCTION fractality._pack_stream_points(src text, cutoff timestamptz) RETURNS bigint
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

-- ---- embeddings: models of any dimension, node_embeddings partitioned by tenant --------------
-- The 0.4.0 table steps aside, the partitioned one takes its name and its rows (as the 'default'
-- model), then the model's index is built over them and the old table goes.

ALTER TABLE fractality.node_embeddings RENAME TO node_embeddings_0_4_0;
ALTER TABLE fractality.node_embeddings_0_4_0 DROP CONSTRAINT node_embeddings_pkey;
DROP INDEX fractality.node_embeddings_hnsw, fractality.node_embeddings_user;

CREATE FUNCTION fractality."_node_embeddings_check"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_node_embeddings_check_wrapper';
CREATE TABLE fractality.embedding_models (
    model      text        NOT NULL,
    dims       integer     NOT NULL,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT embedding_models_pkey PRIMARY KEY (model),
    CONSTRAINT embedding_models_name CHECK (model ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT embedding_models_dims CHECK (dims BETWEEN 1 AND 4000),
    CONSTRAINT embedding_models_created CHECK ((created_at IS NULL) = (model = 'default'))
);

COMMENT ON TABLE fractality.embedding_models IS
    'Embedding models: name, dimension and when register_model registered it (NULL for ''default'', which comes with the extension). A model is fixed once it holds embeddings.';

-- The element type of a model's index: vector up to 2 000 dimensions, halfvec above.
CREATE FUNCTION fractality.model_index_type(dims integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF dims < 1 OR dims > 4000 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for dims: %s', dims),
            HINT = 'A model has 1 to 4 000 dimensions (vector up to 2 000, halfvec above), as register_model takes them.';
    END IF;
    RETURN CASE WHEN dims <= 2000 THEN 'vector' ELSE 'halfvec' END;
END
$$;

COMMENT ON FUNCTION fractality.model_index_type(integer) IS
    'The type a model''s HNSW index casts its embeddings to: vector up to 2 000 dimensions, halfvec above (to 4 000).';

CREATE TABLE fractality.node_embeddings (
    user_id       uuid        NOT NULL DEFAULT fractality.current_user_id(),
    node_id       uuid        NOT NULL,
    model         text        NOT NULL DEFAULT 'default',
    embedding     vector      NOT NULL,
    model_version text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    staged        boolean     NOT NULL DEFAULT false,
    CONSTRAINT node_embeddings_pkey PRIMARY KEY (user_id, node_id, model),
    CONSTRAINT node_embeddings_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT node_embeddings_model FOREIGN KEY (model)
        REFERENCES fractality.embedding_models (model)
) PARTITION BY HASH (user_id);

COMMENT ON TABLE fractality.node_embeddings IS
    'One embedding per node and model (pgvector), hash-partitioned by tenant; an HNSW index (cosine) per partition and model.';

-- Deleting a node deletes its embeddings; the foreign key's own lookups go through this index
-- (node_id, user_id) rather than the primary key's (user_id, node_id, model).
CREATE INDEX node_embeddings_node ON fractality.node_embeddings (node_id, user_id);

-- Staged embeddings: the rows remember_many writes (staged = true) stay out of the HNSW indexes
-- (whose predicate is `model = ... AND NOT staged`), so that a batch does not pay an index
-- insert per memory; searches read a tenant's staged rows exactly, through this index of them
-- alone, beside its index scan; index_staged_embeddings (and run_maintenance) moves them into
-- the HNSW indexes. Like GIN's pending list: a bulk write is cheap, a search reads the backlog.
CREATE INDEX node_embeddings_staged ON fractality.node_embeddings (user_id, model) WHERE staged;

COMMENT ON COLUMN fractality.node_embeddings.staged IS
    'Written by remember_many and not yet in the model''s HNSW index: searches read it exactly; index_staged_embeddings (run_maintenance) indexes it.';

-- The partitions, fixed at install: the setting fractality.embedding_partitions (default 64), e.g.
--   SET fractality.embedding_partitions = 256; CREATE EXTENSION fractality CASCADE;
-- Each keeps its rows whole up to a page (toast_tuple_target 8160): an embedding of up to about
-- 2 000 dimensions (8 KB) stays in the row instead of going to TOAST in ~2 KB chunks above 2 KB
-- (512 dimensions). A search computes the distance of every row its index scan returns, so a
-- TOASTed embedding cost each returned row a TOAST index probe and four chunk reads (at 1 536
-- dimensions, ~0.3 ms of a 40-row scan). Larger embeddings (halfvec models) still go to TOAST.
DO $$
DECLARE
    setting text := current_setting('fractality.embedding_partitions', true);
    n integer;
BEGIN
    IF setting IS NULL OR setting = '' THEN
        n := 64;
    ELSIF setting !~ '^[0-9]{1,4}$' OR setting::integer NOT BETWEEN 1 AND 1024 THEN
        RAISE EXCEPTION 'invalid value for fractality.embedding_partitions: %', setting
            USING ERRCODE = '22023', HINT = 'The number of partitions of node_embeddings, from 1 to 1024 (default 64).';
    ELSE
        n := setting::integer;
    END IF;
    FOR i IN 0 .. n - 1 LOOP
        EXECUTE format('CREATE TABLE fractality.%I PARTITION OF fractality.node_embeddings
                            FOR VALUES WITH (MODULUS %s, REMAINDER %s)
                            WITH (toast_tuple_target = 8160)',
                       'node_embeddings_p' || lpad(i::text, greatest(2, length((n - 1)::text)), '0'), n, i);
    END LOOP;
END
$$;

-- An embedding's dimension is its model's (22000 naming both), and the model is registered
-- (22023): checked before the row reaches the foreign key or the model's index, by the native
-- trigger function fractality._node_embeddings_check() (src/models.rs: the model's dimension
-- looked up once per statement).
CREATE TRIGGER node_embeddings_check
    BEFORE INSERT OR UPDATE OF model, embedding ON fractality.node_embeddings
    FOR EACH ROW EXECUTE FUNCTION fractality._node_embeddings_check();

-- The dimension of `model` and pgvector's type and operator class for its HNSW indexes, qualified
-- with pgvector's schema (wherever it was installed); 22023 for an unknown model. What
-- build_model_index and build_tenant_graphs build with.
CREATE FUNCTION fractality._model_index_ops(model text, OUT dims integer, OUT index_type text, OUT opclass text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT m.dims INTO dims FROM fractality.embedding_models m WHERE m.model = _model_index_ops.model;
    IF dims IS NULL THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('unknown embedding model %s', CASE WHEN length(_model_index_ops.model) <= 200 THEN quote_literal(_model_index_ops.model) ELSE format('%L (%s characters)', left(_model_index_ops.model, 197) || '...', length(_model_index_ops.model)) END),
            HINT = 'fractality.embedding_models lists the registered models.';
    END IF;
    SELECT format('%I.%I', n.nspname, fractality.model_index_type(dims)),
           format('%I.%I', n.nspname, fractality.model_index_type(dims) || '_cosine_ops')
      INTO index_type, opclass
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector';
END
$$;

-- Builds the HNSW index of `model` on every partition of node_embeddings that lacks it (named
-- node_embeddings_<partition>_<model>_hnsw, attached to node_embeddings_<model>_hnsw); returns
-- each partition built and the seconds its build took. Bulk loads drop the index first
-- (drop_model_index), load, then build it here: building is far faster than inserting into it.
CREATE FUNCTION fractality.build_model_index(model text)
RETURNS TABLE (partition_name text, seconds float8)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d integer;
    ty text;
    opclass text;
    parent_index text;
    part record;
    child text;
    t0 timestamptz;
BEGIN
    IF model IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('build_model_index: %s must not be NULL', 'model'),
            HINT = 'Pass a registered model (fractality.embedding_models lists them).';
    END IF;
    SELECT o.dims, o.index_type, o.opclass INTO d, ty, opclass
      FROM fractality._model_index_ops(build_model_index.model) o;
    parent_index := 'node_embeddings_' || build_model_index.model || '_hnsw';
    IF to_regclass(format('fractality.%I', parent_index)) IS NULL THEN
        EXECUTE format('CREATE INDEX %I ON ONLY fractality.node_embeddings USING hnsw ((embedding::%s(%s)) %s) WHERE model = %L AND NOT staged',
                       parent_index, ty, d, opclass, build_model_index.model);
    END IF;
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'fractality.node_embeddings'::regclass ORDER BY c.relname
    LOOP
        child := part.relname || '_' || build_model_index.model || '_hnsw';
        CONTINUE WHEN to_regclass(format('fractality.%I', child)) IS NOT NULL;
        t0 := clock_timestamp();
        EXECUTE format('CREATE INDEX %I ON fractality.%I USING hnsw ((embedding::%s(%s)) %s) WHERE model = %L AND NOT staged',
                       child, part.relname, ty, d, opclass, build_model_index.model);
        EXECUTE format('ALTER INDEX fractality.%I ATTACH PARTITION fractality.%I', parent_index, child);
        partition_name := part.relname;
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION fractality.build_model_index(text) IS
    'Builds the HNSW index of a model on every partition of node_embeddings that lacks it; returns the seconds each took.';

-- A model's row inserted (by register_model, or by pg_restore from a dump) gets the model's
-- HNSW index on every partition: the indexes made at run time on node_embeddings' partitions,
-- which belong to the extension, are not in a dump; the rows of embedding_models are.
CREATE FUNCTION fractality._embedding_models_index() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM fractality.build_model_index(NEW.model);
    RETURN NULL;
END
$$;

CREATE TRIGGER embedding_models_index
    AFTER INSERT ON fractality.embedding_models
    FOR EACH ROW EXECUTE FUNCTION fractality._embedding_models_index();
-- Also under session_replication_role = replica: a data-only restore loaded that way
-- (docs/OPERATIONS.md) and a logical replica get the index too. (pg_dump --disable-triggers
-- writes ALTER TABLE ... DISABLE TRIGGER ALL instead, which turns this trigger off as well.)
ALTER TABLE fractality.embedding_models ENABLE ALWAYS TRIGGER embedding_models_index;

-- Drops the HNSW index of `model` from every partition (before a bulk load); true when there was one.
CREATE FUNCTION fractality.drop_model_index(model text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    idx regclass;
    g record;
BEGIN
    IF model IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('drop_model_index: %s must not be NULL', 'model'),
            HINT = 'Pass a registered model (fractality.embedding_models lists them).';
    END IF;
    idx := to_regclass(format('fractality.%I', 'node_embeddings_' || drop_model_index.model || '_hnsw'));
    IF NOT EXISTS (SELECT 1 FROM fractality.embedding_models m WHERE m.model = drop_model_index.model) THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('unknown embedding model %s', CASE WHEN length(drop_model_index.model) <= 200 THEN quote_literal(drop_model_index.model) ELSE format('%L (%s characters)', left(drop_model_index.model, 197) || '...', length(drop_model_index.model)) END),
            HINT = 'fractality.embedding_models lists the registered models.';
    END IF;
    -- the model's tenant graphs go too (build_tenant_graphs builds them again after the load)
    FOR g IN SELECT c.relname FROM pg_class c
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind = 'i'
                AND c.relname ~ ('^t[0-9a-f]{24}_' || drop_model_index.model || '_hnsw$')
    LOOP
        EXECUTE format('DROP INDEX fractality.%I', g.relname);
    END LOOP;
    IF idx IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP INDEX %s', idx);
    RETURN true;
END
$$;

COMMENT ON FUNCTION fractality.drop_model_index(text) IS
    'Drops the HNSW index of a model from every partition of node_embeddings, and the model''s tenant graphs (before a bulk load; build_model_index and build_tenant_graphs rebuild them).';

-- Registers an embedding model (name, dimension) and builds its HNSW index on every partition.
-- Idempotent: registering a model again with the same dimension does nothing (and needs no
-- privilege beyond reading embedding_models). A model that holds embeddings is fixed: another
-- dimension for it is an error; one that holds none takes the new dimension (its index rebuilt).
-- Creating indexes needs the owner of node_embeddings: the administrator registers new models.
CREATE FUNCTION fractality.register_model(model text, dims integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_dims integer;
BEGIN
    IF model IS NULL OR dims IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('register_model: %s must not be NULL', CASE WHEN model IS NULL THEN 'model' ELSE 'dims' END),
            HINT = 'Pass a model name and its number of dimensions, e.g. register_model(''text_embedding_3_small'', 1536).';
    END IF;
    IF model !~ '^[a-z][a-z0-9_]{0,31}$' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for model: %s', CASE WHEN length(model) <= 200 THEN quote_literal(model) ELSE format('%L (%s characters)', left(model, 197) || '...', length(model)) END),
            HINT = 'A model name is a plain identifier: lower-case letters, digits and underscores, starting with a letter, at most 32 characters (e.g. ''text_embedding_3_small'').';
    END IF;
    IF dims < 1 OR dims > 4000 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for dims: %s', dims),
            HINT = 'pgvector''s HNSW indexes take up to 2 000 dimensions as vector and up to 4 000 as halfvec (fractality uses halfvec above 2 000); reduce larger embeddings first (e.g. the dimensions parameter of Matryoshka models).';
    END IF;
    SELECT m.dims INTO current_dims FROM fractality.embedding_models m WHERE m.model = register_model.model;
    IF current_dims = dims THEN
        RETURN;
    END IF;
    IF current_dims IS NULL AND model ~ '^p[0-9]+_' THEN
        -- model m's index on partition p00 is node_embeddings_p00_m_hnsw, which is also the name
        -- of the whole-table index of a model 'p00_m'
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for model: %L', model),
            HINT = 'Names of the form p<digits>_... are taken by the indexes of other models on the partitions of node_embeddings (node_embeddings_p00_<model>_hnsw); choose another.';
    END IF;
    IF NOT pg_has_role((SELECT c.relowner FROM pg_class c
                         WHERE c.oid = 'fractality.node_embeddings'::regclass), 'USAGE') THEN
        RAISE insufficient_privilege USING
            MESSAGE = format('register_model: only the owner of fractality.node_embeddings may register model %L', model),
            HINT = 'A new model builds an HNSW index on every partition: the administrator registers it once; then register_model with the same dimension succeeds for every role.';
    END IF;
    -- one registration of a model at a time: a second session registering it meanwhile waits,
    -- then reads what the first committed (the same dimension: nothing to do)
    PERFORM fractality._lock('register_model ' || model);
    SELECT m.dims INTO current_dims FROM fractality.embedding_models m WHERE m.model = register_model.model;
    IF current_dims = dims THEN
        RETURN;
    END IF;
    IF current_dims IS NOT NULL THEN
        -- the writers of embeddings first: one of this model written meanwhile (staged, it meets
        -- no index that would refuse its dimension) is then seen below, and a later one waits
        -- for the new dimension. A snapshot older than the lock would not see it. ACCESS
        -- EXCLUSIVE at once, which dropping the model's index below takes anyway: a weaker lock
        -- raised to it later was a deadlock with a session that had read embeddings and then
        -- wrote one (40P01, found by a review).
        PERFORM fractality._check_read_committed(
            format('register_model: changing the dimension of model %L', model));
        LOCK TABLE fractality.node_embeddings IN ACCESS EXCLUSIVE MODE;
        IF EXISTS (SELECT 1 FROM fractality.node_embeddings e WHERE e.model = register_model.model) THEN
            RAISE invalid_parameter_value USING
                MESSAGE = format('model %L has %s dimensions and holds embeddings: it cannot change to %s',
                                 model, current_dims, dims),
                HINT = 'A model is fixed once it holds embeddings; register the new one under another name.';
        END IF;
        IF register_model.model = 'default' THEN
            -- the install registers it at 384 and a dump leaves its row out (security.sql), so a
            -- restore would bring it back at 384 and refuse every embedding of another size
            RAISE invalid_parameter_value USING
                MESSAGE = format('model ''default'' has %s dimensions, fixed at install: it cannot change to %s',
                                 current_dims, dims),
                HINT = 'Register a model of its own name for another dimension, e.g. SELECT fractality.register_model(''text_embedding_3_small'', 1536), and pass it as model.';
        END IF;
        PERFORM fractality.drop_model_index(model);
        UPDATE fractality.embedding_models m SET dims = register_model.dims WHERE m.model = register_model.model;
    ELSE
        INSERT INTO fractality.embedding_models (model, dims, created_at)
        VALUES (register_model.model, register_model.dims,
                CASE WHEN register_model.model <> 'default' THEN now() END);
    END IF;
    PERFORM fractality.build_model_index(model);
END
$$;

COMMENT ON FUNCTION fractality.register_model(text, integer) IS
    'Registers an embedding model (a plain identifier, 1 to 4 000 dimensions) and builds its HNSW index on every partition; idempotent.';

-- Moves the caller's staged embeddings (remember_many's) into their models' HNSW indexes, at most
-- `max_rows` of them (NULL: all), oldest first, but for those another session holds (left for
-- the next call); returns how many. As the caller: row-level security limits it to the tenants
-- the caller may write. run_maintenance calls it.
CREATE FUNCTION fractality.index_staged_embeddings(max_rows bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    tenants uuid[];
    nodes uuid[];
    models text[];
BEGIN
    IF max_rows < 0 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for max_rows: %s', max_rows),
            HINT = 'The most staged embeddings to index in this call, >= 0; NULL indexes every one.';
    END IF;
    -- the oldest max_rows, locked in the order of their keys (as remember_many locks a tenant's),
    -- skipping those another session holds: this never waits, so neither for another caller nor
    -- for a session that holds one and waits for a table run_maintenance holds (its partitions'
    -- and retention's locks, taken first: a deadlock); locked in a
    -- statement of their own and written in the next, whose snapshot sees them as locked (an
    -- UPDATE that locked them in a subquery could wait for a stale version's tuple lock:
    -- sql/queries/decay_lock.sql)
    SELECT array_agg(x.user_id), array_agg(x.node_id), array_agg(x.model) INTO tenants, nodes, models
      FROM (SELECT l.user_id, l.node_id, l.model FROM fractality.node_embeddings l
             WHERE l.staged
               AND (l.user_id, l.node_id, l.model) IN
                   (SELECT s.user_id, s.node_id, s.model FROM fractality.node_embeddings s
                     WHERE s.staged ORDER BY s.updated_at LIMIT max_rows)
             ORDER BY l.user_id, l.node_id, l.model
               FOR NO KEY UPDATE OF l SKIP LOCKED) x;
    UPDATE fractality.node_embeddings e SET staged = false
      FROM ROWS FROM (unnest(tenants), unnest(nodes), unnest(models)) AS x (user_id, node_id, model)
     WHERE e.staged AND e.user_id = x.user_id AND e.node_id = x.node_id AND e.model = x.model;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION fractality.index_staged_embeddings(bigint) IS
    'Moves staged embeddings (written by remember_many) into their models'' HNSW indexes, at most max_rows (NULL: all), but for those another session holds; returns how many.';

-- Tenant graphs: an HNSW index of one tenant's embeddings of a model alone, beside the
-- partition's index of every tenant there (which keeps them too: crystallize_consensus searches
-- across tenants through it). A partition holds the tenants its hash gives it; in the shared
-- graph a tenant's search steps over the others' rows (pgvector's iterative scan, filtering by
-- tenant), so its cost grows with its share of the partition: a tenant of 10 000 among 40 000
-- rows paid 3.6-4.6 ms where its own graph answers in 0.8-0.9 ms (1M x 384, 2026-12-03). A
-- search reaches the tenant's graph by planning its query for that tenant (src/search.rs): the
-- index predicate names the tenant, which only a plan made for its value can match.
--   t<24 hex digits of md5(user_id)>_<model>_hnsw   ON the tenant's partition
--   WHERE model = <model> AND NOT staged AND left(md5(user_id::text), 24) = <those 24 digits>
-- Each row of such a tenant is inserted into two graphs: the cost of its writes to the indexes
-- doubles. The default min_rows, 500, is fractality.exact_scan_limit's default: a tenant too
-- large to be read whole gets a graph (at 100k x 384, tenants of ~1 000: find_resonant 1.57 ->
-- 1.18 ms, recall 1.42 -> 1.05 ms, remember 2.13 -> 2.87 ms; docs/BENCHMARKS.md). The catalog
-- shows every role the index's name and predicate: both name a digest of the tenant, not the
-- tenant, whose id is all a session needs to act as it; the index's size tells the tenant's.
-- The search (sql/queries/tenant_nearest.sql) states the same digest of its tenant, which its
-- plan, made for that tenant, folds into the constant the predicate names.
--
-- build_tenant_graphs builds the graph of every tenant holding at least min_rows embeddings of
-- `model` that lacks one, and drops those of tenants now under half of min_rows (or gone);
-- returns what it did; one call at a time (a second waits for the first). Creating and dropping
-- indexes needs the owner of node_embeddings (42501 for any other role). The call is one
-- transaction: a build's SHARE lock on the tenant's partition (writes wait, reads go on), and a
-- drop's ACCESS EXCLUSIVE one, last until the whole call commits. Not in a dump, like the models' indexes:
-- run it again after a restore (searches go on either way: without the graph a tenant is
-- searched through the shared one).
CREATE FUNCTION fractality.build_tenant_graphs(model text DEFAULT 'default', min_rows bigint DEFAULT 500)
RETURNS TABLE (index_name text, partition_name text, tenant_rows bigint, action text, seconds float8)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d integer;
    ty text;
    opclass text;
    t record;
    t0 timestamptz;
    tenants uuid[];
    parts regclass[];
    counts bigint[];
    seen text[] := '{}';
    shrunk integer[] := '{}';
    k integer;
BEGIN
    IF model IS NULL OR min_rows IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('build_tenant_graphs: %s must not be NULL', CASE WHEN model IS NULL THEN 'model' ELSE 'min_rows' END),
            HINT = 'Pass a registered model and the fewest embeddings a tenant holds to get its own graph, e.g. build_tenant_graphs(''default'', 500).';
    END IF;
    IF min_rows < 1 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for min_rows: %s', min_rows),
            HINT = 'The fewest embeddings of the model a tenant holds to get its own graph, >= 1 (default 500).';
    END IF;
    IF NOT pg_has_role((SELECT c.relowner FROM pg_class c
                         WHERE c.oid = 'fractality.node_embeddings'::regclass), 'USAGE') THEN
        RAISE insufficient_privilege USING
            MESSAGE = format('build_tenant_graphs: only the owner of fractality.node_embeddings may build tenant graphs (model %s)', CASE WHEN length(build_tenant_graphs.model) <= 200 THEN quote_literal(build_tenant_graphs.model) ELSE format('%L (%s characters)', left(build_tenant_graphs.model, 197) || '...', length(build_tenant_graphs.model)) END),
            HINT = 'A tenant graph is an index on a partition of node_embeddings: the administrator builds them (e.g. after run_maintenance).';
    END IF;
    SELECT o.dims, o.index_type, o.opclass INTO d, ty, opclass
      FROM fractality._model_index_ops(build_tenant_graphs.model) o;
    -- one build at a time: a second call waits for the first to commit, then finds its graphs
    -- (two at once would both create the same index, and the second would fail)
    PERFORM fractality._lock('build_tenant_graphs');
    -- the tenants first, all of them (an index cannot be built on a partition a scan still reads)
    SELECT coalesce(array_agg(x.user_id ORDER BY x.part::text, x.user_id), '{}'),
           coalesce(array_agg(x.part ORDER BY x.part::text, x.user_id), '{}'),
           coalesce(array_agg(x.n ORDER BY x.part::text, x.user_id), '{}')
      INTO tenants, parts, counts
      FROM (SELECT e.user_id, e.tableoid::regclass AS part, count(*) AS n
              FROM fractality.node_embeddings e
             WHERE e.model = build_tenant_graphs.model
             GROUP BY e.user_id, e.tableoid) x;
    FOR i IN 1 .. cardinality(tenants) LOOP
        -- the name src/search.rs (tenant_path.sql) looks for
        index_name := 't' || left(md5(tenants[i]::text), 24) || '_' || build_tenant_graphs.model || '_hnsw';
        seen := seen || index_name;
        partition_name := (SELECT c.relname FROM pg_class c WHERE c.oid = parts[i]);
        tenant_rows := counts[i];
        t0 := clock_timestamp();
        IF counts[i] >= min_rows AND to_regclass(format('fractality.%I', index_name)) IS NULL THEN
            EXECUTE format('CREATE INDEX %I ON %s USING hnsw ((embedding::%s(%s)) %s) WHERE model = %L AND NOT staged AND left(md5(user_id::text), 24) = %L',
                           index_name, parts[i], ty, d, opclass, build_tenant_graphs.model, left(md5(tenants[i]::text), 24));
            action := 'built';
        ELSIF counts[i] < min_rows / 2.0 AND to_regclass(format('fractality.%I', index_name)) IS NOT NULL THEN
            -- dropped after every build: a drop locks its partition against reads to the end of
            -- the call, so the searches of the tenants there would wait through the builds after
            -- it
            shrunk := shrunk || i;
            CONTINUE;
        ELSE
            CONTINUE;
        END IF;
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
    -- (seen holds each tenant's index name at its place)
    FOREACH k IN ARRAY shrunk LOOP
        t0 := clock_timestamp();
        index_name := seen[k];
        EXECUTE format('DROP INDEX fractality.%I', index_name);
        partition_name := (SELECT c.relname FROM pg_class c WHERE c.oid = parts[k]);
        tenant_rows := counts[k];
        action := 'dropped';
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
    -- the graphs of tenants that hold no embedding of the model any more
    FOR t IN SELECT c.relname, p.relname AS part
               FROM pg_class c
               JOIN pg_index i ON i.indexrelid = c.oid
               JOIN pg_class p ON p.oid = i.indrelid
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind = 'i'
                AND c.relname ~ ('^t[0-9a-f]{24}_' || build_tenant_graphs.model || '_hnsw$')
                AND c.relname <> ALL (seen)
              ORDER BY c.relname
    LOOP
        t0 := clock_timestamp();
        EXECUTE format('DROP INDEX fractality.%I', t.relname);
        index_name := t.relname;
        partition_name := t.part;
        tenant_rows := 0;
        action := 'dropped';
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION fractality.build_tenant_graphs(text, bigint) IS
    'Builds an HNSW index of its own for every tenant holding at least min_rows embeddings of the model (searched instead of the partition''s shared index), and drops those of tenants under half of it; the owner of node_embeddings runs it.';

-- the model's row without its trigger, which would build the indexes now, empty, and have every
-- row below inserted into them one at a time: they are built once over the rows, by
-- build_model_index (the trigger fires always afterwards, as a fresh install leaves it)
ALTER TABLE fractality.embedding_models DISABLE TRIGGER embedding_models_index;
INSERT INTO fractality.embedding_models (model, dims, created_at) VALUES ('default', 384, NULL);
ALTER TABLE fractality.embedding_models ENABLE ALWAYS TRIGGER embedding_models_index;
INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding, model_version, updated_at)
SELECT e.user_id, e.node_id, 'default', e.embedding, e.model_version, e.updated_at
  FROM fractality.node_embeddings_0_4_0 e;
SELECT count(*) AS partitions_indexed FROM fractality.build_model_index('default');
-- each role keeps on the new table, on each of its partitions and on the models beside it the
-- privileges it held on the 0.4.0 table, as GRANT ... ON ALL TABLES (the README's) would give it
-- on a fresh install: an application role reads and writes embeddings as it did
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT t.rel, x.grantee, x.privilege_type
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x,
                    (SELECT 'fractality.node_embeddings'::pg_catalog.regclass AS rel
                     UNION ALL SELECT 'fractality.embedding_models'::pg_catalog.regclass
                     UNION ALL SELECT i.inhrelid::pg_catalog.regclass FROM pg_catalog.pg_inherits i
                      WHERE i.inhparent = 'fractality.node_embeddings'::pg_catalog.regclass) t
              WHERE c.oid = 'fractality.node_embeddings_0_4_0'::pg_catalog.regclass
                AND x.grantee <> c.relowner
                AND x.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', a.privilege_type, a.rel,
                                  CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END);
    END LOOP;
END
$$;
DROP TABLE fractality.node_embeddings_0_4_0;

-- ---- consensus: a model per consensus node, the centroid kept from tenants ------------------

ALTER TABLE fractality.consensus_nodes
    ADD COLUMN model text NOT NULL DEFAULT 'default' REFERENCES fractality.embedding_models (model);

-- The unit centroid of each consensus, for the owner alone (row-level security without a policy
-- for any other role: see sql/security.sql).
CREATE TABLE fractality.consensus_centroids (
    consensus_id uuid   PRIMARY KEY REFERENCES fractality.consensus_nodes (id) ON DELETE CASCADE,
    centroid     vector NOT NULL
);

COMMENT ON TABLE fractality.consensus_centroids IS
    'The unit centroid of each consensus node; readable by the owner only (a centroid of few vectors gives them away).';

INSERT INTO fractality.consensus_centroids (consensus_id, centroid)
SELECT c.id, c.centroid FROM fractality.consensus_nodes c WHERE c.centroid IS NOT NULL;
ALTER TABLE fractality.consensus_nodes DROP COLUMN centroid;

-- a consensus's key names its seed by a digest, not by the seed's id (another tenant's node, in
-- a table every role reads): 'consensus-<id>' becomes 'consensus-<md5 of the id>', the key a new
-- crystallisation of the same seed finds
UPDATE fractality.consensus_nodes
   SET node_key = 'consensus-' || md5(substr(node_key, 11))
 WHERE node_key ~ '^consensus-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

COMMENT ON TABLE fractality.consensus_nodes IS
    'Collective nodes: contributor count and group resonance of similar nodes held by several users (label and metadata stay empty).';
COMMENT ON TABLE fractality.consensus_links IS
    'Which node contributed to which consensus node, with its similarity to the seed (to one decimal).';

-- 0.5.0 publishes a consensus's number of users and group resonance to one decimal, with no
-- label or metadata, and to each tenant its links' similarity to one decimal (a label, a value or
-- an exact score confirms a guess about another tenant's ideas): the rows 0.4.0 made become
-- what a crystallisation now writes, rounded as src/consensus/math.rs rounds (x * 10 rounded half
-- away from 0, in float8 as Rust's f64::round, then / 10)
-- (every row: the consensus tables hold a row per group and per member)
UPDATE fractality.consensus_nodes
   SET label = NULL, metadata = '{}'::jsonb,
       resonance_score = sign(resonance_score * 10) * (trunc(abs(resonance_score * 10))
           + (abs(resonance_score * 10) - trunc(abs(resonance_score * 10)) >= 0.5)::int) / 10::float8;
UPDATE fractality.consensus_links
   SET similarity = sign(similarity * 10) * (trunc(abs(similarity * 10))
           + (abs(similarity * 10) - trunc(abs(similarity * 10)) >= 0.5)::int) / 10::float8;

-- ---- the agent memory API: expiry, remember, recall, forget ----------------------------------

ALTER TABLE fractality.nodes
    ADD COLUMN expires_at timestamptz,
    ADD CONSTRAINT nodes_expires_at_finite CHECK (isfinite(expires_at));
COMMENT ON COLUMN fractality.nodes.expires_at IS
    'When the memory expires (remember''s ttl), apart from decay: never recalled after it, deleted by run_maintenance.';
-- the memories that expire, for run_maintenance (energy writes leave expires_at: still HOT)
CREATE INDEX nodes_expires_at ON fractality.nodes (expires_at) WHERE expires_at IS NOT NULL;

-- Every node's energy as of now, without any write: one seq scan of nodes and a native call per
-- row. THE one place where fractality reads a node's current energy: the views, resonance,
-- recall and the rest of the functions read it through this view.
CREATE OR REPLACE VIEW fractality.node_energy WITH (security_invoker = true) AS
SELECT n.id                                         AS node_id,
       n.user_id,
       n.node_key,
       n.label,
       fractality.current_atp(n.atp, n.atp_at)      AS atp,
       n.atp                                        AS stored_atp,
       n.atp_at,
       n.metadata,
       n.expires_at
  FROM fractality.nodes n;

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
CREATE OR REPLACE FUNCTION fractality._run_maintenance(with_tables boolean, with_rows boolean) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION fractality.run_maintenance() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT fractality._run_maintenance(true, true) $$;

-- The report of maintain(): the two parts' reports as one, "failed" the steps of both, "busy"
-- the first's, {"skipped": true} alone where both were.
CREATE OR REPLACE FUNCTION fractality._maintenance_report(tables jsonb, row_steps jsonb) RETURNS jsonb
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
CREATE FUNCTION fractality."remember"(
	"node_key" TEXT, /* Option < & str > */
	"content" TEXT, /* Option < & str > */
	"embedding" vector, /* Option < Vector < '_ > > */
	"metadata" jsonb DEFAULT '{}', /* Option < crate :: jsonb :: JsonValue > */
	"model" TEXT DEFAULT 'default', /* Option < & str > */
	"dedup_threshold" double precision DEFAULT 0.95, /* Option < f64 > */
	"ttl" interval DEFAULT NULL /* Option < Interval > */
) RETURNS TABLE (
	"node_id" uuid,  /* Uuid */
	"created" bool  /* bool */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'remember_wrapper';
CREATE FUNCTION fractality."remember_many"(
	"memories" jsonb, /* Option < crate :: jsonb :: JsonbArg < '_ > > */
	"model" TEXT DEFAULT 'default', /* Option < & str > */
	"dedup_threshold" double precision DEFAULT 0.95 /* Option < f64 > */
) RETURNS TABLE (
	"node_id" uuid,  /* Uuid */
	"created" bool  /* bool */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'remember_many_wrapper';
CREATE FUNCTION fractality."remember_many"(
	"node_keys" TEXT[], /* :: std :: option :: Option < Array < '_, String > > */
	"contents" TEXT[], /* :: std :: option :: Option < Array < '_, String > > */
	"embeddings" vector[], /* Option < VectorArray < '_ > > */
	"metadata" jsonb[] DEFAULT NULL, /* Option < crate :: jsonb :: JsonbArray > */
	"model" TEXT DEFAULT 'default', /* Option < & str > */
	"dedup_threshold" double precision DEFAULT 0.95, /* Option < f64 > */
	"ttls" interval[] DEFAULT NULL /* :: std :: option :: Option < Array < '_, Interval > > */
) RETURNS TABLE (
	"node_id" uuid,  /* Uuid */
	"created" bool  /* bool */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'remember_many_arrays_wrapper';
CREATE FUNCTION fractality."recall"(
	"query" vector, /* Option < Vector < '_ > > */
	"k" INT DEFAULT 10, /* Option < i32 > */
	"query_text" TEXT DEFAULT NULL, /* Option < & str > */
	"context" TEXT DEFAULT NULL, /* Option < & str > */
	"model" TEXT DEFAULT 'default', /* Option < & str > */
	"min_similarity" double precision DEFAULT 0, /* Option < f64 > */
	"reinforce" double precision DEFAULT 0, /* Option < f64 > */
	"w_sim" double precision DEFAULT NULL, /* Option < f64 > */
	"w_energy" double precision DEFAULT NULL, /* Option < f64 > */
	"w_edge" double precision DEFAULT NULL /* Option < f64 > */
) RETURNS TABLE (
	"node_id" uuid,  /* Uuid */
	"node_key" TEXT,  /* String */
	"content" TEXT,  /* Option < String > */
	"metadata" jsonb,  /* crate :: jsonb :: JsonbText */
	"similarity" double precision,  /* Option < f64 > */
	"text_rank" double precision,  /* Option < f64 > */
	"atp" double precision,  /* f64 */
	"edge_weight" double precision,  /* f64 */
	"score" double precision  /* f64 */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'recall_wrapper';
CREATE FUNCTION fractality."recall_explain"(
	"query" vector, /* Option < Vector < '_ > > */
	"k" INT DEFAULT 10, /* Option < i32 > */
	"query_text" TEXT DEFAULT NULL, /* Option < & str > */
	"context" TEXT DEFAULT NULL, /* Option < & str > */
	"model" TEXT DEFAULT 'default', /* Option < & str > */
	"min_similarity" double precision DEFAULT 0, /* Option < f64 > */
	"w_sim" double precision DEFAULT NULL, /* Option < f64 > */
	"w_energy" double precision DEFAULT NULL, /* Option < f64 > */
	"w_edge" double precision DEFAULT NULL /* Option < f64 > */
) RETURNS TABLE (
	"position" INT,  /* i32 */
	"node_id" uuid,  /* Uuid */
	"node_key" TEXT,  /* String */
	"similarity" double precision,  /* Option < f64 > */
	"vector_rank" INT,  /* Option < i32 > */
	"text_rank" double precision,  /* Option < f64 > */
	"text_position" INT,  /* Option < i32 > */
	"relevance" double precision,  /* f64 */
	"atp" double precision,  /* f64 */
	"edge_weight" double precision,  /* f64 */
	"score" double precision,  /* f64 */
	"returned" bool,  /* bool */
	"path" TEXT  /* String */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'recall_explain_wrapper';
CREATE FUNCTION fractality."forget"(
	"node_key" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'forget_wrapper';

-- the full text: from an index expression on nodes into node_text, kept by triggers
DROP INDEX fractality.nodes_search_gin;
-- The full text of a node: its label and metadata->>'description', kept in node_text (below);
-- their first 80 000 characters, within what a tsvector holds (1 MB of words) however they are
-- written: the parser keeps a hyphenated word and each of its parts, a URL and its host and
-- path, up to about 12 bytes of words a character in a 4-byte script (a label of 2 MB of
-- distinct words failed the write with 54000, and so did 264 000 Hangul characters).
CREATE OR REPLACE FUNCTION fractality.node_search(label text, metadata jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.to_tsvector('english'::regconfig,
                              pg_catalog.left(coalesce(label, '') || ' ' || coalesce(metadata OPERATOR(pg_catalog.->>) 'description', ''),
                                              80000));

COMMENT ON FUNCTION fractality.node_search(text, jsonb) IS
    'The full text of a node (label and metadata->>''description''), as node_text keeps it.';
-- The full text of every node, in a table of its own beside nodes: (user_id, node_id, search,
-- expires_at), kept by the two triggers below and deleted with its node. Not in nodes: a stored
-- column there would widen the row that every energy write rewrites (see the fillfactor note
-- above). Stored rather than an index expression: a text search ranks every match, and
-- recomputing each match's tsvector for its rank cost more than the search itself. Its GIN index
-- leads with the tenant (btree_gin), so that one index scan returns the tenant's matches instead
-- of every tenant's, intersected with a btree. At 1M nodes in 100 tenants, the matches of one
-- common word in one tenant (about 500 of 50 000) ranked and cut to 40: 15.5 ms through an
-- expression index and nodes' btree on user_id, 0.65 ms here. Not dumped: restoring nodes
-- makes it again (the insert trigger).
CREATE TABLE fractality.node_text (
    user_id    uuid        NOT NULL,
    node_id    uuid        NOT NULL,
    search     tsvector    NOT NULL,
    expires_at timestamptz,
    CONSTRAINT node_text_pkey PRIMARY KEY (user_id, node_id),
    CONSTRAINT node_text_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE
);

COMMENT ON TABLE fractality.node_text IS
    'The full text of every node (fractality.node_search(label, metadata)) and its expiry, kept by triggers on nodes; searched by recall and search_nodes.';

-- new nodes: one INSERT per statement (a COPY of a million nodes included)
CREATE FUNCTION fractality._node_text_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO fractality.node_text (user_id, node_id, search, expires_at)
    SELECT n.user_id, n.id, fractality.node_search(n.label, n.metadata), n.expires_at
      FROM added n;
    RETURN NULL;
END
$$;

-- a node whose label, description or expiry changed (energy writes set none of them, so the
-- trigger is not even looked at for them: a column-list check, no row lock)
CREATE FUNCTION fractality._node_text_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO fractality.node_text (user_id, node_id, search, expires_at)
    VALUES (NEW.user_id, NEW.id, fractality.node_search(NEW.label, NEW.metadata), NEW.expires_at)
    ON CONFLICT (user_id, node_id)
    DO UPDATE SET search = EXCLUDED.search, expires_at = EXCLUDED.expires_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER nodes_text_insert
    AFTER INSERT ON fractality.nodes
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._node_text_insert();
CREATE TRIGGER nodes_text_update
    AFTER UPDATE OF label, metadata, expires_at ON fractality.nodes
    FOR EACH ROW
    WHEN (OLD.label IS DISTINCT FROM NEW.label
          OR (OLD.metadata OPERATOR(pg_catalog.->>) 'description')
             IS DISTINCT FROM (NEW.metadata OPERATOR(pg_catalog.->>) 'description')
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION fractality._node_text_update();
-- Kept like an index, also under session_replication_role = replica, the way a data-only restore
-- loads nodes (docs/OPERATIONS.md, "Partitions, backups, replicas"). On a logical replica its nodes fill its node_text: leave
-- node_text out of publications.
ALTER TABLE fractality.nodes ENABLE ALWAYS TRIGGER nodes_text_insert;
ALTER TABLE fractality.nodes ENABLE ALWAYS TRIGGER nodes_text_update;
INSERT INTO fractality.node_text (user_id, node_id, search, expires_at)
SELECT n.user_id, n.id, fractality.node_search(n.label, n.metadata), n.expires_at
  FROM fractality.nodes n;
-- the tenant first, then the words (btree_gin gives uuid a GIN operator class). New entries wait
-- in the index's pending list, which every search reads whole, until it holds 256 kB (not the
-- default 4 MB: at 1M nodes, 4 MB of pending entries made one tenant's text search 1.7x slower)
CREATE INDEX node_text_search ON fractality.node_text USING gin (user_id, search)
    WITH (gin_pending_list_limit = 256);

-- ---- prioritised replay: buffers, items, sum trees; archiving takes events out of them -----

CREATE TABLE fractality.replay_buffers (
    buffer_id      integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text        NOT NULL,
    alpha          float8      NOT NULL DEFAULT 0.6,
    beta           float8      NOT NULL DEFAULT 0.4,
    epsilon        float8      NOT NULL DEFAULT 1e-6,
    capacity       bigint,
    event_type     smallint,
    policy_version integer,
    -- the largest priority the buffer has held: new events enter at it
    max_priority   float8      NOT NULL DEFAULT 1.0,
    -- items ever entered (the next slot is next_seq, or next_seq % capacity)
    next_seq       bigint      NOT NULL DEFAULT 0,
    size           bigint      NOT NULL DEFAULT 0,
    -- levels of the sum tree (the root is the one block of level levels - 1)
    levels         smallint    NOT NULL DEFAULT 1,
    -- priorities written back since the last fold (replay_pending; a slot counts once a call)
    pending        bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT replay_buffers_name UNIQUE (name),
    CONSTRAINT replay_buffers_name_length CHECK (char_length(name) BETWEEN 1 AND 63),
    CONSTRAINT replay_buffers_alpha CHECK (alpha >= 0 AND alpha <= 10),
    CONSTRAINT replay_buffers_beta CHECK (beta >= 0 AND beta <= 1),
    CONSTRAINT replay_buffers_epsilon CHECK (epsilon > 0 AND epsilon < 1),
    CONSTRAINT replay_buffers_capacity CHECK (capacity > 0),
    CONSTRAINT replay_buffers_max_priority CHECK (max_priority > 0 AND max_priority < 'Infinity'),
    CONSTRAINT replay_buffers_counts CHECK (next_seq >= 0 AND size >= 0 AND levels >= 1 AND pending >= 0)
);

COMMENT ON TABLE fractality.replay_buffers IS
    'Prioritised replay buffers over experience_events: alpha, beta, epsilon, an optional capacity (the oldest item goes first) and filter.';

-- The items, FANOUT (120) slots to a row: block k of a buffer holds slots 120k .. 120k + 119,
-- entry j (from 1) of its arrays slot 120k + j - 1: the event's timestamp (-1: the slot is
-- empty), its id (16 bytes at offset 16 (j - 1) of event_ids; zeros where empty) and its priority
-- p as the tree holds it (p^alpha is in the tree; 0 where empty). No NULL in the arrays, so that
-- an entry is reached by offset. A batch of 5 000 events enters as 42 rows with 42 index entries
-- each, where one row and two B-tree entries an item took about three times as long (the write
-- target of issue 17: docs/BENCHMARKS.md). span is the range of the block's timestamps: the
-- items of a known event (removals, archiving, update_priorities given ids) are found through
-- it (SP-GiST: 8 us a probe among 7 800 blocks, GiST 14 us) or where it starts, then by
-- position in the block.
-- Why 120 slots and not 128: a slot is 32 bytes (timestamp, id, priority), so a row of 120 is
-- 3.9 KB and two versions of it fit in a page: a rewrite that changes only priorities (a fold)
-- is a HOT update, with no new index entries and no dead row left for the next reader to step
-- over. A row of 128 (4.2 KB) did not fit twice: every fold of 1M items left 7 800 dead rows
-- and a table twice its size until a vacuum, and a sample read past them (2.73 ms against 2.15
-- ms after a VACUUM, stock server).
-- buffer_id is the buffer's, without a foreign key: the functions that write items hold the
-- buffer's row lock (FOR UPDATE) while they do, and drop_replay_buffer deletes them with it.
CREATE TABLE fractality.replay_blocks (
    buffer_id  integer   NOT NULL,
    block      bigint    NOT NULL,
    timestamps bigint[]  NOT NULL,
    event_ids  bytea     NOT NULL,
    priorities float8[]  NOT NULL,
    -- how many of the slots hold an item
    filled     smallint  NOT NULL,
    span       int8range NOT NULL,
    CONSTRAINT replay_blocks_pkey PRIMARY KEY (buffer_id, block),
    CONSTRAINT replay_blocks_shape CHECK (
        cardinality(timestamps) = 120 AND cardinality(priorities) = 120
        AND octet_length(event_ids) = 1920 AND filled BETWEEN 1 AND 120),
    CONSTRAINT replay_blocks_priorities CHECK (
        0 <= ALL (priorities) AND 'Infinity' > ALL (priorities))
) WITH (fillfactor = 50, toast_tuple_target = 8160);   -- 3.9 KB rows kept whole, one a page, rewritten HOT

ALTER TABLE fractality.replay_blocks ALTER timestamps SET STORAGE MAIN,
    ALTER event_ids SET STORAGE MAIN, ALTER priorities SET STORAGE MAIN;

COMMENT ON TABLE fractality.replay_blocks IS
    'The events of each replay buffer, 120 slots a row: timestamps (-1: empty), ids (16 bytes each), priorities p as the sum tree holds them (p^alpha); the view replay_items shows one row an item.';

CREATE INDEX replay_blocks_span ON fractality.replay_blocks USING spgist (span);
-- Blocks by where they start: experience arrives in time order, so an event is nearly always in
-- the block that starts last at or before its timestamp (3 us a probe; replay_find_at.sql).
CREATE INDEX replay_blocks_start ON fractality.replay_blocks (buffer_id, lower(span));

-- One row an item, as the blocks hold them (priorities written back and not yet folded are in
-- replay_pending: the view replay_priorities shows every item's current one).
CREATE VIEW fractality.replay_items WITH (security_invoker = true) AS
SELECT b.buffer_id, b.block * 120 + u.k - 1 AS slot, u.ts AS event_timestamp,
       substring(b.event_ids FROM (u.k::integer - 1) * 16 + 1 FOR 16) AS event_id, u.p AS priority
  FROM fractality.replay_blocks b,
       unnest(b.timestamps, b.priorities) WITH ORDINALITY u(ts, p, k)
 WHERE u.ts >= 0;

COMMENT ON VIEW fractality.replay_items IS
    'The items of every replay buffer, one row each (slot, event, the priority p the sum tree holds), read from replay_blocks.';

CREATE TABLE fractality.replay_tree (
    buffer_id integer  NOT NULL REFERENCES fractality.replay_buffers (buffer_id) ON DELETE CASCADE,
    level     smallint NOT NULL,
    block     bigint   NOT NULL,
    sums      float8[] NOT NULL,
    CONSTRAINT replay_tree_pkey PRIMARY KEY (buffer_id, level, block)
) WITH (fillfactor = 50);   -- blocks are rewritten in place: leave room for HOT updates

COMMENT ON TABLE fractality.replay_tree IS
    'The sum tree of each replay buffer: blocks of 120 partial sums per level (level 0: p^alpha by slot).';

-- Priorities written back by update_priorities and not yet folded into replay_items and
-- replay_tree: one row per call (the slots, the priority the tree holds for each, the new one),
-- folded once fractality.replay_fold_after priorities were written to a buffer since its last
-- fold (its column pending), before any other change of its tree (events entering a full
-- buffer, leaving, a rebuild), and by fold_priorities and run_maintenance. A sample reads them
-- with the tree in one snapshot and draws with the current priorities. Rows stay inline up to
-- ~8 KB (about 340 slots a call).
CREATE TABLE fractality.replay_pending (
    buffer_id  integer  NOT NULL REFERENCES fractality.replay_buffers (buffer_id) ON DELETE CASCADE,
    seq        bigint   GENERATED ALWAYS AS IDENTITY,
    slots      bigint[] NOT NULL,
    olds       float8[] NOT NULL,
    priorities float8[] NOT NULL,
    CONSTRAINT replay_pending_pkey PRIMARY KEY (buffer_id, seq),
    CONSTRAINT replay_pending_lengths CHECK (
        cardinality(olds) = cardinality(slots) AND cardinality(priorities) = cardinality(slots))
) WITH (toast_tuple_target = 8160);

COMMENT ON TABLE fractality.replay_pending IS
    'Priorities written back by update_priorities and not yet folded into replay_items and replay_tree (samplers see them).';

-- Every item of every buffer with its current priority (a pending one where there is one).
CREATE VIEW fractality.replay_priorities WITH (security_invoker = true) AS
SELECT i.buffer_id, i.slot, i.event_timestamp, i.event_id, coalesce(p.priority, i.priority) AS priority
  FROM fractality.replay_items i
  LEFT JOIN (SELECT DISTINCT ON (w.buffer_id, u.slot) w.buffer_id, u.slot, u.priority
               FROM fractality.replay_pending w, unnest(w.slots, w.priorities) u(slot, priority)
              ORDER BY w.buffer_id, u.slot, w.seq DESC) p
    ON p.buffer_id = i.buffer_id AND p.slot = i.slot;

COMMENT ON VIEW fractality.replay_priorities IS
    'Every item of every replay buffer with its current priority, pending or folded.';

-- Events written enter every buffer whose filter they pass, at the buffer's largest priority
-- (entry j of the batch takes sequence number next_seq + j, slot seq or, with a capacity,
-- seq % capacity, where the oldest item goes: src/replay/upkeep.rs, entered). One buffer at a
-- time, each locked for the rest of the transaction (its writers are serialised; samplers read a
-- consistent snapshot). Every buffer, in the order of their ids, even one none of the events
-- enters: a transaction's first batch then takes every lock it will ever take here, so two
-- transactions writing batches of other buffers in other orders (or a writer and lock_all's
-- archiving) never wait for each other in a circle. The price: a writer waits for a learner
-- holding any buffer (update_priorities in an open transaction).
-- SECURITY DEFINER: a role that may write events keeps the buffers in step without privileges
-- of its own on them.
CREATE FUNCTION fractality."_replay_entered"(
	"buffer_id" INT, /* i32 */
	"timestamps" bigint[], /* Array < '_, i64 > */
	"event_ids" bytea[] /* Array < '_, & [u8] > */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_replay_entered_wrapper';
CREATE FUNCTION fractality."_replay_remove"(
	"event_ids" bytea[], /* Array < '_, & [u8] > */
	"timestamps" bigint[] /* Vec < Option < i64 > > */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_replay_remove_wrapper';
CREATE FUNCTION fractality."_replay_remove_before"(
	"cutoff_us" bigint /* i64 */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_replay_remove_before_wrapper';
CREATE FUNCTION fractality."_replay_rebuild"(
	"buffer_id" INT /* i32 */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_replay_rebuild_wrapper';
CREATE FUNCTION fractality._replay_enter() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    ts bigint[];
    ids bytea[];
BEGIN
    FOR b IN SELECT * FROM fractality.replay_buffers ORDER BY buffer_id FOR UPDATE LOOP
        SELECT array_agg(n."timestamp"), array_agg(n.event_id) INTO ts, ids
          FROM new_events n
         WHERE (b.event_type IS NULL OR n.event_type = b.event_type)
           AND (b.policy_version IS NULL OR n.adna_version_hash = b.policy_version);
        -- the items' blocks, the sum tree over the slots written, the buffer's counters
        IF ts IS NOT NULL THEN
            PERFORM fractality._replay_entered(b.buffer_id, ts, ids);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER experience_events_to_replay
    AFTER INSERT ON fractality.experience_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._replay_enter();

-- Events deleted leave every buffer (archiving and dropping take theirs out in
-- _archive_events_before and _drop_events_before, which move or drop whole partitions).
CREATE FUNCTION fractality._replay_leave() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM fractality.replay_buffers) THEN
        PERFORM fractality._replay_remove(
            ARRAY(SELECT o.event_id FROM old_events o),
            ARRAY(SELECT o."timestamp" FROM old_events o));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER experience_events_from_replay
    AFTER DELETE ON fractality.experience_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._replay_leave();

CREATE FUNCTION fractality._replay_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM fractality.replay_pending;
    DELETE FROM fractality.replay_blocks;
    DELETE FROM fractality.replay_tree;
    UPDATE fractality.replay_buffers SET size = 0, levels = 1, pending = 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER experience_events_truncate_replay
    AFTER TRUNCATE ON fractality.experience_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._replay_truncate();
CREATE FUNCTION fractality."create_replay_buffer"(
	"name" TEXT, /* Option < & str > */
	"alpha" double precision DEFAULT 0.6, /* Option < f64 > */
	"beta" double precision DEFAULT 0.4, /* Option < f64 > */
	"epsilon" double precision DEFAULT 1e-6, /* Option < f64 > */
	"capacity" bigint DEFAULT NULL, /* Option < i64 > */
	"event_type" smallint DEFAULT NULL, /* Option < i16 > */
	"policy_version" INT DEFAULT NULL, /* Option < i32 > */
	"backfill" bool DEFAULT false /* Option < bool > */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_replay_buffer_wrapper';
CREATE FUNCTION fractality."drop_replay_buffer"(
	"name" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_replay_buffer_wrapper';
CREATE FUNCTION fractality."sample_experiences"(
	"buffer" TEXT, /* Option < & str > */
	"n" INT, /* Option < i32 > */
	"beta" double precision DEFAULT NULL, /* Option < f64 > */
	"seed" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"event_id" bytea,  /* Vec < u8 > */
	"event_timestamp" bigint,  /* i64 */
	"priority" double precision,  /* f64 */
	"probability" double precision,  /* f64 */
	"weight" double precision  /* f64 */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sample_experiences_from_wrapper';
CREATE FUNCTION fractality."update_priorities"(
	"buffer" TEXT, /* Option < & str > */
	"event_ids" bytea[], /* :: std :: option :: Option < Array < '_, & [u8] > > */
	"priorities" double precision[] /* :: std :: option :: Option < Array < '_, f64 > > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_priorities_wrapper';
CREATE FUNCTION fractality."update_priorities"(
	"buffer" TEXT, /* Option < & str > */
	"event_ids" bytea[], /* :: std :: option :: Option < Array < '_, & [u8] > > */
	"priorities" double precision[], /* :: std :: option :: Option < Array < '_, f64 > > */
	"event_timestamps" bigint[] /* :: std :: option :: Option < Array < '_, i64 > > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_priorities_at_wrapper';
CREATE FUNCTION fractality."fold_priorities"(
	"buffer" TEXT /* & str */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'fold_priorities_wrapper';
CREATE FUNCTION fractality."replay_batch"(
	"buffer" TEXT, /* Option < & str > */
	"n" INT, /* Option < i32 > */
	"beta" double precision DEFAULT NULL, /* Option < f64 > */
	"seed" bigint DEFAULT NULL, /* Option < i64 > */
	"next_within" interval DEFAULT '1 hour' /* Option < Interval > */
) RETURNS TABLE (
	"event_id" bytea,  /* Vec < u8 > */
	"event_timestamp" bigint,  /* i64 */
	"episode_id" bigint,  /* i64 */
	"step_number" INT,  /* i32 */
	"event_type" smallint,  /* i16 */
	"state" real[],  /* Vec < Option < f32 > > */
	"action" real[],  /* Vec < Option < f32 > > */
	"reward_homeostasis" real,  /* f32 */
	"reward_curiosity" real,  /* f32 */
	"reward_efficiency" real,  /* f32 */
	"reward_goal" real,  /* f32 */
	"total_reward" real,  /* f32 */
	"next_state" real[],  /* :: std :: option :: Option < Vec < Option < f32 > > > */
	"intent_type" TEXT,  /* Option < String > */
	"executor_id" TEXT,  /* Option < String > */
	"parameters" jsonb,  /* Option < crate :: jsonb :: JsonbText > */
	"priority" double precision,  /* f64 */
	"probability" double precision,  /* f64 */
	"weight" double precision  /* f64 */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'replay_batch_wrapper';

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
CREATE OR REPLACE FUNCTION fractality._archive_events_before(cutoff_us bigint) RETURNS bigint
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
-- Deletes every event (and its metadata) with "timestamp" < cutoff_us from the hot tier; whole
-- partitions are dropped. Returns the number of events deleted. The 'drop' retention action.
CREATE OR REPLACE FUNCTION fractality._drop_events_before(cutoff_us bigint) RETURNS bigint
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

REVOKE EXECUTE ON FUNCTION fractality._replay_enter() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_leave() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_truncate() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_entered(integer, bigint[], bytea[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove(bytea[], bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove_before(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_rebuild(integer) FROM PUBLIC;

-- ---- event ids unique whatever their timestamps ------------------------------------------------
-- Every id written so far is registered (hot and cold tiers; the header has refused ids stored
-- twice). The update reads every event once here: about a second per million events.

-- Every event id written, hot or archived: its primary key makes an id unique whatever the
-- timestamp, also between concurrent writers (the second waits for the first and fails with
-- 23505). Filled by the statement trigger below on every insert into experience_events, as the
-- owner; a DELETE or TRUNCATE of events frees their ids (those still in the cold tier stay);
-- archiving moves events without touching it (it reads and deletes partitions, not the parent);
-- retention that drops events frees their ids.
CREATE TABLE fractality.experience_event_ids (
    event_id    bytea  NOT NULL,
    "timestamp" bigint NOT NULL,
    CONSTRAINT experience_event_ids_pkey PRIMARY KEY (event_id)
);

COMMENT ON TABLE fractality.experience_event_ids IS
    'Every event id written (hot or archived), unique: no id is written twice, whatever its timestamp.';

CREATE INDEX experience_event_ids_time ON fractality.experience_event_ids
    USING brin ("timestamp") WITH (pages_per_range = 32);

CREATE FUNCTION fractality._experience_events_register() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written bigint;
    dup record;
BEGIN
    -- in the order of the ids: two batches sharing ids, written at once in other orders, each
    -- waited for an id the other had taken (40P01); now the second waits for the first. An id
    -- stored already is skipped here and then named (an ERROR, so nothing of the statement stays),
    -- not caught as an exception: that would open a subtransaction a statement.
    INSERT INTO fractality.experience_event_ids (event_id, "timestamp")
    SELECT n.event_id, n."timestamp" FROM new_events n ORDER BY n.event_id
    ON CONFLICT (event_id) DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written = (SELECT count(*) FROM new_events) THEN
        RETURN NULL;
    END IF;
    -- an id another batch committed after the writer's own check (which names the batch's
    -- element), an archived one, or one given twice with two timestamps by a plain INSERT
    SELECT n.event_id, n."timestamp", i."timestamp" AS stored INTO dup
      FROM new_events n JOIN fractality.experience_event_ids i ON i.event_id = n.event_id
     WHERE i."timestamp" <> n."timestamp"
        OR EXISTS (SELECT FROM fractality.experience_events_archive a
                    WHERE a."timestamp" = n."timestamp" AND a.event_id = n.event_id)
     ORDER BY n.event_id
     LIMIT 1;
    RAISE unique_violation USING
        MESSAGE = CASE WHEN FOUND
                       THEN format('duplicate event (timestamp %s, event_id \x%s): already stored at timestamp %s',
                                   dup."timestamp", encode(dup.event_id, 'hex'), dup.stored)
                       ELSE 'duplicate event: an event id of the statement is stored already' END,
        HINT = 'An event id is written once, whatever its timestamp; nothing of the batch was written.',
        SCHEMA = 'fractality', TABLE = 'experience_event_ids', CONSTRAINT = 'experience_event_ids_pkey';
END $$;

-- named to fire first of the insert triggers (they fire in name order): a duplicate fails before
-- the inbox and the replay buffers are written
CREATE TRIGGER experience_events_ids
    AFTER INSERT ON fractality.experience_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._experience_events_register();

CREATE FUNCTION fractality._experience_events_unregister() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- a trigger of either tier (the cold tier's in archive.sql): after a TRUNCATE, the ids of
    -- events in neither tier go
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM fractality.experience_event_ids i
         WHERE NOT EXISTS (SELECT 1 FROM fractality.experience_events_archive a
                            WHERE a."timestamp" = i."timestamp" AND a.event_id = i.event_id)
           AND NOT EXISTS (SELECT 1 FROM fractality.experience_events e
                            WHERE e."timestamp" = i."timestamp" AND e.event_id = i.event_id);
    ELSE
        DELETE FROM fractality.experience_event_ids i
         USING old_events o
         WHERE i.event_id = o.event_id AND i."timestamp" = o."timestamp";
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER experience_events_ids_deleted
    AFTER DELETE ON fractality.experience_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._experience_events_unregister();

CREATE TRIGGER experience_events_ids_truncated
    AFTER TRUNCATE ON fractality.experience_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._experience_events_unregister();

-- An event's id and timestamp are its identity: the id registry, its action metadata and the
-- replay buffers' items refer to the pair, so an UPDATE of either is refused (23001, as a foreign
-- key ON UPDATE RESTRICT would; an UPDATE of an id would let a second event take the old one's
-- place in the registry, of a timestamp orphan its metadata). Delete the event and write it anew.
-- An UPDATE of its rewards is checked as a write is: a sum beyond a real is refused (22003, from
-- total_reward), since every reader of the event (query_events, episode_returns, ...) sums them.
CREATE FUNCTION fractality._experience_events_identity() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.event_id IS DISTINCT FROM OLD.event_id OR NEW."timestamp" IS DISTINCT FROM OLD."timestamp" THEN
        RAISE restrict_violation USING
            MESSAGE = format('update of event %s at %s: an event''s id and timestamp do not change',
                             encode(OLD.event_id, 'hex'), OLD."timestamp"),
            HINT = 'Delete the event and write it anew (fractality.write_event).';
    END IF;
    PERFORM fractality.total_reward(NEW.reward_homeostasis, NEW.reward_curiosity,
                                    NEW.reward_efficiency, NEW.reward_goal);
    RETURN NEW;
END $$;

CREATE TRIGGER experience_events_identity
    BEFORE UPDATE OF event_id, "timestamp", reward_homeostasis, reward_curiosity, reward_efficiency,
                     reward_goal ON fractality.experience_events
    FOR EACH ROW EXECUTE FUNCTION fractality._experience_events_identity();
INSERT INTO fractality.experience_event_ids (event_id, "timestamp")
SELECT e.event_id, e."timestamp" FROM fractality.experience_events e
UNION ALL
SELECT a.event_id, a."timestamp" FROM fractality.experience_events_archive a;


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

-- ---- functions: a model for every embedding function; resonance_with; the consensus split ---

DROP FUNCTION fractality.find_resonant(uuid, float8, integer);
DROP FUNCTION fractality.find_resonant(text, float8, integer);
DROP FUNCTION fractality.calculate_resonance(uuid, uuid);
DROP FUNCTION fractality.crystallize_consensus(uuid, float8, integer);
DROP FUNCTION fractality.upsert_node(text, text, jsonb, float8, vector, text);
DROP FUNCTION fractality.upsert_node_for(uuid, text, text, jsonb, float8, vector, text);
DROP FUNCTION fractality.thaw(text, integer);
DROP FUNCTION fractality.freeze(jsonb);
-- their parameter "r#type" becomes "type"
DROP FUNCTION fractality.link(text, text, text, float8);
DROP FUNCTION fractality.unlink(text, text, text);

CREATE FUNCTION fractality."find_resonant"(
    "node" uuid, "threshold" double precision DEFAULT 0.7, "k" integer DEFAULT 20,
    "model" text DEFAULT 'default'
) RETURNS TABLE (
    "node_id" uuid, "node_key" text, "label" text, "similarity" double precision,
    "atp" double precision, "resonance" double precision
) STRICT STABLE
LANGUAGE c AS 'MODULE_PATHNAME', 'find_resonant_wrapper';
CREATE FUNCTION fractality."find_resonant"(
    "node_key" text, "threshold" double precision DEFAULT 0.7, "k" integer DEFAULT 20,
    "model" text DEFAULT 'default'
) RETURNS TABLE (
    "node_id" uuid, "node_key" text, "label" text, "similarity" double precision,
    "atp" double precision, "resonance" double precision
) STRICT STABLE
LANGUAGE c AS 'MODULE_PATHNAME', 'find_resonant_by_key_wrapper';
CREATE FUNCTION fractality."calculate_resonance"(
    "node_a" uuid, "node_b" uuid, "model" text DEFAULT 'default'
) RETURNS double precision STRICT STABLE
LANGUAGE c AS 'MODULE_PATHNAME', 'calculate_resonance_wrapper';
CREATE FUNCTION fractality."resonance_with"(
	"node" uuid, /* Uuid */
	"others" uuid[], /* Array < '_, Uuid > */
	"model" TEXT DEFAULT 'default' /* & str */
) RETURNS TABLE (
	"node_id" uuid,  /* Uuid */
	"similarity" double precision,  /* Option < f64 > */
	"atp" double precision,  /* f64 */
	"edge_weight" double precision,  /* f64 */
	"resonance" double precision  /* Option < f64 > */
)
STRICT STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'resonance_with_wrapper';
CREATE FUNCTION fractality."crystallize_consensus"(
    "node" uuid, "threshold" double precision DEFAULT 0.7, "min_contributors" integer DEFAULT 3,
    "model" text DEFAULT 'default'
) RETURNS uuid STRICT VOLATILE
LANGUAGE c AS 'MODULE_PATHNAME', 'crystallize_consensus_wrapper';
CREATE FUNCTION fractality."_crystallize_consensus"(
	"node" uuid, /* Uuid */
	"embedding" vector, /* Vector < '_ > */
	"threshold" double precision, /* f64 */
	"min_contributors" INT, /* i32 */
	"model" TEXT /* & str */
) RETURNS uuid /* Option < Uuid > */
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_crystallize_consensus_wrapper';
CREATE FUNCTION fractality."upsert_node"(
    "node_key" text, "label" text DEFAULT NULL, "metadata" jsonb DEFAULT '{}',
    "atp" double precision DEFAULT NULL, "embedding" vector DEFAULT NULL, "type" text DEFAULT NULL,
    "model" text DEFAULT 'default'
) RETURNS uuid VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'upsert_node_wrapper';
CREATE FUNCTION fractality."upsert_node_for"(
    "user_id" uuid, "node_key" text, "label" text DEFAULT NULL, "metadata" jsonb DEFAULT '{}',
    "atp" double precision DEFAULT NULL, "embedding" vector DEFAULT NULL, "type" text DEFAULT NULL,
    "model" text DEFAULT 'default'
) RETURNS uuid VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'upsert_node_for_wrapper';
CREATE FUNCTION fractality."thaw"(
    "node_key" text, "stream_points" integer DEFAULT 100, "model" text DEFAULT 'default'
) RETURNS jsonb STRICT STABLE PARALLEL UNSAFE
SET extra_float_digits = 3
SET array_nulls = on
LANGUAGE c AS 'MODULE_PATHNAME', 'thaw_wrapper';
CREATE FUNCTION fractality."freeze"("node" jsonb, "model" text DEFAULT 'default')
RETURNS uuid STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'freeze_wrapper';
CREATE FUNCTION fractality."link"(
    "from_key" text, "to_key" text, "type" text DEFAULT 'child', "weight" double precision DEFAULT 1.0
) RETURNS uuid STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'link_wrapper';
CREATE FUNCTION fractality."unlink"("from_key" text, "to_key" text, "type" text DEFAULT 'child')
RETURNS bool STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'unlink_wrapper';

DO $$
DECLARE
    vector_schema name;
BEGIN
    SELECT n.nspname INTO vector_schema
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector';
    IF vector_schema IS NULL THEN
        RAISE EXCEPTION 'fractality requires pgvector: extension vector is not installed'
            USING ERRCODE = '42704', HINT = 'CREATE EXTENSION fractality CASCADE installs it.';
    END IF;
    -- pg_catalog alone on the path: the queries name pgvector's objects in full (with its schema
    -- looked up at run time, so that pgvector may move), and no schema where others may create
    -- functions is searched
    ALTER FUNCTION fractality.calculate_resonance(uuid, uuid, text)
        SET search_path = pg_catalog, pg_temp;
    -- consensus: crystallize_consensus reads the source as the caller; _crystallize_consensus,
    -- which must see across tenants, runs as the owner and exposes only aggregates and links
    ALTER FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text)
        SET search_path = pg_catalog, pg_temp;
    EXECUTE format('ALTER FUNCTION fractality._crystallize_consensus(uuid, %I.vector, float8, integer, text)
                        SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                        SET hnsw.iterative_scan = ''strict_order'' SET hnsw.ef_search = 100
                        SET hnsw.max_scan_tuples = 100000 SET enable_sort = off SET jit = off',
                   vector_schema);
    -- Granted, not public: a consensus tells its caller how many users hold ideas near a seed of
    -- the caller's choosing; a caller holding several tenants and calling it again and again with
    -- seeds and thresholds it picks learns, a bit at a time, where another tenant's vectors lie.
    -- The administrator grants it to the roles trusted with that (or runs it from pg_cron):
    --   GRANT EXECUTE ON FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text),
    --       fractality._crystallize_consensus(uuid, vector, float8, integer, text) TO curator;
    EXECUTE format('REVOKE EXECUTE ON FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text),
                        fractality._crystallize_consensus(uuid, %I.vector, float8, integer, text) FROM PUBLIC',
                   vector_schema);
END
$$;
-- consensus_tree refuses a NULL argument with 22004 since 0.5.0
-- The seed's traversal: from each consensus node whose resonance_score exceeds min_score (the
-- published score, to one decimal: a group of 0.84 is 0.8, not above 0.8; pass 0.75 for it), to
-- the caller's contributing nodes (depth 1, through consensus_links), then along edges
-- (from_node -> to_node, each node linked to once whatever the edges' types); resonance decays by
-- 0.9 a level; a node already on the path is not entered again (cycles cut). Runs as the caller: only the caller's links and nodes are seen.
CREATE OR REPLACE FUNCTION fractality.consensus_tree(min_score float8 DEFAULT 0.8, max_depth integer DEFAULT 5)
RETURNS TABLE (consensus_id uuid, node_id uuid, node_key text, label text,
               resonance_score float8, depth integer, path uuid[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF min_score IS NULL OR max_depth IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('consensus_tree: %s must not be NULL', CASE WHEN min_score IS NULL THEN 'min_score' ELSE 'max_depth' END),
            HINT = 'Pass a resonance score in [-1, 1] and a number of levels from 0 to 100, or leave them out (0.8, 5).';
    END IF;
    IF min_score = 'NaN'::float8 OR min_score < -1 OR min_score > 1 THEN
        RAISE EXCEPTION 'invalid value for min_score: %', min_score::text
            USING ERRCODE = '22023', HINT = 'min_score is a resonance score in [-1, 1] (e.g. 0.8).';
    END IF;
    IF max_depth < 0 OR max_depth > 100 THEN
        RAISE EXCEPTION 'invalid value for max_depth: %', max_depth::text
            USING ERRCODE = '22023', HINT = 'max_depth is a number of levels from 0 to 100.';
    END IF;
    RETURN QUERY
    WITH RECURSIVE tree (consensus_id, node_id, node_key, label, resonance_score, depth, path) AS (
        SELECT cn.id, cn.id, cn.node_key, cn.label, cn.resonance_score, 0, ARRAY[cn.id]
          FROM fractality.consensus_nodes cn
         WHERE cn.resonance_score > min_score
        UNION ALL
        SELECT t.consensus_id, n.id, n.node_key, n.label, t.resonance_score * 0.9, t.depth + 1,
               t.path || n.id
          FROM tree t
          CROSS JOIN LATERAL (
                SELECT l.node_id AS next FROM fractality.consensus_links l
                 WHERE t.depth = 0 AND l.consensus_id = t.node_id
                UNION ALL
                -- each node it links to once, whatever the edges' types
                SELECT DISTINCT e.to_node FROM fractality.edges e
                 WHERE t.depth > 0 AND e.from_node = t.node_id) step
          JOIN fractality.nodes n ON n.id = step.next
         WHERE t.depth < max_depth
           AND NOT n.id = ANY (t.path)
    )
    SELECT t.consensus_id, t.node_id, t.node_key, t.label, t.resonance_score, t.depth, t.path
      FROM tree t
     ORDER BY t.resonance_score DESC, t.depth, t.consensus_id, t.path;
END
$$;

-- write_events and write_events_json are named in Rust as in SQL since 0.5.0: write_events(jsonb)
-- moves to its own C symbol, write_events_json(text, json) to the one write_events(jsonb) had
-- (which reads either; the old symbols stay in the library for the scripts of 0.1.0-0.4.0)
CREATE OR REPLACE FUNCTION fractality.write_events(events jsonb) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_wrapper';
CREATE OR REPLACE FUNCTION fractality.write_events_json(events text) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_json_wrapper';
CREATE OR REPLACE FUNCTION fractality.write_events_json(events json) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_json_wrapper';

-- write_event_with_metadata refuses a NULL (22004) since 0.5.0: STRICT, it returned void and
-- wrote nothing without a word
ALTER FUNCTION fractality.write_event_with_metadata(jsonb, jsonb) CALLED ON NULL INPUT;

-- save_policy keeps version_hash unique among the policies (a counter on a repeat)
-- Saves a new version of the policy of a state bin: the active one (if any) becomes its parent
-- and inactive; version = the bin's highest version + 1; version_hash = hash of bin, rule,
-- version and weights, unique among the policies. Concurrent saves for one bin are serialised by
-- a transaction-scoped advisory lock on the bin, so there is never more than one active policy
-- per bin.
CREATE OR REPLACE FUNCTION fractality.save_policy(state_bin_id text, rule_id text, action_weights jsonb,
                                       metadata jsonb DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad_key text;
    parent integer;
    next_version integer;
    new_id integer;
    h integer;
    salt integer := 0;
BEGIN
    IF state_bin_id IS NULL OR rule_id IS NULL OR action_weights IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('save_policy: %s must not be NULL', CASE WHEN state_bin_id IS NULL THEN 'state_bin_id' WHEN rule_id IS NULL THEN 'rule_id' ELSE 'action_weights' END),
            HINT = 'Pass the state bin, the rule and the action weights (a JSON object); metadata may be NULL.';
    END IF;
    IF state_bin_id = '' OR length(state_bin_id) > 255 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for state_bin_id: %s', CASE WHEN length(state_bin_id) <= 200 THEN quote_literal(state_bin_id) ELSE format('%L (%s characters)', left(state_bin_id, 197) || '...', length(state_bin_id)) END),
            HINT = 'state_bin_id is a non-empty text of at most 255 characters.';
    END IF;
    IF rule_id = '' OR length(rule_id) > 255 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for rule_id: %s', CASE WHEN length(rule_id) <= 200 THEN quote_literal(rule_id) ELSE format('%L (%s characters)', left(rule_id, 197) || '...', length(rule_id)) END),
            HINT = 'rule_id is a non-empty text of at most 255 characters.';
    END IF;
    IF jsonb_typeof(action_weights) <> 'object' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for action_weights: %s', CASE WHEN length(action_weights::text) <= 200 THEN action_weights::text ELSE format('%s... (%s characters)', left(action_weights::text, 197), length(action_weights::text)) END),
            HINT = 'action_weights is a JSON object of numbers, e.g. {"0": 0.7, "3": 0.3}.';
    END IF;
    SELECT k INTO bad_key FROM jsonb_each(action_weights) AS w(k, v)
     WHERE jsonb_typeof(w.v) <> 'number' LIMIT 1;
    IF bad_key IS NOT NULL THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for action_weights: key %s is not a number', CASE WHEN length(bad_key) <= 200 THEN quote_literal(bad_key) ELSE format('%L (%s characters)', left(bad_key, 197) || '...', length(bad_key)) END),
            HINT = 'action_weights is a JSON object of numbers, e.g. {"0": 0.7, "3": 0.3}.';
    END IF;
    -- and each one a client reads as a double: beyond float8's range (1e400, which jsonb keeps)
    -- it would read as an infinity
    SELECT k INTO bad_key FROM jsonb_each(action_weights) AS w(k, v)
     WHERE abs(w.v::text::numeric) > 1.7976931348623157e308 LIMIT 1;
    IF bad_key IS NOT NULL THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for action_weights: key %s is beyond a double''s range', CASE WHEN length(bad_key) <= 200 THEN quote_literal(bad_key) ELSE format('%L (%s characters)', left(bad_key, 197) || '...', length(bad_key)) END),
            HINT = 'action_weights is a JSON object of numbers within a double''s range, e.g. {"0": 0.7, "3": 0.3}.';
    END IF;
    IF metadata IS NOT NULL AND jsonb_typeof(metadata) <> 'object' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for metadata: %s', CASE WHEN length(metadata::text) <= 200 THEN metadata::text ELSE format('%s... (%s characters)', left(metadata::text, 197), length(metadata::text)) END),
            HINT = 'metadata is a JSON object or NULL.';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('fractality.adna_policies/' || state_bin_id, 0::bigint));
    SELECT p.policy_id INTO parent FROM fractality.adna_policies p
     WHERE p.state_bin_id = save_policy.state_bin_id AND p.is_active;
    SELECT coalesce(max(p.version), 0) + 1 INTO next_version FROM fractality.adna_policies p
     WHERE p.state_bin_id = save_policy.state_bin_id;
    UPDATE fractality.adna_policies p SET is_active = false, updated_at = now()
     WHERE p.policy_id = parent;
    -- version_hash is unique among the policies: events name their policy by it, and
    -- refresh_policy_rewards credits every policy of a hash. The hash of (bin, rule, version,
    -- weights) is 32 bits (likely to repeat among some 100 000 versions) and its input can be
    -- the same for two policies whose names hold the separator; on a repeat, the hash of the
    -- same with a counter. Each hash is looked for under a transaction-scoped advisory lock of
    -- its group (its lowest 8 bits: a transaction that saves many policies holds 256 such locks
    -- at most): two saves of other bins reaching the same hash at once take it in turn, and the
    -- second (READ COMMITTED: each statement reads what has committed) finds the first's row and
    -- goes on to the next hash. Above READ COMMITTED the snapshot can predate the first's
    -- commit, and both can keep the hash (docs/RELIABILITY.md).
    LOOP
        h := hashtext(concat_ws(E'\x1f', state_bin_id, rule_id, next_version, action_weights::text)
                      || CASE WHEN salt = 0 THEN '' ELSE E'\x1f' || salt END);
        PERFORM pg_advisory_xact_lock(hashtextextended('fractality.adna_policies.version_hash/' || (h & 255), 0::bigint));
        EXIT WHEN NOT EXISTS (SELECT 1 FROM fractality.adna_policies p WHERE p.version_hash = h);
        salt := salt + 1;
    END LOOP;
    BEGIN
        INSERT INTO fractality.adna_policies
            (state_bin_id, rule_id, action_weights, metadata, version, version_hash, parent_policy_id, is_active)
        VALUES (state_bin_id, rule_id, action_weights, metadata, next_version, h, parent, true)
        RETURNING policy_id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        -- above READ COMMITTED the snapshot predates the lock: a version another session saved
        -- meanwhile was not seen, and this one repeats its number (or its hash)
        IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
            RAISE serialization_failure USING
                MESSAGE = format('save_policy: another session saved a policy of state bin %L meanwhile', state_bin_id),
                HINT = 'Run the transaction again (its snapshot, REPEATABLE READ or SERIALIZABLE, predates that version).';
        END IF;
        RAISE;
    END;
    RETURN new_id;
END $$;

-- ---- reward aggregates in parallel: episode_sums (episode_returns) and discounted_return by
-- step get combine, serialise and deserialise steps; PostgreSQL cannot add them to an existing
-- aggregate, so both are made again ----

CREATE FUNCTION fractality."discounted_return_steps_combine"(
	"a" internal, /* Internal */
	"b" internal /* Internal */
) RETURNS internal /* Internal */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'discounted_return_steps_combine_wrapper';
CREATE FUNCTION fractality."discounted_return_steps_serial"(
	"state" internal /* Internal */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'discounted_return_steps_serial_wrapper';
CREATE FUNCTION fractality."discounted_return_steps_deserial"(
	"bytes" bytea, /* Vec < u8 > */
	"_unused" internal /* Internal */
) RETURNS internal /* Internal */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'discounted_return_steps_deserial_wrapper';
CREATE FUNCTION fractality."episode_sums_combine"(
	"a" internal, /* Internal */
	"b" internal /* Internal */
) RETURNS internal /* Internal */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'episode_sums_combine_wrapper';
CREATE FUNCTION fractality."episode_sums_serial"(
	"state" internal /* Internal */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'episode_sums_serial_wrapper';
CREATE FUNCTION fractality."episode_sums_deserial"(
	"bytes" bytea, /* Vec < u8 > */
	"_unused" internal /* Internal */
) RETURNS internal /* Internal */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'episode_sums_deserial_wrapper';

DROP AGGREGATE fractality.discounted_return(float8, float8, integer);
DROP AGGREGATE fractality.episode_sums(integer, real, real, real, real, float8);
-- discounted_return(reward, gamma, step): the same by step number, in any order (no sort):
-- sum of gamma^(step - first step) * reward.
CREATE AGGREGATE fractality.discounted_return(reward float8, gamma float8, step integer) (
    SFUNC = fractality.discounted_return_steps_sfunc,
    STYPE = internal,
    SSPACE = 32,
    FINALFUNC = fractality.discounted_return_steps_ffunc,
    COMBINEFUNC = fractality.discounted_return_steps_combine,
    SERIALFUNC = fractality.discounted_return_steps_serial,
    DESERIALFUNC = fractality.discounted_return_steps_deserial,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE fractality.discounted_return(float8, float8, integer) IS
    'Discounted return by step number, order-free: sum of gamma^(step - min(step)) * reward over the rows of a non-NULL reward (min(step) among them).';
-- One pass over an episode's events: {steps, homeostasis, curiosity, efficiency, goal, discounted}
-- (the discounted return by step number, as discounted_return(reward, gamma, step) of each event's
-- four rewards summed in float8, so that at gamma = 1 it is the total). The engine of
-- episode_returns: one transition per event instead of one per sum.
CREATE AGGREGATE fractality.episode_sums(step integer, homeostasis real, curiosity real,
                                         efficiency real, goal real, gamma float8) (
    SFUNC = fractality.episode_sums_sfunc,
    STYPE = internal,
    SSPACE = 72,
    FINALFUNC = fractality.episode_sums_ffunc,
    COMBINEFUNC = fractality.episode_sums_combine,
    SERIALFUNC = fractality.episode_sums_serial,
    DESERIALFUNC = fractality.episode_sums_deserial,
    PARALLEL = SAFE
);
-- the state sizes (SSPACE) of the aggregates 0.4.0 made, and episode_returns planned per call
-- discounted_return(reward, gamma ORDER BY step): r0 + g r1 + g^2 r2 + ... in the given order.
CREATE OR REPLACE AGGREGATE fractality.discounted_return(reward float8, gamma float8) (
    SFUNC = fractality.discounted_return_sfunc,
    STYPE = internal,
    SSPACE = 32,
    FINALFUNC = fractality.discounted_return_ffunc
);
COMMENT ON AGGREGATE fractality.discounted_return(float8, float8) IS
    'Discounted return of the rewards in ORDER BY order: sum of gamma^k * reward_k over the non-NULL rewards (a NULL reward is not a step: the next one takes its power of gamma).';
-- reward_stats(x): (n, mean, stddev, min, max) by Welford, parallel through a combine step.
CREATE OR REPLACE AGGREGATE fractality.reward_stats(float8) (
    SFUNC = fractality.reward_stats_sfunc,
    STYPE = internal,
    SSPACE = 40,
    FINALFUNC = fractality.reward_stats_ffunc,
    COMBINEFUNC = fractality.reward_stats_combine,
    SERIALFUNC = fractality.reward_stats_serial,
    DESERIALFUNC = fractality.reward_stats_deserial,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE fractality.reward_stats(float8) IS
    'Count, mean, sample stddev, min and max (Welford; parallel with a combine step). NULLs are skipped.';
-- Per-episode returns of the hot events with "timestamp" in [from_us, to_us).
CREATE OR REPLACE FUNCTION fractality.episode_returns(from_us bigint, to_us bigint, gamma float8 DEFAULT 0.99)
RETURNS TABLE (episode_id bigint, steps bigint, total float8, discounted float8, mean float8,
               homeostasis float8, curiosity float8, efficiency float8, goal float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
-- planned for each call's range: the generic plan, which cannot see how many events the range
-- holds, sorted every event for a group aggregate (335 ms against 157 ms hashed, 1M events)
SET plan_cache_mode = force_custom_plan
-- a bad gamma named whole in the message whatever the caller's setting (at -15, 1.5 read 2)
SET extra_float_digits = 1
AS $$
BEGIN
    IF from_us IS NULL OR to_us IS NULL OR gamma IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('episode_returns: %s must not be NULL', CASE WHEN from_us IS NULL THEN 'from_us' WHEN to_us IS NULL THEN 'to_us' ELSE 'gamma' END),
            HINT = 'Pass from_us <= to_us, both microseconds since the Unix epoch, and a discount factor gamma in [0, 1].';
    END IF;
    IF from_us > to_us THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid time range for episode_returns: [%s, %s)', from_us, to_us),
            HINT = 'Pass from_us <= to_us, both microseconds since the Unix epoch.';
    END IF;
    IF gamma = 'NaN' OR gamma < 0 OR gamma > 1 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for gamma: %s', gamma),
            HINT = 'The discount factor gamma must be a number in [0, 1].';
    END IF;
    RETURN QUERY
    SELECT s.episode_id, s.v[1]::bigint, s.v[2] + s.v[3] + s.v[4] + s.v[5], s.v[6],
           (s.v[2] + s.v[3] + s.v[4] + s.v[5]) / s.v[1], s.v[2], s.v[3], s.v[4], s.v[5]
      FROM (SELECT ev.episode_id,
                   fractality.episode_sums(ev.step_number, ev.reward_homeostasis, ev.reward_curiosity,
                                           ev.reward_efficiency, ev.reward_goal, episode_returns.gamma) AS v
              FROM fractality.experience_events ev
             WHERE ev."timestamp" >= from_us AND ev."timestamp" < to_us AND NOT ev.archived
             GROUP BY ev.episode_id) s
     ORDER BY s.episode_id;
END $$;

-- adna_policies keeps the sum of its rewards in double precision: avg_reward, a real recomputed
-- from itself, stopped moving once a roll-up's change was below half its precision
ALTER TABLE fractality.adna_policies ADD COLUMN reward_sum float8 NOT NULL DEFAULT 0.0;
-- (the policies' updated_at stays: nothing of theirs changed)
ALTER TABLE fractality.adna_policies DISABLE TRIGGER adna_policies_touch_updated_at;
UPDATE fractality.adna_policies SET reward_sum = avg_reward::float8 * total_executions
 WHERE total_executions > 0;
ALTER TABLE fractality.adna_policies ENABLE TRIGGER adna_policies_touch_updated_at;
COMMENT ON COLUMN fractality.adna_policies.reward_sum IS
    'The sum of the rewards rolled in (refresh_policy_rewards), in double precision: avg_reward is reward_sum / total_executions as a real.';

-- ---- views: each node's edges and points of its own tenant, and no point ahead of now
-- Nodes above an energy level (current, decayed energy), with their child count and last stream
-- activity (a point written ahead of now is not activity yet). A node is its tenant's id: two
-- tenants' nodes may share an id, and each counts its own edges and points.
CREATE OR REPLACE VIEW fractality.active_consciousness WITH (security_invoker = true) AS
SELECT n.node_id,
       n.user_id,
       n.node_key,
       n.label,
       n.atp,
       (SELECT count(*)
          FROM fractality.edges e
         WHERE e.from_node = n.node_id AND e.user_id = n.user_id
           AND e.relationship_type = 'child') AS child_count,
       (SELECT max(cs.time)
          FROM fractality.consciousness_streams cs
         WHERE cs.node_id = n.node_id AND cs.user_id = n.user_id AND cs.time <= now()) AS last_activity
  FROM fractality.node_energy n
 WHERE n.atp > 0.5;

COMMENT ON VIEW fractality.active_consciousness IS
    'Nodes with current (decayed) energy above 0.5, their child count and their last stream point.';

-- Hourly energy by node key over the last 24 hours (up to now: not points written ahead of it),
-- and how many minds (users) held it; each point under its own tenant's node.
CREATE OR REPLACE VIEW fractality.consciousness_evolution WITH (security_invoker = true) AS
SELECT date_trunc('hour', cs.time) AS hour,
       n.node_key,
       avg(cs.atp_level)            AS avg_atp,
       stddev_samp(cs.atp_level)    AS atp_stddev,
       count(*)                     AS points,
       count(DISTINCT n.user_id)    AS active_minds
  FROM fractality.consciousness_streams cs
  JOIN fractality.nodes n ON n.id = cs.node_id AND n.user_id = cs.user_id
 WHERE cs.time > now() - interval '24 hours' AND cs.time <= now()
 GROUP BY 1, 2;

COMMENT ON VIEW fractality.consciousness_evolution IS
    'Hourly average and deviation of energy per node key over the last 24 hours, with distinct users.';

-- ---- search paths pinned ----------------------------------------------------------------------
-- The functions of 0.4.0 that ran with the caller's search_path, which a function of another
-- schema matching a call's argument types more exactly than pg_catalog's could take over (the
-- owner's maintenance among them): pinned to pg_catalog, pg_temp, and the inlined SQL helpers'
-- operands of pg_catalog's exact types.
CREATE OR REPLACE FUNCTION fractality.current_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(pg_catalog.current_setting('fractality.user_id', true), '')::pg_catalog.uuid $$;
CREATE OR REPLACE FUNCTION fractality.epoch_us(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT CASE WHEN pg_catalog.isfinite(t)
                 THEN (extract(epoch FROM t) OPERATOR(pg_catalog.*) 1000000::numeric)::bigint
                 -- an infinity: out of bigint's range (22003), as float8's infinity casts
                 ELSE (pg_catalog.date_part('epoch', t) OPERATOR(pg_catalog.*) 1000000::float8)::bigint
            END $$;
CREATE OR REPLACE FUNCTION fractality._us_to_timestamptz(us bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ((timestamp '1970-01-01'
               OPERATOR(pg_catalog.+) ((us OPERATOR(pg_catalog./) 86400000000::bigint)::float8
                                       OPERATOR(pg_catalog.*) interval '1 day'))
              OPERATOR(pg_catalog.+) ((us OPERATOR(pg_catalog.%) 86400000000::bigint)::float8
                                      OPERATOR(pg_catalog.*) interval '1 microsecond'))
             AT TIME ZONE 'UTC' $$;
CREATE OR REPLACE FUNCTION fractality.stream_history(node uuid, "from" timestamptz, "to" timestamptz)
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
CREATE OR REPLACE FUNCTION fractality.experience_events_cascade_delete() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'experience_events_archive' THEN
        DELETE FROM fractality.action_metadata_archive m
         USING old_events o
         WHERE m.event_timestamp = o."timestamp" AND m.event_id = o.event_id;
    ELSE
        DELETE FROM fractality.action_metadata m
         USING old_events o
         WHERE m.event_timestamp = o."timestamp" AND m.event_id = o.event_id;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION fractality.experience_events_cascade_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- not when the statement truncated it too (TRUNCATE of both: the table is in use, 55006)
    IF TG_TABLE_NAME = 'experience_events_archive' THEN
        IF EXISTS (SELECT 1 FROM fractality.action_metadata_archive) THEN
            TRUNCATE fractality.action_metadata_archive;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM fractality.action_metadata) THEN
        TRUNCATE fractality.action_metadata;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION fractality.experience_events_to_inbox() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO fractality.policy_reward_inbox (adna_version_hash, events, reward_sum)
    SELECT n.adna_version_hash, count(*),
           sum(fractality.total_reward(n.reward_homeostasis, n.reward_curiosity,
                                       n.reward_efficiency, n.reward_goal)::float8)
      FROM new_events n
     GROUP BY n.adna_version_hash;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION fractality.refresh_policy_rewards() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3
AS $$
DECLARE
    rolled bigint;
    summary jsonb;
BEGIN
    WITH waiting AS (
        SELECT i.ctid AS row, sum(i.events) OVER (ORDER BY i.ctid) AS upto
          FROM fractality.policy_reward_inbox i
         WHERE EXISTS (SELECT 1 FROM fractality.adna_policies p
                        WHERE p.version_hash = i.adna_version_hash)
    ), taken AS (
        -- (a statement's row holds at most its batch's events, far below the bound)
        DELETE FROM fractality.policy_reward_inbox i
         USING waiting w
         WHERE i.ctid = w.row AND w.upto <= 2147483647
        RETURNING i.adna_version_hash, i.events, i.reward_sum
    ), per_hash AS (
        SELECT t.adna_version_hash, sum(t.events)::bigint AS events, sum(t.reward_sum) AS reward_sum
          FROM taken t GROUP BY t.adna_version_hash
    ), updated AS (
        UPDATE fractality.adna_policies p
           SET reward_sum = p.reward_sum + h.reward_sum,
               avg_reward = ((p.reward_sum + h.reward_sum) / (p.total_executions + h.events))::real,
               total_executions = p.total_executions + h.events,
               updated_at = now()
          FROM per_hash h
         WHERE p.version_hash = h.adna_version_hash
        RETURNING p.policy_id, p.version_hash, h.events, h.reward_sum, p.avg_reward
    )
    SELECT coalesce(sum(h.events), 0),
           jsonb_build_object(
               'events', coalesce(sum(h.events), 0),
               'mean_reward', sum(h.reward_sum) / nullif(sum(h.events), 0),
               'policies', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'policy_id', u.policy_id, 'events', u.events,
                                'mean_reward', u.reward_sum / u.events,
                                'avg_reward', u.avg_reward) ORDER BY u.policy_id), '[]'::jsonb)
                              FROM updated u))
      INTO rolled, summary
      FROM per_hash h;
    IF rolled > 0 THEN
        INSERT INTO fractality.learning_metrics (metric_type, metric_data)
        VALUES ('reward_trend', summary);
    END IF;
    RETURN rolled::integer;
END $$;
CREATE OR REPLACE FUNCTION fractality.query_events(start_us bigint, end_us bigint, "limit" integer DEFAULT 1000,
                                        with_metadata boolean DEFAULT false,
                                        include_archived boolean DEFAULT false)
RETURNS TABLE ("timestamp" bigint, event_id bytea, episode_id bigint, step_number integer,
               event_type smallint, flags smallint,
               state real[], action real[],
               reward_homeostasis real, reward_curiosity real, reward_efficiency real, reward_goal real,
               total_reward real, adna_version_hash integer, sequence_number integer, archived boolean,
               intent_type varchar, executor_id varchar, parameters jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF start_us IS NULL OR end_us IS NULL OR "limit" IS NULL OR with_metadata IS NULL OR include_archived IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('query_events: %s must not be NULL',
                             CASE WHEN start_us IS NULL THEN 'start_us' WHEN end_us IS NULL THEN 'end_us'
                                  WHEN "limit" IS NULL THEN 'limit' WHEN with_metadata IS NULL THEN 'with_metadata'
                                  ELSE 'include_archived' END),
            HINT = 'Pass start_us <= end_us, both microseconds since the Unix epoch, and a limit >= 0.';
    END IF;
    IF start_us > end_us THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid time range for query_events: [%s, %s)', start_us, end_us),
            HINT = 'Pass start_us <= end_us, both microseconds since the Unix epoch.';
    END IF;
    IF "limit" < 0 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for limit: %s', "limit"::text),
            HINT = 'limit must be an integer >= 0.';
    END IF;
    RETURN QUERY
    SELECT e."timestamp", e.event_id, e.episode_id, e.step_number, e.event_type, e.flags,
           ARRAY[e.state_l1, e.state_l2, e.state_l3, e.state_l4, e.state_l5, e.state_l6, e.state_l7, e.state_l8],
           ARRAY[e.action_l1, e.action_l2, e.action_l3, e.action_l4, e.action_l5, e.action_l6, e.action_l7, e.action_l8],
           e.reward_homeostasis, e.reward_curiosity, e.reward_efficiency, e.reward_goal,
           fractality.total_reward(e.reward_homeostasis, e.reward_curiosity, e.reward_efficiency, e.reward_goal),
           e.adna_version_hash, e.sequence_number, e.is_archived,
           e.m_intent_type, e.m_executor_id, e.m_parameters
      FROM (SELECT h.*, h.archived AS is_archived,
                   m.intent_type AS m_intent_type, m.executor_id AS m_executor_id, m.parameters AS m_parameters
              FROM fractality.experience_events h
              LEFT JOIN fractality.action_metadata m
                ON with_metadata AND m.event_timestamp = h."timestamp" AND m.event_id = h.event_id
             WHERE h."timestamp" >= start_us AND h."timestamp" < end_us
               AND (include_archived OR NOT h.archived)
            UNION ALL
            SELECT c.*, true,
                   m.intent_type, m.executor_id, m.parameters
              FROM fractality.experience_events_archive c
              LEFT JOIN fractality.action_metadata_archive m
                ON with_metadata AND m.event_timestamp = c."timestamp" AND m.event_id = c.event_id
             WHERE include_archived AND c."timestamp" >= start_us AND c."timestamp" < end_us) e
     ORDER BY e."timestamp", e.event_id
     LIMIT "limit";
END $$;
CREATE OR REPLACE FUNCTION fractality.high_reward_events(since_us bigint, min_reward real DEFAULT 0.5,
                                              "limit" integer DEFAULT 1000)
RETURNS TABLE ("timestamp" bigint, event_id bytea, episode_id bigint, step_number integer,
               event_type smallint, total_reward real, adna_version_hash integer,
               intent_type varchar, executor_id varchar, parameters jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF since_us IS NULL OR min_reward IS NULL OR "limit" IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('high_reward_events: %s must not be NULL', CASE WHEN since_us IS NULL THEN 'since_us' WHEN min_reward IS NULL THEN 'min_reward' ELSE 'limit' END),
            HINT = 'Pass a time in microseconds since the Unix epoch, a reward threshold (-Infinity: every event) and a limit >= 0.';
    END IF;
    IF min_reward = 'NaN' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid argument for high_reward_events: since_us %s, min_reward %s',
                             since_us::text, min_reward::text),
            HINT = 'Pass a time in microseconds since the Unix epoch and a reward threshold (not NaN; -Infinity: every event).';
    END IF;
    IF "limit" < 0 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for limit: %s', "limit"::text),
            HINT = 'limit must be an integer >= 0.';
    END IF;
    RETURN QUERY
    SELECT e."timestamp", e.event_id, e.episode_id, e.step_number, e.event_type,
           fractality.total_reward(e.reward_homeostasis, e.reward_curiosity, e.reward_efficiency, e.reward_goal),
           e.adna_version_hash, m.intent_type, m.executor_id, m.parameters
      FROM fractality.experience_events e
      LEFT JOIN fractality.action_metadata m
        ON m.event_timestamp = e."timestamp" AND m.event_id = e.event_id
     WHERE e."timestamp" > since_us
       AND NOT e.archived
       AND fractality.total_reward(e.reward_homeostasis, e.reward_curiosity, e.reward_efficiency, e.reward_goal) > min_reward
     ORDER BY e."timestamp" DESC, e.event_id
     LIMIT "limit";
END $$;
CREATE OR REPLACE FUNCTION fractality.load_policy(state_bin_id text) RETURNS jsonb
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3
AS $$
    SELECT jsonb_build_object(
               'policy_id', p.policy_id, 'state_bin_id', p.state_bin_id, 'rule_id', p.rule_id,
               'action_weights', p.action_weights, 'metadata', p.metadata, 'version', p.version,
               'version_hash', p.version_hash, 'parent_policy_id', p.parent_policy_id,
               'total_executions', p.total_executions, 'avg_reward', p.avg_reward,
               'created_at', p.created_at)
      FROM fractality.adna_policies p
     WHERE p.state_bin_id = load_policy.state_bin_id AND p.is_active
$$;
CREATE OR REPLACE FUNCTION fractality.policy_lineage(policy_id integer)
RETURNS TABLE (depth integer, ancestor_id integer, version integer, rule_id varchar,
               version_hash integer, is_active boolean, created_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF policy_id IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('policy_lineage: %s must not be NULL', 'policy_id'),
            HINT = 'Pass a policy_id returned by fractality.save_policy.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fractality.adna_policies p WHERE p.policy_id = policy_lineage.policy_id) THEN
        RAISE no_data_found USING
            MESSAGE = format('policy %s does not exist', policy_lineage.policy_id),
            HINT = 'Pass a policy_id returned by fractality.save_policy.';
    END IF;
    RETURN QUERY
    WITH RECURSIVE up AS (
        SELECT 0 AS d, p.* FROM fractality.adna_policies p WHERE p.policy_id = policy_lineage.policy_id
        UNION ALL
        SELECT up.d + 1, p.* FROM up JOIN fractality.adna_policies p ON p.policy_id = up.parent_policy_id
         WHERE up.d < 100000
    )
    SELECT up.d, up.policy_id, up.version, up.rule_id, up.version_hash, up.is_active, up.created_at
      FROM up ORDER BY up.d;
END $$;
CREATE OR REPLACE FUNCTION fractality.save_config(component text, key text, value jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent integer;
    next_version integer;
    new_id integer;
BEGIN
    IF component IS NULL OR key IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('save_config: %s must not be NULL', CASE WHEN component IS NULL THEN 'component' ELSE 'key' END),
            HINT = 'Pass the component, the key and the value (jsonb).';
    END IF;
    IF component = '' OR length(component) > 255 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for component: %s', CASE WHEN length(component) <= 200 THEN quote_literal(component) ELSE format('%L (%s characters)', left(component, 197) || '...', length(component)) END),
            HINT = 'component is a non-empty text of at most 255 characters.';
    END IF;
    IF key = '' OR length(key) > 255 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for key: %s', CASE WHEN length(key) <= 200 THEN quote_literal(key) ELSE format('%L (%s characters)', left(key, 197) || '...', length(key)) END),
            HINT = 'key is a non-empty text of at most 255 characters.';
    END IF;
    IF value IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = 'value must not be NULL',
            HINT = 'Pass a JSON value; the JSON null is ''null''::jsonb.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('fractality.configuration_store/' || component || E'\x1f' || key, 0::bigint));
    SELECT c.config_id INTO parent FROM fractality.configuration_store c
     WHERE c.component_name = component AND c.config_key = key AND c.is_active;
    SELECT coalesce(max(c.version), 0) + 1 INTO next_version FROM fractality.configuration_store c
     WHERE c.component_name = component AND c.config_key = key;
    UPDATE fractality.configuration_store c SET is_active = false, updated_at = now()
     WHERE c.config_id = parent;
    BEGIN
        INSERT INTO fractality.configuration_store
            (component_name, config_key, config_value, version, parent_config_id, is_active)
        VALUES (component, key, value, next_version, parent, true)
        RETURNING config_id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        -- as in save_policy: a version saved meanwhile, unseen by a snapshot older than the lock
        IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
            RAISE serialization_failure USING
                MESSAGE = format('save_config: another session saved %L / %L meanwhile', component, key),
                HINT = 'Run the transaction again: its snapshot is older than that version.';
        END IF;
        RAISE;
    END;
    RETURN new_id;
END $$;
CREATE OR REPLACE FUNCTION fractality.load_config(component text, key text) RETURNS jsonb
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.config_value FROM fractality.configuration_store c
     WHERE c.component_name = load_config.component AND c.config_key = load_config.key AND c.is_active
$$;

-- Every version of (component, key), newest first.
CREATE OR REPLACE FUNCTION fractality.config_history(component text, key text)
RETURNS TABLE (config_id integer, version integer, config_value jsonb, parent_config_id integer,
               is_active boolean, created_at timestamptz)
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.config_id, c.version, c.config_value, c.parent_config_id, c.is_active, c.created_at
      FROM fractality.configuration_store c
     WHERE c.component_name = config_history.component AND c.config_key = config_history.key
     ORDER BY c.version DESC
$$;

-- the node notification keeps every digit of its energy whatever the session's extra_float_digits
CREATE OR REPLACE FUNCTION fractality.notify_consciousness_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3
AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    PERFORM pg_notify('consciousness_update',
                      json_build_object('node_id', r.id,
                                        'node_key', r.node_key,
                                        'tenant', md5(r.user_id::text),
                                        'atp', fractality.current_atp(r.atp, r.atp_at),
                                        'action', TG_OP)::text);
    RETURN NULL;
END
$$;

-- 0.4.0's per-row step of the explicit tick: apply_consciousness_decay locks the rows and reads the old values itself
DROP FUNCTION fractality.decay_tick(uuid, double precision, double precision, double precision);

-- ---- row-level security of the new tables -----------------------------------------------------

-- (the tenant tables of 0.4.0 have their policy: _protect_partition leaves it as it is)
-- The tenant tables, each under the policy tenant_isolation (see _protect_partition in
-- bootstrap.sql), and each partition of node_embeddings too (a role granted a partition itself
-- sees its tenant's rows only). Idempotent: the upgrade runs it over the tables that have it.
SELECT fractality._protect_partition(t)
  FROM unnest('{fractality.nodes, fractality.node_text, fractality.node_embeddings, fractality.edges,
                fractality.consciousness_streams, fractality.consciousness_archive,
                fractality.consensus_links}'::regclass[]) t;
SELECT fractality._protect_partition(i.inhrelid::regclass)
  FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'fractality.node_embeddings'::regclass;

-- consensus_links: each tenant reads its own links, and only the consensus functions (their
-- owner) write them: a tenant linking a node of its own to any consensus, or unlinking one,
-- would steer what the curator's next run finds and whose links it deletes. A tenant's node
-- deleted takes its links with it all the same (the foreign key's cascade runs as the owner).
DROP POLICY IF EXISTS tenant_isolation ON fractality.consensus_links;
DROP POLICY IF EXISTS tenant_read ON fractality.consensus_links;
CREATE POLICY tenant_read ON fractality.consensus_links FOR SELECT
    USING (user_id = fractality.current_user_id());

-- the models are read by every role granted SELECT and written only by their owner
-- (register_model as the administrator)
ALTER TABLE fractality.embedding_models ENABLE ROW LEVEL SECURITY;
CREATE POLICY models_read ON fractality.embedding_models FOR SELECT USING (true);

-- the retention policies: no policy at all, so only the owner (and BYPASSRLS) reads or writes
-- them. run_maintenance applies them as the owner to every tenant's rows: a role granted the
-- table (GRANT ... ON ALL TABLES) must not be able to set one (a 'drop' after a microsecond).
ALTER TABLE fractality.retention_policies ENABLE ROW LEVEL SECURITY;

-- internal helpers: not for direct calls
REVOKE EXECUTE ON FUNCTION fractality._node_embeddings_check() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_enter() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_leave() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_truncate() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_entered(integer, bigint[], bytea[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove(bytea[], bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove_before(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_rebuild(integer) FROM PUBLIC;
ALTER TABLE fractality.consensus_centroids ENABLE ROW LEVEL SECURITY;

-- ---- backups ------------------------------------------------------------------------------------
-- pg_dump dumps the rows of an extension's tables only when the extension marks them: every
-- table of fractality (each partition made here, the default and hash partitions) and every
-- sequence, so that pg_dump / pg_restore give back every row and every sequence's value. The
-- 'default' model is made by CREATE EXTENSION itself and left out, and node_text too: restoring
-- nodes fills it again (its insert trigger), so its own rows would collide. Monthly partitions are
-- ordinary tables (see streams.sql), dumped as any table is. action_metadata's reference to its
-- event is checked at commit: restore in one transaction (pg_restore --single-transaction).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel, c.relname
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
              WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
                AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'fractality')
                AND d.deptype = 'e'
                AND c.relkind IN ('r', 'S')
                AND c.relname <> 'node_text'
              ORDER BY c.relname
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(r.rel,
            CASE WHEN r.relname = 'embedding_models' THEN 'WHERE model <> ''default''' ELSE '' END);
    END LOOP;
END
$$;

-- ---- internal helpers ---------------------------------------------------------------------------
-- Not executable by PUBLIC: the partition and archive steps and the owner's maintenance functions
-- that call them (ensure_partitions, archive_old_events, archive_streams, run_maintenance, the
-- retention policies, index builds: they change tables only their owner may change; a
-- maintenance role, a member of the owner's role, runs them after SET ROLE to the owner), the
-- trigger functions (checked when a trigger is created, not when it fires) and the aggregates'
-- support functions (checked for the aggregate's owner). Every other function of the schema is
-- the API.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'fractality'::regnamespace
                AND p.proname IN (
                    '_archive_events_before', '_archive_partition_name', '_archive_streams_before',
                    '_attach_to_archive', '_create_month_partition', '_drop_events_before',
                    '_drop_partition', '_drop_streams_before', '_ensure_month_partition',
                    '_event_table_as', '_index_partition', '_new_event_table', '_pack_stream_points',
                    '_partition_bounds', '_protect_partition', '_set_event_bound',
                    '_us_to_timestamptz', '_check_age', '_check_read_committed', '_lock_for_partitions',
                    '_months_to_partition', '_lock', '_try_lock',
                    '_embedding_models_index', '_model_index_ops', 'action_metadata_check_event',
                    'experience_events_cascade_delete', 'experience_events_cascade_truncate',
                    'experience_events_to_inbox', 'notify_consciousness_update', 'touch_updated_at',
                    '_node_text_insert', '_node_text_update',
                    '_experience_events_register', '_experience_events_unregister',
                    '_experience_events_identity',
                    'discounted_return_ffunc', 'discounted_return_sfunc',
                    'discounted_return_steps_ffunc', 'discounted_return_steps_sfunc',
                    'discounted_return_steps_combine', 'discounted_return_steps_serial',
                    'discounted_return_steps_deserial', 'episode_sums_combine',
                    'episode_sums_serial', 'episode_sums_deserial',
                    'episode_sums_ffunc', 'episode_sums_sfunc', 'reward_stats_combine',
                    'reward_stats_deserial', 'reward_stats_ffunc', 'reward_stats_serial',
                    'reward_stats_sfunc',
                    -- the owner's maintenance: partitions, archiving, retention, index builds
                    'ensure_partitions', 'archive_old_events', 'archive_streams', 'run_maintenance',
                    '_run_maintenance', '_maintenance_report', 'maintain',
                    'add_retention_policy', 'remove_retention_policy', 'build_model_index',
                    'drop_model_index', 'build_tenant_graphs')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', f);
    END LOOP;
END
$$;

-- ---- descriptions --------------------------------------------------------------------------------
-- What \df+ and obj_description show for every function the sources above do not describe (the
-- Rust functions get none from pgrx); docs/API.md has the same in its tables.

COMMENT ON FUNCTION fractality.remember(text, text, vector, jsonb, text, double precision, interval) IS
    'Stores a memory of the session''s tenant (a NULL key: derived from the content), or reinforces the one it repeats (same key, or within dedup_threshold cosine similarity); ttl expires it. Returns (node_id, created).';
COMMENT ON FUNCTION fractality.remember_many(jsonb, text, double precision) IS
    'remember for a batch [{content, embedding[, node_key, metadata, ttl]}, ...]; new embeddings are staged until index_staged_embeddings or run_maintenance indexes them.';
COMMENT ON FUNCTION fractality.remember_many(text[], text[], vector[], jsonb[], text, double precision, interval[]) IS
    'remember for a batch given as arrays of one element a memory (NULL elements: a derived key, {}, no expiry); new embeddings are staged until indexed.';
COMMENT ON FUNCTION fractality.recall(vector, integer, text, text, text, double precision, double precision, double precision, double precision, double precision) IS
    'The k memories of the session''s tenant best scored by w_sim x relevance (cosine, fused with full text given query_text) + w_energy x energy + w_edge x edge to the context key; reinforce > 0 feeds those returned, 0 writes nothing.';
COMMENT ON FUNCTION fractality.recall_explain(vector, integer, text, text, text, double precision, double precision, double precision, double precision) IS
    'Every candidate a recall looks at, with the parts of its score, whether it is returned, and how the tenant was searched (exact, index, tenant_graph); writes nothing.';
COMMENT ON FUNCTION fractality.forget(text) IS
    'Deletes the session tenant''s memory of that key with its embeddings, edges and stream points; false when there is none.';
COMMENT ON FUNCTION fractality.find_resonant(uuid, double precision, integer, text) IS
    'The k nodes of the source''s tenant with cosine similarity >= threshold to it, by resonance (0.5 x similarity + 0.3 x energy product + 0.2 x edge weight); expired memories left out; read as the caller.';
COMMENT ON FUNCTION fractality.find_resonant(text, double precision, integer, text) IS
    'find_resonant of the session tenant''s node of that key.';
COMMENT ON FUNCTION fractality.resonance_with(uuid, uuid[], text) IS
    'The resonance of a node with each of others (similarity, energies, edge weight and the score), in one pass; read as the caller.';
COMMENT ON FUNCTION fractality.calculate_resonance(uuid, uuid, text) IS
    'The resonance of two nodes: 0.5 x cosine similarity + 0.3 x energy product + 0.2 x edge weight.';
COMMENT ON FUNCTION fractality.resonance_score(double precision, double precision, double precision, double precision, double precision, double precision, double precision) IS
    'The resonance formula alone: w_sim x similarity + w_energy x atp_a x atp_b + w_edge x edge_weight.';
COMMENT ON FUNCTION fractality.crystallize_consensus(uuid, double precision, integer, text) IS
    'A consensus node where the nodes within threshold of the seed, of any tenant, belong to min_contributors users or more (expired memories not counted); publishes only counts and one-decimal scores. For a trusted curator role.';
COMMENT ON FUNCTION fractality.cosine_similarity(vector, vector) IS
    'The cosine similarity of two vectors of the same dimension, read in place.';
COMMENT ON FUNCTION fractality.normalize_vector(vector) IS
    'The vector scaled to length 1 (a zero vector is refused).';
COMMENT ON FUNCTION fractality.vector_dims_native(vector) IS
    'The dimension of a vector, read from its header.';
COMMENT ON FUNCTION fractality.upsert_node(text, text, jsonb, double precision, vector, text, text) IS
    'Inserts or updates the session tenant''s node of that key (a NULL keeps a value; metadata is merged); returns its id.';
COMMENT ON FUNCTION fractality.upsert_node_for(uuid, text, text, jsonb, double precision, vector, text, text) IS
    'upsert_node for the tenant given (row-level security still applies to the caller).';
COMMENT ON FUNCTION fractality.link(text, text, text, double precision) IS
    'An edge of that type and weight in [-1, 1] between two nodes of the session''s tenant, by key (inserted or updated).';
COMMENT ON FUNCTION fractality.unlink(text, text, text) IS
    'Deletes the edge of that type between two nodes of the session''s tenant; false when there is none.';
COMMENT ON FUNCTION fractality.children(text, text) IS
    'The nodes the node of that key links to with the relationship, strongest edge first.';
COMMENT ON FUNCTION fractality.parents(text, text) IS
    'The nodes that link to the node of that key with the relationship, strongest edge first.';
COMMENT ON FUNCTION fractality.traverse(uuid, integer, text) IS
    'A breadth-first walk from root along the relationship, to max_depth: each node once, at its smallest depth, with its strongest path there (the highest product of edge weights).';
COMMENT ON FUNCTION fractality.consciousness_path(uuid, uuid, double precision) IS
    'The cheapest directed path between two nodes (an edge between nodes of energy a and b costs 1 / (a * b)), up to max_cost.';
COMMENT ON FUNCTION fractality.thaw(text, integer, text) IS
    'The session tenant''s node of that key as one document: its fields, energy as of now, every model''s embedding, edges and the latest stream points.';
COMMENT ON FUNCTION fractality."freeze"(jsonb, text) IS
    'Writes a document as thaw gives it back into the graph (node, embeddings, edges, stream points); its energy decays from its atp_at to now.';
COMMENT ON FUNCTION fractality.search_nodes(text, integer) IS
    'Full-text search (web search syntax) over the nodes'' label and metadata description, best first; expired memories left out.';
COMMENT ON FUNCTION fractality.current_atp(double precision, timestamp with time zone, timestamp with time zone) IS
    'The energy atp stored as of atp_at, decayed to the time at by the session''s curve (fractality.decay_rate, decay_tick, atp_floor).';
COMMENT ON FUNCTION fractality.decay_atp(double precision, interval, double precision, interval, double precision) IS
    'max(floor, atp x rate ^ (elapsed / tick)); a value already below the floor stays. Intervals are measured as extract(epoch) measures them (a month 30 days, a year 365.25).';
COMMENT ON FUNCTION fractality.apply_consciousness_decay(double precision, double precision, uuid) IS
    'One explicit decay tick: every node (of p_user_id, or every tenant the caller sees when NULL) keeps decay_rate of its energy now, floored at min_atp.';
COMMENT ON FUNCTION fractality.materialize_decay(integer) IS
    'Writes the decayed energy of now into nodes, batch_size at a time, skipping rows other sessions hold.';
COMMENT ON FUNCTION fractality.pulse(uuid, double precision) IS
    'Feeds a node energy (capped at 1; a negative energy drains it, down to 0) and records a stream point; returns the new energy.';
COMMENT ON FUNCTION fractality.stream_history(uuid, timestamp with time zone, timestamp with time zone) IS
    'A node''s stream points (energy and attention over time) in [from, to), hot and archived.';
COMMENT ON FUNCTION fractality.notify_enabled() IS
    'Whether fractality.notify is on (the condition of the notification trigger).';
COMMENT ON FUNCTION fractality.epoch_us(timestamp with time zone) IS
    'Microseconds since the Unix epoch of a time, exactly (experience_events.timestamp).';
COMMENT ON FUNCTION fractality.write_events(jsonb) IS
    'Writes a JSON array of events, validated whole; returns how many.';
COMMENT ON FUNCTION fractality.write_events(bytea[], bigint[], bigint[], integer[], smallint[], smallint[], real[], real[], real[], integer[], integer[]) IS
    'Writes a batch of events given as typed arrays (the loaders'' form), validated whole; returns how many.';
COMMENT ON FUNCTION fractality.write_events_json(text) IS
    'Writes a JSON array of events sent as text (the fast path), validated whole; returns how many.';
COMMENT ON FUNCTION fractality.write_events_json(json) IS
    'write_events_json for a json value.';
COMMENT ON FUNCTION fractality.write_event(bytea, bigint, bigint, integer, smallint, smallint, real[], real[], integer, integer, real, real, real, real, jsonb) IS
    'Writes one event (8-D state, 8-D action, four rewards, optional action metadata).';
COMMENT ON FUNCTION fractality.write_event_with_metadata(jsonb, jsonb) IS
    'Writes one event given as JSON with its action metadata.';
COMMENT ON FUNCTION fractality.query_events(bigint, bigint, integer, boolean, boolean) IS
    'Events with start_us <= timestamp < end_us in time order, with their metadata and the archive if asked.';
COMMENT ON FUNCTION fractality.high_reward_events(bigint, real, integer) IS
    'Events since since_us whose total reward exceeds min_reward, newest first, with their metadata (the hot tier).';
COMMENT ON FUNCTION fractality.create_replay_buffer(text, double precision, double precision, double precision, bigint, smallint, integer, boolean) IS
    'A durable prioritised replay buffer fed by the events written that pass its filter (a ring of capacity events when given); backfill takes the stored ones too.';
COMMENT ON FUNCTION fractality.drop_replay_buffer(text) IS
    'Drops a replay buffer and its items; false when there is none.';
COMMENT ON FUNCTION fractality.sample_experiences(text, integer, double precision, bigint) IS
    'n draws from a replay buffer, each with probability proportional to its priority ^ alpha, with importance weights normalised by the draw''s largest.';
COMMENT ON FUNCTION fractality.sample_experiences(integer, double precision, double precision, bigint) IS
    '0.4.0''s form over every hot event, kept for one more release: use a replay buffer.';
COMMENT ON FUNCTION fractality.update_priorities(text, bytea[], double precision[]) IS
    'Writes a learner''s new priorities (TD errors) back to a buffer; ids it holds no item of are skipped. Returns how many were written.';
COMMENT ON FUNCTION fractality.update_priorities(text, bytea[], double precision[], bigint[]) IS
    'update_priorities with the events'' timestamps, which find the items without the id registry.';
COMMENT ON FUNCTION fractality.replay_batch(text, integer, double precision, bigint, interval) IS
    'A learner''s batch in one call: n weighted draws with state, action, rewards, next state (within next_within) and action metadata.';
COMMENT ON FUNCTION fractality.fold_priorities(text) IS
    'Folds the priorities written back to a buffer into its sum tree now; returns how many.';
COMMENT ON FUNCTION fractality.total_reward(real, real, real, real) IS
    'The sum of the four rewards (homeostasis, curiosity, efficiency, goal).';
COMMENT ON FUNCTION fractality.episode_returns(bigint, bigint, double precision) IS
    'Each episode''s return (rewards discounted by gamma per step) over the hot tier''s events in [from_us, to_us) (archived events are not read).';
COMMENT ON FUNCTION fractality.refresh_policy_rewards() IS
    'Rolls the rewards of events written since the last call into their policies'' aggregates; returns how many events.';
COMMENT ON FUNCTION fractality.save_policy(text, text, jsonb, jsonb) IS
    'A new version of a state bin''s policy, its parent the bin''s latest; returns its policy_id.';
COMMENT ON FUNCTION fractality.load_policy(text) IS
    'The latest policy of a state bin.';
COMMENT ON FUNCTION fractality.policy_lineage(integer) IS
    'A policy and its ancestors, from itself (depth 0) back to the first version.';
COMMENT ON FUNCTION fractality.save_config(text, text, jsonb) IS
    'A new version of a configuration value (component, key); returns its config_id.';
COMMENT ON FUNCTION fractality.load_config(text, text) IS
    'The latest version of a configuration value.';
COMMENT ON FUNCTION fractality.config_history(text, text) IS
    'Every version of a configuration value, newest first.';
COMMENT ON FUNCTION fractality.run_maintenance() IS
    'One maintenance pass in one transaction (the owner''s; e.g. from pg_cron): partitions ahead, retention policies, expired memories, staged embeddings indexed, priorities folded, decay materialised. Partitions and retention whose tables a long transaction holds past fractality.maintenance_lock_wait are left to the next run and named in "busy". A second caller meanwhile returns {"skipped": true}.';
COMMENT ON PROCEDURE fractality.maintain(jsonb) IS
    'run_maintenance in two transactions (CALL it outside a transaction block): the partitions and retention, committed, then the steps on rows, so that writers of the tables a pass takes wait for the first part alone; report as run_maintenance''s.';
COMMENT ON FUNCTION fractality.ensure_partitions(integer) IS
    'Creates the monthly partitions of streams and events up to ahead months from now (UTC), and of months whose rows a default partition caught (the owner''s).';
COMMENT ON FUNCTION fractality.archive_old_events(integer) IS
    'Moves events older than days_threshold days (counted in UTC) into the cold tier with their metadata; returns how many (the owner''s).';
COMMENT ON FUNCTION fractality.archive_streams(interval) IS
    'Moves stream points older than older_than (counted in UTC) into the packed, lossless archive; returns how many (the owner''s).';
COMMENT ON FUNCTION fractality.add_retention_policy(regclass, interval, text) IS
    'What run_maintenance does with rows of experience_events or consciousness_streams older than keep: archive or drop (the owner''s).';
COMMENT ON FUNCTION fractality.remove_retention_policy(regclass) IS
    'Removes the retention policy of a table; false when there is none (the owner''s).';
COMMENT ON FUNCTION fractality.touch_updated_at() IS
    'Trigger: sets updated_at to now() on an update.';
COMMENT ON FUNCTION fractality.experience_events_cascade_delete() IS
    'Trigger: deletes the action metadata of events deleted from either tier (their ids are freed by _experience_events_unregister).';
COMMENT ON FUNCTION fractality.experience_events_cascade_truncate() IS
    'Trigger: empties the action metadata of a tier truncated (experience_events or experience_events_archive).';
COMMENT ON FUNCTION fractality.action_metadata_check_event() IS
    'Constraint trigger: action metadata refers to an event that exists in its tier (checked at commit).';
COMMENT ON FUNCTION fractality.experience_events_to_inbox() IS
    'Trigger: queues written events for refresh_policy_rewards.';
COMMENT ON FUNCTION fractality.notify_consciousness_update() IS
    'Trigger: sends consciousness_update for a changed node when fractality.notify is on.';
COMMENT ON AGGREGATE fractality.episode_sums(integer, real, real, real, real, double precision) IS
    'The discounted sums of an episode''s four rewards over its steps (behind episode_returns).';
DO $$
DECLARE
    f regprocedure;
    agg text;
BEGIN
    -- the aggregates' support functions
    FOR f, agg IN
        SELECT p.oid::regprocedure,
               CASE WHEN p.proname LIKE 'discounted_return_steps_%' THEN 'discounted_return(reward, gamma, step)'
                    WHEN p.proname LIKE 'discounted_return_%' THEN 'discounted_return(reward, gamma)'
                    ELSE pg_catalog.regexp_replace(p.proname, '_(sfunc|ffunc|combine|serial|deserial)$', '')
               END
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'fractality'::pg_catalog.regnamespace
           AND p.proname ~ '^(discounted_return|discounted_return_steps|episode_sums|reward_stats)_(sfunc|ffunc|combine|serial|deserial)$'
    LOOP
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', f,
                                  'Support function of the aggregate ' || agg || ' (not for direct calls).');
    END LOOP;
END $$;

-- ---- privileges on the new tables ----------------------------------------------------------------
-- Each role keeps on a table (or view) this update adds the privileges it held on the 0.4.0 table it
-- serves, as GRANT ... ON ALL TABLES (the README's) would give it on a fresh install: writing a
-- node writes its text as the caller (node_text, from nodes), and a memory locks its tenant's row
-- of locks (from nodes); the replay buffers and the event-id
-- registry serve the events (experience_events); the centroids, the consensus nodes (which
-- row-level security keeps the owner's alone). node_embeddings and embedding_models took theirs
-- from the 0.4.0 node_embeddings (30_embeddings.sql). The sequences this update adds (of
-- replay_buffers and replay_pending, identity columns, which their inserts use without a
-- privilege) get what each role holds on a sequence of 0.4.0, adna_policies', as GRANT ... ON ALL
-- SEQUENCES gives it on a fresh install.
-- The cold tier of events came with 0.2.0, whose update granted nothing on it: a database made at
-- 0.1.0 left its roles' query_events failing (42501 on experience_events_archive, even without
-- include_archived, which names it). Where a cold table still has no grant at all (`fill`: as that
-- update left it), each role that may read the hot one may read it too (SELECT, what query_events
-- needs; nothing more, and nothing where anyone granted anything on it since).
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT t.dst, t.kind, x.grantee, x.privilege_type
               FROM (VALUES ('fractality.nodes', 'fractality.node_text', false, 'TABLE'),
                            ('fractality.nodes', 'fractality.locks', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.experience_event_ids', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_buffers', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_tree', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_blocks', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_pending', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_items', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_priorities', false, 'TABLE'),
                            ('fractality.consensus_nodes', 'fractality.consensus_centroids', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.experience_events_archive', true, 'TABLE'),
                            ('fractality.action_metadata', 'fractality.action_metadata_archive', true, 'TABLE'),
                            ('fractality.adna_policies_policy_id_seq', 'fractality.replay_buffers_buffer_id_seq', false, 'SEQUENCE'),
                            ('fractality.adna_policies_policy_id_seq', 'fractality.replay_pending_seq_seq', false, 'SEQUENCE')
                    ) t(src, dst, fill, kind),
                    pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
              WHERE c.oid = t.src::pg_catalog.regclass AND x.grantee <> c.relowner
                -- (USAGE is a sequence's alone; INSERT and DELETE a table's)
                AND x.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'USAGE')
                AND NOT (t.fill AND (x.privilege_type <> 'SELECT' OR EXISTS (
                        SELECT FROM pg_catalog.pg_class d
                         WHERE d.oid = t.dst::pg_catalog.regclass AND d.relacl IS NOT NULL)))
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %s', a.privilege_type, a.kind, a.dst,
                                  CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END);
    END LOOP;
END
$$;

-- PostgreSQL records a grant made by an extension's script as the extension's own initial
-- privileges (pg_init_privs), and pg_dump leaves those out of a dump: a restore (a fresh
-- CREATE EXTENSION, which grants nothing on a table) would lose every grant above. They are the
-- roles' grants, carried over, not the extension's: as on a fresh install, no table of the
-- schema keeps initial privileges, and pg_dump dumps what the roles hold. (The update runs as a
-- superuser: the extension is not trusted.)
DELETE FROM pg_catalog.pg_init_privs i
 USING pg_catalog.pg_class c
 WHERE i.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.objoid = c.oid
   AND c.relnamespace = 'fractality'::pg_catalog.regnamespace;
