-- remember: the tenant's key in fractality.locks deleted again as soon as it is inserted
-- (memory_lock.sql): its insert holds the lock until the transaction ends, and the table keeps no
-- row of the tenant ($1: tenant).
DELETE FROM fractality.locks l WHERE l.user_id = $1 AND l.name = 'remember'
