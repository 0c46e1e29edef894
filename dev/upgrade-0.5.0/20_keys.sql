-- ---- keys: every primary and unique key of a tenant table includes user_id -----------------
-- nodes' key becomes (id, user_id) (id first: a node is still found by its id alone); the
-- foreign keys that pointed at the unique (id, user_id) point at it.

ALTER TABLE fractality.edges DROP CONSTRAINT edges_from, DROP CONSTRAINT edges_to;
ALTER TABLE fractality.consciousness_streams DROP CONSTRAINT consciousness_streams_node;
ALTER TABLE fractality.consciousness_archive DROP CONSTRAINT consciousness_archive_node;
ALTER TABLE fractality.consensus_links DROP CONSTRAINT consensus_links_node;
ALTER TABLE fractality.node_embeddings DROP CONSTRAINT node_embeddings_node;

ALTER TABLE fractality.nodes DROP CONSTRAINT nodes_id_user, DROP CONSTRAINT nodes_pkey;
ALTER TABLE fractality.nodes ADD CONSTRAINT nodes_pkey PRIMARY KEY (id, user_id);

ALTER TABLE fractality.edges DROP CONSTRAINT edges_pkey, DROP CONSTRAINT edges_unique;
ALTER TABLE fractality.edges
    ADD CONSTRAINT edges_pkey PRIMARY KEY (id, user_id),
    ADD CONSTRAINT edges_unique UNIQUE (from_node, to_node, relationship_type, user_id),
    ADD CONSTRAINT edges_from FOREIGN KEY (from_node, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    ADD CONSTRAINT edges_to FOREIGN KEY (to_node, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE fractality.consciousness_streams
    ADD CONSTRAINT consciousness_streams_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE fractality.consciousness_archive DROP CONSTRAINT consciousness_archive_pkey;
ALTER TABLE fractality.consciousness_archive
    ADD CONSTRAINT consciousness_archive_pkey PRIMARY KEY (id, user_id),
    ADD CONSTRAINT consciousness_archive_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE fractality.consensus_links DROP CONSTRAINT consensus_links_pkey;
ALTER TABLE fractality.consensus_links
    ADD CONSTRAINT consensus_links_pkey PRIMARY KEY (consensus_id, node_id, user_id),
    ADD CONSTRAINT consensus_links_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;
