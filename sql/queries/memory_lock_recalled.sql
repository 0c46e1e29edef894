-- recall's reinforcement, its first statement: the recalled memories $1 of tenant $2, locked in
-- id order FOR NO KEY UPDATE, as every writer of several memories locks them (remember_many, a
-- decay tick: so that two of them never wait for each other). Returns the ids locked (a memory
-- forgotten meanwhile is none). A statement of its own, not a CTE of memory_pulse.sql: an
-- UPDATE's own scan reads the rows as of its statement's start and follows a row changed since
-- then to its newer version again, taking the old version's tuple lock, which a session waiting
-- for this one may hold (40P01 beside a decay tick and links, decay_lock.sql).
SELECT n.id FROM fractality.nodes n
 WHERE n.id = ANY ($1) AND n.user_id = $2
 ORDER BY n.id
   FOR NO KEY UPDATE OF n
