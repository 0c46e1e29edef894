-- ---- privileges on the new tables ----------------------------------------------------------------
-- Each role keeps on a table (or view) this update adds the privileges it held on the 0.4.0 table it
-- serves, as GRANT ... ON ALL TABLES (the README's) would give it on a fresh install: writing a
-- node writes its text as the caller (node_text, from nodes), and a memory locks its tenant's row
-- of locks (from nodes); the replay buffers and the event-id
-- registry serve the events (experience_events); the centroids, the consensus nodes (which
-- row-level security keeps the owner's alone). node_embeddings and embedding_models took theirs
-- from the 0.4.0 node_embeddings (30_embeddings.sql). The sequences this update adds (of
-- replay_buffers and replay_pending, identity columns, which their inserts use without a
-- privilege) get what each role holds on a sequence of 0.4.0, adna_policies', as GRANT ... ON ALL
-- SEQUENCES gives it on a fresh install.
-- The cold tier of events came with 0.2.0, whose update granted nothing on it: a database made at
-- 0.1.0 left its roles' query_events failing (42501 on experience_events_archive, even without
-- include_archived, which names it). Where a cold table still has no grant at all (`fill`: as that
-- update left it), each role that may read the hot one may read it too (SELECT, what query_events
-- needs; nothing more, and nothing where anyone granted anything on it since).
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT t.dst, t.kind, x.grantee, x.privilege_type
               FROM (VALUES ('fractality.nodes', 'fractality.node_text', false, 'TABLE'),
                            ('fractality.nodes', 'fractality.locks', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.experience_event_ids', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_buffers', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_tree', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_blocks', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_pending', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_items', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.replay_priorities', false, 'TABLE'),
                            ('fractality.consensus_nodes', 'fractality.consensus_centroids', false, 'TABLE'),
                            ('fractality.experience_events', 'fractality.experience_events_archive', true, 'TABLE'),
                            ('fractality.action_metadata', 'fractality.action_metadata_archive', true, 'TABLE'),
                            ('fractality.adna_policies_policy_id_seq', 'fractality.replay_buffers_buffer_id_seq', false, 'SEQUENCE'),
                            ('fractality.adna_policies_policy_id_seq', 'fractality.replay_pending_seq_seq', false, 'SEQUENCE')
                    ) t(src, dst, fill, kind),
                    pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
              WHERE c.oid = t.src::pg_catalog.regclass AND x.grantee <> c.relowner
                -- (USAGE is a sequence's alone; INSERT and DELETE a table's)
                AND x.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'USAGE')
                AND NOT (t.fill AND (x.privilege_type <> 'SELECT' OR EXISTS (
                        SELECT FROM pg_catalog.pg_class d
                         WHERE d.oid = t.dst::pg_catalog.regclass AND d.relacl IS NOT NULL)))
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %s', a.privilege_type, a.kind, a.dst,
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
