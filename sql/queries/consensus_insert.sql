-- A new consensus node under the key 'consensus-<digest of the source>' ($1: md5 of its id)
-- for the default model and 'consensus-<digest>/<model>' for another (a consensus per seed and
-- model), or that node updated; returns its id. Every role reads consensus_nodes: the key names
-- the seed without telling its id, another tenant's. $2 label, $3 metadata, $4 contributor
-- count, $5 group resonance, $6 model (a plain identifier). Its centroid is written apart
-- (consensus_centroid.sql).
INSERT INTO fractality.consensus_nodes AS c
    (node_key, label, metadata, model, contributor_count, resonance_score, last_calculated)
VALUES ('consensus-' || pg_catalog.md5($1::text) || CASE WHEN $6 = 'default' THEN '' ELSE '/' || $6 END,
        $2, $3, $6, $4, $5, now())
ON CONFLICT (node_key) DO UPDATE
   SET label = EXCLUDED.label, metadata = EXCLUDED.metadata, model = EXCLUDED.model,
       contributor_count = EXCLUDED.contributor_count,
       resonance_score = EXCLUDED.resonance_score, last_calculated = now()
RETURNING c.id
