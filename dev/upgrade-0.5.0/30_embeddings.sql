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
INSERT INTO fractality.embedding_models (model, dims) VALUES ('default', 384);
ALTER TABLE fractality.embedding_models ENABLE ALWAYS TRIGGER embedding_models_index;
INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding, model_version, updated_at)
SELECT e.user_id, e.node_id, 'default', e.embedding, e.model_version, e.updated_at
  FROM fractality.node_embeddings_0_4_0 e;
SELECT count(*) AS partitions_indexed FROM fractality.build_model_index('default');
DROP TABLE fractality.node_embeddings_0_4_0;
