-- The decay writers' one summary notification on channel consciousness_update:
-- {"action": $1, "rows": $2, "user_id": $3}.
SELECT pg_catalog.pg_notify('consciousness_update',
                            pg_catalog.json_build_object('action', $1::text, 'rows', $2::bigint,
                                                         'user_id', $3::uuid)::text)
