-- fractality: upgrade from 0.3.0 to 0.4.0
-- Run by ALTER EXTENSION fractality UPDATE (TO '0.4.0'), after the earlier upgrade scripts when
-- coming from an older version. tests/client/tests/upgrade.rs updates 0.1.0, 0.2.0 and 0.3.0
-- installs (their scripts kept in tests/upgrade/) and compares each with a fresh install.
--
-- find_resonant takes the candidates of tenants larger than fractality.exact_scan_limit from one
-- HNSW scan over every tenant, read until the distance passes the threshold; it reads that scan
-- with hnsw.ef_search = 400 (recall@20 0.961 against the exact answer at 1M nodes in the
-- benchmark; 100 gave 0.917). Nothing else of the schema changes.

ALTER FUNCTION fractality.find_resonant(uuid, float8, integer) SET hnsw.ef_search = 400;
ALTER FUNCTION fractality.find_resonant(text, float8, integer) SET hnsw.ef_search = 400;
