-- replay_batch: the sampled events (timestamps $1, ids $2, in draw order) with state, action,
-- rewards, the next state of their episode (step + 1 at most $3 microseconds after, at the same
-- timestamp too: a batch's steps may share one) and their action metadata; column 1 is the
-- draw's position. The bounds are computed without overflow: a last step (integer's largest)
-- has no next one, and a window past bigint's largest ends there.
SELECT d.i, e.episode_id, e.step_number, e.event_type,
       ARRAY[e.state_l1, e.state_l2, e.state_l3, e.state_l4, e.state_l5, e.state_l6, e.state_l7, e.state_l8],
       ARRAY[e.action_l1, e.action_l2, e.action_l3, e.action_l4, e.action_l5, e.action_l6, e.action_l7, e.action_l8],
       e.reward_homeostasis, e.reward_curiosity, e.reward_efficiency, e.reward_goal,
       fractality.total_reward(e.reward_homeostasis, e.reward_curiosity, e.reward_efficiency, e.reward_goal),
       nx.state, m.intent_type::text, m.executor_id::text, m.parameters
  FROM unnest($1::bigint[], $2::bytea[]) WITH ORDINALITY d(ts, event_id, i)
  JOIN fractality.experience_events e ON e."timestamp" = d.ts AND e.event_id = d.event_id
  LEFT JOIN LATERAL (
        SELECT ARRAY[n.state_l1, n.state_l2, n.state_l3, n.state_l4, n.state_l5, n.state_l6, n.state_l7, n.state_l8] AS state
          FROM fractality.experience_events n
         WHERE n."timestamp" >= e."timestamp"
           AND n."timestamp" <= LEAST(e."timestamp", 9223372036854775807 - $3) + $3
           AND n.episode_id = e.episode_id AND n.step_number = e.step_number::bigint + 1
         ORDER BY n."timestamp"
         LIMIT 1) nx ON true
  LEFT JOIN fractality.action_metadata m ON m.event_id = e.event_id AND m.event_timestamp = e."timestamp"
