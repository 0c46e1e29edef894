-- The decay writers' one summary notification on channel consciousness_update:
-- {"action": $1, "rows": $2, "tenant": md5 of $3's text} (NULL for a tick over every tenant; a
-- digest, as the per-row notifications carry: see sql/triggers.sql).
SELECT pg_catalog.pg_notify('consciousness_update',
                            pg_catalog.json_build_object('action', $1::text, 'rows', $2::bigint,
                                                         'tenant', pg_catalog.md5($3::uuid::text))::text)
