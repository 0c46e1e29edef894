-- fractality: upgrade from 0.1.0 to 0.2.0
-- Run by ALTER EXTENSION fractality UPDATE (TO '0.2.0'). Every schema change since 0.1.0 is
-- written here as well as in the sql/<concern>.sql file a fresh install loads; the client test
-- tests/client/tests/upgrade.rs installs 0.1.0 (tests/upgrade/fractality--0.1.0.sql), updates it
-- and compares the catalog with a fresh 0.2.0 install, so a change forgotten here fails it.
-- Native functions keep their C symbols: the 0.2.0 library serves both scripts.

-- security: consensus_nodes readable by all, written by its owner only
ALTER TABLE fractality.consensus_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY consensus_read ON fractality.consensus_nodes FOR SELECT USING (true);
