-- A node's embedding of a model, inserted or replaced ($1: node, $2: tenant, $3: vector,
-- $4: model, $5: staged: a new row outside the model's HNSW index, as remember_many writes it,
-- until index_staged_embeddings moves it in; a replaced row keeps its state). The trigger
-- node_embeddings_check refuses a dimension that is not the model's.
INSERT INTO fractality.node_embeddings AS e (node_id, user_id, embedding, model, staged)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id, node_id, model) DO UPDATE SET embedding = EXCLUDED.embedding, updated_at = now()
