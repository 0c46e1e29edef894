-- ---- reward aggregates in parallel: episode_sums (episode_returns) and discounted_return by
-- step get combine, serialise and deserialise steps; PostgreSQL cannot add them to an existing
-- aggregate, so both are made again ----

--@ pgrx discounted_return_steps_combine_wrapper
--@ pgrx discounted_return_steps_serial_wrapper
--@ pgrx discounted_return_steps_deserial_wrapper
--@ pgrx episode_sums_combine_wrapper
--@ pgrx episode_sums_serial_wrapper
--@ pgrx episode_sums_deserial_wrapper

DROP AGGREGATE fractality.discounted_return(float8, float8, integer);
DROP AGGREGATE fractality.episode_sums(integer, real, real, real, real, float8);
--@ file reward.sql -- discounted_return(reward, gamma, step): the same||-- reward_stats(x)
--@ file reward.sql -- One pass over an episode's events||-- Per-episode returns
-- the state sizes (SSPACE) of the aggregates 0.4.0 made, and episode_returns planned per call
--@ file! reward.sql -- discounted_return(reward, gamma ORDER BY step)||-- discounted_return(reward, gamma, step): the same
--@ file! reward.sql -- reward_stats(x)||-- One pass over an episode's events
--@ file! reward.sql -- Per-episode returns||-- Events not yet rolled into adna_policies

-- adna_policies keeps the sum of its rewards in double precision: avg_reward, a real recomputed
-- from itself, stopped moving once a roll-up's change was below half its precision
ALTER TABLE fractality.adna_policies ADD COLUMN reward_sum float8 NOT NULL DEFAULT 0.0;
-- (the policies' updated_at stays: nothing of theirs changed)
ALTER TABLE fractality.adna_policies DISABLE TRIGGER adna_policies_touch_updated_at;
UPDATE fractality.adna_policies SET reward_sum = avg_reward::float8 * total_executions
 WHERE total_executions > 0;
ALTER TABLE fractality.adna_policies ENABLE TRIGGER adna_policies_touch_updated_at;
COMMENT ON COLUMN fractality.adna_policies.reward_sum IS
    'The sum of the rewards rolled in (refresh_policy_rewards), in double precision: avg_reward is reward_sum / total_executions as a real.';
