-- 0.4.0's per-row step of the explicit tick: apply_consciousness_decay locks the rows and reads the old values itself
DROP FUNCTION fractality.decay_tick(uuid, double precision, double precision, double precision);
