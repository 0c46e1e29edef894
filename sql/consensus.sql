-- fractality: the collective layer
-- Consensus nodes crystallise when nodes of several users resonate. They hold only aggregates
-- (counts and scores; label and metadata stay empty, since nothing published is computed from a
-- tenant's label); the links say which of a tenant's nodes contributed, with their similarity to
-- the seed to one decimal, and are visible to that tenant alone. The centroid is kept apart,
-- readable by the owner only: with few contributors a centroid and one's own vector give away
-- the others' (for two unit vectors, u_b = 2 (c . u_a) c - u_a).

CREATE TABLE fractality.consensus_nodes (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    node_key          text        NOT NULL UNIQUE,
    label             text,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    contributor_count integer     NOT NULL DEFAULT 0,
    resonance_score   float8      NOT NULL DEFAULT 0.0,
    last_calculated   timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- the model whose embeddings it gathers (the last column: 0.5.0 added it)
    model             text        NOT NULL DEFAULT 'default'
                                  REFERENCES fractality.embedding_models (model),
    CONSTRAINT consensus_nodes_node_key_length CHECK (char_length(node_key) BETWEEN 1 AND 255),
    CONSTRAINT consensus_nodes_contributors CHECK (contributor_count >= 0),
    CONSTRAINT consensus_nodes_score_range CHECK (resonance_score >= -1 AND resonance_score <= 1),
    CONSTRAINT consensus_nodes_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE fractality.consensus_nodes IS
    'Collective nodes: contributor count and group resonance of similar nodes held by several users (label and metadata stay empty).';

CREATE INDEX consensus_nodes_score ON fractality.consensus_nodes (resonance_score DESC);

-- The unit centroid of each consensus, for the owner alone (row-level security without a policy
-- for any other role: see sql/security.sql).
CREATE TABLE fractality.consensus_centroids (
    consensus_id uuid   PRIMARY KEY REFERENCES fractality.consensus_nodes (id) ON DELETE CASCADE,
    centroid     vector NOT NULL
);

COMMENT ON TABLE fractality.consensus_centroids IS
    'The unit centroid of each consensus node; readable by the owner only (a centroid of few vectors gives them away).';

CREATE TABLE fractality.consensus_links (
    consensus_id uuid        NOT NULL REFERENCES fractality.consensus_nodes (id) ON DELETE CASCADE,
    node_id      uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    similarity   float8      NOT NULL,
    linked_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consensus_links_pkey PRIMARY KEY (consensus_id, node_id, user_id),
    CONSTRAINT consensus_links_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT consensus_links_similarity_range CHECK (similarity >= -1 AND similarity <= 1)
);

COMMENT ON TABLE fractality.consensus_links IS
    'Which node contributed to which consensus node, with its similarity to the seed (to one decimal).';

CREATE INDEX consensus_links_node ON fractality.consensus_links (node_id);
