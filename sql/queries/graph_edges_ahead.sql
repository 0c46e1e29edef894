-- traverse, several levels in one query while the frontier is small: the edges of relationship
-- type $2 within $3 steps of the nodes $1 (uuid[]), as (from, to, weight, step), step 1 for the
-- edges leaving $1; at most $4 rows (the walk goes back to a query per level when there are
-- more). UNION ALL: the walk drops an edge it has (a cycle ends at step $3); a UNION's hash
-- table was sized by the generic plan's estimate, which another tenant's hub made huge.
WITH RECURSIVE ahead (from_node, to_node, weight, step) AS (
    SELECT e.from_node, e.to_node, e.weight, 1
      FROM fractality.edges e
     WHERE e.from_node = ANY($1) AND e.relationship_type = $2
    UNION ALL
    SELECT e.from_node, e.to_node, e.weight, a.step + 1
      FROM ahead a
     -- each node's edges through the index, whatever the statistics say: a join the planner
     -- was free to plan read every tenant's edges (a hash join over them) once a level, when
     -- one node anywhere had 300 000 children and made from_node look like a few values
     CROSS JOIN LATERAL (SELECT x.from_node, x.to_node, x.weight FROM fractality.edges x
                          WHERE x.from_node = a.to_node AND x.relationship_type = $2
                          LIMIT $4) e
     WHERE a.step < $3)
SELECT from_node, to_node, weight, step FROM ahead LIMIT $4
