-- One consensus of model $1 written at a time: a second curator of the same group waits, then
-- finds the first's consensus (consensus_existing.sql) and takes it over instead of making
-- another. A lock of the owner's (the consensus functions run as the owner), which no other role
-- can take: see fractality.locks.
SELECT fractality._lock('consensus ' || $1)
