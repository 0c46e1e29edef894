-- upsert_node: node $2 (its key) of tenant $1 inserted or updated; returns its id. $3 label,
-- $4 type, $5 metadata (merged into the stored object), $6 atp: a NULL keeps the stored value (on
-- insert the column default: no label or type, '{}', full energy); a new atp restarts its decay.
-- updated_at moves only when content is given (energy writes leave it). An expired node (a
-- memory past its ttl) is not updated and no row is returned: the caller deletes it, as
-- run_maintenance would, and writes the node anew (graph_forget_expired.sql). The placeholder
-- below is that condition, or nothing on a 0.4.0 schema (no expires_at yet): store.rs.
INSERT INTO fractality.nodes AS n (user_id, node_key, label, type, metadata, atp, atp_at)
VALUES ($1, $2, $3, $4, coalesce($5, '{}'::jsonb), coalesce($6, 1.0), now())
ON CONFLICT (user_id, node_key) DO UPDATE
   SET label    = coalesce($3, n.label),
       type     = coalesce($4, n.type),
       metadata = n.metadata || coalesce($5, '{}'::jsonb),
       atp      = coalesce($6, n.atp),
       atp_at   = CASE WHEN $6 IS NULL THEN n.atp_at ELSE now() END,
       updated_at = CASE WHEN $3 IS NULL AND $4 IS NULL AND coalesce($5, '{}'::jsonb) = '{}'::jsonb
                       THEN n.updated_at ELSE now() END
{{live}}
RETURNING n.id
