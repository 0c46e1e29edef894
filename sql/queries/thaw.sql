-- thaw: the node $2 of tenant $1 as one document: fields, metadata, current energy, expiry, its
-- embeddings (`embedding`: model $4's, as an array; `embeddings`: every model's, by
-- model), outgoing and incoming edges, and its latest $3 stream points (newest first), hot or
-- archived (stream_history's two tiers). The embeddings' subqueries name the tenant by the
-- parameter: node_embeddings' partitions are pruned when the plan starts.
SELECT pg_catalog.jsonb_build_object(
    'id', n.id, 'user_id', n.user_id, 'node_key', n.node_key, 'label', n.label, 'type', n.type,
    'metadata', n.metadata, 'energy', n.energy,
    -- the energy of now, as of now: the pair reads back as current_atp(atp, atp_at) = atp (the
    -- stored atp_at beside the decayed energy would decay it twice)
    'atp', ne.atp, 'atp_at', pg_catalog.now(), 'created_at', n.created_at, 'updated_at', n.updated_at,
    -- NULL on a 0.4.0 schema, which has no expires_at yet (the same query serves both); the
    -- operator named with its schema and the key typed: an operator ->(jsonb, jsonb) planted in a
    -- schema on the caller's path matched the untyped key better than pg_catalog's
    'expires_at', pg_catalog.to_jsonb(n) OPERATOR(pg_catalog.->) 'expires_at'::text,
    -- `embedding` is model $4's, and says so: freeze files it under that model
    'model', $4,
    'embedding', (SELECT emb.embedding::text::jsonb FROM fractality.node_embeddings emb
                   WHERE emb.user_id = $1 AND emb.node_id = n.id AND emb.model = $4),
    'embeddings', coalesce((SELECT pg_catalog.jsonb_object_agg(emb.model, emb.embedding::text::jsonb)
                              FROM fractality.node_embeddings emb
                             WHERE emb.user_id = $1 AND emb.node_id = n.id), '{}'::jsonb),
    'edges', pg_catalog.jsonb_build_object(
        'outgoing', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                          'id', e.id, 'to_node', e.to_node, 'to_key', t.node_key,
                          'type', e.relationship_type, 'weight', e.weight, 'metadata', e.metadata)
                          ORDER BY e.relationship_type, t.node_key)
                        FROM fractality.edges e JOIN fractality.nodes t ON t.id = e.to_node
                       WHERE e.from_node = n.id), '[]'::jsonb),
        'incoming', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                          'id', e.id, 'from_node', e.from_node, 'from_key', f.node_key,
                          'type', e.relationship_type, 'weight', e.weight, 'metadata', e.metadata)
                          ORDER BY e.relationship_type, f.node_key)
                        FROM fractality.edges e JOIN fractality.nodes f ON f.id = e.from_node
                       WHERE e.to_node = n.id), '[]'::jsonb)),
    'stream', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                          'time', s.time, 'atp_level', s.atp_level,
                          'attention_score', s.attention_score,
                          'resonance_vector', s.resonance_vector) ORDER BY s.time DESC)
                        FROM (SELECT h.* FROM (
                                (SELECT s.time, s.atp_level, s.attention_score, s.resonance_vector
                                   FROM fractality.consciousness_streams s
                                  WHERE s.node_id = n.id ORDER BY s.time DESC LIMIT $3)
                                UNION ALL
                                (SELECT p.t, p.a, p.att, p.r::real[]
                                   FROM fractality.consciousness_archive c,
                                        unnest(c.times, c.atp_levels, c.attention_scores,
                                               c.resonance_vectors) AS p(t, a, att, r)
                                  WHERE c.node_id = n.id ORDER BY p.t DESC LIMIT $3)) h
                               ORDER BY h.time DESC LIMIT $3) s),
                       '[]'::jsonb))
  FROM fractality.nodes n
  JOIN fractality.node_energy ne ON ne.node_id = n.id AND ne.user_id = n.user_id
 WHERE n.user_id = $1 AND n.node_key = $2
