-- Consciousness decay: the curve, the settings, lazy reads, the explicit tick, materialisation,
-- pulses, and errors with their SQLSTATE. Every instant is explicit or inside one transaction,
-- so the output does not depend on the clock.
\set VERBOSITY terse
-- the curve: max(floor, atp * rate ^ (elapsed / tick)); below the floor a value stays
SELECT fractality.decay_atp(0.8, '1 hour', 0.95, '1 hour', 0.1)      AS one_tick,
       fractality.decay_atp(0.8, '90 minutes', 0.5, '30 min', 0)     AS three_halvings,
       fractality.decay_atp(0.8, '1000 hours', 0.5, '1 hour', 0.1)   AS clamped,
       fractality.decay_atp(0.05, '10 hours', 0.5, '1 hour', 0.1)    AS below_floor_stays;
-- the settings (defined once the library is loaded, as it is now)
SELECT name, setting, short_desc FROM pg_settings
 WHERE name IN ('fractality.decay_rate', 'fractality.decay_tick', 'fractality.atp_floor')
 ORDER BY name;
-- lazy reads with the settings, at explicit instants
SELECT round(fractality.current_atp(0.8, '2026-01-01 00:00+00', '2026-01-01 02:00+00')::numeric, 12) AS two_ticks;
SET fractality.decay_tick = '30 min';
SET fractality.decay_rate = 0.5;
SELECT fractality.current_atp(0.8, '2026-01-01 00:00+00', '2026-01-01 01:00+00') AS two_halvings;
SET fractality.atp_floor = 0.3;
SELECT fractality.current_atp(0.8, '2026-01-01 00:00+00', '2026-01-01 01:00+00') AS floored;
RESET fractality.decay_tick;
RESET fractality.decay_rate;
RESET fractality.atp_floor;
-- settings are validated
SET fractality.decay_rate = 0;
SET fractality.decay_rate = 1.01;
SET fractality.decay_tick = '-1 hour';
SET fractality.decay_tick = '1 month';
SET fractality.atp_floor = -0.1;
SET fractality.decay_tick = '1h 30min';
SHOW fractality.decay_tick;
RESET fractality.decay_tick;
-- bad arguments: an ERROR with SQLSTATE 22023 naming the value
SELECT fractality.decay_atp('NaN', '1 hour', 0.9, '1 hour', 0.1);
SELECT fractality.decay_atp(0.5, '-1 hour', 0.9, '1 hour', 0.1);
SELECT fractality.decay_atp(0.5, '1 hour', 1.5, '1 hour', 0.1);
SELECT fractality.decay_atp(0.5, '1 hour', 0.9, '0 s', 0.1);
SELECT fractality.current_atp('Infinity', '2026-01-01', '2026-01-02');
SELECT fractality.current_atp(0.5, '-infinity', '2026-01-02');
SELECT FROM regress.each_error(ARRAY['SELECT fractality.apply_consciousness_decay(''NaN'')']);

BEGIN;
INSERT INTO fractality.nodes (id, user_id, node_key, atp) VALUES
    ('00000000-0000-0000-0000-0000000000c1', 'cccccccc-0000-0000-0000-000000000000', 'high', 0.9),
    ('00000000-0000-0000-0000-0000000000c2', 'cccccccc-0000-0000-0000-000000000000', 'clamps', 0.105),
    ('00000000-0000-0000-0000-0000000000c3', 'cccccccc-0000-0000-0000-000000000000', 'low', 0.05),
    ('00000000-0000-0000-0000-0000000000d1', 'dddddddd-0000-0000-0000-000000000000', 'other', 0.6);
-- one tick over one tenant: the exact old value (0.105, not 0.1 / 0.95), untouched rows absent
SELECT node_id, old_atp, new_atp
  FROM fractality.apply_consciousness_decay(0.95, 0.1, 'cccccccc-0000-0000-0000-000000000000')
 ORDER BY node_id;
SELECT node_key, atp FROM fractality.nodes ORDER BY node_key;
-- every tenant, at half rate
SELECT count(*) AS decayed FROM fractality.apply_consciousness_decay(0.5);
-- a pulse adds energy to the current value, caps at 1, floors at 0, and records a point
SELECT fractality.pulse('00000000-0000-0000-0000-0000000000c3', 0.25) AS pulsed;
SELECT fractality.pulse('00000000-0000-0000-0000-0000000000c3', 2) AS capped;
SELECT fractality.pulse('00000000-0000-0000-0000-0000000000c3', -5) AS drained;
SELECT atp_level FROM fractality.consciousness_streams
 WHERE node_id = '00000000-0000-0000-0000-0000000000c3' ORDER BY atp_level DESC;
-- a missing node: P0002
SAVEPOINT s;
SELECT fractality.pulse('00000000-0000-0000-0000-0000000000ff', 0.1);
ROLLBACK TO s;
SELECT FROM regress.each_error(ARRAY['SELECT fractality.pulse(''00000000-0000-0000-0000-0000000000ff'', 0.1)']);
ROLLBACK;

-- materialisation writes back what readers already see; active_consciousness reads decayed energy
BEGIN;
INSERT INTO fractality.nodes (user_id, node_key, atp, atp_at)
SELECT 'cccccccc-0000-0000-0000-000000000000', 'm' || k, 0.9, now() - k * interval '10 hours'
  FROM generate_series(0, 3) k;
SELECT node_key, round(atp::numeric, 6) AS atp FROM fractality.active_consciousness ORDER BY node_key;
SELECT node_key, round(atp::numeric, 6) AS current, stored_atp FROM fractality.node_energy ORDER BY node_key;
SELECT fractality.materialize_decay() AS written;
SELECT node_key, round(atp::numeric, 6) AS atp, atp_at = now() AS now FROM fractality.nodes ORDER BY node_key;
SELECT fractality.materialize_decay() AS written_again;
SELECT fractality.materialize_decay(0);
ROLLBACK;

-- under row-level security another tenant's node is missing, and a failed call writes nothing
BEGIN;
CREATE ROLE fractality_regress_decay NOLOGIN;
GRANT USAGE ON SCHEMA fractality TO fractality_regress_decay;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA fractality TO fractality_regress_decay;
INSERT INTO fractality.nodes (id, user_id, node_key, atp) VALUES
    ('00000000-0000-0000-0000-0000000000e1', 'eeeeeeee-0000-0000-0000-000000000000', 'mine', 0.9),
    ('00000000-0000-0000-0000-0000000000f1', 'ffffffff-0000-0000-0000-000000000000', 'theirs', 0.9);
SET LOCAL ROLE fractality_regress_decay;
SET LOCAL fractality.user_id = 'eeeeeeee-0000-0000-0000-000000000000';
SELECT node_id, old_atp, new_atp FROM fractality.apply_consciousness_decay();
SAVEPOINT s;
SELECT fractality.pulse('00000000-0000-0000-0000-0000000000f1', 0.1);
ROLLBACK TO s;
RESET ROLE;
SELECT node_key, atp FROM fractality.nodes ORDER BY node_key;
SELECT count(*) AS points FROM fractality.consciousness_streams;
ROLLBACK;
