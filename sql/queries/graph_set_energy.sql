-- freeze: the energy object $3 (a thawed node's "energy": network and other fields beside atp)
-- merged into node $1 of tenant $2's.
UPDATE fractality.nodes SET energy = energy || $3 WHERE id = $1 AND user_id = $2
