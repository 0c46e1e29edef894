-- fractality: the experience store's API in SQL (the seed's PersistenceBackend trait)
-- Reads by time range, the seed's high-reward batch retrieval, versioned policies and versioned
-- configuration with lineage. Ingest (write_event, write_events, write_event_with_metadata) is in
-- src/experience/mod.rs.

-- write_events_json: a batch of events as JSON text, read by serde straight from the text with
-- no jsonb conversion; the json form is the same C function (a json datum is its text). An
-- untyped literal picks the text form (PostgreSQL prefers the string category). A name of its
-- own, not a write_events overload: with a text one beside write_events(jsonb), a client's
-- untyped `write_events($1)` would be resolved to text and a jsonb value bound to it refused.
-- Declared here rather than by pgrx: the C function also reads a jsonb argument (see
-- src/experience/mod.rs, the symbol's history).
CREATE FUNCTION fractality.write_events_json(events text) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_json_wrapper';
CREATE FUNCTION fractality.write_events_json(events json) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_json_wrapper';

-- Events with "timestamp" in [start_us, end_us), oldest first, at most "limit"; with_metadata
-- fills intent_type, executor_id and parameters from action_metadata (NULL otherwise).
-- include_archived: events flagged archived are left out unless it is true, and so are the
-- events moved into the cold tier (experience_events_archive, see sql/archive.sql); with it they
-- come back bit for bit as written, with their metadata, and "archived" is true for them.
CREATE FUNCTION fractality.query_events(start_us bigint, end_us bigint, "limit" integer DEFAULT 1000,
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

-- The seed's "batch retrieval for IntuitionEngine": recent events whose total reward exceeds
-- min_reward, newest first, with their metadata.
CREATE FUNCTION fractality.high_reward_events(since_us bigint, min_reward real DEFAULT 0.5,
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

-- ---- policies ---------------------------------------------------------------------------------

-- Saves a new version of the policy of a state bin: the active one (if any) becomes its parent
-- and inactive; version = the bin's highest version + 1; version_hash = hash of bin, rule,
-- version and weights, unique among the policies. Concurrent saves for one bin are serialised by
-- a transaction-scoped advisory lock on the bin, so there is never more than one active policy
-- per bin.
CREATE FUNCTION fractality.save_policy(state_bin_id text, rule_id text, action_weights jsonb,
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

-- The active policy of a state bin as a JSON object, or NULL when the bin has none.
CREATE FUNCTION fractality.load_policy(state_bin_id text) RETURNS jsonb
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

-- The policy and its ancestors, from the policy itself (depth 0) back to the first version.
CREATE FUNCTION fractality.policy_lineage(policy_id integer)
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

-- ---- configuration ----------------------------------------------------------------------------

-- Saves a new version of (component, key): the active one becomes its parent and inactive.
-- Returns the config_id. Serialised per (component, key) like save_policy.
CREATE FUNCTION fractality.save_config(component text, key text, value jsonb)
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

-- The active value of (component, key), or NULL when there is none.
CREATE FUNCTION fractality.load_config(component text, key text) RETURNS jsonb
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.config_value FROM fractality.configuration_store c
     WHERE c.component_name = load_config.component AND c.config_key = load_config.key AND c.is_active
$$;

-- Every version of (component, key), newest first.
CREATE FUNCTION fractality.config_history(component text, key text)
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
