-- fractality: the result type of the reward_stats aggregate (loaded before its final function)
CREATE TYPE fractality.reward_stats_result AS (
    n      bigint,
    mean   float8,
    stddev float8,
    min    float8,
    max    float8
);

COMMENT ON TYPE fractality.reward_stats_result IS
    'reward_stats: count, mean, sample standard deviation (NULL below 2 values), min and max.';
