-- ---- row-level security of the new tables -----------------------------------------------------

-- (the tenant tables of 0.4.0 have their policy: _protect_partition leaves it as it is)
--@ file security.sql -- The tenant tables, each under the policy tenant_isolation||-- consensus_nodes is readable
ALTER TABLE fractality.consensus_centroids ENABLE ROW LEVEL SECURITY;

--@ file security.sql -- ---- backups||-- ---- internal helpers

--@ file security.sql -- ---- internal helpers||
