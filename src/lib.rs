//! fractality: a living memory layer for AI agents inside PostgreSQL.
//!
//! This file is the table of contents: the modules, the SQL files in the order the extension
//! script loads them, and `_PG_init`. Pure math lives in plain functions with `#[test]`s of their
//! own; the `#[pg_extern]` layer converts arguments, calls them, and talks to SPI.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod consensus;
pub mod decay;
pub mod errors;
pub mod experience;
pub mod graph;
pub mod gucs;
pub mod heap;
pub mod json;
pub mod jsonb;
pub mod memory;
pub mod models;
pub mod replay;
pub mod resonance;
pub mod reward;
pub mod search;
pub mod spi;
pub mod tenant;
pub mod vector;

// ---- the SQL, in load order ------------------------------------------------------------------
// bootstrap: the tenant helper and the partition helper the tables below use at install time.
extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/graph.sql", name = "graph", requires = ["bootstrap"]);
// embeddings: the models (register_model) and node_embeddings, partitioned by tenant.
extension_sql_file!(
    "../sql/embeddings.sql",
    name = "embeddings",
    requires = ["graph", models::_node_embeddings_check]
);
extension_sql_file!("../sql/streams.sql", name = "streams", requires = ["graph"]);
extension_sql_file!(
    "../sql/consensus.sql",
    name = "consensus",
    requires = ["graph", "embeddings"]
);
extension_sql_file!(
    "../sql/experience.sql",
    name = "experience",
    requires = ["bootstrap"]
);
extension_sql_file!(
    "../sql/reward_types.sql",
    name = "reward_types",
    requires = ["bootstrap"]
);
extension_sql_file!(
    "../sql/reward.sql",
    name = "reward",
    requires = [
        "experience",
        "reward_types",
        reward::total_reward,
        reward::discounted_return_sfunc,
        reward::discounted_return_ffunc,
        reward::discounted_return_steps_sfunc,
        reward::discounted_return_steps_ffunc,
        reward::discounted_return_steps_combine,
        reward::discounted_return_steps_serial,
        reward::discounted_return_steps_deserial,
        reward::episode_sums_sfunc,
        reward::episode_sums_ffunc,
        reward::episode_sums_combine,
        reward::episode_sums_serial,
        reward::episode_sums_deserial,
        reward::reward_stats_sfunc,
        reward::reward_stats_ffunc,
        reward::reward_stats_combine,
        reward::reward_stats_serial,
        reward::reward_stats_deserial
    ]
);
extension_sql_file!(
    "../sql/experience_api.sql",
    name = "experience_api",
    requires = ["experience", reward::total_reward]
);
// prioritised replay: buffers, their items and sum trees, the triggers that keep them in step
// with the events (src/replay/ has the functions).
extension_sql_file!(
    "../sql/replay.sql",
    name = "replay",
    requires = [
        "experience",
        "reward",
        replay::_replay_entered,
        replay::_replay_remove
    ]
);
extension_sql_file!(
    "../sql/retention.sql",
    name = "retention",
    requires = ["bootstrap"]
);
// archiving and retention: the cold tier of events, archive_old_events, archive_streams,
// stream_history, ensure_partitions, retention policies, run_maintenance.
extension_sql_file!(
    "../sql/archive.sql",
    name = "archive",
    requires = [
        "experience",
        "streams",
        "retention",
        "decay",
        "replay",
        decay::materialize_decay,
        replay::_replay_remove_before
    ]
);
extension_sql_file!(
    "../sql/triggers.sql",
    name = "triggers",
    requires = ["graph", "experience", gucs::notify_enabled]
);
// decay: node_energy, every node's energy read decayed (current_atp), used by the views.
extension_sql_file!(
    "../sql/decay.sql",
    name = "decay",
    requires = ["graph", decay::current_atp]
);
extension_sql_file!(
    "../sql/views.sql",
    name = "views",
    requires = ["graph", "streams", "decay"]
);
// resonance and consensus: search settings and SECURITY DEFINER of the functions in
// src/resonance/ and src/consensus/, and consensus_tree.
extension_sql_file!(
    "../sql/resonance.sql",
    name = "resonance",
    requires = [
        "consensus",
        resonance::find_resonant,
        resonance::find_resonant_by_key,
        resonance::resonance_with,
        resonance::calculate_resonance,
        consensus::crystallize_consensus,
        consensus::_crystallize_consensus
    ]
);
// finalize: row-level security over everything above.
extension_sql_file!("../sql/security.sql", name = "security", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
}

// ---- in-server tests (cargo pgrx test), kept in pgrx-tests/ ----------------------------------
#[cfg(any(test, feature = "pg_test"))]
#[path = "../pgrx-tests/mod.rs"]
mod pgrx_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
