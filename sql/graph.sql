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
-- energy write about 20% dearer. So the full text is kept in a table of its own (node_text, below)
-- by AFTER triggers, and updated_at is written by the functions that change a node's content
-- (upsert_node, freeze).

COMMENT ON TABLE fractality.nodes IS
    'Graph vertices of every tenant. atp in [0, 1] is the energy as of atp_at; read it decayed.';
COMMENT ON COLUMN fractality.nodes.atp_at IS 'When atp was last written.';
COMMENT ON COLUMN fractality.nodes.energy IS 'Other energy fields (network, ...); ATP lives in atp.';
COMMENT ON COLUMN fractality.nodes.expires_at IS
    'When the memory expires (remember''s ttl), apart from decay: never recalled after it, deleted by run_maintenance.';
COMMENT ON COLUMN fractality.nodes.updated_at IS
    'When the content (key, label, type, metadata) was last written by upsert_node or freeze; energy writes leave it.';

-- The full text of a node: its label and metadata->>'description', kept in node_text (below);
-- their first 80 000 characters, within what a tsvector holds (1 MB of words) however they are
-- written: the parser keeps a hyphenated word and each of its parts, a URL and its host and
-- path, up to about 12 bytes of words a character in a 4-byte script (a label of 2 MB of
-- distinct words failed the write with 54000, and so did 264 000 Hangul characters).
CREATE FUNCTION fractality.node_search(label text, metadata jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.to_tsvector('english'::regconfig,
                              pg_catalog.left(coalesce(label, '') || ' ' || coalesce(metadata OPERATOR(pg_catalog.->>) 'description', ''),
                                              80000));

COMMENT ON FUNCTION fractality.node_search(text, jsonb) IS
    'The full text of a node (label and metadata->>''description''), as node_text keeps it.';

CREATE INDEX nodes_metadata_gin ON fractality.nodes USING gin (metadata);
-- the memories that expire, for run_maintenance (energy writes leave expires_at: still HOT)
CREATE INDEX nodes_expires_at ON fractality.nodes (expires_at) WHERE expires_at IS NOT NULL;

-- The full text of every node, in a table of its own beside nodes: (user_id, node_id, search,
-- expires_at), kept by the two triggers below and deleted with its node. Not in nodes: a stored
-- column there would widen the row that every energy write rewrites (see the fillfactor note
-- above). Stored rather than an index expression: a text search ranks every match, and
-- recomputing each match's tsvector for its rank cost more than the search itself. Its GIN index
-- leads with the tenant (btree_gin), so that one index scan returns the tenant's matches instead
-- of every tenant's, intersected with a btree. At 1M nodes in 100 tenants, the matches of one
-- common word in one tenant (about 500 of 50 000) ranked and cut to 40: 15.5 ms through an
-- expression index and nodes' btree on user_id, 0.65 ms here. Not dumped: restoring nodes
-- makes it again (the insert trigger).
CREATE TABLE fractality.node_text (
    user_id    uuid        NOT NULL,
    node_id    uuid        NOT NULL,
    search     tsvector    NOT NULL,
    expires_at timestamptz,
    CONSTRAINT node_text_pkey PRIMARY KEY (user_id, node_id),
    CONSTRAINT node_text_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE
);

COMMENT ON TABLE fractality.node_text IS
    'The full text of every node (fractality.node_search(label, metadata)) and its expiry, kept by triggers on nodes; searched by recall and search_nodes.';

-- new nodes: one INSERT per statement (a COPY of a million nodes included)
CREATE FUNCTION fractality._node_text_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO fractality.node_text (user_id, node_id, search, expires_at)
    SELECT n.user_id, n.id, fractality.node_search(n.label, n.metadata), n.expires_at
      FROM added n;
    RETURN NULL;
END
$$;

-- a node whose label, description or expiry changed (energy writes set none of them, so the
-- trigger is not even looked at for them: a column-list check, no row lock)
CREATE FUNCTION fractality._node_text_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO fractality.node_text (user_id, node_id, search, expires_at)
    VALUES (NEW.user_id, NEW.id, fractality.node_search(NEW.label, NEW.metadata), NEW.expires_at)
    ON CONFLICT (user_id, node_id)
    DO UPDATE SET search = EXCLUDED.search, expires_at = EXCLUDED.expires_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER nodes_text_insert
    AFTER INSERT ON fractality.nodes
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._node_text_insert();
CREATE TRIGGER nodes_text_update
    AFTER UPDATE OF label, metadata, expires_at ON fractality.nodes
    FOR EACH ROW
    WHEN (OLD.label IS DISTINCT FROM NEW.label
          OR (OLD.metadata OPERATOR(pg_catalog.->>) 'description')
             IS DISTINCT FROM (NEW.metadata OPERATOR(pg_catalog.->>) 'description')
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION fractality._node_text_update();
-- Kept like an index, also under session_replication_role = replica, the way a data-only restore
-- loads nodes (docs/OPERATIONS.md, "Partitions, backups, replicas"). On a logical replica its nodes fill its node_text: leave
-- node_text out of publications.
ALTER TABLE fractality.nodes ENABLE ALWAYS TRIGGER nodes_text_insert;
ALTER TABLE fractality.nodes ENABLE ALWAYS TRIGGER nodes_text_update;
-- the tenant first, then the words (btree_gin gives uuid a GIN operator class). New entries wait
-- in the index's pending list, which every search reads whole, until it holds 256 kB (not the
-- default 4 MB: at 1M nodes, 4 MB of pending entries made one tenant's text search 1.7x slower)
CREATE INDEX node_text_search ON fractality.node_text USING gin (user_id, search)
    WITH (gin_pending_list_limit = 256);

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
