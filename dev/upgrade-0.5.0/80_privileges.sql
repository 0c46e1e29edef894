-- ---- privileges on the new tables ----------------------------------------------------------------
-- Each role keeps on a table (or view) this update adds the privileges it held on the 0.4.0 table it
-- serves, as GRANT ... ON ALL TABLES (the README's) would give it on a fresh install: writing a
-- node writes its text as the caller (node_text, from nodes); the replay buffers and the event-id
-- registry serve the events (experience_events); the centroids, the consensus nodes (which
-- row-level security keeps the owner's alone). node_embeddings and embedding_models took theirs
-- from the 0.4.0 node_embeddings (30_embeddings.sql).
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT t.dst, x.grantee, x.privilege_type
               FROM (VALUES ('fractality.nodes', 'fractality.node_text'),
                            ('fractality.experience_events', 'fractality.experience_event_ids'),
                            ('fractality.experience_events', 'fractality.replay_buffers'),
                            ('fractality.experience_events', 'fractality.replay_tree'),
                            ('fractality.experience_events', 'fractality.replay_blocks'),
                            ('fractality.experience_events', 'fractality.replay_pending'),
                            ('fractality.experience_events', 'fractality.replay_items'),
                            ('fractality.experience_events', 'fractality.replay_priorities'),
                            ('fractality.consensus_nodes', 'fractality.consensus_centroids')) t(src, dst),
                    pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
              WHERE c.oid = t.src::pg_catalog.regclass AND x.grantee <> c.relowner
                AND x.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', a.privilege_type, a.dst,
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
