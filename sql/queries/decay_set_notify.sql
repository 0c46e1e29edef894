-- The decay writers: the setting fractality.notify set to $1 ('off' around their own statement,
-- 'on' again after it) until the transaction ends.
SELECT pg_catalog.set_config('fractality.notify', $1, true)
