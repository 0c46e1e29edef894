-- The key of a memory remembered without one, derived from its content $1 (the same fact told
-- twice finds the same key; the prefix is DERIVED_KEY_PREFIX of
-- src/memory/input.rs).
SELECT 'memory-' || md5($1)
