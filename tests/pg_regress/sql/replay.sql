-- Prioritised experience replay: buffers fed by write_events at their largest priority, a sum
-- tree that always equals its items, draws that follow p^alpha (chi-square at a fixed seed),
-- weights by the formula, priorities written back, eviction at capacity, filters, events that
-- leave (deleted, archived), replay_batch, priorities pending and folded, bad input. One
-- transaction, rolled back.
\set VERBOSITY terse
BEGIN;
SET LOCAL fractality.notify = off;
-- events of episodes of 10 steps, two types
CREATE FUNCTION pg_temp.events(first int, last int, ts0 bigint) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_object(
        'event_id', lpad(to_hex(g), 32, '0'), 'timestamp', ts0 + g, 'episode_id', g / 10,
        'step_number', g % 10, 'event_type', g % 2, 'flags', 0,
        'state_l1', g, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0, 'state_l5', 0, 'state_l6', 0,
        'state_l7', 0, 'state_l8', 0, 'action_l1', 1, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
        'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0, 'reward_goal', g % 3,
        'adna_version_hash', 7 + g % 2, 'sequence_number', g))
      FROM generate_series(first, last) g $$;
-- the tree's invariant: every level sums to the items' p^alpha, and the counters are right
CREATE FUNCTION pg_temp.consistent(buf text) RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(abs(l.s - i.s) <= 1e-9 * greatest(1, i.s)) AND min(b.size) = min(i.n)
      FROM fractality.replay_buffers b,
           LATERAL (SELECT t.level, sum(x) AS s FROM fractality.replay_tree t, unnest(t.sums) x
                     WHERE t.buffer_id = b.buffer_id GROUP BY t.level) l,
           LATERAL (SELECT coalesce(sum(power(r.priority, b.alpha)), 0) AS s, count(*) AS n
                      FROM fractality.replay_items r WHERE r.buffer_id = b.buffer_id) i
     WHERE b.name = buf $$;

SELECT fractality.create_replay_buffer('all') > 0 AS created;
SELECT fractality.create_replay_buffer('type1', alpha => 1, capacity => 50, event_type => 1::smallint) > 0 AS created;
SELECT fractality.write_events(pg_temp.events(0, 999, 1000000)) AS written;
SELECT fractality.write_events(pg_temp.events(1000, 1199, 1000000)) AS written;
SELECT name, size, next_seq, levels, max_priority FROM fractality.replay_buffers ORDER BY name;
SELECT pg_temp.consistent('all') AS all_consistent, pg_temp.consistent('type1') AS type1_consistent;
-- capacity 50, oldest first: the 50 newest type-1 events
SELECT min(event_timestamp) - 1000000 AS oldest, max(event_timestamp) - 1000000 AS newest, count(*)
  FROM fractality.replay_items i JOIN fractality.replay_buffers b USING (buffer_id) WHERE b.name = 'type1';

-- new items at the largest priority; the learner's priorities change the draws
SELECT count(*) = 1 AS uniform FROM (SELECT DISTINCT probability FROM fractality.sample_experiences('all', 100, seed => 1)) d;
SELECT fractality.update_priorities('all',
         ARRAY(SELECT decode(lpad(to_hex(g), 32, '0'), 'hex') FROM generate_series(0, 9) g),
         ARRAY(SELECT 10.0 * (g + 1) FROM generate_series(0, 9) g)) AS updated;
SELECT name, round(max_priority::numeric, 6) AS max_priority FROM fractality.replay_buffers WHERE name = 'all';
SELECT pg_temp.consistent('all') AS consistent_after_update;
-- the priorities wait in replay_pending, one row a call, until a fold; the view shows them
SELECT count(*) AS pending_rows, sum(cardinality(slots)) AS pending_slots FROM fractality.replay_pending;
SELECT count(*) FILTER (WHERE v.priority > 1.5) AS current_above, count(*) FILTER (WHERE i.priority > 1.5) AS folded_above
  FROM fractality.replay_priorities v JOIN fractality.replay_items i USING (buffer_id, slot)
 WHERE v.buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'all');
-- a new event enters at that largest priority
SELECT fractality.write_events(pg_temp.events(1200, 1200, 1000000)) AS written;
SELECT round(priority::numeric, 6) AS new_item_priority FROM fractality.replay_items
 WHERE event_id = decode(lpad(to_hex(1200), 32, '0'), 'hex') AND buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'all');

-- a draw alone in its block computes the block's entries only up to the slot it lands on, a draw
-- that shares its block with others all of them (and every draw in a block under pending
-- priorities): the first draw of a sample of 1 and of 256 at the same seed land on the same item
SELECT count(*) FILTER (WHERE a.event_id = b.event_id AND a.probability = b.probability) AS same,
       count(*) AS seeds
  FROM generate_series(1, 60) s,
       LATERAL (SELECT event_id, probability FROM fractality.sample_experiences('all', 1, seed => s)) a,
       LATERAL (SELECT x.event_id, x.probability
                  FROM fractality.sample_experiences('all', 256, seed => s) WITH ORDINALITY x
                 WHERE x.ordinality = 1) b;

-- frequencies over 200 000 draws at a fixed seed against P(i) = p_i^alpha / sum: chi-square
-- over the 11 prioritised items and the rest pooled (df 11; 31.26 is its 0.001 quantile)
CREATE TEMP TABLE draws AS SELECT * FROM fractality.sample_experiences('all', 200000, seed => 42);
CREATE TEMP TABLE expected AS
WITH items AS (SELECT r.* FROM fractality.replay_priorities r
                WHERE r.buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'all'))
SELECT CASE WHEN priority > 1.5 THEN encode(event_id, 'hex') ELSE 'rest' END AS cell,
       sum(power(priority, 0.6)) / (SELECT sum(power(priority, 0.6)) FROM items) AS p
  FROM items GROUP BY 1;
SELECT count(*) AS cells,
       sum(power(coalesce(o.n, 0) - 200000 * e.p, 2) / (200000 * e.p)) < 31.26 AS chi_square_passes
  FROM expected e
  LEFT JOIN (SELECT CASE WHEN priority > 1.5 THEN encode(event_id, 'hex') ELSE 'rest' END AS cell, count(*) AS n
               FROM draws GROUP BY 1) o USING (cell);
-- probabilities and weights by the formula: (N P(i))^-beta / max over the draw
SELECT bool_and(abs(d.probability - power(d.priority, 0.6) / t.s) < 1e-12) AS probabilities,
       bool_and(abs(d.weight - power(1201 * d.probability, -0.4) / m.w) < 1e-9) AS weights,
       max(d.weight) = 1 AS normalised
  FROM draws d,
       (SELECT sum(power(priority, 0.6)) AS s FROM fractality.replay_priorities
         WHERE buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'all')) t,
       (SELECT max(power(1201 * probability, -0.4)) AS w FROM draws) m;
-- the same seed, the same sample; another seed, another
SELECT (SELECT array_agg(event_id) FROM fractality.sample_experiences('all', 20, seed => 5))
     = (SELECT array_agg(event_id) FROM fractality.sample_experiences('all', 20, seed => 5)) AS reproducible,
       (SELECT array_agg(event_id) FROM fractality.sample_experiences('all', 20, seed => 5))
     <> (SELECT array_agg(event_id) FROM fractality.sample_experiences('all', 20, seed => 6)) AS seeds_differ;

-- a fold moves the pending priorities into the items and the tree; the draws stay the same
CREATE TEMP TABLE before_fold AS
SELECT row_number() OVER () AS i, * FROM fractality.sample_experiences('all', 50, seed => 8);
CREATE TEMP TABLE updates_before AS
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relid = 'fractality.replay_blocks'::regclass;
SELECT fractality.fold_priorities('all') AS folded, fractality.fold_priorities('all') AS again;
-- the fold rewrote the blocks whose priorities changed, each a HOT update (a block of 120 slots
-- fits twice in a page: no new index entry, no dead row for a sampler to step over)
SELECT s.n_tup_upd - u.n_tup_upd AS blocks_rewritten, s.n_tup_hot_upd - u.n_tup_hot_upd AS hot
  FROM pg_stat_xact_user_tables s, updates_before u WHERE s.relid = 'fractality.replay_blocks'::regclass;
SELECT max(pg_column_size(b.*)) <= 4080 AS a_block_fits_twice_in_a_page FROM fractality.replay_blocks b;
SELECT count(*) AS pending_after_fold FROM fractality.replay_pending;
SELECT pg_temp.consistent('all') AS consistent_after_fold;
SELECT count(*) FILTER (WHERE priority > 1.5) AS folded_above FROM fractality.replay_items
 WHERE buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'all');
SELECT count(*) AS same_draws
  FROM before_fold a
  JOIN (SELECT row_number() OVER () AS i, * FROM fractality.sample_experiences('all', 50, seed => 8)) b
    ON a.i = b.i AND a.event_id = b.event_id AND abs(a.probability - b.probability) < 1e-12;
-- fold_after: a call that brings the pending slots to it folds them all; 0 folds every call
SET LOCAL fractality.replay_fold_after = 3;
SELECT fractality.update_priorities('all',
         ARRAY(SELECT decode(lpad(to_hex(g), 32, '0'), 'hex') FROM generate_series(20, 21) g), ARRAY[2.0, 2.0]) AS updated;
SELECT count(*) AS pending_rows FROM fractality.replay_pending;
SELECT fractality.update_priorities('all',
         ARRAY(SELECT decode(lpad(to_hex(g), 32, '0'), 'hex') FROM generate_series(21, 22) g), ARRAY[3.0, 3.0]) AS updated;
SELECT count(*) AS pending_rows FROM fractality.replay_pending;
SET LOCAL fractality.replay_fold_after = 0;
SELECT fractality.update_priorities('all', ARRAY[decode(lpad(to_hex(23), 32, '0'), 'hex')], ARRAY[4.0]) AS updated;
SELECT count(*) AS pending_rows FROM fractality.replay_pending;
SELECT encode(event_id, 'hex') AS event, round(priority::numeric, 6) AS priority FROM fractality.replay_items
 WHERE buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'all')
   AND event_id IN (SELECT decode(lpad(to_hex(g), 32, '0'), 'hex') FROM generate_series(20, 23) g)
 ORDER BY 1;
SELECT pg_temp.consistent('all') AS consistent_after_folds;
RESET fractality.replay_fold_after;

-- late events: a batch whose timestamps fall among earlier blocks' (the items are kept 120 to a
-- block, found by timestamp through the block that starts last before it, else through every
-- block whose span holds it): found by timestamp and by id, and gone when deleted
SELECT fractality.write_events(pg_temp.events(6000, 6000, 1000050 - 6000)
                               || pg_temp.events(6001, 6001, 1000200 - 6001)) AS late;
SELECT fractality.update_priorities('all', ARRAY[decode(lpad(to_hex(6001), 32, '0'), 'hex')], ARRAY[5.0],
                                    ARRAY[1000200::bigint]) AS by_timestamp,
       fractality.update_priorities('all', ARRAY[decode(lpad(to_hex(6000), 32, '0'), 'hex')], ARRAY[6.0]) AS by_id;
-- by id, not in the block that starts last before its timestamp: found through the spans
SELECT fractality.update_priorities('all', ARRAY[decode(lpad(to_hex(6001), 32, '0'), 'hex')], ARRAY[7.0]) AS by_id_elsewhere;
SELECT encode(event_id, 'hex') AS event, event_timestamp, round(priority::numeric, 6) AS priority
  FROM fractality.replay_priorities
 WHERE buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'all')
   AND event_timestamp IN (1000050, 1000200)
 ORDER BY 2, 1;
DELETE FROM fractality.experience_events
 WHERE event_id IN (decode(lpad(to_hex(6000), 32, '0'), 'hex'), decode(lpad(to_hex(6001), 32, '0'), 'hex'));
SELECT b.name, count(i.*) AS items_at_late_timestamps
  FROM fractality.replay_buffers b
  LEFT JOIN fractality.replay_items i ON i.buffer_id = b.buffer_id AND i.event_timestamp IN (1000050, 1000200)
 GROUP BY 1 ORDER BY 1;
SELECT pg_temp.consistent('all') AS all_consistent, pg_temp.consistent('type1') AS type1_consistent;

-- a learner's batch in one call: state, action, rewards, next state, metadata
SELECT fractality.write_event_with_metadata(
         pg_temp.events(1300, 1300, 1000000) -> 0,
         '{"intent_type": "explore", "executor_id": "learner-1", "parameters": {"lr": 0.01}}');
SELECT fractality.update_priorities('all', ARRAY[decode(lpad(to_hex(1300), 32, '0'), 'hex')], ARRAY[1e6]);
SELECT episode_id, step_number, state, action, reward_goal, next_state, intent_type, parameters,
       round(probability::numeric, 3) AS probability
  FROM fractality.replay_batch('all', 1, seed => 9);
SELECT count(*) FILTER (WHERE next_state IS NOT NULL) AS with_next,
       count(*) FILTER (WHERE step_number = 9 AND next_state IS NULL) AS episode_ends
  FROM fractality.replay_batch('all', 500, seed => 3);
-- the steps of an episode written at one timestamp: each finds the next as its next state (it
-- was looked for strictly after its own timestamp)
SELECT fractality.write_events((SELECT jsonb_agg(e || '{"timestamp": 3000000}')
                                  FROM jsonb_array_elements(pg_temp.events(5000, 5003, 0)) e)) AS written;
SELECT fractality.update_priorities('all', ARRAY(SELECT decode(lpad(to_hex(g), 32, '0'), 'hex')
                                                   FROM generate_series(5000, 5003) g),
                                    ARRAY[1e9, 1e9, 1e9, 1e9]) AS updated;
SELECT DISTINCT step_number, next_state[1] AS next_state_l1
  FROM fractality.replay_batch('all', 200, seed => 1) WHERE episode_id = 500 ORDER BY 1;
DELETE FROM fractality.experience_events WHERE "timestamp" = 3000000;

-- deleted and archived events leave every buffer; the tree follows
DELETE FROM fractality.experience_events WHERE "timestamp" < 1000000 + 100;
SELECT fractality.archive_old_events(0) > 0 AS archived;
SELECT name, size FROM fractality.replay_buffers ORDER BY name;
SELECT pg_temp.consistent('all') AS all_consistent, pg_temp.consistent('type1') AS type1_consistent;
SELECT count(*) AS drawn_from_empty FROM fractality.sample_experiences('all', 10, seed => 1);

-- bad input: clear errors, nothing written
SELECT FROM regress.each_error(ARRAY[
        'SELECT * FROM fractality.sample_experiences(''nobuffer'', 10)',
        'SELECT * FROM fractality.sample_experiences(''all'', -1)',
        'SELECT * FROM fractality.sample_experiences(''all'', 1000001)',
        'SELECT * FROM fractality.sample_experiences(''all'', 10, beta => 1.5)',
        'SELECT fractality.update_priorities(''all'', ARRAY[''\x00''::bytea], ARRAY[1.0, 2.0])',
        'SELECT fractality.update_priorities(''all'', ARRAY[''\x00''::bytea], ARRAY[''NaN''::float8])',
        'SELECT fractality.update_priorities(''all'', ARRAY[''\x00''::bytea], ARRAY[-1.0])',
        'SELECT fractality.update_priorities(''all'', ARRAY[''\x00''::bytea], ARRAY[NULL::float8])',
        'SELECT fractality.update_priorities(''nobuffer'', ARRAY[]::bytea[], ARRAY[]::float8[])',
        'SELECT fractality.fold_priorities(''nobuffer'')',
        'SET fractality.replay_fold_after = -1',
        'SELECT fractality.create_replay_buffer(''all'')',
        'SELECT fractality.create_replay_buffer('''')',
        'SELECT fractality.create_replay_buffer(''x'', alpha => ''NaN'')',
        'SELECT fractality.create_replay_buffer(''x'', beta => 2)',
        'SELECT fractality.create_replay_buffer(''x'', epsilon => 0)',
        'SELECT fractality.create_replay_buffer(''x'', capacity => 0)',
        'SELECT * FROM fractality.replay_batch(''all'', 1, next_within => ''-1 hour'')']);
-- an id the buffer holds no item of is skipped (as Reverb skips it), the count says so
SELECT fractality.update_priorities('all', ARRAY['\x0000000000000000000000000000dead'::bytea], ARRAY[1.0]) AS skipped;
SELECT fractality.drop_replay_buffer('type1') AS dropped, fractality.drop_replay_buffer('type1') AS again;
SELECT count(*) AS type1_tree_blocks FROM fractality.replay_tree t
 WHERE NOT EXISTS (SELECT 1 FROM fractality.replay_buffers b WHERE b.buffer_id = t.buffer_id);
SELECT count(*) AS type1_items FROM fractality.replay_items i
 WHERE NOT EXISTS (SELECT 1 FROM fractality.replay_buffers b WHERE b.buffer_id = i.buffer_id);
-- one statement of 140 000 events enters a buffer in more than one write of its blocks (1 024
-- blocks, 122 880 slots, a write)
INSERT INTO fractality.experience_events ("timestamp", episode_id, step_number,
        state_l1, state_l2, state_l3, state_l4, state_l5, state_l6, state_l7, state_l8,
        action_l1, action_l2, action_l3, action_l4, action_l5, action_l6, action_l7, action_l8,
        adna_version_hash, sequence_number, event_type, flags, event_id)
SELECT 2000000 + g, 100000 + g / 10, g % 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
       7, g, 0, 0, decode(lpad(to_hex(10000000 + g), 32, '0'), 'hex')
  FROM generate_series(0, 139999) g;
SELECT b.size AS all_size, count(k.*) AS blocks, sum(k.filled) AS filled
  FROM fractality.replay_buffers b JOIN fractality.replay_blocks k USING (buffer_id)
 WHERE b.name = 'all' GROUP BY b.size;
SELECT pg_temp.consistent('all') AS consistent_after_a_large_write;
ROLLBACK;
