-- The ids of the nodes $2 and $3 (their keys) of tenant $1, as the caller sees them, for a
-- writer of an edge between them: locked FOR KEY SHARE in the order of their ids (as forget and
-- the expiry lock nodes), so that a node forgotten meanwhile is no row here (P0002), not a
-- foreign key failing when the edge is written.
SELECT n.id, n.node_key FROM fractality.nodes n
 WHERE n.user_id = $1 AND n.node_key IN ($2, $3)
 ORDER BY n.id
   FOR KEY SHARE OF n
