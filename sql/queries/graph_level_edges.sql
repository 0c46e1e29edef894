-- traverse, one level: the edges of relationship type $2 leaving the nodes $1 (uuid[]), as
-- (from, to, weight), read from the covering index edges_from_type_weight; at most $3 (what is
-- left of the walk's budget, and one more to tell it was passed).
SELECT e.from_node, e.to_node, e.weight FROM fractality.edges e
 WHERE e.from_node = ANY($1) AND e.relationship_type = $2
 LIMIT $3
