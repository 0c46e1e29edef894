-- Reinforcement on access: the recalled memories $1 of tenant $3 fed by energy $2 each (current
-- energy + $2, at most 1), one stream point each. The rows are locked first, in id order: every
-- writer of several memories (remember_many too) locks them in that order, so that two of them
-- never wait for each other.
WITH l AS (
    SELECT n.id FROM fractality.nodes n
     WHERE n.id = ANY($1) AND n.user_id = $3
     ORDER BY n.id
       FOR NO KEY UPDATE),
u AS (
    UPDATE fractality.nodes
       SET atp = least(1.0, greatest(0.0, fractality.current_atp(atp, atp_at, now()) + $2)),
           atp_at = greatest(atp_at, now())
     WHERE id IN (SELECT l.id FROM l) AND user_id = $3
    RETURNING id, user_id, atp, atp_at)
INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
SELECT u.atp_at, u.id, u.user_id, u.atp FROM u
