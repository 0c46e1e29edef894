-- crystallize_consensus hands the source node and the embedding the caller read to the part
-- that sees across tenants.
SELECT fractality._crystallize_consensus($1, $2, $3, $4, $5)
