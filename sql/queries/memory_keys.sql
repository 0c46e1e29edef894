-- The keys of memories remembered without one, derived from their contents $1, in order (the
-- same fact told twice finds the same key; the prefix is DERIVED_KEY_PREFIX of
-- src/memory/input.rs).
SELECT 'memory-' || md5(u.content)
  FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(content, n)
 ORDER BY u.n
