-- freeze: node $1 of tenant $2 expires at $3, a thawed node's "expires_at" (checked finite by
-- graph_expiry_finite.sql first).
UPDATE fractality.nodes SET expires_at = $3::timestamptz WHERE id = $1 AND user_id = $2
