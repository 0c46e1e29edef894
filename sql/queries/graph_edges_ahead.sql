-- traverse, several levels in one query while the frontier is small: the keys of the nodes $1
-- (uuid[]) as (id, id, 0, 0, key), then the edges of relationship type $2 within $3 steps of
-- them as (from, to, weight, step, key of to), step 1 for the edges leaving $1; at most $4 edges
-- (the walk goes back to a query per level when there are more). UNION keeps one row per edge
-- and step, so a cycle ends at step $3. A node the caller cannot see has no row (a frontier
-- node) or a NULL key (a node reached).
WITH RECURSIVE ahead (from_node, to_node, weight, step) AS (
    SELECT e.from_node, e.to_node, e.weight, 1
      FROM fractality.edges e
     WHERE e.from_node = ANY($1) AND e.relationship_type = $2
    UNION
    SELECT e.from_node, e.to_node, e.weight, a.step + 1
      FROM ahead a
      JOIN fractality.edges e ON e.from_node = a.to_node AND e.relationship_type = $2
     WHERE a.step < $3),
first AS (SELECT from_node, to_node, weight, step FROM ahead LIMIT $4)
SELECT n.id, n.id, 0::float8, 0, n.node_key
  FROM fractality.nodes n
 WHERE n.id = ANY($1)
UNION ALL
SELECT f.from_node, f.to_node, f.weight, f.step, n.node_key
  FROM first f
  LEFT JOIN fractality.nodes n ON n.id = f.to_node
