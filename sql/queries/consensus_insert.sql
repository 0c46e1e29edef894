-- A new consensus node under the key 'consensus-<source>' ($1), or that node updated; its
-- centroid ($4) kept apart; returns its id. $2 label, $3 metadata, $5 contributor count,
-- $6 group resonance, $7 model.
WITH saved AS (
    INSERT INTO fractality.consensus_nodes AS c
        (node_key, label, metadata, model, contributor_count, resonance_score, last_calculated)
    VALUES ('consensus-' || $1::text, $2, $3, $7, $5, $6, now())
    ON CONFLICT (node_key) DO UPDATE
       SET label = EXCLUDED.label, metadata = EXCLUDED.metadata, model = EXCLUDED.model,
           contributor_count = EXCLUDED.contributor_count,
           resonance_score = EXCLUDED.resonance_score, last_calculated = now()
    RETURNING c.id),
centroid AS (
    INSERT INTO fractality.consensus_centroids AS cc (consensus_id, centroid)
    SELECT s.id, $4::real[]::vector FROM saved s
    ON CONFLICT (consensus_id) DO UPDATE SET centroid = EXCLUDED.centroid)
SELECT id FROM saved
