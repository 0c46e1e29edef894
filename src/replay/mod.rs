//! Prioritised experience replay (Schaul et al. 2016) over the experience store, durable and
//! transactional: named buffers (sql/replay.sql), a sum tree kept in `replay_tree`, sampling in
//! O(log N) a draw, priorities written back by learners.
//!
//! The levels: [`input`] checks what callers pass and [`tree`] is the sum tree ([`descend`],
//! [`weights`], [`refresh`] over any [`Blocks`]), both plain Rust tested without a server;
//! [`store`] runs the queries (`sql/queries/replay_*.sql`) and reads and writes the blocks
//! ([`SpiTree`]); this file is the `#[pg_extern]` layer, with the plumbing that keeps a buffer's
//! counters and tree in step with its items.

pub mod input;
pub mod pending;
pub mod store;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pgrx::datum::{Array, Interval};
use pgrx::prelude::*;

use crate::errors::{in_range, pg_float, required, FractalityError, OrReport};
use crate::spi;

pub use input::MAX_DRAWS;
pub use store::{Buffer, SpiTree};
pub use tree::{
    descend, levels_for, pick, place, points, refresh, total, weights, BlockMap, Blocks,
    OrderedBlocks, FANOUT,
};

use input::check_draws;
use pending::Pending;
use store::buffer;

// ---- keeping the tree in step ------------------------------------------------------------------

/// The tree of `b` over the leaf blocks `blocks` brought up to date, with levels for `slots`.
fn refresh_blocks(
    b: &mut Buffer,
    blocks: BTreeSet<i64>,
    slots: u64,
) -> Result<(), FractalityError> {
    let leaves = store::leaf_values(b, &blocks)?;
    refresh_leaves(b, leaves, slots)
}

/// The tree of `b` with the leaf blocks `leaves` (their entries given) and every block above
/// them brought up to date, with levels for `slots`.
fn refresh_leaves(
    b: &mut Buffer,
    leaves: OrderedBlocks,
    slots: u64,
) -> Result<(), FractalityError> {
    let needed = levels_for(slots).max(b.levels);
    let grew = needed > b.levels;
    let mut tree = SpiTree::new(b.id, false);
    if grew {
        // new levels above the old root: their blocks 0 are filled from their children
        refresh(&mut tree, b.levels, leaves)?;
        for level in b.levels..needed {
            let mut fresh = BTreeMap::new();
            let mut e = vec![0.0; FANOUT];
            for (c, sums) in tree.range(level - 1, 0, FANOUT as i64)? {
                e[c as usize] = sums.iter().sum();
            }
            fresh.insert(0i64, e);
            tree.write(level, &fresh)?;
        }
        b.levels = needed;
    } else {
        refresh(&mut tree, b.levels, leaves)?;
    }
    Ok(())
}

/// The leaf blocks `blocks` as the tree holds them (one entry per slot, p^alpha) with the
/// entries `changed` (slot, p^alpha) set; blocks the tree lacks come from `missing`.
fn leaves_with(
    b: &Buffer,
    blocks: &BTreeSet<i64>,
    changed: impl IntoIterator<Item = (i64, f64)>,
    missing: impl FnOnce(&BTreeSet<i64>) -> Result<OrderedBlocks, FractalityError>,
) -> Result<OrderedBlocks, FractalityError> {
    let ids: Vec<i64> = blocks.iter().copied().collect();
    let mut leaves: OrderedBlocks = SpiTree::new(b.id, false)
        .read(0, &ids)?
        .into_iter()
        .filter(|(_, e)| e.len() == FANOUT)
        .collect();
    let absent: BTreeSet<i64> = blocks
        .iter()
        .filter(|k| !leaves.contains_key(k))
        .copied()
        .collect();
    if !absent.is_empty() {
        leaves.extend(missing(&absent)?);
    }
    for (slot, value) in changed {
        let (block, entry) = place(slot);
        if let Some(entries) = leaves.get_mut(&block) {
            entries[entry] = value;
        }
    }
    Ok(leaves)
}

/// The `pending` priorities of `b` folded into its items and tree (the tree's blocks over them
/// rewritten once each); `written`: they are rows of replay_pending, deleted here.
fn fold(b: &mut Buffer, pending: &Pending, written: bool) -> Result<usize, FractalityError> {
    if pending.is_empty() {
        return Ok(0);
    }
    let (slots, ps): (Vec<i64>, Vec<f64>) = pending.latest_all().unzip();
    store::fold_items(b.id, slots.clone(), ps.clone())?;
    let blocks: BTreeSet<i64> = slots.iter().map(|s| s / FANOUT as i64).collect();
    let alpha = b.alpha;
    let changed = slots.iter().zip(&ps).map(|(s, p)| (*s, p.powf(alpha)));
    let leaves = leaves_with(b, &blocks, changed, |missing| {
        store::leaf_values(b, missing)
    })?;
    let span = b.slots();
    refresh_leaves(b, leaves, span)?;
    if written {
        store::clear_pending(b.id)?;
    }
    b.pending = 0;
    Ok(pending.len())
}

/// Every buffer's pending priorities folded (before items leave them). The buffers are locked.
fn fold_all() -> Result<(), FractalityError> {
    for id in store::pending_buffers()? {
        let mut b = buffer(None, Some(id), true)?;
        let pending = store::pending(&b)?;
        fold(&mut b, &pending, true)?;
        store::save_counters(&b)?;
    }
    Ok(())
}

fn slot_of(b: &Buffer, seq: i64) -> i64 {
    match b.capacity {
        Some(c) => seq % c,
        None => seq,
    }
}

/// After the trigger wrote `k` entries from sequence number `first_seq` (`fresh` of them into
/// empty slots): the counters and the tree. Internal (the trigger's).
#[pg_extern(volatile, strict, parallel_unsafe, name = "_replay_entered")]
fn replay_entered(buffer_id: i32, first_seq: i64, k: i64, fresh: i64) {
    spi::connect(|| -> Result<(), FractalityError> {
        let mut b = buffer(None, Some(buffer_id), true)?;
        let from = match b.capacity {
            Some(c) => first_seq + (k - c).max(0),
            None => first_seq,
        };
        // items overwritten at capacity take their pending priorities with them: fold first
        // (without a capacity every slot written is new, and the pending ones stay as they are)
        if b.capacity.is_some() {
            let pending = store::pending(&b)?;
            if (from..first_seq + k).any(|seq| pending.latest(slot_of(&b, seq)).is_some()) {
                fold(&mut b, &pending, true)?;
            }
        }
        let blocks: BTreeSet<i64> = (from..first_seq + k)
            .map(|s| slot_of(&b, s) / FANOUT as i64)
            .collect();
        b.next_seq = first_seq + k;
        b.size += fresh;
        let slots = b.slots();
        // the slots written hold the buffer's largest priority: their leaf entries are known,
        // the rest of each leaf block is read from the tree (not from the items); a block the
        // tree lacks is new, its other slots empty
        let entry = b.max_priority.powf(b.alpha);
        let written = (from..first_seq + k).map(|seq| (slot_of(&b, seq), entry));
        let leaves = leaves_with(&b, &blocks, written, |missing| {
            Ok(missing.iter().map(|k| (*k, vec![0.0; FANOUT])).collect())
        })?;
        refresh_leaves(&mut b, leaves, slots)?;
        store::save_counters(&b)
    })
    .unwrap_or_report()
}

/// Takes the removed items (buffer, slot) out of their trees.
fn after_removal(removed: Vec<(i32, i64)>) -> Result<(), FractalityError> {
    let mut per_buffer: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for (b, slot) in removed {
        per_buffer
            .entry(b)
            .or_default()
            .insert(slot / FANOUT as i64);
    }
    for (id, blocks) in per_buffer {
        let mut b = buffer(None, Some(id), true)?;
        b.size = store::size(id)?;
        let slots = b.slots();
        refresh_blocks(&mut b, blocks, slots)?;
        store::save_counters(&b)?;
    }
    Ok(())
}

/// Deleted events leave every buffer. Internal (the delete trigger's).
#[pg_extern(volatile, strict, parallel_unsafe, name = "_replay_remove")]
fn replay_remove(event_ids: Array<'_, &[u8]>, timestamps: Vec<Option<i64>>) {
    let event_ids: Vec<Option<Vec<u8>>> = event_ids.iter().map(|b| b.map(<[u8]>::to_vec)).collect();
    spi::connect(|| -> Result<(), FractalityError> {
        store::lock_all()?;
        fold_all()?;
        let removed = store::remove(event_ids, timestamps)?;
        after_removal(removed)
    })
    .unwrap_or_report()
}

/// Events older than `cutoff_us` (archived or dropped) leave every buffer; how many items went.
/// Internal (_archive_events_before's and _drop_events_before's).
#[pg_extern(volatile, strict, parallel_unsafe, name = "_replay_remove_before")]
fn replay_remove_before(cutoff_us: i64) -> i64 {
    spi::connect(|| -> Result<i64, FractalityError> {
        store::lock_all()?;
        fold_all()?;
        let removed = store::remove_before(cutoff_us)?;
        let n = removed.len() as i64;
        after_removal(removed)?;
        Ok(n)
    })
    .unwrap_or_report()
}

// ---- SQL: buffers ------------------------------------------------------------------------------

/// Creates a replay buffer: priorities p^`alpha` (0: uniform), importance correction `beta`
/// (used when a sample does not give its own), `epsilon` added to every priority written back,
/// an optional `capacity` (then the oldest item goes first), and an optional filter (one event
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
        "epsilon is a small positive number added to every priority (e.g. 1e-6).",
    )
    .unwrap_or_report();
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
    spi::connect(|| -> Result<i32, FractalityError> {
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
            let mut b = buffer(None, Some(id), true)?;
            let k = store::backfill(id)?;
            b.next_seq = k;
            b.size = k;
            rebuild(&mut b)?;
            store::save_counters(&b)?;
        }
        Ok(id)
    })
    .unwrap_or_report()
}

/// The whole tree of `b` built from its items (one pass in slot order).
fn rebuild(b: &mut Buffer) -> Result<(), FractalityError> {
    b.levels = levels_for(b.slots());
    let mut leaves: OrderedBlocks = BTreeMap::new();
    let mut cursor = store::all_items(b.id)?;
    loop {
        let rows = cursor.fetch(10_000, |r| r.get::<i64>(1).zip(r.get::<f64>(2)));
        if rows.is_empty() {
            break;
        }
        for (slot, p) in rows.into_iter().flatten() {
            let (block, entry) = place(slot);
            leaves.entry(block).or_insert_with(|| vec![0.0; FANOUT])[entry] = p.powf(b.alpha);
        }
    }
    drop(cursor);
    let mut tree = SpiTree::new(b.id, false);
    let mut level_blocks = leaves;
    for level in 0..b.levels {
        tree.write(level, &level_blocks)?;
        let mut up: OrderedBlocks = BTreeMap::new();
        for (c, sums) in &level_blocks {
            let (block, entry) = place(*c);
            up.entry(block).or_insert_with(|| vec![0.0; FANOUT])[entry] = sums.iter().sum();
        }
        if level + 1 < b.levels && up.is_empty() {
            up.insert(0, vec![0.0; FANOUT]);
        }
        level_blocks = up;
    }
    Ok(())
}

/// Rebuilds buffer `buffer_id`'s counters and whole sum tree from its items (items written
/// directly, by a loader or a benchmark). Internal: the owner's.
#[pg_extern(volatile, strict, parallel_unsafe, name = "_replay_rebuild")]
fn replay_rebuild(buffer_id: i32) -> i64 {
    spi::connect(|| -> Result<i64, FractalityError> {
        let mut b = buffer(None, Some(buffer_id), true)?;
        // the pending priorities into the items the tree is built from
        let pending = store::pending(&b)?;
        if !pending.is_empty() {
            let (slots, ps): (Vec<i64>, Vec<f64>) = pending.latest_all().unzip();
            store::fold_items(buffer_id, slots, ps)?;
            store::clear_pending(buffer_id)?;
        }
        b.pending = 0;
        b.size = store::size(buffer_id)?;
        b.next_seq = b.next_seq.max(b.size);
        store::clear_tree(buffer_id)?;
        rebuild(&mut b)?;
        store::save_counters(&b)?;
        Ok(b.size)
    })
    .unwrap_or_report()
}

/// Drops a replay buffer with its items and tree; false when there was none.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn drop_replay_buffer(name: &str) -> bool {
    crate::errors::writer(c"drop_replay_buffer");
    spi::connect(|| store::drop(name)).unwrap_or_report()
}

// ---- SQL: sampling -----------------------------------------------------------------------------

/// One draw.
#[derive(Clone, Debug)]
pub struct Draw {
    pub slot: i64,
    pub event_timestamp: i64,
    pub event_id: Vec<u8>,
    pub priority: f64,
    pub probability: f64,
    pub weight: f64,
}

/// `n` draws with replacement from buffer `name` (SPI connected).
pub fn sample(
    name: &str,
    n: i32,
    beta: Option<f64>,
    seed: Option<i64>,
) -> Result<Vec<Draw>, FractalityError> {
    let n = check_draws(n)?;
    let b = buffer(Some(name), None, false)?;
    let beta = match beta {
        Some(v) => in_range(
            "beta",
            v,
            0.0,
            1.0,
            "beta is the importance-sampling exponent in [0, 1].",
        )?,
        None => b.beta,
    };
    let mut tree = SpiTree::new(b.id, true);
    // the priorities written back and not folded yet, in the same snapshot as the tree
    store::with_pending_seen(&b, |pending| {
        let total = total(&mut tree, b.levels, pending)?;
        if n == 0 || b.size == 0 || total <= 0.0 {
            return Ok(Vec::new());
        }
        let points = points(n, total, seed);
        let landed = descend(&mut tree, b.levels, &points, pending)?;
        let slots: Vec<i64> = landed.iter().flatten().map(|(s, _)| *s).collect();
        let items = store::items_by_slot(b.id, slots)?;
        let mut draws: Vec<Draw> = landed
            .into_iter()
            .flatten()
            .filter_map(|(slot, w)| {
                let (ts, id, p) = items.get(&slot)?.clone();
                Some(Draw {
                    slot,
                    event_timestamp: ts,
                    event_id: id,
                    priority: pending.latest(slot).unwrap_or(p),
                    probability: w / total,
                    weight: 0.0,
                })
            })
            .collect();
        store::note_drawn(b.id, draws.iter().map(|d| (&d.event_id, d.slot)));
        let probs: Vec<f64> = draws.iter().map(|d| d.probability).collect();
        for (d, w) in draws.iter_mut().zip(weights(&probs, b.size as u64, beta)) {
            d.weight = w;
        }
        Ok(draws)
    })
}

/// `n` draws with replacement from replay buffer `buffer`: P(i) = p_i^alpha / sum_k p_k^alpha,
/// weights (N P(i))^-beta normalised by their maximum over the draw (`beta` defaults to the
/// buffer's). Reproducible with a `seed` for the same contents and priorities. One block of the
/// sum tree per level a draw: the cost grows with log N.
#[pg_extern(stable, parallel_unsafe, name = "sample_experiences")]
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
    let draws = spi::connect(|| sample(buffer, n, beta, seed)).unwrap_or_report();
    TableIterator::new(draws.into_iter().map(|d| {
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
/// largest priority moves up to the largest written. All or nothing: an unknown id, a NaN or a
/// negative priority, arrays of different lengths write nothing. Returns the items updated.
/// The priorities are appended to `replay_pending` (one row) and folded into the items and the
/// tree in bulk once `fractality.replay_fold_after` were written since the last fold; samples see
/// them at once. An event this session drew is found at the slot it was drawn from; another
/// through the event-id registry (the form with `event_timestamps` skips that).
#[pg_extern(volatile, parallel_unsafe)]
fn update_priorities(
    buffer: Option<&str>,
    event_ids: Option<Array<'_, &[u8]>>,
    priorities: Option<Vec<Option<f64>>>,
) -> i64 {
    crate::errors::writer(c"update_priorities");
    write_back(buffer, event_ids, priorities, None)
}

/// update_priorities with each event's timestamp as `sample_experiences` returned it: the items
/// are found by (timestamp, buffer) without the registry, whichever session sampled them. A
/// timestamp that is not its event's finds no item (an error, nothing written).
#[pg_extern(volatile, parallel_unsafe, name = "update_priorities")]
fn update_priorities_at(
    buffer: Option<&str>,
    event_ids: Option<Array<'_, &[u8]>>,
    priorities: Option<Vec<Option<f64>>>,
    event_timestamps: Option<Vec<Option<i64>>>,
) -> i64 {
    crate::errors::writer(c"update_priorities");
    let ts = required("event_timestamps", event_timestamps);
    write_back(buffer, event_ids, priorities, Some(ts))
}

/// update_priorities' body: `timestamps`, when given, one per id.
fn write_back(
    buffer: Option<&str>,
    event_ids: Option<Array<'_, &[u8]>>,
    priorities: Option<Vec<Option<f64>>>,
    timestamps: Option<Vec<Option<i64>>>,
) -> i64 {
    let name = required("buffer", buffer);
    let ids: Vec<Option<Vec<u8>>> = required("event_ids", event_ids)
        .iter()
        .map(|b| b.map(<[u8]>::to_vec))
        .collect();
    let ps = required("priorities", priorities);
    let one_per_id = |name, n: usize, what: &str, hint| {
        if n != ids.len() {
            FractalityError::invalid(
                name,
                format!("{n} {what} for {} event ids", ids.len()),
                hint,
            )
            .report();
        }
    };
    one_per_id(
        "priorities",
        ps.len(),
        "priorities",
        "Pass one priority (|TD error|) per event id.",
    );
    if let Some(ts) = &timestamps {
        one_per_id(
            "event_timestamps",
            ts.len(),
            "timestamps",
            "Pass each event's timestamp as sample_experiences returned it, one per event id.",
        );
    }
    // each id's priority and, with timestamps, its timestamp (the last given for an id counts)
    let mut pairs: Vec<(Vec<u8>, f64)> = Vec::with_capacity(ids.len());
    let mut at: HashMap<Vec<u8>, i64> = HashMap::new();
    for (i, (id, p)) in ids.into_iter().zip(ps).enumerate() {
        let id = required("an element of event_ids", id);
        let p = required("an element of priorities", p);
        if !p.is_finite() || p < 0.0 {
            FractalityError::invalid(
                "priority",
                format!("{} at position {}", pg_float(p), i + 1),
                "A priority is a finite |TD error| >= 0 (the buffer adds its epsilon).",
            )
            .report();
        }
        if let Some(ts) = &timestamps {
            at.insert(
                id.clone(),
                required("an element of event_timestamps", ts[i]),
            );
        }
        pairs.push((id, p));
    }
    spi::connect(|| -> Result<i64, FractalityError> {
        let mut b = self::buffer(Some(name), None, true)?;
        // the last priority given for an id counts
        let mut by_id: HashMap<Vec<u8>, f64> = HashMap::new();
        for (id, p) in &pairs {
            by_id.insert(id.clone(), p + b.epsilon);
        }
        // the items of the ids; an id not among them is not in the buffer: nothing is written
        let mut found = if timestamps.is_some() {
            store::find_at(b.id, by_id.keys().map(|id| (id.clone(), at[id])).collect())?
        } else {
            store::find(b.id, by_id.keys().cloned().collect())?
        };
        let known: BTreeSet<&Vec<u8>> = found.iter().map(|f| &f.0).collect();
        let unknown: Vec<String> = pairs
            .iter()
            .filter(|p| !known.contains(&p.0))
            .take(5)
            .map(|p| crate::experience::hex(&p.0))
            .collect();
        if !unknown.is_empty() {
            return Err(FractalityError::NotInBuffer {
                buffer: b.name.clone(),
                ids: unknown.join(", "),
            });
        }
        b.max_priority = by_id.values().copied().fold(b.max_priority, f64::max);
        // one row appended: the slots (in order), the priority the tree holds for each, the new
        // one; folded into the items and the tree once fold_after have been written since the
        // last fold (the pending rows are read then, not now)
        found.sort_unstable_by_key(|f| f.1);
        let mut write: pending::Write = Default::default();
        for (id, slot, stored) in &found {
            write.0.push(*slot);
            write.1.push(*stored);
            write.2.push(by_id[id]);
        }
        if (b.pending + found.len() as i64) as u64 >= crate::gucs::replay_fold_after() as u64 {
            let mut writes = store::pending_writes(&b)?;
            let earlier = !writes.is_empty();
            writes.push(write);
            let all = Pending::from_writes(b.alpha, writes);
            fold(&mut b, &all, earlier)?;
        } else if !found.is_empty() {
            b.pending += found.len() as i64;
            store::write_pending(b.id, write)?;
        }
        store::save_counters(&b)?;
        Ok(found.len() as i64)
    })
    .unwrap_or_report()
}

/// Folds the priorities written back to replay buffer `buffer` and still pending into its items
/// and sum tree now (update_priorities folds them once `fractality.replay_fold_after` were
/// written since the last fold, run_maintenance every buffer's; samples see them either way).
/// Returns the slots folded.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn fold_priorities(buffer: &str) -> i64 {
    crate::errors::writer(c"fold_priorities");
    spi::connect(|| -> Result<i64, FractalityError> {
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
#[pg_extern(stable, parallel_unsafe)]
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
        name!(parameters, Option<pgrx::JsonB>),
        name!(priority, f64),
        name!(probability, f64),
        name!(weight, f64),
    ),
> {
    let buffer = required("buffer", buffer);
    let n = required("n", n);
    let within = required("next_within", next_within);
    if within.as_micros() < 0 {
        FractalityError::invalid(
            "next_within",
            format!(
                "{} months {} days {} us",
                within.months(),
                within.days(),
                within.micros()
            ),
            "next_within is how long after an event its next step may come, an interval >= 0.",
        )
        .report();
    }
    let within_us = within.as_micros().min(i64::MAX as i128) as i64;
    let rows = spi::connect(|| -> Result<Vec<_>, FractalityError> {
        let draws = sample(buffer, n, beta, seed)?;
        let ts: Vec<i64> = draws.iter().map(|d| d.event_timestamp).collect();
        let ids: Vec<Vec<u8>> = draws.iter().map(|d| d.event_id.clone()).collect();
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
    TableIterator::new(rows)
}
