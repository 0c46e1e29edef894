-- A new memory's embedding written by remember_many, staged ($1: node, $2: tenant, $3: vector,
-- $4: model): outside the model's HNSW index until index_staged_embeddings moves it in; searches
-- read it exactly meanwhile (tenant_staged.sql). The trigger node_embeddings_check refuses a
-- dimension that is not the model's.
INSERT INTO fractality.node_embeddings (node_id, user_id, embedding, model, staged)
VALUES ($1, $2, $3, $4, true)
