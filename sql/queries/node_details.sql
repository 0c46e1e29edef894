-- Key, label and current energy of some nodes ($1: node ids), as the caller sees them; an
-- expired memory is left out (find_resonant never returns one, as recall never recalls one).
SELECT n.node_id, n.node_key, n.label, n.atp
  FROM fractality.node_energy n
 WHERE n.node_id = ANY($1) AND (n.expires_at IS NULL OR n.expires_at > now())
