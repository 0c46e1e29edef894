-- freeze: a thawed node's energy $1 as of its "atp_at" $2 (a time as text: 22007 when it is no
-- time, 22023 when it is not finite), decayed to now by the one energy function.
SELECT fractality.current_atp($1, $2::timestamptz)
