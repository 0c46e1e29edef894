-- 0.4.0's sample_experiences(n, alpha, beta, seed): the hot events in one fixed order with their
-- total reward, read twice (once to sum the priorities, once to walk to the points drawn). No
-- parameters.
SELECT event_id, fractality.total_reward(reward_homeostasis,
       reward_curiosity, reward_efficiency, reward_goal)::float8
  FROM fractality.experience_events
 WHERE NOT archived
 ORDER BY "timestamp", event_id
