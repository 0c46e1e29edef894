-- A memory of tenant $1 forgotten by key ($2): its embeddings, edges, stream points (hot and
-- archived) and consensus links go with it (foreign keys, on delete cascade).
DELETE FROM fractality.nodes n WHERE n.user_id = $1 AND n.node_key = $2
