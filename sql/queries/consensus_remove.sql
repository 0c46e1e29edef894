-- Consensus $1 removed, with its links and centroid (their foreign keys cascade): its group no
-- longer holds enough users.
DELETE FROM fractality.consensus_nodes c WHERE c.id = $1
