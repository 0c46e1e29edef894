-- fractality: security
-- Row-level security on every tenant table: a role that is neither the owner nor BYPASSRLS sees
-- and writes only the rows whose user_id equals the setting fractality.user_id. With no setting it
-- sees nothing. Loaded last.
--
-- No table privilege is granted here: the administrator grants them to the application roles
-- (see README, "Tenants and privileges"). Partitions get no grants, so they are reached only
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
                    '_us_to_timestamptz', '_check_age', '_check_read_committed',
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
                    'add_retention_policy', 'remove_retention_policy', 'build_model_index',
                    'drop_model_index', 'build_tenant_graphs')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
