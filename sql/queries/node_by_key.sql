-- A node of the session's tenant by key, its current energy ($1: node key).
SELECT n.node_id, n.user_id, n.atp
  FROM fractality.node_energy n
 WHERE n.user_id = fractality.current_user_id() AND n.node_key = $1
