-- One consensus of model $1 written at a time: a second curator of the same group waits, then
-- finds the first's consensus (consensus_existing.sql) and takes it over instead of making
-- another.
SELECT pg_catalog.pg_advisory_xact_lock(
           pg_catalog.hashtextextended('fractality.consensus ' || $1, 0::bigint))
