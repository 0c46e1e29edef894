-- The seed's experience_events (seeds/002_ca3cf90404d8f1bf.txt) with its indexes, verbatim but
-- schema-qualified: the baseline of the ingest/storage benchmark.
DROP SCHEMA IF EXISTS bench_seed CASCADE;
CREATE SCHEMA bench_seed;
CREATE TABLE bench_seed.experience_events (
    event_id BYTEA PRIMARY KEY,
    timestamp BIGINT NOT NULL,
    episode_id BIGINT NOT NULL,
    step_number INTEGER NOT NULL,
    event_type SMALLINT NOT NULL,
    flags SMALLINT NOT NULL,
    state_l1 REAL NOT NULL,
    state_l2 REAL NOT NULL,
    state_l3 REAL NOT NULL,
    state_l4 REAL NOT NULL,
    state_l5 REAL NOT NULL,
    state_l6 REAL NOT NULL,
    state_l7 REAL NOT NULL,
    state_l8 REAL NOT NULL,
    action_l1 REAL NOT NULL,
    action_l2 REAL NOT NULL,
    action_l3 REAL NOT NULL,
    action_l4 REAL NOT NULL,
    action_l5 REAL NOT NULL,
    action_l6 REAL NOT NULL,
    action_l7 REAL NOT NULL,
    action_l8 REAL NOT NULL,
    reward_homeostasis REAL NOT NULL DEFAULT 0.0,
    reward_curiosity REAL NOT NULL DEFAULT 0.0,
    reward_efficiency REAL NOT NULL DEFAULT 0.0,
    reward_goal REAL NOT NULL DEFAULT 0.0,
    adna_version_hash INTEGER NOT NULL,
    sequence_number INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    archived BOOLEAN DEFAULT FALSE
);
CREATE INDEX idx_events_timestamp ON bench_seed.experience_events(timestamp DESC);
CREATE INDEX idx_events_episode ON bench_seed.experience_events(episode_id, step_number);
CREATE INDEX idx_events_type ON bench_seed.experience_events(event_type);
CREATE INDEX idx_events_adna_version ON bench_seed.experience_events(adna_version_hash);
CREATE INDEX idx_events_archived ON bench_seed.experience_events(archived) WHERE NOT archived;
CREATE INDEX idx_events_total_reward ON bench_seed.experience_events(
    (reward_homeostasis + reward_curiosity + reward_efficiency + reward_goal) DESC
);
