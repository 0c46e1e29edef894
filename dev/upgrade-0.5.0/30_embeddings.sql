-- ---- embeddings: models of any dimension, node_embeddings partitioned by tenant --------------
-- The 0.4.0 table steps aside, the partitioned one takes its name and its rows (as the 'default'
-- model), then the model's index is built over them and the old table goes.

ALTER TABLE fractality.node_embeddings RENAME TO node_embeddings_0_4_0;
ALTER TABLE fractality.node_embeddings_0_4_0 DROP CONSTRAINT node_embeddings_pkey;
DROP INDEX fractality.node_embeddings_hnsw, fractality.node_embeddings_user;

--@ pgrx _node_embeddings_check_wrapper
--@ file embeddings.sql CREATE TABLE fractality.embedding_models (||SELECT fractality.register_model('default', 384);

-- the model's row without its trigger, which would build the indexes now, empty, and have every
-- row below inserted into them one at a time: they are built once over the rows, by
-- build_model_index (the trigger fires always afterwards, as a fresh install leaves it)
ALTER TABLE fractality.embedding_models DISABLE TRIGGER embedding_models_index;
INSERT INTO fractality.embedding_models (model, dims, created_at) VALUES ('default', 384, NULL);
ALTER TABLE fractality.embedding_models ENABLE ALWAYS TRIGGER embedding_models_index;
INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding, model_version, updated_at)
SELECT e.user_id, e.node_id, 'default', e.embedding, e.model_version, e.updated_at
  FROM fractality.node_embeddings_0_4_0 e;
SELECT count(*) AS partitions_indexed FROM fractality.build_model_index('default');
-- each role keeps on the new table, on each of its partitions and on the models beside it the
-- privileges it held on the 0.4.0 table, as GRANT ... ON ALL TABLES (the README's) would give it
-- on a fresh install: an application role reads and writes embeddings as it did
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT t.rel, x.grantee, x.privilege_type
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x,
                    (SELECT 'fractality.node_embeddings'::pg_catalog.regclass AS rel
                     UNION ALL SELECT 'fractality.embedding_models'::pg_catalog.regclass
                     UNION ALL SELECT i.inhrelid::pg_catalog.regclass FROM pg_catalog.pg_inherits i
                      WHERE i.inhparent = 'fractality.node_embeddings'::pg_catalog.regclass) t
              WHERE c.oid = 'fractality.node_embeddings_0_4_0'::pg_catalog.regclass
                AND x.grantee <> c.relowner
                AND x.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', a.privilege_type, a.rel,
                                  CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END);
    END LOOP;
END
$$;
DROP TABLE fractality.node_embeddings_0_4_0;
