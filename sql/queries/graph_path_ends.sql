-- consciousness_path: the current energy of its two ends ($1: node ids, uuid[]), as (id, energy);
-- a node the caller cannot see has no row.
SELECT n.node_id, n.atp
  FROM fractality.node_energy n WHERE n.node_id = ANY($1)
