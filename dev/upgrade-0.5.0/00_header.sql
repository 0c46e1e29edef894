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
