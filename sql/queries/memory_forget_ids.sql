-- remember_many: the expired memories of tenant $1 it is told again ($2: their ids, locked by
-- memory_lock_nodes.sql), deleted as forget deletes one, with what hangs off them. One that
-- another session wrote again meanwhile (live now, or with a later expiry) is left: the caller
-- tells by the ids returned.
DELETE FROM fractality.nodes n
 WHERE n.user_id = $1 AND n.id = ANY($2) AND n.expires_at <= now()
RETURNING n.id
