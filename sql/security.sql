-- fractality: security
-- Row-level security on every tenant table: a role that is neither the owner nor BYPASSRLS sees
-- and writes only the rows whose user_id equals the setting fractality.user_id. With no setting it
-- sees nothing. Loaded last.
--
-- No table privilege is granted here: the administrator grants them to the application roles
-- (see README, "Tenants and privileges"). Partitions get no grants, so they are reached only
-- through their parent, where the policy applies.

ALTER TABLE fractality.nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fractality.nodes
    USING (user_id = fractality.current_user_id());

ALTER TABLE fractality.node_embeddings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fractality.node_embeddings
    USING (user_id = fractality.current_user_id());
-- and on each of its partitions (a role granted a partition itself sees its tenant's rows only)
SELECT fractality.protect_partition(i.inhrelid::regclass)
  FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'fractality.node_embeddings'::regclass;

-- the models are read by every role granted SELECT and written only by their owner
-- (register_model as the administrator)
ALTER TABLE fractality.embedding_models ENABLE ROW LEVEL SECURITY;
CREATE POLICY models_read ON fractality.embedding_models FOR SELECT USING (true);

-- internal helpers: not for direct calls
REVOKE EXECUTE ON FUNCTION fractality._node_embeddings_check() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_enter() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_leave() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_truncate() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_entered(integer, bigint, bigint, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove(bytea[], bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove_before(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_rebuild(integer) FROM PUBLIC;

ALTER TABLE fractality.edges ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fractality.edges
    USING (user_id = fractality.current_user_id());

ALTER TABLE fractality.consciousness_streams ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fractality.consciousness_streams
    USING (user_id = fractality.current_user_id());

ALTER TABLE fractality.consciousness_archive ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fractality.consciousness_archive
    USING (user_id = fractality.current_user_id());

ALTER TABLE fractality.consensus_links ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fractality.consensus_links
    USING (user_id = fractality.current_user_id());

-- consensus_nodes is readable by every role granted SELECT, and written only by its owner (the
-- SECURITY DEFINER consensus functions): without a policy for INSERT, UPDATE or DELETE, a tenant
-- granted those privileges (GRANT ... ON ALL TABLES) cannot forge, rewrite or delete the
-- collective layer, whose deletion would cascade to every tenant's consensus_links.
ALTER TABLE fractality.consensus_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY consensus_read ON fractality.consensus_nodes FOR SELECT USING (true);

-- the centroids: no policy at all, so no role but the owner (and BYPASSRLS) reads or writes one
ALTER TABLE fractality.consensus_centroids ENABLE ROW LEVEL SECURITY;
