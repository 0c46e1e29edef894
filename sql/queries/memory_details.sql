-- Key, content, metadata and current energy of memories $1 that have not expired.
SELECT n.node_id, n.node_key, n.label, n.metadata, n.atp
  FROM fractality.node_energy n
 WHERE n.node_id = ANY($1) AND (n.expires_at IS NULL OR n.expires_at > now())
