-- link: the edge $2 -> $3 (node ids) of relationship type $4 of tenant $1 with weight $5,
-- inserted, or given the new weight when it exists; returns its id.
INSERT INTO fractality.edges AS e (user_id, from_node, to_node, relationship_type, weight)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT ON CONSTRAINT edges_unique DO UPDATE SET weight = EXCLUDED.weight
RETURNING e.id
