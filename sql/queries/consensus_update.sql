-- The consensus node $1 rewritten (the other parameters as in consensus_insert.sql); returns its
-- id.
UPDATE fractality.consensus_nodes c
   SET label = $2, metadata = $3, model = $6, contributor_count = $4, resonance_score = $5,
       last_calculated = now()
 WHERE c.id = $1
RETURNING c.id
