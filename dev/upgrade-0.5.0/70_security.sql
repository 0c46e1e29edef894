-- ---- row-level security of the new tables -----------------------------------------------------

--@ file security.sql ALTER TABLE fractality.node_embeddings ENABLE ROW LEVEL SECURITY;||ALTER TABLE fractality.edges ENABLE ROW LEVEL SECURITY;
ALTER TABLE fractality.consensus_centroids ENABLE ROW LEVEL SECURITY;

--@ file security.sql -- ---- backups||-- ---- internal helpers

--@ file security.sql -- ---- internal helpers||
