-- New memories of tenant $1, in one statement: keys $2, contents $3 (each its node's label, and
-- so its full text), metadata $4, expiry after $5 (NULL: never), full energy; each key with its
-- id. A batch inserts its new memories together at its end (src/memory/write.rs). A key another
-- session stored meanwhile (upsert_node, freeze: they do not take remember's lock) is skipped and
-- reported by the caller, 40001; at REPEATABLE READ PostgreSQL raises 40001 itself.
INSERT INTO fractality.nodes AS n (user_id, node_key, label, type, metadata, atp, atp_at, expires_at)
SELECT $1, m.node_key, m.content, 'memory', m.metadata, 1.0, now(), now() + m.ttl
  FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::interval[]) AS m(node_key, content, metadata, ttl)
ON CONFLICT (user_id, node_key) DO NOTHING
RETURNING n.node_key, n.id
