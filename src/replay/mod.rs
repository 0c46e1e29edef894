//! Prioritised experience replay (Schaul et al. 2016) over the experience store, durable and
//! transactional: named buffers (sql/replay.sql), a sum tree kept in `replay_tree`, sampling in
//! O(log N) a draw, priorities written back by learners.
//!
//! The levels: [`input`] checks what callers pass, [`tree`] is the sum tree ([`descend`],
//! [`weights`], [`refresh`] over any [`Blocks`]) and [`pending`] the priorities written back and
//! not folded, all plain Rust tested without a server; [`store`] runs the queries
//! (`sql/queries/replay_*.sql`) and reads and writes the blocks ([`SpiTree`]); [`upkeep`] keeps
//! a buffer's counters and tree in step with its items, [`learn`] samples and takes priorities
//! back; this file is the `#[pg_extern]` layer.

pub mod blocks;
pub mod input;
pub mod items;
pub mod learn;
pub mod pending;
pub mod store;
pub mod tree;
pub mod upkeep;

use pgrx::datum::{Array, Interval};
use pgrx::prelude::*;

use crate::errors::{in_range, one_dimensional_args, required, FractalityError, OrReport};
use crate::spi;

pub use input::MAX_DRAWS;
pub use learn::{sample, Draw};
pub use store::{Buffer, SpiTree};
pub use tree::{
    descend, levels_for, pick, place, points, refresh, total, weights, BlockMap, Blocks,
    OrderedBlocks, FANOUT,
};

use learn::write_back;
use store::buffer;
use upkeep::{fold, fold_all, remove_items};

/// The events (`timestamps`, `event_ids`, in the order written) entering buffer `buffer_id`: its
/// items, counters and tree. Internal (the trigger's).
#[pg_extern(volatile, strict, parallel_unsafe)]
fn _replay_entered(buffer_id: i32, timestamps: Array<'_, i64>, event_ids: Array<'_, &[u8]>) {
    let timestamps: Vec<i64> = timestamps.iter().map(|t| t.unwrap_or(-1)).collect();
    let event_ids: Vec<&[u8]> = event_ids.iter().map(|b| b.unwrap_or(&[])).collect();
    // every query of the replay buffers runs under pg_catalog alone (search::Pinned::path): their
    // range and array operators are polymorphic, which a function or operator planted in a schema
    // of the caller's path could match better
    spi::connect_pinned(|| upkeep::entered(buffer_id, &timestamps, &event_ids)).unwrap_or_report()
}

/// Deleted events leave every buffer. Internal (the delete trigger's).
#[pg_extern(volatile, strict, parallel_unsafe)]
fn _replay_remove(event_ids: Array<'_, &[u8]>, timestamps: Vec<Option<i64>>) {
    let event_ids: Vec<Option<Vec<u8>>> = event_ids.iter().map(|b| b.map(<[u8]>::to_vec)).collect();
    spi::connect_pinned(|| -> Result<(), FractalityError> {
        store::lock_all()?;
        fold_all()?;
        let held = items::held(event_ids, timestamps)?;
        remove_items(held, Vec::new())?;
        Ok(())
    })
    .unwrap_or_report()
}

/// Events older than `cutoff_us` (archived or dropped) leave every buffer; how many items went.
/// Internal (_archive_events_before's and _drop_events_before's).
#[pg_extern(volatile, strict, parallel_unsafe)]
fn _replay_remove_before(cutoff_us: i64) -> i64 {
    spi::connect_pinned(|| -> Result<i64, FractalityError> {
        store::lock_all()?;
        fold_all()?;
        let gone = items::remove_before(cutoff_us)?;
        remove_items(items::older(cutoff_us)?, gone)
    })
    .unwrap_or_report()
}

// ---- SQL: buffers ------------------------------------------------------------------------------

/// Creates a replay buffer: priorities p^`alpha` (0: uniform), importance correction `beta`
/// (used when a sample does not give its own), `epsilon` added to every priority written back,
/// an optional `capacity` (a ring of that many slots: it holds the items of the last `capacity`
/// events that entered, the oldest going first; an event archived or deleted meanwhile leaves its
/// slot empty until the ring comes round to it), and an optional filter (one event
/// type, one policy version: `adna_version_hash`). Events written from now on enter it; with
/// `backfill`, the hot events already stored that pass the filter enter too (the newest
/// `capacity` of them). Returns its id.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)] // the SQL function's parameters
fn create_replay_buffer(
    name: Option<&str>,
    alpha: default!(Option<f64>, 0.6),
    beta: default!(Option<f64>, 0.4),
    epsilon: default!(Option<f64>, 1e-6),
    capacity: default!(Option<i64>, "NULL"),
    event_type: default!(Option<i16>, "NULL"),
    policy_version: default!(Option<i32>, "NULL"),
    backfill: default!(Option<bool>, false),
) -> i32 {
    crate::errors::writer(c"create_replay_buffer");
    let name = required("name", name);
    let alpha = in_range(
        "alpha",
        required("alpha", alpha),
        0.0,
        10.0,
        "alpha is the priority exponent, from 0 (uniform) to 10; 0.6 is usual.",
    )
    .unwrap_or_report();
    let beta = in_range(
        "beta",
        required("beta", beta),
        0.0,
        1.0,
        "beta is the importance-sampling exponent in [0, 1]; 0.4 is usual, annealed to 1.",
    )
    .unwrap_or_report();
    let epsilon = in_range(
        "epsilon",
        required("epsilon", epsilon),
        f64::MIN_POSITIVE,
        0.999,
        "epsilon is a small positive number below 0.999 added to every priority (e.g. 1e-6).",
    )
    .unwrap_or_report();
    // the least priority an item holds is epsilon^alpha: one that underflows makes items of
    // priority 0 impossible to draw (a sample of them comes back empty)
    if epsilon.powf(alpha) < f64::MIN_POSITIVE {
        FractalityError::invalid(
            "epsilon",
            format!(
                "{} with alpha {}: epsilon^alpha underflows to 0",
                crate::errors::pg_float(epsilon),
                crate::errors::pg_float(alpha)
            ),
            "epsilon^alpha is the weight of an item of priority 0 and must stay above 2.2e-308: take a larger epsilon or a smaller alpha.",
        )
        .report();
    }
    let backfill = required("backfill", backfill);
    if name.is_empty() || name.chars().count() > 63 {
        FractalityError::invalid(
            "name",
            format!("'{name}'"),
            "A buffer's name has 1 to 63 characters.",
        )
        .report();
    }
    if let Some(c) = capacity {
        if c <= 0 {
            FractalityError::invalid(
                "capacity",
                c,
                "A capacity is a positive number of items (NULL: no limit).",
            )
            .report();
        }
    }
    spi::connect_pinned(|| -> Result<i32, FractalityError> {
        let id = store::create(
            name,
            alpha,
            beta,
            epsilon,
            capacity,
            event_type,
            policy_version,
        )?
        .ok_or_else(|| FractalityError::BufferExists(name.to_string()))?;
        if backfill {
            upkeep::backfill(id)?;
        }
        Ok(id)
    })
    .unwrap_or_report()
}

/// Rebuilds buffer `buffer_id`'s counters and whole sum tree from its items (items written
/// directly, by a loader or a benchmark). Internal: the owner's.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn _replay_rebuild(buffer_id: i32) -> i64 {
    spi::connect_pinned(|| upkeep::rebuild_from_items(buffer_id)).unwrap_or_report()
}

/// Drops a replay buffer with its items and tree; false when there was none.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn drop_replay_buffer(name: &str) -> bool {
    crate::errors::writer(c"drop_replay_buffer");
    spi::connect_pinned(|| store::drop(name)).unwrap_or_report()
}

// ---- SQL: sampling -----------------------------------------------------------------------------

/// `n` draws with replacement from replay buffer `buffer`: P(i) = p_i^alpha / sum_k p_k^alpha,
/// weights (N P(i))^-beta normalised by their maximum over the draw (`beta` defaults to the
/// buffer's). Reproducible with a `seed` for the same contents and priorities. One block of the
/// sum tree per level a draw: the cost grows with log N.
// VOLATILE, as the 0.4.0 form: a draw without a seed is random, and the session keeps where it
// drew each event (update_priorities looks there first)
#[pg_extern(volatile, parallel_unsafe, name = "sample_experiences")]
#[allow(clippy::type_complexity)] // the table pgrx declares
fn sample_experiences_from(
    buffer: Option<&str>,
    n: Option<i32>,
    beta: default!(Option<f64>, "NULL"),
    seed: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(event_id, Vec<u8>),
        name!(event_timestamp, i64),
        name!(priority, f64),
        name!(probability, f64),
        name!(weight, f64),
    ),
> {
    let buffer = required("buffer", buffer);
    let n = required("n", n);
    let trim = crate::heap::Trim::when(n.max(0) as usize, 10_000);
    let draws = spi::connect_pinned(|| sample(buffer, n, beta, seed)).unwrap_or_report();
    TableIterator::new(crate::heap::rows_then(trim, draws).map(|d| {
        (
            d.event_id,
            d.event_timestamp,
            d.priority,
            d.probability,
            d.weight,
        )
    }))
}

/// The learner's TD errors written back as priorities of the items of `event_ids` in buffer
/// `buffer`: priority = `priorities[i]` (|delta|, >= 0) + the buffer's epsilon; the buffer's
/// largest priority moves up to the largest written. An id the buffer holds no item of (an event
/// that left it since it was drawn: its slot taken by a newer event under a capacity, archived,
/// deleted) is skipped, as Reverb skips it; a NaN or a negative priority, arrays of different
/// lengths write nothing. Returns the items updated.
/// The priorities are appended to `replay_pending` (one row) and folded into the items and the
/// tree in bulk once `fractality.replay_fold_after` were written since the last fold; samples see
/// them at once. An event this session drew is found at the slot it was drawn from; another
/// through the event-id registry (the form with `event_timestamps` skips that).
#[pg_extern(volatile, parallel_unsafe)]
fn update_priorities(
    buffer: Option<&str>,
    event_ids: Option<Array<'_, &[u8]>>,
    priorities: Option<Array<'_, f64>>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> i64 {
    crate::errors::writer(c"update_priorities");
    // SAFETY: the call's own arguments, arrays by the signature
    unsafe { one_dimensional_args(fcinfo, &[(1, "event_ids"), (2, "priorities")]) };
    let _trim = crate::heap::Trim::when(event_ids.as_ref().map_or(0, |a| a.len()), 10_000);
    write_back(buffer, event_ids, priorities, None)
}

/// update_priorities with each event's timestamp as `sample_experiences` returned it: the items
/// are found by (timestamp, buffer) without the registry, whichever session sampled them. An id
/// at a timestamp that is not its event's finds no item, and is skipped.
#[pg_extern(volatile, parallel_unsafe, name = "update_priorities")]
fn update_priorities_at(
    buffer: Option<&str>,
    event_ids: Option<Array<'_, &[u8]>>,
    priorities: Option<Array<'_, f64>>,
    event_timestamps: Option<Array<'_, i64>>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> i64 {
    crate::errors::writer(c"update_priorities");
    // SAFETY: the call's own arguments, arrays by the signature
    unsafe {
        one_dimensional_args(
            fcinfo,
            &[(1, "event_ids"), (2, "priorities"), (3, "event_timestamps")],
        )
    };
    let _trim = crate::heap::Trim::when(event_ids.as_ref().map_or(0, |a| a.len()), 10_000);
    let ts = crate::errors::elements(
        "event_timestamps",
        &required("event_timestamps", event_timestamps),
    );
    write_back(buffer, event_ids, priorities, Some(ts))
}

/// Folds the priorities written back to replay buffer `buffer` and still pending into its items
/// and sum tree now (update_priorities folds them once `fractality.replay_fold_after` were
/// written since the last fold, run_maintenance every buffer's; samples see them either way).
/// Returns the slots folded.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn fold_priorities(buffer: &str) -> i64 {
    crate::errors::writer(c"fold_priorities");
    // the owner calls it too: its queries run under a fixed search path, not the caller's
    spi::connect_pinned(|| -> Result<i64, FractalityError> {
        let mut b = self::buffer(Some(buffer), None, true)?;
        let pending = store::pending(&b)?;
        let n = fold(&mut b, &pending, true)?;
        if n > 0 {
            store::save_counters(&b)?;
        }
        Ok(n as i64)
    })
    .unwrap_or_report()
}

/// A learner's batch in one call: `n` draws from `buffer` (as sample_experiences) joined to each
/// event's state, action, rewards, the next state of its episode (the event of step + 1 within
/// `next_within` after it; NULL at the end of an episode) and its action metadata.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)] // the table pgrx declares
fn replay_batch(
    buffer: Option<&str>,
    n: Option<i32>,
    beta: default!(Option<f64>, "NULL"),
    seed: default!(Option<i64>, "NULL"),
    next_within: default!(Option<Interval>, "'1 hour'"),
) -> TableIterator<
    'static,
    (
        name!(event_id, Vec<u8>),
        name!(event_timestamp, i64),
        name!(episode_id, i64),
        name!(step_number, i32),
        name!(event_type, i16),
        name!(state, Vec<Option<f32>>),
        name!(action, Vec<Option<f32>>),
        name!(reward_homeostasis, f32),
        name!(reward_curiosity, f32),
        name!(reward_efficiency, f32),
        name!(reward_goal, f32),
        name!(total_reward, f32),
        name!(next_state, Option<Vec<Option<f32>>>),
        name!(intent_type, Option<String>),
        name!(executor_id, Option<String>),
        name!(parameters, Option<crate::jsonb::JsonbText>),
        name!(priority, f64),
        name!(probability, f64),
        name!(weight, f64),
    ),
> {
    let buffer = required("buffer", buffer);
    let n = required("n", n);
    let trim = crate::heap::Trim::when(n.max(0) as usize, 10_000);
    let within = required("next_within", next_within);
    if within.as_micros() < 0 {
        FractalityError::invalid(
            "next_within",
            format!("'{}'", crate::errors::pg_interval(&within)),
            "next_within is how long after an event its next step may come, an interval >= 0.",
        )
        .report();
    }
    let within_us = within.as_micros().min(i64::MAX as i128) as i64;
    let rows = spi::connect_pinned(|| -> Result<Vec<_>, FractalityError> {
        let draws = sample(buffer, n, beta, seed)?;
        let ts: Vec<i64> = draws.iter().map(|d| d.event_timestamp).collect();
        let ids: Vec<Vec<u8>> = draws.iter().map(|d| d.event_id.clone()).collect();
        // the query adds the window to each drawn timestamp: no further than the largest bigint
        let latest = ts.iter().copied().max().unwrap_or(0);
        let within_us = within_us.min(i64::MAX.saturating_sub(latest.max(0)));
        let mut by_draw = store::batch(ts, ids, within_us)?;
        Ok(draws
            .into_iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let (ep, step, ty, state, action, r, next, intent, exec, params) =
                    by_draw.remove(&(i + 1))?;
                Some((
                    d.event_id,
                    d.event_timestamp,
                    ep,
                    step,
                    ty,
                    state,
                    action,
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    next,
                    intent,
                    exec,
                    params,
                    d.priority,
                    d.probability,
                    d.weight,
                ))
            })
            .collect())
    })
    .unwrap_or_report();
    TableIterator::new(crate::heap::rows_then(trim, rows))
}
