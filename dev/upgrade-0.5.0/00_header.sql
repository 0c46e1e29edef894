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
