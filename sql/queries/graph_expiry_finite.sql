-- freeze: whether a thawed node's "expires_at" $1 is a finite time (22007 when it is no time).
SELECT isfinite($1::timestamptz)
