-- A memory told again: its energy fed by $2 (current energy + $2, at most 1), metadata $3 merged
-- in; one stream point recorded ($1: node, $5: tenant). A ttl $4 told by the memory's key ($6)
-- sets its expiry to now + $4; told by a similar fact (another key), it only moves an expiry
-- later, and leaves a memory that does not expire so: an hour's note that resembles a standing
-- fact does not make the fact expire. A node with no text (a graph node upsert_node made, its
-- label NULL or blank) takes the content $7 told: a memory is never left without its text; a memory's text stays as it was
-- first told. updated_at moves only when metadata or that text is given: a plain repeat is an
-- energy write.
-- The node is updated first and the point inserted after it, both in CTEs, so that the
-- statement, and its kept plan, locks nodes before consciousness_streams, as every writer of
-- points and partition maintenance take them (an INSERT whose CTE updates nodes locks the
-- streams first: it deadlocked with maintenance; sql/archive.sql, _lock_for_partitions).
WITH u AS (
    UPDATE fractality.nodes
       SET atp = least(1.0, greatest(0.0, fractality.current_atp(atp, atp_at, now()) + $2)),
           atp_at = greatest(atp_at, now()),
           metadata = metadata || $3,
           label = CASE WHEN btrim(label) <> '' THEN label ELSE $7 END,
           expires_at = CASE WHEN $4::interval IS NULL THEN expires_at
                             WHEN $6 THEN now() + $4
                             WHEN expires_at IS NULL THEN NULL
                             ELSE greatest(expires_at, now() + $4) END,
           updated_at = CASE WHEN $3 = '{}'::jsonb AND btrim(label) <> '' THEN updated_at
                             ELSE now() END
     WHERE id = $1 AND user_id = $5
    RETURNING id, user_id, atp, atp_at),
s AS (
    INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
    SELECT u.atp_at, u.id, u.user_id, u.atp FROM u
    RETURNING atp_level)
SELECT atp_level FROM s
