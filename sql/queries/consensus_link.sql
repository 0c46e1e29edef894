-- One link per member of consensus $1: node ids $2, their tenants $3, similarities to the centroid $4.
-- Each member's node is locked against a delete first (KEY SHARE, as the foreign key's check takes
-- it): a member deleted since the members were read (forget, run_maintenance) is left out instead
-- of failing the link's foreign key.
INSERT INTO fractality.consensus_links (consensus_id, node_id, user_id, similarity)
SELECT $1, m.node_id, m.user_id, m.similarity
  FROM unnest($2::uuid[], $3::uuid[], $4::float8[]) AS m (node_id, user_id, similarity)
  JOIN fractality.nodes n ON n.id = m.node_id AND n.user_id = m.user_id
   FOR KEY SHARE OF n
ON CONFLICT (consensus_id, node_id, user_id) DO UPDATE SET similarity = EXCLUDED.similarity
