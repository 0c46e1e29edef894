-- ---- the agent memory API: expiry, remember, recall, forget ----------------------------------

ALTER TABLE fractality.nodes
    ADD COLUMN expires_at timestamptz,
    ADD CONSTRAINT nodes_expires_at_finite CHECK (isfinite(expires_at));
COMMENT ON COLUMN fractality.nodes.expires_at IS
    'When the memory expires (remember''s ttl), apart from decay: never recalled after it, deleted by run_maintenance.';
-- the memories that expire, for run_maintenance (energy writes leave expires_at: still HOT)
CREATE INDEX nodes_expires_at ON fractality.nodes (expires_at) WHERE expires_at IS NOT NULL;

--@ file! decay.sql -- Every node's energy as of now||COMMENT ON VIEW

--@ file! archive.sql -- ---- maintenance ----||
--@ pgrx remember_wrapper
--@ pgrx remember_many_wrapper
--@ pgrx remember_many_arrays_wrapper
--@ pgrx recall_wrapper
--@ pgrx recall_explain_wrapper
--@ pgrx forget_wrapper

-- the full text: from an index expression on nodes into node_text, kept by triggers
DROP INDEX fractality.nodes_search_gin;
--@ file! graph.sql -- The full text of a node: its label||CREATE INDEX nodes_metadata_gin
--@ file graph.sql -- The full text of every node, in a table||-- the tenant first, then the words
INSERT INTO fractality.node_text (user_id, node_id, search, expires_at)
SELECT n.user_id, n.id, fractality.node_search(n.label, n.metadata), n.expires_at
  FROM fractality.nodes n;
--@ file graph.sql -- the tenant first, then the words||CREATE TABLE fractality.edges
