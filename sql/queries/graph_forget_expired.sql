-- upsert_node: node $2 (its key) of tenant $1 deleted if it has expired (a memory past its ttl,
-- which run_maintenance would delete), so that the node is written anew; its embeddings, edges,
-- stream points and consensus links go with it (foreign keys, on delete cascade).
DELETE FROM fractality.nodes n
 WHERE n.user_id = $1 AND n.node_key = $2 AND n.expires_at <= now()
