-- Reinforcement on access, its second statement: the recalled memories $1 of tenant $3, which
-- memory_lock_recalled.sql locked, fed by energy $2 each (current energy + $2, at most 1), one
-- stream point each.
-- The node is updated first and the point inserted after it, both in CTEs, so that the
-- statement, and its kept plan, locks nodes before consciousness_streams, as every writer of
-- points and partition maintenance take them (an INSERT whose CTE updates nodes locks the
-- streams first: it deadlocked with maintenance; sql/archive.sql, _lock_for_partitions).
WITH u AS (
    UPDATE fractality.nodes
       SET atp = least(1.0, greatest(0.0, fractality.current_atp(atp, atp_at, now()) + $2)),
           atp_at = greatest(atp_at, now())
     WHERE id = ANY ($1) AND user_id = $3
    RETURNING id, user_id, atp, atp_at),
s AS (
    INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
    SELECT u.atp_at, u.id, u.user_id, u.atp FROM u
    RETURNING 1)
SELECT count(*) FROM s
