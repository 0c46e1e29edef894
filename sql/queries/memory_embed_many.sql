-- The embeddings of a batch's new memories, in one statement ($1: tenant, $2: the nodes, $3: their
-- embeddings, in the same order, $4: model, $5: staged, as upsert_embedding.sql). The nodes were
-- inserted by the same call: none has an embedding of the model yet. The trigger
-- node_embeddings_check refuses a dimension that is not the model's.
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding, model, staged)
SELECT e.node_id, $1, e.embedding, $4, $5
  FROM unnest($2, $3) AS e(node_id, embedding)
