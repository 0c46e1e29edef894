-- traverse, several levels in one query while the frontier is small: the edges of relationship
-- type $2 within $3 steps of the nodes $1 (uuid[]), as (from, to, weight, step), step 1 for the
-- edges leaving $1; at most $4 rows (the walk goes back to a query per level when there are
-- more). UNION keeps one row per edge and step, so a cycle ends at step $3.
WITH RECURSIVE ahead (from_node, to_node, weight, step) AS (
    SELECT e.from_node, e.to_node, e.weight, 1
      FROM fractality.edges e
     WHERE e.from_node = ANY($1) AND e.relationship_type = $2
    UNION
    SELECT e.from_node, e.to_node, e.weight, a.step + 1
      FROM ahead a
      JOIN fractality.edges e ON e.from_node = a.to_node AND e.relationship_type = $2
     WHERE a.step < $3)
SELECT from_node, to_node, weight, step FROM ahead LIMIT $4
