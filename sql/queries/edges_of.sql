-- The edges of node $1 in either direction, at most $2 rows: (other node, weight). Two range
-- scans, one per direction: cheaper than a probe for each of many other nodes when the node has
-- few edges (edges_between.sql is the other way).
SELECT x.other, x.weight FROM (
    SELECT e.to_node AS other, e.weight FROM fractality.edges e
     WHERE e.from_node = $1
    UNION ALL
    SELECT e.from_node, e.weight FROM fractality.edges e
     WHERE e.to_node = $1) x
 LIMIT $2
