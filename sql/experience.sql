-- fractality: the experience store
-- The RL experience of the agent runtime: events (8-D state, 8-D action, four rewards), action
-- metadata, versioned policies with lineage, versioned configuration and learning metrics.
-- Column for column as in the seed (PersistenceBackend v0.26.0). It belongs to the runtime, not to
-- a tenant: it carries no user_id, and access to it is granted by privileges.

-- Events. Partitioned by month on "timestamp" (microseconds since the Unix epoch, UTC), so that
-- archiving moves whole partitions. Columns are ordered widest-alignment first to keep the row
-- narrow (no padding).
--
-- Storage: the row alone takes about 174 bytes on disk. The API reads events by time range
-- (query_events, episode_returns, high_reward_events) or scans them whole, and events arrive
-- roughly in time order, so the events' own indexes are a BRIN over "timestamp" (a few bytes per
-- thousand events) and a hash over event_id (about 30 bytes an event: one event found by its
-- id, which action metadata's reference check does for every row); hence no declarative primary
-- key or foreign key on them. An event id is
-- unique whatever its timestamp, across the hot and cold tiers: experience_event_ids below holds
-- every id written (about 90 bytes an event with its btree), so that two transactions writing
-- the same id at once cannot both commit. The write functions also refuse duplicates within a
-- batch and against the stored events, with a message naming the element; action_metadata's
-- reference to its event is kept by the triggers below (checked at commit, cascaded on delete
-- and truncate).
CREATE TABLE fractality.experience_events (
    "timestamp"        bigint      NOT NULL,
    episode_id         bigint      NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    step_number        integer     NOT NULL,
    state_l1           real        NOT NULL,  -- existence
    state_l2           real        NOT NULL,  -- novelty
    state_l3           real        NOT NULL,  -- velocity
    state_l4           real        NOT NULL,  -- attention
    state_l5           real        NOT NULL,  -- cognitive load
    state_l6           real        NOT NULL,  -- certainty
    state_l7           real        NOT NULL,  -- valence
    state_l8           real        NOT NULL,  -- coherence
    action_l1          real        NOT NULL,
    action_l2          real        NOT NULL,
    action_l3          real        NOT NULL,
    action_l4          real        NOT NULL,
    action_l5          real        NOT NULL,
    action_l6          real        NOT NULL,
    action_l7          real        NOT NULL,
    action_l8          real        NOT NULL,
    reward_homeostasis real        NOT NULL DEFAULT 0.0,
    reward_curiosity   real        NOT NULL DEFAULT 0.0,
    reward_efficiency  real        NOT NULL DEFAULT 0.0,
    reward_goal        real        NOT NULL DEFAULT 0.0,
    adna_version_hash  integer     NOT NULL,
    sequence_number    integer     NOT NULL,
    event_type         smallint    NOT NULL,
    flags              smallint    NOT NULL,
    archived           boolean     NOT NULL DEFAULT false,
    event_id           bytea       NOT NULL,
    CONSTRAINT experience_events_event_id_length CHECK (octet_length(event_id) = 16),
    -- (the largest bigint excluded: readers' ranges end before their bound, and a replay block's
    -- inclusive int8range of timestamps cannot end there)
    CONSTRAINT experience_events_timestamp_range CHECK ("timestamp" >= 0 AND "timestamp" < 9223372036854775807),
    -- rewards feed every aggregate: a NaN or an infinity would poison them all
    CONSTRAINT experience_events_rewards_finite CHECK (
            reward_homeostasis > '-Infinity'::real AND reward_homeostasis < 'Infinity'::real
        AND reward_curiosity   > '-Infinity'::real AND reward_curiosity   < 'Infinity'::real
        AND reward_efficiency  > '-Infinity'::real AND reward_efficiency  < 'Infinity'::real
        AND reward_goal        > '-Infinity'::real AND reward_goal        < 'Infinity'::real)
) PARTITION BY RANGE ("timestamp");

COMMENT ON TABLE fractality.experience_events IS
    'RL experience events; "timestamp" in microseconds since the Unix epoch; monthly partitions.';
COMMENT ON COLUMN fractality.experience_events.event_id IS 'u128 event id as 16 bytes.';

-- The default partition, made here; the monthly ones by fractality.ensure_partitions
-- (run_maintenance), as ordinary tables, each with its own indexes (see streams.sql: pg_dump).
CREATE TABLE fractality.experience_events_default
    PARTITION OF fractality.experience_events DEFAULT;
CREATE INDEX experience_events_default_time ON fractality.experience_events_default
    USING brin ("timestamp") WITH (pages_per_range = 32);
CREATE INDEX experience_events_default_event_id ON fractality.experience_events_default
    USING hash (event_id);

-- The event tables, the stream points and the reward inbox have no primary key (an event's id is
-- unique through experience_event_ids; a key would add a btree of about 40 bytes an event to
-- every write): the whole row is each row's identity for logical replication. A publication of
-- a table with no identity makes PostgreSQL refuse its UPDATEs and DELETEs, so that one CREATE
-- PUBLICATION ... FOR ALL TABLES would have stopped forget, archiving and run_maintenance.
-- Monthly and cold partitions get it from _index_partition. Without logical replication
-- (wal_level below logical) it costs nothing.
ALTER TABLE fractality.experience_events REPLICA IDENTITY FULL;
ALTER TABLE fractality.experience_events_default REPLICA IDENTITY FULL;

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

CREATE TABLE fractality.action_metadata (
    event_id        bytea        PRIMARY KEY,
    event_timestamp bigint       NOT NULL,
    intent_type     varchar(255) NOT NULL,
    executor_id     varchar(255) NOT NULL,
    parameters      jsonb        NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    -- the reference to the event (event_timestamp, event_id) is kept by triggers, see below
    CONSTRAINT action_metadata_event_id_length CHECK (octet_length(event_id) = 16)
);

COMMENT ON TABLE fractality.action_metadata IS
    'Intent, executor and parameters of action events; one row per event.';

CREATE INDEX action_metadata_intent_type ON fractality.action_metadata (intent_type);
CREATE INDEX action_metadata_executor ON fractality.action_metadata (executor_id);
CREATE INDEX action_metadata_parameters ON fractality.action_metadata USING gin (parameters);
CREATE INDEX action_metadata_event_ref ON fractality.action_metadata (event_timestamp, event_id);

-- The reference from action_metadata to its event, kept by triggers (experience_events has no
-- unique index for a foreign key to use; see the storage note above). SQLSTATE 23503 as a
-- foreign key would report it.
CREATE FUNCTION fractality.action_metadata_check_event() RETURNS trigger
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

-- Checked at commit (DEFERRABLE INITIALLY DEFERRED), as a foreign key declared so would be: a
-- restore of a dump in one transaction (pg_restore --single-transaction, psql --single-transaction)
-- loads action_metadata before the events it refers to.
CREATE CONSTRAINT TRIGGER action_metadata_event
    AFTER INSERT OR UPDATE OF event_id, event_timestamp ON fractality.action_metadata
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fractality.action_metadata_check_event();

-- The metadata of deleted events goes with them: of either tier, each from its own table (the
-- cold tier's triggers are in archive.sql).
CREATE FUNCTION fractality.experience_events_cascade_delete() RETURNS trigger
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

CREATE TRIGGER experience_events_cascade_delete
    AFTER DELETE ON fractality.experience_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality.experience_events_cascade_delete();

CREATE FUNCTION fractality.experience_events_cascade_truncate() RETURNS trigger
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

CREATE TRIGGER experience_events_cascade_truncate
    AFTER TRUNCATE ON fractality.experience_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality.experience_events_cascade_truncate();

-- Policies: one active row per state bin; each new version points at the one it replaced.
CREATE TABLE fractality.adna_policies (
    policy_id        serial       PRIMARY KEY,
    state_bin_id     varchar(255) NOT NULL,
    rule_id          varchar(255) NOT NULL,
    action_weights   jsonb        NOT NULL,
    metadata         jsonb,
    version          integer      NOT NULL DEFAULT 1,
    version_hash     integer      NOT NULL,
    parent_policy_id integer      REFERENCES fractality.adna_policies (policy_id),
    created_at       timestamptz  NOT NULL DEFAULT now(),
    updated_at       timestamptz  NOT NULL DEFAULT now(),
    is_active        boolean      NOT NULL DEFAULT true,
    total_executions bigint       NOT NULL DEFAULT 0,
    avg_reward       real         NOT NULL DEFAULT 0.0,
    reward_sum       float8       NOT NULL DEFAULT 0.0,
    CONSTRAINT adna_policies_version_positive CHECK (version >= 1),
    CONSTRAINT adna_policies_executions_nonnegative CHECK (total_executions >= 0),
    CONSTRAINT adna_policies_not_own_parent CHECK (parent_policy_id <> policy_id)
);

COMMENT ON TABLE fractality.adna_policies IS
    'Versioned policies per state bin with lineage; events reference version_hash.';
COMMENT ON COLUMN fractality.adna_policies.version_hash IS
    'Referenced by experience_events.adna_version_hash.';
COMMENT ON COLUMN fractality.adna_policies.reward_sum IS
    'The sum of the rewards rolled in (refresh_policy_rewards), in double precision: avg_reward is reward_sum / total_executions as a real.';

-- the seed's UNIQUE (...) WHERE, written as the partial unique index it has to be
CREATE UNIQUE INDEX adna_policies_one_active ON fractality.adna_policies (state_bin_id)
    WHERE is_active;
CREATE INDEX adna_policies_lineage ON fractality.adna_policies (parent_policy_id);
CREATE INDEX adna_policies_version_hash ON fractality.adna_policies (version_hash);
CREATE INDEX adna_policies_performance ON fractality.adna_policies (avg_reward DESC);

CREATE TABLE fractality.configuration_store (
    config_id        serial       PRIMARY KEY,
    component_name   varchar(255) NOT NULL,
    config_key       varchar(255) NOT NULL,
    config_value     jsonb        NOT NULL,
    version          integer      NOT NULL DEFAULT 1,
    parent_config_id integer      REFERENCES fractality.configuration_store (config_id),
    created_at       timestamptz  NOT NULL DEFAULT now(),
    updated_at       timestamptz  NOT NULL DEFAULT now(),
    is_active        boolean      NOT NULL DEFAULT true,
    CONSTRAINT configuration_store_version_positive CHECK (version >= 1),
    CONSTRAINT configuration_store_not_own_parent CHECK (parent_config_id <> config_id)
);

COMMENT ON TABLE fractality.configuration_store IS
    'Versioned runtime configuration: one active row per (component_name, config_key).';

CREATE UNIQUE INDEX configuration_store_one_active
    ON fractality.configuration_store (component_name, config_key) WHERE is_active;
CREATE INDEX configuration_store_lineage ON fractality.configuration_store (parent_config_id);

CREATE TABLE fractality.learning_metrics (
    metric_id         serial       PRIMARY KEY,
    "timestamp"       timestamptz  NOT NULL DEFAULT now(),
    metric_type       varchar(255) NOT NULL,
    metric_data       jsonb        NOT NULL,
    related_policy_id integer      REFERENCES fractality.adna_policies (policy_id) ON DELETE SET NULL,
    -- no foreign key: events move to the cold tier, their metrics stay
    related_event_id  bytea,
    CONSTRAINT learning_metrics_event_id_length
        CHECK (related_event_id IS NULL OR octet_length(related_event_id) = 16)
);

COMMENT ON TABLE fractality.learning_metrics IS
    'Learning progress: proposal_accepted, reward_trend, policy_performance, ...';

CREATE INDEX learning_metrics_timestamp ON fractality.learning_metrics ("timestamp" DESC);
CREATE INDEX learning_metrics_type ON fractality.learning_metrics (metric_type);
CREATE INDEX learning_metrics_policy ON fractality.learning_metrics (related_policy_id);
