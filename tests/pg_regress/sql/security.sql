-- Row-level security: a tenant role sees and writes only the rows of its fractality.user_id;
-- with no user id it sees nothing. Views run with the caller's rights.
\set VERBOSITY terse
BEGIN;
CREATE ROLE fractality_regress_tenant NOLOGIN;
GRANT USAGE ON SCHEMA fractality TO fractality_regress_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_regress_tenant;

-- as the owner: two tenants' graphs
INSERT INTO fractality.nodes (id, user_id, node_key, label, atp) VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'aaaaaaaa-0000-0000-0000-000000000000', 'alpha', 'Alice idea', 0.9),
    ('00000000-0000-0000-0000-0000000000a2', 'aaaaaaaa-0000-0000-0000-000000000000', 'beta', 'Alice child', 0.8),
    ('00000000-0000-0000-0000-0000000000b1', 'bbbbbbbb-0000-0000-0000-000000000000', 'alpha', 'Bob idea', 0.7);
INSERT INTO fractality.edges (user_id, from_node, to_node) VALUES
    ('aaaaaaaa-0000-0000-0000-000000000000', '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000a2');
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
SELECT now(), id, user_id, atp FROM fractality.nodes;
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
SELECT '2001-01-01', id, user_id, atp FROM fractality.nodes;

SET LOCAL ROLE fractality_regress_tenant;
-- no tenant set: nothing visible
SELECT count(*) AS visible_nodes FROM fractality.nodes;
SET LOCAL fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';
SELECT node_key, label FROM fractality.nodes ORDER BY node_key;
SELECT count(*) AS visible_edges FROM fractality.edges;
SELECT count(*) AS visible_points FROM fractality.consciousness_streams;
SELECT node_key, child_count FROM fractality.active_consciousness ORDER BY node_key;
-- Bob's row can be neither changed nor deleted
WITH u AS (UPDATE fractality.nodes SET label = 'hijacked'
            WHERE id = '00000000-0000-0000-0000-0000000000b1' RETURNING 1)
SELECT count(*) AS updated FROM u;
WITH d AS (DELETE FROM fractality.nodes WHERE id = '00000000-0000-0000-0000-0000000000b1' RETURNING 1)
SELECT count(*) AS deleted FROM d;
-- "ALL TABLES IN SCHEMA" granted the partitions too: they carry the same policy
SELECT count(*) AS default_partition_points FROM fractality.consciousness_streams_default;
SELECT count(*) AS all_partitions_points FROM fractality.consciousness_streams;
-- nor can Alice write a row for Bob
SAVEPOINT s;
INSERT INTO fractality.nodes (user_id, node_key) VALUES ('bbbbbbbb-0000-0000-0000-000000000000', 'planted');
ROLLBACK TO s;
-- her own rows default to her tenant
INSERT INTO fractality.nodes (node_key, label) VALUES ('gamma', 'Alice again');
SELECT count(*) AS alice_nodes FROM fractality.nodes;
SET LOCAL fractality.user_id = 'bbbbbbbb-0000-0000-0000-000000000000';
SELECT node_key, label FROM fractality.nodes ORDER BY node_key;
-- a malformed tenant id is an error, not a silent "see everything"
SET LOCAL fractality.user_id = 'not-a-uuid';
SELECT count(*) FROM fractality.nodes;
ROLLBACK;

-- the extension grants nothing on its tables to PUBLIC: the administrator grants what roles need
SELECT count(*) AS public_table_grants
  FROM information_schema.role_table_grants
 WHERE table_schema = 'fractality' AND grantee = 'PUBLIC';
-- every partition of the tenant stream table carries row-level security too
SELECT count(*) FILTER (WHERE NOT c.relrowsecurity) AS partitions_without_rls
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'fractality.consciousness_streams'::regclass;
