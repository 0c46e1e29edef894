-- traverse: the keys of the nodes reached ($1: their ids, uuid[]), as (id, key); one index lookup
-- per id (a nested loop: `= ANY` is planned as a bitmap scan here, which sorts and prefetches
-- pages already in shared buffers).
SELECT n.id, n.node_key FROM pg_catalog.unnest($1::uuid[]) AS k(id)
  JOIN fractality.nodes n ON n.id = k.id
