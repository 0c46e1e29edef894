-- fractality: the graph
-- nodes (with energy) and weighted edges (their embeddings: sql/embeddings.sql). Every row carries
-- the tenant key user_id, and every primary and unique key includes it (the distribution column,
-- should the data outgrow one server); edges, embeddings and stream points are tied to their
-- nodes' tenant by composite foreign keys, so a row can never point into another tenant's graph.

CREATE TABLE fractality.nodes (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id     uuid        NOT NULL DEFAULT fractality.current_user_id(),
    node_key    text        NOT NULL,
    label       text,
    type        text,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    atp         float8      NOT NULL DEFAULT 1.0,
    atp_at      timestamptz NOT NULL DEFAULT now(),
    energy      jsonb       NOT NULL DEFAULT '{"network": "default"}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- when a memory expires (remember's ttl), apart from decay: never recalled after it, deleted
    -- by run_maintenance
    expires_at  timestamptz,
    -- id first: a node is found by its id alone
    CONSTRAINT nodes_pkey PRIMARY KEY (id, user_id),
    CONSTRAINT nodes_user_key UNIQUE (user_id, node_key),
    CONSTRAINT nodes_node_key_length CHECK (char_length(node_key) BETWEEN 1 AND 255),
    CONSTRAINT nodes_type_length CHECK (char_length(type) <= 50),
    CONSTRAINT nodes_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT nodes_energy_object CHECK (jsonb_typeof(energy) = 'object'),
    -- NaN sorts above every number in PostgreSQL, so `atp <= 1` also rejects NaN.
    CONSTRAINT nodes_atp_range CHECK (atp >= 0 AND atp <= 1),
    CONSTRAINT nodes_atp_at_finite CHECK (isfinite(atp_at)),
    CONSTRAINT nodes_expires_at_finite CHECK (isfinite(expires_at))
) WITH (fillfactor = 50);
-- Half of each page is left free so that a decay pass, which rewrites the energy of nearly every
-- row, finds room for every new row version on its own page: energy writes stay HOT updates that
-- touch no index (at fillfactor 80 most of a full pass went to other pages and into all five
-- indexes, about 4x slower). The cost is a heap about 1.6x larger.
-- No BEFORE UPDATE trigger sits on nodes: PostgreSQL locks every row such a trigger could see
-- (a WAL-logged tuple lock) before looking at its column list or WHEN clause, which made an
-- energy write about 20% dearer. So the full text is an index expression, not a stored column,
-- and updated_at is written by the functions that change a node's content (upsert_node, freeze).

COMMENT ON TABLE fractality.nodes IS
    'Graph vertices of every tenant. atp in [0, 1] is the energy as of atp_at; read it decayed.';
COMMENT ON COLUMN fractality.nodes.atp_at IS 'When atp was last written.';
COMMENT ON COLUMN fractality.nodes.energy IS 'Other energy fields (network, ...); ATP lives in atp.';
COMMENT ON COLUMN fractality.nodes.expires_at IS
    'When the memory expires (remember''s ttl), apart from decay: never recalled after it, deleted by run_maintenance.';
COMMENT ON COLUMN fractality.nodes.updated_at IS
    'When the content (key, label, type, metadata) was last written by upsert_node or freeze; energy writes leave it.';

-- The full text of a node: its label and metadata->>'description'. Indexed (GIN) as an expression
-- rather than stored, so that energy writes neither recompute nor carry it.
-- WHERE fractality.node_search(label, metadata) @@ q uses the index.
CREATE FUNCTION fractality.node_search(label text, metadata jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.to_tsvector('english'::regconfig,
                              coalesce(label, '') || ' ' || coalesce(metadata OPERATOR(pg_catalog.->>) 'description', ''));

COMMENT ON FUNCTION fractality.node_search(text, jsonb) IS
    'The full text of a node (label and metadata->>''description''); nodes_search_gin indexes it.';

CREATE INDEX nodes_metadata_gin ON fractality.nodes USING gin (metadata);
-- the memories that expire, for run_maintenance (energy writes leave expires_at: still HOT)
CREATE INDEX nodes_expires_at ON fractality.nodes (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX nodes_search_gin ON fractality.nodes USING gin (fractality.node_search(label, metadata));

CREATE TABLE fractality.edges (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id           uuid        NOT NULL DEFAULT fractality.current_user_id(),
    from_node         uuid        NOT NULL,
    to_node           uuid        NOT NULL,
    relationship_type text        NOT NULL DEFAULT 'child',
    weight            float8      NOT NULL DEFAULT 1.0,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT edges_pkey PRIMARY KEY (id, user_id),
    CONSTRAINT edges_unique UNIQUE (from_node, to_node, relationship_type, user_id),
    CONSTRAINT edges_from FOREIGN KEY (from_node, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT edges_to FOREIGN KEY (to_node, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT edges_type_length CHECK (char_length(relationship_type) BETWEEN 1 AND 50),
    CONSTRAINT edges_weight_range CHECK (weight >= -1 AND weight <= 1),
    CONSTRAINT edges_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE fractality.edges IS
    'Weighted relationships between two nodes of one tenant; weight in [-1, 1].';

-- Traversal reads (from_node, relationship_type) in weight order; to_node rides along so that the
-- walk is an index-only scan.
CREATE INDEX edges_from_type_weight ON fractality.edges
    (from_node, relationship_type, weight DESC) INCLUDE (to_node);
CREATE INDEX edges_to ON fractality.edges (to_node);
