-- fractality: views
-- Every view runs with the rights of the caller (security_invoker), so row-level security holds.

-- Nodes above an energy level (current, decayed energy), with their child count and last stream
-- activity (a point written ahead of now is not activity yet). A node is its tenant's id: two
-- tenants' nodes may share an id, and each counts its own edges and points.
CREATE VIEW fractality.active_consciousness WITH (security_invoker = true) AS
SELECT n.node_id,
       n.user_id,
       n.node_key,
       n.label,
       n.atp,
       (SELECT count(*)
          FROM fractality.edges e
         WHERE e.from_node = n.node_id AND e.user_id = n.user_id
           AND e.relationship_type = 'child') AS child_count,
       (SELECT max(cs.time)
          FROM fractality.consciousness_streams cs
         WHERE cs.node_id = n.node_id AND cs.user_id = n.user_id AND cs.time <= now()) AS last_activity
  FROM fractality.node_energy n
 WHERE n.atp > 0.5;

COMMENT ON VIEW fractality.active_consciousness IS
    'Nodes with current (decayed) energy above 0.5, their child count and their last stream point.';

-- Hourly energy by node key over the last 24 hours (up to now: not points written ahead of it),
-- and how many minds (users) held it; each point under its own tenant's node.
CREATE VIEW fractality.consciousness_evolution WITH (security_invoker = true) AS
SELECT date_trunc('hour', cs.time) AS hour,
       n.node_key,
       avg(cs.atp_level)            AS avg_atp,
       stddev_samp(cs.atp_level)    AS atp_stddev,
       count(*)                     AS points,
       count(DISTINCT n.user_id)    AS active_minds
  FROM fractality.consciousness_streams cs
  JOIN fractality.nodes n ON n.id = cs.node_id AND n.user_id = cs.user_id
 WHERE cs.time > now() - interval '24 hours' AND cs.time <= now()
 GROUP BY 1, 2;

COMMENT ON VIEW fractality.consciousness_evolution IS
    'Hourly average and deviation of energy per node key over the last 24 hours, with distinct users.';

-- Query times from pg_stat_statements when it is installed (and loaded), nothing otherwise: the
-- view below works without it. The extension's schema is looked up and quoted; the query is fixed.
CREATE FUNCTION fractality.statement_times()
RETURNS TABLE (metric text, object text, value numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext_schema name;
BEGIN
    SELECT n.nspname INTO ext_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_stat_statements';
    IF ext_schema IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT ''avg_query_time_ms''::text, NULL::text,
                round((sum(s.total_exec_time) / nullif(sum(s.calls), 0))::numeric, 3)
           FROM %1$I.pg_stat_statements s
          WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         UNION ALL
         SELECT ''max_mean_query_time_ms'', NULL, round(max(s.mean_exec_time)::numeric, 3)
           FROM %1$I.pg_stat_statements s
          WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())',
        ext_schema);
EXCEPTION
    -- installed but not in shared_preload_libraries, or not readable by this role
    WHEN object_not_in_prerequisite_state OR insufficient_privilege THEN
        RETURN;
END
$$;

COMMENT ON FUNCTION fractality.statement_times() IS
    'Average and worst mean execution time (ms) of this database''s statements from pg_stat_statements; no rows without it.';

-- Connections, cache hit ratio, the size of every fractality table (partitions summed), and query
-- times where pg_stat_statements is installed.
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
   AND NOT c.relispartition
UNION ALL
SELECT t.metric, t.object, t.value FROM fractality.statement_times() t;

COMMENT ON VIEW fractality.database_health IS
    'Connections to this database, heap cache hit ratio (%), bytes of each fractality table, and query times where pg_stat_statements is installed.';
