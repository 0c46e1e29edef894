-- fractality: security
-- Row-level security on every tenant table: a role that is neither the owner nor BYPASSRLS sees
-- and writes only the rows whose user_id equals the setting fractality.user_id. With no setting it
-- sees nothing. Loaded last.
--
-- No table privilege is granted here: the administrator grants them to the application roles
-- (see README, "Tenants", and docs/OPERATIONS.md, "Privileges"). Partitions get no grants, so they are reached only
-- through their parent, where the policy applies.

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

-- consensus_nodes is readable by every role granted SELECT, and written only by its owner (the
-- SECURITY DEFINER consensus functions): without a policy for INSERT, UPDATE or DELETE, a tenant
-- granted those privileges (GRANT ... ON ALL TABLES) cannot forge, rewrite or delete the
-- collective layer, whose deletion would cascade to every tenant's consensus_links.
ALTER TABLE fractality.consensus_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY consensus_read ON fractality.consensus_nodes FOR SELECT USING (true);

-- the centroids: no policy at all, so no role but the owner (and BYPASSRLS) reads or writes one
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
