-- remember: one writer of a tenant's memories at a time (until the transaction ends), so that two
-- sessions telling the same fact end with one memory ($1: tenant): the tenant's key in
-- fractality.locks, inserted here and deleted at once (memory_unlock.sql), "in insertion" until
-- the transaction ends; row-level security lets no other tenant insert it (bootstrap.sql).
INSERT INTO fractality.locks (user_id, name) VALUES ($1, 'remember')
