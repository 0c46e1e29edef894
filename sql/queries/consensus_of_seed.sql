-- The consensus kept under the key of seed $1 (of tenant $3) for model $2 (consensus_insert.sql's
-- key), while the seed is still linked to it: the group it held, its other members gone from it
-- or moved away, their links still there. One another group took over (unlinking the seed) is
-- not the seed's any more.
SELECT c.id FROM fractality.consensus_nodes c
 WHERE c.node_key = 'consensus-' || pg_catalog.md5($1::text) || CASE WHEN $2 = 'default' THEN '' ELSE '/' || $2 END
   AND EXISTS (SELECT 1 FROM fractality.consensus_links l
                WHERE l.consensus_id = c.id AND l.node_id = $1 AND l.user_id = $3)
