-- One link per member of consensus $1: node ids $2, their tenants $3, similarities to the centroid $4.
INSERT INTO fractality.consensus_links (consensus_id, node_id, user_id, similarity)
SELECT $1, m.node_id, m.user_id, m.similarity
  FROM unnest($2::uuid[], $3::uuid[], $4::float8[]) AS m (node_id, user_id, similarity)
ON CONFLICT (consensus_id, node_id, user_id) DO UPDATE SET similarity = EXCLUDED.similarity
