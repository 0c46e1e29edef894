-- pulse: node $1 fed energy $2: its ATP becomes min(1, current + $2), never below 0, atp_at now
-- (or the later moment another session wrote it at, after this transaction began: never back),
-- and one point (now, new ATP) appended to consciousness_streams. Returns the new ATP (no row
-- when the node does not exist or is not visible).
WITH u AS (
    UPDATE fractality.nodes
       SET atp = least(1.0, greatest(0.0,
                     fractality.current_atp(atp, atp_at, pg_catalog.now()) + $2)),
           atp_at = GREATEST(atp_at, pg_catalog.now())
     WHERE id = $1
    RETURNING id, user_id, atp, atp_at)
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
SELECT atp_at, id, user_id, atp FROM u
RETURNING atp_level
