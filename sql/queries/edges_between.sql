-- The edges between node $1 and each of the nodes $2, in either direction: (other node, weight).
-- Two index probes per direction rather than one OR, which the planner answers with bitmaps.
SELECT e.to_node AS other, e.weight FROM fractality.edges e
 WHERE e.from_node = $1 AND e.to_node = ANY($2)
UNION ALL
SELECT e.from_node, e.weight FROM fractality.edges e
 WHERE e.to_node = $1 AND e.from_node = ANY($2)
