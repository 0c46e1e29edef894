-- freeze: the stream points $3 (the jsonb array of a thawed node's "stream") appended to node $1
-- of tenant $2, but for those at a time the node has a point at already, hot or archived (so a
-- document frozen twice adds nothing). Every point of the document at one time is kept: the
-- points one transaction records share its now() (it kept the first of them only).
-- Returns the first point at a time PostgreSQL reads as infinite, however spelt ('infinity UTC',
-- '-\tinfinity'; parse_frozen knows the plain spellings only), its place (from 0) and its text,
-- and then writes none: the caller names it in a 22023 before the table's check says 23514.
WITH p AS (
    SELECT p.time, p.atp_level, p.attention_score, p.resonance_vector, p.n
      FROM ROWS FROM (jsonb_to_recordset($3) AS (time timestamptz, atp_level float8,
                                                   attention_score float8, resonance_vector real[]))
           WITH ORDINALITY AS p(time, atp_level, attention_score, resonance_vector, n)),
infinite AS (
    SELECT p.n - 1 AS n, $3 -> (p.n::int - 1) ->> 'time' AS time
      FROM p WHERE NOT isfinite(p.time)
     ORDER BY p.n
     LIMIT 1),
written AS (
    INSERT INTO fractality.consciousness_streams
           (time, node_id, user_id, atp_level, attention_score, resonance_vector)
    SELECT p.time, $1, $2, p.atp_level, p.attention_score, p.resonance_vector
      FROM p
     WHERE NOT EXISTS (SELECT FROM infinite)
       AND NOT EXISTS (SELECT 1 FROM fractality.consciousness_streams s
                        WHERE s.node_id = $1 AND s.time = p.time)
       AND NOT EXISTS (SELECT 1 FROM fractality.consciousness_archive a
                        WHERE a.node_id = $1 AND a.user_id = $2
                          AND p.time BETWEEN a.time_from AND a.time_to AND p.time = ANY (a.times))
     ORDER BY p.n)
SELECT n, time FROM infinite
