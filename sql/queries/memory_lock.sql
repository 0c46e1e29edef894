-- remember: one writer of a tenant's memories at a time (until the transaction ends), so that two
-- sessions telling the same fact end with one memory ($1: tenant).
SELECT pg_advisory_xact_lock(hashtextextended('fractality.remember ' || $1::text, 0::bigint))
