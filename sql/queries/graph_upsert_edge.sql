-- link: the edge $2 -> $3 (node ids) of relationship type $4 of tenant $1 with weight $5,
-- inserted, or given the new weight when it exists; returns its id. $6, an object (freeze gives
-- the edge's thawed metadata), is merged into its metadata; NULL (link) leaves it.
INSERT INTO fractality.edges AS e (user_id, from_node, to_node, relationship_type, weight, metadata)
VALUES ($1, $2, $3, $4, $5, coalesce($6, '{}'::jsonb))
ON CONFLICT ON CONSTRAINT edges_unique DO UPDATE
   SET weight = EXCLUDED.weight, metadata = e.metadata || coalesce($6, '{}'::jsonb)
RETURNING e.id
