-- materialize_decay: lock_timeout set to $1 until the transaction ends (a short wait for its
-- plain batches, then the session's value again).
SELECT pg_catalog.set_config('lock_timeout', $1, true)
