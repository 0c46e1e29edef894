-- fractality: reward aggregation over the experience store
-- The aggregates over the Rust state functions of src/reward/, per-episode returns, and the
-- incremental roll-up of rewards into adna_policies. SSPACE is each state's size in bytes (a
-- test in src/reward/state.rs holds them to it): without it the planner sizes an internal state
-- so that a hash aggregate over ~8 000 episodes spilled to disk on a stock server (work_mem 4 MB:
-- 17 batches, 286 ms against 213 ms in memory).

-- discounted_return(reward, gamma ORDER BY step): r0 + g r1 + g^2 r2 + ... in the given order.
CREATE AGGREGATE fractality.discounted_return(reward float8, gamma float8) (
    SFUNC = fractality.discounted_return_sfunc,
    STYPE = internal,
    SSPACE = 32,
    FINALFUNC = fractality.discounted_return_ffunc
);
COMMENT ON AGGREGATE fractality.discounted_return(float8, float8) IS
    'Discounted return of the rewards in ORDER BY order: sum of gamma^k * reward_k over the non-NULL rewards (a NULL reward is not a step: the next one takes its power of gamma).';

-- discounted_return(reward, gamma, step): the same by step number, in any order (no sort):
-- sum of gamma^(step - first step) * reward.
CREATE AGGREGATE fractality.discounted_return(reward float8, gamma float8, step integer) (
    SFUNC = fractality.discounted_return_steps_sfunc,
    STYPE = internal,
    SSPACE = 32,
    FINALFUNC = fractality.discounted_return_steps_ffunc,
    COMBINEFUNC = fractality.discounted_return_steps_combine,
    SERIALFUNC = fractality.discounted_return_steps_serial,
    DESERIALFUNC = fractality.discounted_return_steps_deserial,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE fractality.discounted_return(float8, float8, integer) IS
    'Discounted return by step number, order-free: sum of gamma^(step - min(step)) * reward over the rows of a non-NULL reward (min(step) among them).';

-- reward_stats(x): (n, mean, stddev, min, max) by Welford, parallel through a combine step.
CREATE AGGREGATE fractality.reward_stats(float8) (
    SFUNC = fractality.reward_stats_sfunc,
    STYPE = internal,
    SSPACE = 40,
    FINALFUNC = fractality.reward_stats_ffunc,
    COMBINEFUNC = fractality.reward_stats_combine,
    SERIALFUNC = fractality.reward_stats_serial,
    DESERIALFUNC = fractality.reward_stats_deserial,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE fractality.reward_stats(float8) IS
    'Count, mean, sample stddev, min and max (Welford; parallel with a combine step). NULLs are skipped.';

-- One pass over an episode's events: {steps, homeostasis, curiosity, efficiency, goal, discounted}
-- (the discounted return by step number, as discounted_return(reward, gamma, step) of each event's
-- four rewards summed in float8, so that at gamma = 1 it is the total). The engine of
-- episode_returns: one transition per event instead of one per sum.
CREATE AGGREGATE fractality.episode_sums(step integer, homeostasis real, curiosity real,
                                         efficiency real, goal real, gamma float8) (
    SFUNC = fractality.episode_sums_sfunc,
    STYPE = internal,
    SSPACE = 72,
    FINALFUNC = fractality.episode_sums_ffunc,
    COMBINEFUNC = fractality.episode_sums_combine,
    SERIALFUNC = fractality.episode_sums_serial,
    DESERIALFUNC = fractality.episode_sums_deserial,
    PARALLEL = SAFE
);

-- Per-episode returns of the hot events with "timestamp" in [from_us, to_us).
CREATE FUNCTION fractality.episode_returns(from_us bigint, to_us bigint, gamma float8 DEFAULT 0.99)
RETURNS TABLE (episode_id bigint, steps bigint, total float8, discounted float8, mean float8,
               homeostasis float8, curiosity float8, efficiency float8, goal float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
-- planned for each call's range: the generic plan, which cannot see how many events the range
-- holds, sorted every event for a group aggregate (335 ms against 157 ms hashed, 1M events)
SET plan_cache_mode = force_custom_plan
-- a bad gamma named whole in the message whatever the caller's setting (at -15, 1.5 read 2)
SET extra_float_digits = 1
AS $$
BEGIN
    IF from_us IS NULL OR to_us IS NULL OR gamma IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('episode_returns: %s must not be NULL', CASE WHEN from_us IS NULL THEN 'from_us' WHEN to_us IS NULL THEN 'to_us' ELSE 'gamma' END),
            HINT = 'Pass from_us <= to_us, both microseconds since the Unix epoch, and a discount factor gamma in [0, 1].';
    END IF;
    IF from_us > to_us THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid time range for episode_returns: [%s, %s)', from_us, to_us),
            HINT = 'Pass from_us <= to_us, both microseconds since the Unix epoch.';
    END IF;
    IF gamma = 'NaN' OR gamma < 0 OR gamma > 1 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for gamma: %s', gamma),
            HINT = 'The discount factor gamma must be a number in [0, 1].';
    END IF;
    RETURN QUERY
    SELECT s.episode_id, s.v[1]::bigint, s.v[2] + s.v[3] + s.v[4] + s.v[5], s.v[6],
           (s.v[2] + s.v[3] + s.v[4] + s.v[5]) / s.v[1], s.v[2], s.v[3], s.v[4], s.v[5]
      FROM (SELECT ev.episode_id,
                   fractality.episode_sums(ev.step_number, ev.reward_homeostasis, ev.reward_curiosity,
                                           ev.reward_efficiency, ev.reward_goal, episode_returns.gamma) AS v
              FROM fractality.experience_events ev
             WHERE ev."timestamp" >= from_us AND ev."timestamp" < to_us AND NOT ev.archived
             GROUP BY ev.episode_id) s
     ORDER BY s.episode_id;
END $$;

-- Events not yet rolled into adna_policies: every insert into experience_events (write_events,
-- INSERT, COPY) adds one row per adna_version_hash of the statement, in the same transaction, so
-- each insert of an event is counted exactly once whatever the path and however often the
-- refresh runs. The counts are of executions as they were written: an event deleted later
-- (retention, archiving, by hand) stays counted, an event deleted and written again counts again,
-- and an UPDATE of an event's rewards does not change its policy's average.
CREATE TABLE fractality.policy_reward_inbox (
    adna_version_hash integer NOT NULL,
    events            bigint  NOT NULL,
    reward_sum        float8  NOT NULL
);
COMMENT ON TABLE fractality.policy_reward_inbox IS
    'Per-statement reward sums of inserted events, waiting for refresh_policy_rewards().';
-- no primary key: the whole row is its identity for logical replication (experience.sql)
ALTER TABLE fractality.policy_reward_inbox REPLICA IDENTITY FULL;

CREATE FUNCTION fractality.experience_events_to_inbox() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO fractality.policy_reward_inbox (adna_version_hash, events, reward_sum)
    SELECT n.adna_version_hash, count(*),
           sum(fractality.total_reward(n.reward_homeostasis, n.reward_curiosity,
                                       n.reward_efficiency, n.reward_goal)::float8)
      FROM new_events n
     GROUP BY n.adna_version_hash;
    RETURN NULL;
END $$;

CREATE TRIGGER experience_events_to_inbox
    AFTER INSERT ON fractality.experience_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality.experience_events_to_inbox();

-- Rolls the waiting events into adna_policies (total_executions, reward_sum and avg_reward, the
-- mean kept from the double-precision sum: a real recomputed from itself would stop moving once
-- a roll-up's change is below half its precision, after some 10^7 events) through
-- adna_version_hash = version_hash, and writes one 'reward_trend' row to learning_metrics when
-- it rolled any. Events of a hash that no policy has wait for one. Returns the events rolled in:
-- at most 2^31 - 1 a call (the rows in the order they are stored, which is not always the order
-- they came in; the rest wait for the next call), so that a backlog of billions of events drains
-- instead of overflowing the count.
CREATE FUNCTION fractality.refresh_policy_rewards() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3
AS $$
DECLARE
    rolled bigint;
    summary jsonb;
BEGIN
    WITH waiting AS (
        SELECT i.ctid AS row, sum(i.events) OVER (ORDER BY i.ctid) AS upto
          FROM fractality.policy_reward_inbox i
         WHERE EXISTS (SELECT 1 FROM fractality.adna_policies p
                        WHERE p.version_hash = i.adna_version_hash)
    ), taken AS (
        -- (a statement's row holds at most its batch's events, far below the bound)
        DELETE FROM fractality.policy_reward_inbox i
         USING waiting w
         WHERE i.ctid = w.row AND w.upto <= 2147483647
        RETURNING i.adna_version_hash, i.events, i.reward_sum
    ), per_hash AS (
        SELECT t.adna_version_hash, sum(t.events)::bigint AS events, sum(t.reward_sum) AS reward_sum
          FROM taken t GROUP BY t.adna_version_hash
    ), updated AS (
        UPDATE fractality.adna_policies p
           SET reward_sum = p.reward_sum + h.reward_sum,
               avg_reward = ((p.reward_sum + h.reward_sum) / (p.total_executions + h.events))::real,
               total_executions = p.total_executions + h.events,
               updated_at = now()
          FROM per_hash h
         WHERE p.version_hash = h.adna_version_hash
        RETURNING p.policy_id, p.version_hash, h.events, h.reward_sum, p.avg_reward
    )
    SELECT coalesce(sum(h.events), 0),
           jsonb_build_object(
               'events', coalesce(sum(h.events), 0),
               'mean_reward', sum(h.reward_sum) / nullif(sum(h.events), 0),
               'policies', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'policy_id', u.policy_id, 'events', u.events,
                                'mean_reward', u.reward_sum / u.events,
                                'avg_reward', u.avg_reward) ORDER BY u.policy_id), '[]'::jsonb)
                              FROM updated u))
      INTO rolled, summary
      FROM per_hash h;
    IF rolled > 0 THEN
        INSERT INTO fractality.learning_metrics (metric_type, metric_data)
        VALUES ('reward_trend', summary);
    END IF;
    RETURN rolled::integer;
END $$;
