-- consciousness_path: the current energy of its two ends ($1: node ids, uuid[]), as (id, energy);
-- a node the caller cannot see has no row.
SELECT n.id, fractality.current_atp(n.atp, n.atp_at)
  FROM fractality.nodes n WHERE n.id = ANY($1)
