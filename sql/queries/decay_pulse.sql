-- pulse: node $1 fed energy $2: its ATP becomes min(1, current + $2), never below 0, atp_at now
-- (or the later moment another session wrote it at, after this transaction began: never back),
-- and one point (now, new ATP) appended to consciousness_streams. Returns the new ATP (no row
-- when the node does not exist or is not visible). $3: the session's tenant, whose node of that
-- id it is when it has one (two tenants' nodes may share an id, and the owner sees both); NULL,
-- or no node of the id in that tenant: the node of that id.
-- The node is updated first and the point inserted after it, both in CTEs, so that the
-- statement, and its kept plan, locks nodes before consciousness_streams, as every writer of
-- points and partition maintenance take them (an INSERT whose CTE updates nodes locks the
-- streams first: it deadlocked with maintenance; sql/archive.sql, _lock_for_partitions).
WITH u AS (
    UPDATE fractality.nodes
       SET atp = least(1.0, greatest(0.0,
                     fractality.current_atp(atp, atp_at, pg_catalog.now()) + $2)),
           atp_at = GREATEST(atp_at, pg_catalog.now())
     WHERE id = $1
       AND ($3::uuid IS NULL OR user_id = $3::uuid
            OR NOT EXISTS (SELECT 1 FROM fractality.nodes o WHERE o.id = $1 AND o.user_id = $3::uuid))
    RETURNING id, user_id, atp, atp_at),
s AS (
    INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
    SELECT atp_at, id, user_id, atp FROM u
    RETURNING atp_level)
SELECT atp_level FROM s
