-- The consensus node $1 rewritten (parameters as in consensus_insert.sql); returns its id.
WITH saved AS (
    UPDATE fractality.consensus_nodes c
       SET label = $2, metadata = $3, model = $7, contributor_count = $5, resonance_score = $6,
           last_calculated = now()
     WHERE c.id = $1
    RETURNING c.id),
centroid AS (
    INSERT INTO fractality.consensus_centroids AS cc (consensus_id, centroid)
    SELECT s.id, $4::real[]::vector FROM saved s
    ON CONFLICT (consensus_id) DO UPDATE SET centroid = EXCLUDED.centroid)
SELECT id FROM saved
