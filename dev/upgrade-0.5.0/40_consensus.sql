-- ---- consensus: a model per consensus node, the centroid kept from tenants ------------------

ALTER TABLE fractality.consensus_nodes
    ADD COLUMN model text NOT NULL DEFAULT 'default' REFERENCES fractality.embedding_models (model);

--@ file consensus.sql -- The unit centroid of each consensus, for the owner alone||CREATE TABLE fractality.consensus_links (

INSERT INTO fractality.consensus_centroids (consensus_id, centroid)
SELECT c.id, c.centroid FROM fractality.consensus_nodes c WHERE c.centroid IS NOT NULL;
ALTER TABLE fractality.consensus_nodes DROP COLUMN centroid;

-- a consensus's key names its seed by a digest, not by the seed's id (another tenant's node, in
-- a table every role reads): 'consensus-<id>' becomes 'consensus-<md5 of the id>', the key a new
-- crystallisation of the same seed finds
UPDATE fractality.consensus_nodes
   SET node_key = 'consensus-' || md5(substr(node_key, 11))
 WHERE node_key ~ '^consensus-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

COMMENT ON TABLE fractality.consensus_nodes IS
    'Collective nodes: contributor count and group resonance of similar nodes held by several users (label and metadata stay empty).';
COMMENT ON TABLE fractality.consensus_links IS
    'Which node contributed to which consensus node, with its similarity to the seed (to one decimal).';

-- 0.5.0 publishes a consensus's number of users and group resonance to one decimal, with no
-- label or metadata, and to each tenant its links' similarity to one decimal (a label, a value or
-- an exact score confirms a guess about another tenant's ideas): the rows 0.4.0 made become
-- what a crystallisation now writes, rounded as src/consensus/math.rs rounds (x * 10 rounded half
-- away from 0, in float8 as Rust's f64::round, then / 10)
-- (every row: the consensus tables hold a row per group and per member)
UPDATE fractality.consensus_nodes
   SET label = NULL, metadata = '{}'::jsonb,
       resonance_score = sign(resonance_score * 10) * (trunc(abs(resonance_score * 10))
           + (abs(resonance_score * 10) - trunc(abs(resonance_score * 10)) >= 0.5)::int) / 10::float8;
UPDATE fractality.consensus_links
   SET similarity = sign(similarity * 10) * (trunc(abs(similarity * 10))
           + (abs(similarity * 10) - trunc(abs(similarity * 10)) >= 0.5)::int) / 10::float8;
