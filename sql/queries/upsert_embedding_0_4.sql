-- A node's embedding ($3) in a database still on the 0.4.0 schema (one 384-d embedding per
-- node), until ALTER EXTENSION fractality UPDATE: upsert_node keeps working meanwhile.
INSERT INTO fractality.node_embeddings AS e (node_id, user_id, embedding)
VALUES ($1, $2, $3)
ON CONFLICT (node_id) DO UPDATE SET embedding = EXCLUDED.embedding, updated_at = now()
