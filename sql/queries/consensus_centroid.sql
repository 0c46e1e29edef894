-- The centroid $2 of consensus node $1, written or replaced.
INSERT INTO fractality.consensus_centroids AS cc (consensus_id, centroid)
VALUES ($1, $2::real[]::{{vector}}.vector)
ON CONFLICT (consensus_id) DO UPDATE SET centroid = EXCLUDED.centroid
