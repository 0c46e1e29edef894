-- A new memory of tenant $1: key $2, the content $3 as its label (and so its full text),
-- metadata $4, full energy, expiring after $5 (NULL: never); returns its id.
INSERT INTO fractality.nodes AS n (user_id, node_key, label, type, metadata, atp, atp_at, expires_at)
VALUES ($1, $2, $3, 'memory', $4, 1.0, now(), now() + $5)
RETURNING n.id
