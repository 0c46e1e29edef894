-- fractality: consciousness decay
-- nodes.atp is a node's energy as of nodes.atp_at; fractality.current_atp reads it decayed to now
-- with the settings fractality.decay_rate, fractality.decay_tick and fractality.atp_floor. The
-- functions (decay_atp, current_atp, apply_consciousness_decay, materialize_decay, pulse) are in
-- src/decay/.

-- Every node's energy as of now, without any write: one seq scan of nodes and a native call per
-- row. THE one place where fractality reads a node's current energy: the views, resonance,
-- recall and the rest of the functions read it through this view.
CREATE VIEW fractality.node_energy WITH (security_invoker = true) AS
SELECT n.id                                         AS node_id,
       n.user_id,
       n.node_key,
       n.label,
       fractality.current_atp(n.atp, n.atp_at)      AS atp,
       n.atp                                        AS stored_atp,
       n.atp_at,
       n.metadata,
       n.expires_at
  FROM fractality.nodes n;

COMMENT ON VIEW fractality.node_energy IS
    'Every node''s current (decayed) energy: atp; stored_atp is the value as of atp_at.';
