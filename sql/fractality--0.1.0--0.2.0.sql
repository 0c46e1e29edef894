-- fractality: upgrade from 0.1.0 to 0.2.0
-- Run by ALTER EXTENSION fractality UPDATE (TO '0.2.0'). Every schema change since 0.1.0 is
-- written here as well as in the sql/<concern>.sql file a fresh install loads; the client test
-- tests/client/tests/upgrade.rs installs 0.1.0 (tests/upgrade/fractality--0.1.0.sql), updates it
-- and compares the catalog with a fresh 0.2.0 install, so a change forgotten here fails it.
-- Native functions keep their C symbols: the 0.2.0 library serves both scripts.

-- security: consensus_nodes readable by all, written by its owner only
ALTER TABLE fractality.consensus_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY consensus_read ON fractality.consensus_nodes FOR SELECT USING (true);

-- decay: no BEFORE UPDATE trigger on nodes (energy writes stay cheap HOT updates); the full text
-- becomes an index expression and updated_at is written by upsert_node and freeze
DROP TRIGGER nodes_search ON fractality.nodes;
DROP FUNCTION fractality.nodes_search();
DROP TRIGGER nodes_touch_updated_at ON fractality.nodes;
ALTER TABLE fractality.nodes DROP COLUMN search;
COMMENT ON COLUMN fractality.nodes.updated_at IS
    'When the content (key, label, type, metadata) was last written by upsert_node or freeze; energy writes leave it.';
CREATE FUNCTION fractality.node_search(label text, metadata jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.to_tsvector('english'::regconfig,
                              coalesce(label, '') || ' ' || coalesce(metadata OPERATOR(pg_catalog.->>) 'description', ''));
COMMENT ON FUNCTION fractality.node_search(text, jsonb) IS
    'The full text of a node (label and metadata->>''description''); nodes_search_gin indexes it.';
CREATE INDEX nodes_search_gin ON fractality.nodes USING gin (fractality.node_search(label, metadata));
CREATE FUNCTION fractality."decay_tick"("node_id" uuid, "atp" double precision, "rate" double precision,
                                        "floor" double precision) RETURNS double precision
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'decay_tick_wrapper';
