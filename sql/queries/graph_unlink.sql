-- unlink: the edge $1 -> $2 (node ids) of relationship type $3 removed; one row processed when
-- there was one.
DELETE FROM fractality.edges
 WHERE from_node = $1 AND to_node = $2 AND relationship_type = $3
