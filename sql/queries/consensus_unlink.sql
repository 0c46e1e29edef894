-- The links of consensus $1 from nodes no longer among its members ($2).
DELETE FROM fractality.consensus_links WHERE consensus_id = $1 AND NOT (node_id = ANY($2))
