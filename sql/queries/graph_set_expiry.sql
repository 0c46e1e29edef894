-- freeze: node $1 of tenant $2 expires at $3, a thawed node's "expires_at" as text (22007 when it
-- is no time); no row is written when that time is not finite (the caller's 22023).
UPDATE fractality.nodes SET expires_at = x.at
  FROM (SELECT $3::timestamptz AS at) x
 WHERE id = $1 AND user_id = $2 AND isfinite(x.at)
