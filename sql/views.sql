-- fractality: views
-- Every view runs with the rights of the caller (security_invoker), so row-level security holds.

-- Nodes above an energy level (current, decayed energy), with their child count and last stream
-- activity.
CREATE VIEW fractality.active_consciousness WITH (security_invoker = true) AS
SELECT n.node_id,
       n.user_id,
       n.node_key,
       n.label,
       n.atp,
       (SELECT count(*)
          FROM fractality.edges e
         WHERE e.from_node = n.node_id AND e.relationship_type = 'child') AS child_count,
       (SELECT max(cs.time)
          FROM fractality.consciousness_streams cs
         WHERE cs.node_id = n.node_id) AS last_activity
  FROM fractality.node_energy n
 WHERE n.atp > 0.5;

COMMENT ON VIEW fractality.active_consciousness IS
    'Nodes with current (decayed) energy above 0.5, their child count and their last stream point.';

-- Hourly energy by node key over the last 24 hours, and how many minds (users) held it.
CREATE VIEW fractality.consciousness_evolution WITH (security_invoker = true) AS
SELECT date_trunc('hour', cs.time) AS hour,
       n.node_key,
       avg(cs.atp_level)            AS avg_atp,
       stddev_samp(cs.atp_level)    AS atp_stddev,
       count(*)                     AS points,
       count(DISTINCT n.user_id)    AS active_minds
  FROM fractality.consciousness_streams cs
  JOIN fractality.nodes n ON n.id = cs.node_id
 WHERE cs.time > now() - interval '24 hours'
 GROUP BY 1, 2;

COMMENT ON VIEW fractality.consciousness_evolution IS
    'Hourly average and deviation of energy per node key over the last 24 hours, with distinct users.';

-- Connections, cache hit ratio and the size of every fractality table (partitions summed).
CREATE VIEW fractality.database_health WITH (security_invoker = true) AS
SELECT 'connections'::text AS metric, NULL::text AS object, count(*)::numeric AS value
  FROM pg_catalog.pg_stat_activity
 WHERE datname = current_database()
UNION ALL
SELECT 'cache_hit_ratio', NULL,
       round(100.0 * sum(heap_blks_hit) / nullif(sum(heap_blks_hit) + sum(heap_blks_read), 0), 2)
  FROM pg_catalog.pg_statio_user_tables
UNION ALL
SELECT 'table_bytes', c.relname::text,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT sum(pg_catalog.pg_total_relation_size(t.relid))
                    FROM pg_catalog.pg_partition_tree(c.oid) t)
            ELSE pg_catalog.pg_total_relation_size(c.oid)
       END::numeric
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'fractality'::regnamespace
   AND c.relkind IN ('r', 'p')
   AND NOT c.relispartition;

COMMENT ON VIEW fractality.database_health IS
    'Connections to this database, heap cache hit ratio (%), and bytes of each fractality table.';
