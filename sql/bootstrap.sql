-- fractality: bootstrap
-- Loaded first. Helpers the schema itself depends on: the tenant of the current session and the
-- monthly partition helpers used by partition maintenance.
--
-- CREATE EXTENSION runs this with search_path = fractality, <schemas of required extensions>,
-- so the pgvector type `vector` resolves wherever pgvector was installed.

-- The database must be UTF8: Rust strings are UTF-8, and every text argument, key, label and
-- message passes through them. In another encoding a word outside ASCII failed each call with an
-- internal error (XX000), so the install refuses such a database before it creates anything.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'fractality needs a UTF8 database; the encoding of database % is %',
                        pg_catalog.current_database(), pg_catalog.getdatabaseencoding()
            USING ERRCODE = '0A000',
                  HINT = 'Create a database with ENCODING ''UTF8'' (e.g. CREATE DATABASE memory ENCODING ''UTF8'' LOCALE ''C.UTF-8'' TEMPLATE template0) and install it there.';
    END IF;
END $$;

-- The schema is the control file's `fractality`: CREATE EXTENSION makes it, or takes one that is
-- there already. The install puts SECURITY DEFINER functions of a superuser into it; a schema
-- that another role owns (who could rename it and plant one of the same name with objects the
-- functions would then reach), lets another role create in it, or holds another role's objects,
-- is refused before anything is created.
DO $$
DECLARE
    problem text;
    remedy text;
BEGIN
    SELECT x.problem, x.remedy INTO problem, remedy
      FROM (SELECT 1 AS k, pg_catalog.format('is owned by role %s, who is not a superuser', r.rolname) AS problem,
                   'drop the schema first, or make a superuser its owner (ALTER SCHEMA fractality OWNER TO ...)' AS remedy
              FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
             WHERE n.nspname = 'fractality' AND NOT r.rolsuper
            UNION ALL
            SELECT 2, pg_catalog.format('lets %s create objects in it', coalesce(r.rolname, 'PUBLIC')),
                   'REVOKE CREATE ON SCHEMA fractality from every role but superusers first'
              FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
              LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
             WHERE n.nspname = 'fractality' AND a.privilege_type = 'CREATE' AND NOT coalesce(r.rolsuper, false)
            UNION ALL
            SELECT 3, pg_catalog.format('holds %s, owned by a role that is not a superuser', o.what),
                   'install it into a schema of its own'
              FROM (SELECT c.relname::text AS what, c.relowner AS owner FROM pg_catalog.pg_class c
                     WHERE c.relnamespace = 'fractality'::regnamespace
                    UNION ALL
                    SELECT p.oid::regprocedure::text, p.proowner FROM pg_catalog.pg_proc p
                     WHERE p.pronamespace = 'fractality'::regnamespace
                    UNION ALL
                    SELECT t.typname::text, t.typowner FROM pg_catalog.pg_type t
                     WHERE t.typnamespace = 'fractality'::regnamespace) o
              JOIN pg_catalog.pg_roles r ON r.oid = o.owner
             WHERE NOT r.rolsuper) x
     ORDER BY x.k
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'schema fractality %', problem
            USING ERRCODE = '42501',
                  HINT = 'fractality installs SECURITY DEFINER functions in its schema: ' || remedy || '.';
    END IF;
END $$;

-- The tenant of the current session: the setting fractality.user_id as a uuid, NULL when unset.
-- Row-level security compares every tenant row's user_id with it. Inlined into the policies (no
-- SET clause), so its calls name pg_catalog: a function of the caller's path cannot stand in.
CREATE FUNCTION fractality.current_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(pg_catalog.current_setting('fractality.user_id', true), '')::pg_catalog.uuid $$;

COMMENT ON FUNCTION fractality.current_user_id() IS
    'The tenant of this session: the setting fractality.user_id as a uuid (NULL when unset).';

-- Microseconds since the Unix epoch of a timestamptz, exactly (extract's numeric, not date_part's
-- float8, which rounds beyond 2^53 microseconds: after June 2255); experience_events.timestamp
-- uses them. The operator is named with its schema, so it is pg_catalog's whatever the caller's
-- search_path holds (an inlined SQL function takes no SET clause).
CREATE FUNCTION fractality.epoch_us(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT CASE WHEN pg_catalog.isfinite(t)
                 THEN (extract(epoch FROM t) OPERATOR(pg_catalog.*) 1000000::numeric)::bigint
                 -- an infinity: out of bigint's range (22003), as float8's infinity casts
                 ELSE (pg_catalog.date_part('epoch', t) OPERATOR(pg_catalog.*) 1000000::float8)::bigint
            END $$;

-- Row-level security on a tenant table (security.sql) or a partition of one, the same policy
-- tenant_isolation on each: on a partition, a role granted the partition itself (GRANT ... ON ALL
-- TABLES IN SCHEMA does that) still sees only its tenant's rows. A policy of that name is kept.
CREATE FUNCTION fractality._protect_partition(part regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = part AND polname = 'tenant_isolation') THEN
        EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (user_id = fractality.current_user_id())',
                       part);
    END IF;
END
$$;

-- Gives a partition of consciousness_streams or of experience_events(_archive), or a table about
-- to become one, REPLICA IDENTITY FULL and its own indexes, named after it: (node_id, time DESC)
-- for stream points (<name>_node_time); for events a BRIN over "timestamp" (<name>_time) and a
-- hash over event_id (<name>_event_id), what a lookup of one event by (timestamp, event_id)
-- probes (action metadata's reference check: with the BRIN alone it read every page not yet
-- summarised, which made a batch with metadata quadratic at commit). An index it already has of
-- that kind (a table renamed since) takes the name. The parents declare no index: pg_dump dumps each
-- monthly partition, a table of its own, with its index, and pg_restore must not meet one made
-- for it by the parent (see streams.sql).
CREATE FUNCTION fractality._index_partition(part regclass) RETURNS void
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
CREATE FUNCTION fractality._create_month_partition(parent regclass, month date) RETURNS boolean
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

COMMENT ON FUNCTION fractality._create_month_partition(regclass, date) IS
    'Creates the monthly partition of consciousness_streams or experience_events holding the given month (UTC); false when it already exists.';

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
