//! Prioritised experience replay (Schaul et al. 2016) over the experience store, durable and
//! transactional: named buffers (sql/replay.sql), a sum tree kept in `replay_tree`, sampling in
//! O(log N) a draw, priorities written back by learners.
//!
//! The tree: slot `s` of a buffer holds one item; level 0 block `s / FANOUT` holds `p^alpha` of
//! its slots (0 for an empty slot), block `b` of level `l + 1` holds the sums of blocks
//! `b * FANOUT ..` of level `l`; the root is block 0 of the top level. A parent's entries are
//! always recomputed from its children's sums (never adjusted by differences), so the tree does
//! not drift from its items. [`descend`] and [`weights`] are the pure math; [`SpiTree`] reads
//! and writes the blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pgrx::datum::{Array, Interval};
use pgrx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::errors::{finite, pg_float, FractalityError, OrReport};
use crate::spi::{self, Cursor, Query};

/// Partial sums per block (1 KB of float8: stored inline, never toasted).
pub const FANOUT: usize = 128;
/// The most draws one call takes.
pub const MAX_DRAWS: i32 = 1_000_000;

// ---- pure math ---------------------------------------------------------------------------------

/// Levels a tree over `slots` slots needs: the fewest with FANOUT^levels >= slots, at least 1.
pub fn levels_for(slots: u64) -> u16 {
    let mut levels = 1u16;
    let mut span = FANOUT as u64;
    while span < slots {
        span = span.saturating_mul(FANOUT as u64);
        levels += 1;
    }
    levels
}

/// Within one block's entries, the child a point `u` (0 <= u < sum) falls into and what is left
/// of `u` inside it. A child of weight 0 is never chosen: where rounding puts `u` at or past the
/// end, the last child of positive weight is.
pub fn pick(entries: &[f64], u: f64) -> Option<(usize, f64)> {
    let mut left = u;
    let mut last = None;
    for (j, &w) in entries.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        if left < w {
            return Some((j, left.max(0.0)));
        }
        left -= w;
        last = Some((j, w));
    }
    last.map(|(j, w)| (j, w * (1.0 - f64::EPSILON)))
}

/// Importance weights `(N P(i))^-beta`, normalised by their maximum over the draw.
pub fn weights(probabilities: &[f64], n_items: u64, beta: f64) -> Vec<f64> {
    let raw: Vec<f64> = probabilities
        .iter()
        .map(|p| (n_items as f64 * p).powf(-beta))
        .collect();
    let max = raw.iter().copied().fold(0.0, f64::max);
    if max > 0.0 && max.is_finite() {
        raw.iter().map(|w| w / max).collect()
    } else {
        vec![1.0; raw.len()]
    }
}

/// The blocks of one buffer's tree, as the sampler and the updater see them.
pub trait Blocks {
    /// Blocks of `level` (absent ones are missing from the answer).
    fn read(
        &mut self,
        level: u16,
        blocks: &[i64],
    ) -> Result<HashMap<i64, Vec<f64>>, FractalityError>;
    /// Writes blocks of `level`.
    fn write(
        &mut self,
        level: u16,
        blocks: &BTreeMap<i64, Vec<f64>>,
    ) -> Result<(), FractalityError>;
    /// Every block of `level` whose number lies in [lo, hi).
    fn range(
        &mut self,
        level: u16,
        lo: i64,
        hi: i64,
    ) -> Result<HashMap<i64, Vec<f64>>, FractalityError>;
}

/// The sum of the whole tree (the root's entries).
pub fn total(tree: &mut impl Blocks, levels: u16) -> Result<f64, FractalityError> {
    Ok(tree
        .read(levels - 1, &[0])?
        .get(&0)
        .map_or(0.0, |r| r.iter().sum()))
}

/// The slot each of `points` (each in [0, total)) falls on, with the slot's weight: one pass down
/// the tree, reading the blocks all points need at a level in one read.
pub fn descend(
    tree: &mut impl Blocks,
    levels: u16,
    points: &[f64],
) -> Result<Vec<Option<(i64, f64)>>, FractalityError> {
    // (block at the current level, what is left of the point inside it) per point
    let mut at: Vec<Option<(i64, f64)>> = points.iter().map(|u| Some((0i64, *u))).collect();
    for level in (0..levels).rev() {
        let mut need: Vec<i64> = at.iter().flatten().map(|(b, _)| *b).collect();
        need.sort_unstable();
        need.dedup();
        let blocks = tree.read(level, &need)?;
        for slot in at.iter_mut() {
            let Some((b, u)) = *slot else { continue };
            *slot = blocks
                .get(&b)
                .and_then(|entries| pick(entries, u))
                .map(|(j, left)| {
                    let child = b * FANOUT as i64 + j as i64;
                    if level == 0 {
                        (child, blocks[&b][j])
                    } else {
                        (child, left)
                    }
                });
        }
    }
    Ok(at)
}

/// Rewrites the leaf blocks `leaves` (their values given) and every block above them: each
/// parent's entry for a changed child is the child's new sum; a parent that did not exist yet is
/// filled from all of its children.
pub fn refresh(
    tree: &mut impl Blocks,
    levels: u16,
    leaves: BTreeMap<i64, Vec<f64>>,
) -> Result<(), FractalityError> {
    let mut changed = leaves;
    for level in 0..levels {
        tree.write(level, &changed)?;
        if level + 1 == levels {
            break;
        }
        let parents: BTreeSet<i64> = changed.keys().map(|b| b / FANOUT as i64).collect();
        let ids: Vec<i64> = parents.iter().copied().collect();
        let mut existing = tree.read(level + 1, &ids)?;
        let mut next: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for p in parents {
            let entries = match existing.remove(&p) {
                Some(e) => e,
                None => {
                    // a new parent: every child's sum
                    let lo = p * FANOUT as i64;
                    let mut e = vec![0.0; FANOUT];
                    for (c, sums) in tree.range(level, lo, lo + FANOUT as i64)? {
                        e[(c - lo) as usize] = sums.iter().sum();
                    }
                    e
                }
            };
            next.insert(p, entries);
        }
        for (c, sums) in &changed {
            let p = c / FANOUT as i64;
            next.get_mut(&p).expect("parent read")[(c % FANOUT as i64) as usize] =
                sums.iter().sum();
        }
        changed = next;
    }
    Ok(())
}

// ---- the tree in replay_tree -------------------------------------------------------------------

const TREE_READ: &str = include_str!("../sql/queries/replay_tree_read.sql");
const TREE_RANGE: &str = include_str!("../sql/queries/replay_tree_range.sql");
const TREE_WRITE: &str = include_str!("../sql/queries/replay_tree_write.sql");
const LEAVES: &str = include_str!("../sql/queries/replay_leaves.sql");
const BUFFER: &str = include_str!("../sql/queries/replay_buffer.sql");
const ENTERED: &str = include_str!("../sql/queries/replay_entered.sql");
const REMOVE: &str = include_str!("../sql/queries/replay_remove.sql");
const REMOVE_BEFORE: &str = include_str!("../sql/queries/replay_remove_before.sql");
const SIZE: &str = include_str!("../sql/queries/replay_size.sql");
const ITEMS_BY_SLOT: &str = include_str!("../sql/queries/replay_items_by_slot.sql");
const ITEMS_BY_EVENT: &str = include_str!("../sql/queries/replay_items_by_event.sql");
const SET_PRIORITIES: &str = include_str!("../sql/queries/replay_set_priorities.sql");
const CREATE: &str = include_str!("../sql/queries/replay_create.sql");
const BACKFILL: &str = include_str!("../sql/queries/replay_backfill.sql");
const ALL_ITEMS: &str = include_str!("../sql/queries/replay_all_items.sql");
const BATCH: &str = include_str!("../sql/queries/replay_batch.sql");
const LOCK_ALL: &str = include_str!("../sql/queries/replay_lock_all.sql");

/// Every buffer locked (before items leave them).
fn lock_all() -> Result<(), FractalityError> {
    spi::run(
        &Query {
            name: "replay_lock_all",
            text: LOCK_ALL,
            types: &[],
        },
        &[],
    )?;
    Ok(())
}

/// One buffer's tree through SPI (`read_only` for samplers).
pub struct SpiTree {
    buffer: i32,
    read_only: bool,
}

impl Blocks for SpiTree {
    fn read(
        &mut self,
        level: u16,
        blocks: &[i64],
    ) -> Result<HashMap<i64, Vec<f64>>, FractalityError> {
        if blocks.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(spi::rows(
            &Query {
                name: "replay_tree_read",
                text: TREE_READ,
                types: &[pg_sys::INT4OID, pg_sys::INT2OID, pg_sys::INT8ARRAYOID],
            },
            &[
                self.buffer.into(),
                (level as i16).into(),
                blocks.to_vec().into(),
            ],
            self.read_only,
            |r| Some((r.get::<i64>(1)?, r.get::<Vec<f64>>(2)?)),
        )?
        .into_iter()
        .flatten()
        .collect())
    }

    fn range(
        &mut self,
        level: u16,
        lo: i64,
        hi: i64,
    ) -> Result<HashMap<i64, Vec<f64>>, FractalityError> {
        Ok(spi::rows(
            &Query {
                name: "replay_tree_range",
                text: TREE_RANGE,
                types: &[
                    pg_sys::INT4OID,
                    pg_sys::INT2OID,
                    pg_sys::INT8OID,
                    pg_sys::INT8OID,
                ],
            },
            &[
                self.buffer.into(),
                (level as i16).into(),
                lo.into(),
                hi.into(),
            ],
            self.read_only,
            |r| Some((r.get::<i64>(1)?, r.get::<Vec<f64>>(2)?)),
        )?
        .into_iter()
        .flatten()
        .collect())
    }

    fn write(
        &mut self,
        level: u16,
        blocks: &BTreeMap<i64, Vec<f64>>,
    ) -> Result<(), FractalityError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = blocks.keys().copied().collect();
        let flat: Vec<f64> = blocks.values().flat_map(|v| v.iter().copied()).collect();
        spi::run(
            &Query {
                name: "replay_tree_write",
                text: TREE_WRITE,
                types: &[
                    pg_sys::INT4OID,
                    pg_sys::INT2OID,
                    pg_sys::INT8ARRAYOID,
                    pg_sys::FLOAT8ARRAYOID,
                    pg_sys::INT4OID,
                ],
            },
            &[
                self.buffer.into(),
                (level as i16).into(),
                ids.into(),
                flat.into(),
                (FANOUT as i32).into(),
            ],
        )?;
        Ok(())
    }
}

/// A buffer's settings and counters.
#[derive(Clone, Debug)]
pub struct Buffer {
    pub id: i32,
    pub name: String,
    pub alpha: f64,
    pub beta: f64,
    pub epsilon: f64,
    pub capacity: Option<i64>,
    pub max_priority: f64,
    pub next_seq: i64,
    pub size: i64,
    pub levels: u16,
}

impl Buffer {
    /// The slots the tree must span.
    fn slots(&self) -> u64 {
        match self.capacity {
            Some(c) => c as u64,
            None => self.next_seq.max(1) as u64,
        }
    }
}

/// The buffer `name` (or of id `id`), locked for the transaction when `lock`.
fn buffer(name: Option<&str>, id: Option<i32>, lock: bool) -> Result<Buffer, FractalityError> {
    let text = if lock {
        format!("{BUFFER} FOR UPDATE")
    } else {
        BUFFER.to_string()
    };
    spi::rows(
        &Query {
            name: "replay_buffer",
            text: &text,
            types: &[pg_sys::TEXTOID, pg_sys::INT4OID],
        },
        &[name.into(), id.into()],
        !lock,
        |r| {
            Some(Buffer {
                id: r.get(1)?,
                name: r.get(2)?,
                alpha: r.get(3)?,
                beta: r.get(4)?,
                epsilon: r.get(5)?,
                capacity: r.get(6),
                max_priority: r.get(7)?,
                next_seq: r.get(8)?,
                size: r.get(9)?,
                levels: r.get::<i16>(10)? as u16,
            })
        },
    )?
    .into_iter()
    .flatten()
    .next()
    .ok_or_else(|| {
        FractalityError::invalid(
            "buffer",
            format!("'{}'", name.unwrap_or("")),
            "No replay buffer of that name: create it with fractality.create_replay_buffer(name, ...); fractality.replay_buffers lists them.",
        )
    })
}

/// p^alpha of the items of leaf blocks `blocks`, as the leaves of the tree.
fn leaf_values(
    b: &Buffer,
    blocks: &BTreeSet<i64>,
) -> Result<BTreeMap<i64, Vec<f64>>, FractalityError> {
    let mut out: BTreeMap<i64, Vec<f64>> = blocks.iter().map(|k| (*k, vec![0.0; FANOUT])).collect();
    if blocks.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = blocks.iter().copied().collect();
    for (slot, p) in spi::rows(
        &Query {
            name: "replay_leaves",
            text: LEAVES,
            types: &[pg_sys::INT4OID, pg_sys::INT8ARRAYOID, pg_sys::INT4OID],
        },
        &[b.id.into(), ids.into(), (FANOUT as i32).into()],
        false,
        |r| r.get::<i64>(1).zip(r.get::<f64>(2)),
    )?
    .into_iter()
    .flatten()
    {
        if let Some(v) = out.get_mut(&(slot / FANOUT as i64)) {
            v[(slot % FANOUT as i64) as usize] = p.powf(b.alpha);
        }
    }
    Ok(out)
}

/// The tree of `b` over the leaf blocks `blocks` brought up to date, with levels for `slots`.
fn refresh_blocks(
    b: &mut Buffer,
    blocks: BTreeSet<i64>,
    slots: u64,
) -> Result<(), FractalityError> {
    let needed = levels_for(slots).max(b.levels);
    let grew = needed > b.levels;
    let mut tree = SpiTree {
        buffer: b.id,
        read_only: false,
    };
    let leaves = leaf_values(b, &blocks)?;
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
        let blocks: BTreeSet<i64> = (from..first_seq + k)
            .map(|s| slot_of(&b, s) / FANOUT as i64)
            .collect();
        b.next_seq = first_seq + k;
        b.size += fresh;
        let slots = b.slots();
        refresh_blocks(&mut b, blocks, slots)?;
        save_counters(&b)
    })
    .unwrap_or_report()
}

fn save_counters(b: &Buffer) -> Result<(), FractalityError> {
    spi::run(
        &Query {
            name: "replay_entered",
            text: ENTERED,
            types: &[
                pg_sys::INT4OID,
                pg_sys::INT8OID,
                pg_sys::INT8OID,
                pg_sys::INT2OID,
                pg_sys::FLOAT8OID,
            ],
        },
        &[
            b.id.into(),
            b.next_seq.into(),
            b.size.into(),
            (b.levels as i16).into(),
            b.max_priority.into(),
        ],
    )?;
    Ok(())
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
        b.size = spi::one::<i64>(
            &Query {
                name: "replay_size",
                text: SIZE,
                types: &[pg_sys::INT4OID],
            },
            &[id.into()],
            false,
        )?
        .unwrap_or(0);
        let slots = b.slots();
        refresh_blocks(&mut b, blocks, slots)?;
        save_counters(&b)?;
    }
    Ok(())
}

/// Deleted events leave every buffer. Internal (the delete trigger's).
#[pg_extern(volatile, strict, parallel_unsafe, name = "_replay_remove")]
fn replay_remove(event_ids: Array<'_, &[u8]>, timestamps: Vec<Option<i64>>) {
    let event_ids: Vec<Option<Vec<u8>>> = event_ids.iter().map(|b| b.map(<[u8]>::to_vec)).collect();
    spi::connect(|| -> Result<(), FractalityError> {
        lock_all()?;
        let removed = spi::rows(
            &Query {
                name: "replay_remove",
                text: REMOVE,
                types: &[pg_sys::BYTEAARRAYOID, pg_sys::INT8ARRAYOID],
            },
            &[event_ids.into(), timestamps.into()],
            false,
            |r| r.get::<i32>(1).zip(r.get::<i64>(2)),
        )?;
        after_removal(removed.into_iter().flatten().collect())
    })
    .unwrap_or_report()
}

/// Events older than `cutoff_us` (archived or dropped) leave every buffer; how many items went.
/// Internal (archive_events_before's and drop_events_before's).
#[pg_extern(volatile, strict, parallel_unsafe, name = "_replay_remove_before")]
fn replay_remove_before(cutoff_us: i64) -> i64 {
    spi::connect(|| -> Result<i64, FractalityError> {
        lock_all()?;
        let removed: Vec<(i32, i64)> = spi::rows(
            &Query {
                name: "replay_remove_before",
                text: REMOVE_BEFORE,
                types: &[pg_sys::INT8OID],
            },
            &[cutoff_us.into()],
            false,
            |r| r.get::<i32>(1).zip(r.get::<i64>(2)),
        )?
        .into_iter()
        .flatten()
        .collect();
        let n = removed.len() as i64;
        after_removal(removed)?;
        Ok(n)
    })
    .unwrap_or_report()
}

// ---- SQL: buffers ------------------------------------------------------------------------------

fn check_unit_interval(
    name: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
    hint: &'static str,
) -> Result<f64, FractalityError> {
    let v = finite(name, v)?;
    if v < lo || v > hi {
        return Err(FractalityError::invalid(name, pg_float(v), hint));
    }
    Ok(v)
}

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
    let need = |name: &'static str| FractalityError::NullNotAllowed(name);
    let name = name.ok_or(need("name")).unwrap_or_report();
    let alpha = check_unit_interval(
        "alpha",
        alpha.ok_or(need("alpha")).unwrap_or_report(),
        0.0,
        10.0,
        "alpha is the priority exponent, from 0 (uniform) to 10; 0.6 is usual.",
    )
    .unwrap_or_report();
    let beta = check_unit_interval(
        "beta",
        beta.ok_or(need("beta")).unwrap_or_report(),
        0.0,
        1.0,
        "beta is the importance-sampling exponent in [0, 1]; 0.4 is usual, annealed to 1.",
    )
    .unwrap_or_report();
    let epsilon = check_unit_interval(
        "epsilon",
        epsilon.ok_or(need("epsilon")).unwrap_or_report(),
        f64::MIN_POSITIVE,
        0.999,
        "epsilon is a small positive number added to every priority (e.g. 1e-6).",
    )
    .unwrap_or_report();
    let backfill = backfill.ok_or(need("backfill")).unwrap_or_report();
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
        let id = spi::one::<i32>(
            &Query {
                name: "replay_create",
                text: CREATE,
                types: &[
                    pg_sys::TEXTOID,
                    pg_sys::FLOAT8OID,
                    pg_sys::FLOAT8OID,
                    pg_sys::FLOAT8OID,
                    pg_sys::INT8OID,
                    pg_sys::INT2OID,
                    pg_sys::INT4OID,
                ],
            },
            &[
                name.into(),
                alpha.into(),
                beta.into(),
                epsilon.into(),
                capacity.into(),
                event_type.into(),
                policy_version.into(),
            ],
            false,
        )?
        .ok_or_else(|| FractalityError::BufferExists(name.to_string()))?;
        if backfill {
            let mut b = buffer(None, Some(id), true)?;
            let k = spi::one::<i64>(
                &Query {
                    name: "replay_backfill",
                    text: BACKFILL,
                    types: &[pg_sys::INT4OID],
                },
                &[id.into()],
                false,
            )?
            .unwrap_or(0);
            b.next_seq = k;
            b.size = k;
            rebuild(&mut b)?;
            save_counters(&b)?;
        }
        Ok(id)
    })
    .unwrap_or_report()
}

/// The whole tree of `b` built from its items (one pass in slot order).
fn rebuild(b: &mut Buffer) -> Result<(), FractalityError> {
    b.levels = levels_for(b.slots());
    let mut leaves: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let mut cursor = Cursor::open(
        &Query {
            name: "replay_all_items",
            text: ALL_ITEMS,
            types: &[pg_sys::INT4OID],
        },
        &[b.id.into()],
        false,
    )?;
    loop {
        let rows = cursor.fetch(10_000, |r| r.get::<i64>(1).zip(r.get::<f64>(2)));
        if rows.is_empty() {
            break;
        }
        for (slot, p) in rows.into_iter().flatten() {
            leaves
                .entry(slot / FANOUT as i64)
                .or_insert_with(|| vec![0.0; FANOUT])[(slot % FANOUT as i64) as usize] =
                p.powf(b.alpha);
        }
    }
    drop(cursor);
    let mut tree = SpiTree {
        buffer: b.id,
        read_only: false,
    };
    let mut level_blocks = leaves;
    for level in 0..b.levels {
        tree.write(level, &level_blocks)?;
        let mut up: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for (c, sums) in &level_blocks {
            up.entry(c / FANOUT as i64)
                .or_insert_with(|| vec![0.0; FANOUT])[(c % FANOUT as i64) as usize] =
                sums.iter().sum();
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
        b.size = spi::one::<i64>(
            &Query {
                name: "replay_size",
                text: SIZE,
                types: &[pg_sys::INT4OID],
            },
            &[buffer_id.into()],
            false,
        )?
        .unwrap_or(0);
        b.next_seq = b.next_seq.max(b.size);
        spi::run(
            &Query {
                name: "replay_tree_clear",
                text: "DELETE FROM fractality.replay_tree WHERE buffer_id = $1",
                types: &[pg_sys::INT4OID],
            },
            &[buffer_id.into()],
        )?;
        rebuild(&mut b)?;
        save_counters(&b)?;
        Ok(b.size)
    })
    .unwrap_or_report()
}

/// Drops a replay buffer with its items and tree; false when there was none.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn drop_replay_buffer(name: &str) -> bool {
    crate::errors::writer(c"drop_replay_buffer");
    spi::connect(|| {
        spi::run(
            &Query {
                name: "replay_drop",
                text: "DELETE FROM fractality.replay_buffers WHERE name = $1",
                types: &[pg_sys::TEXTOID],
            },
            &[name.into()],
        )
    })
    .unwrap_or_report()
        > 0
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

fn check_draws(n: i32) -> Result<usize, FractalityError> {
    if !(0..=MAX_DRAWS).contains(&n) {
        return Err(FractalityError::invalid(
            "n",
            n,
            "The number of draws n is from 0 to 1000000 (draw larger samples in several calls).",
        ));
    }
    Ok(n as usize)
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
        Some(v) => check_unit_interval(
            "beta",
            v,
            0.0,
            1.0,
            "beta is the importance-sampling exponent in [0, 1].",
        )?,
        None => b.beta,
    };
    let mut tree = SpiTree {
        buffer: b.id,
        read_only: true,
    };
    let total = total(&mut tree, b.levels)?;
    if n == 0 || b.size == 0 || total <= 0.0 {
        return Ok(Vec::new());
    }
    let mut rng = match seed {
        Some(s) => StdRng::seed_from_u64(s as u64),
        None => StdRng::from_rng(&mut rand::rng()),
    };
    let points: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * total).collect();
    let landed = descend(&mut tree, b.levels, &points)?;
    let slots: Vec<i64> = landed.iter().flatten().map(|(s, _)| *s).collect();
    let items: HashMap<i64, (i64, Vec<u8>, f64)> = spi::rows(
        &Query {
            name: "replay_items_by_slot",
            text: ITEMS_BY_SLOT,
            types: &[pg_sys::INT4OID, pg_sys::INT8ARRAYOID],
        },
        &[b.id.into(), slots.into()],
        true,
        |r| {
            Some((
                r.get::<i64>(1)?,
                (r.get::<i64>(2)?, r.get::<Vec<u8>>(3)?, r.get::<f64>(4)?),
            ))
        },
    )?
    .into_iter()
    .flatten()
    .collect();
    let mut draws: Vec<Draw> = landed
        .into_iter()
        .flatten()
        .filter_map(|(slot, w)| {
            let (ts, id, p) = items.get(&slot)?.clone();
            Some(Draw {
                slot,
                event_timestamp: ts,
                event_id: id,
                priority: p,
                probability: w / total,
                weight: 0.0,
            })
        })
        .collect();
    let probs: Vec<f64> = draws.iter().map(|d| d.probability).collect();
    for (d, w) in draws.iter_mut().zip(weights(&probs, b.size as u64, beta)) {
        d.weight = w;
    }
    Ok(draws)
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
    let buffer = buffer
        .ok_or(FractalityError::NullNotAllowed("buffer"))
        .unwrap_or_report();
    let n = n
        .ok_or(FractalityError::NullNotAllowed("n"))
        .unwrap_or_report();
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
#[pg_extern(volatile, parallel_unsafe)]
fn update_priorities(
    buffer: Option<&str>,
    event_ids: Option<Array<'_, &[u8]>>,
    priorities: Option<Vec<Option<f64>>>,
) -> i64 {
    crate::errors::writer(c"update_priorities");
    let need = |name: &'static str| FractalityError::NullNotAllowed(name);
    let name = buffer.ok_or(need("buffer")).unwrap_or_report();
    let ids: Vec<Option<Vec<u8>>> = event_ids
        .ok_or(need("event_ids"))
        .unwrap_or_report()
        .iter()
        .map(|b| b.map(<[u8]>::to_vec))
        .collect();
    let ps = priorities.ok_or(need("priorities")).unwrap_or_report();
    if ids.len() != ps.len() {
        FractalityError::invalid(
            "priorities",
            format!("{} priorities for {} event ids", ps.len(), ids.len()),
            "Pass one priority (|TD error|) per event id.",
        )
        .report();
    }
    let mut pairs: Vec<(Vec<u8>, f64)> = Vec::with_capacity(ids.len());
    for (i, (id, p)) in ids.into_iter().zip(ps).enumerate() {
        let id = id.ok_or(need("an element of event_ids")).unwrap_or_report();
        let p = p.ok_or(need("an element of priorities")).unwrap_or_report();
        if !p.is_finite() || p < 0.0 {
            FractalityError::invalid(
                "priority",
                format!("{} at position {}", pg_float(p), i + 1),
                "A priority is a finite |TD error| >= 0 (the buffer adds its epsilon).",
            )
            .report();
        }
        pairs.push((id, p));
    }
    spi::connect(|| -> Result<i64, FractalityError> {
        let mut b = self::buffer(Some(name), None, true)?;
        let ids: Vec<Vec<u8>> = pairs.iter().map(|p| p.0.clone()).collect();
        let found: Vec<(Vec<u8>, i64)> = spi::rows(
            &Query {
                name: "replay_items_by_event",
                text: ITEMS_BY_EVENT,
                types: &[pg_sys::INT4OID, pg_sys::BYTEAARRAYOID],
            },
            &[b.id.into(), ids.into()],
            false,
            |r| r.get::<Vec<u8>>(1).zip(r.get::<i64>(2)),
        )?
        .into_iter()
        .flatten()
        .collect();
        let known: BTreeSet<&Vec<u8>> = found.iter().map(|f| &f.0).collect();
        let unknown: Vec<String> = pairs
            .iter()
            .filter(|p| !known.contains(&p.0))
            .take(5)
            .map(|p| format!("\\x{}", hex(&p.0)))
            .collect();
        if !unknown.is_empty() {
            return Err(FractalityError::NotInBuffer {
                buffer: b.name.clone(),
                ids: unknown.join(", "),
            });
        }
        // the last priority given for an id counts
        let mut by_id: HashMap<Vec<u8>, f64> = HashMap::new();
        for (id, p) in &pairs {
            by_id.insert(id.clone(), p + b.epsilon);
        }
        let (set_ids, set_ps): (Vec<Vec<u8>>, Vec<f64>) = by_id.into_iter().unzip();
        let updated = spi::run(
            &Query {
                name: "replay_set_priorities",
                text: SET_PRIORITIES,
                types: &[
                    pg_sys::INT4OID,
                    pg_sys::BYTEAARRAYOID,
                    pg_sys::FLOAT8ARRAYOID,
                ],
            },
            &[b.id.into(), set_ids.into(), set_ps.clone().into()],
        )?;
        let top = set_ps.iter().copied().fold(b.max_priority, f64::max);
        b.max_priority = top;
        let blocks: BTreeSet<i64> = found.iter().map(|f| f.1 / FANOUT as i64).collect();
        let slots = b.slots();
        refresh_blocks(&mut b, blocks, slots)?;
        save_counters(&b)?;
        Ok(updated as i64)
    })
    .unwrap_or_report()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type BatchRow = (
    Vec<u8>,
    i64,
    i64,
    i32,
    i16,
    Vec<Option<f32>>,
    Vec<Option<f32>>,
    f32,
    f32,
    f32,
    f32,
    f32,
    Option<Vec<Option<f32>>>,
    Option<String>,
    Option<String>,
    Option<pgrx::JsonB>,
    f64,
    f64,
    f64,
);

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
    let buffer = buffer
        .ok_or(FractalityError::NullNotAllowed("buffer"))
        .unwrap_or_report();
    let n = n
        .ok_or(FractalityError::NullNotAllowed("n"))
        .unwrap_or_report();
    let within = next_within
        .ok_or(FractalityError::NullNotAllowed("next_within"))
        .unwrap_or_report();
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
    let rows: Vec<BatchRow> = spi::connect(|| -> Result<Vec<BatchRow>, FractalityError> {
        let draws = sample(buffer, n, beta, seed)?;
        let ts: Vec<i64> = draws.iter().map(|d| d.event_timestamp).collect();
        let ids: Vec<Vec<u8>> = draws.iter().map(|d| d.event_id.clone()).collect();
        let joined = spi::rows(
            &Query {
                name: "replay_batch",
                text: BATCH,
                types: &[pg_sys::INT8ARRAYOID, pg_sys::BYTEAARRAYOID, pg_sys::INT8OID],
            },
            &[ts.into(), ids.into(), within_us.into()],
            true,
            |r| {
                Some((
                    r.get::<i64>(1)? as usize,
                    (
                        r.get::<i64>(2)?,
                        r.get::<i32>(3)?,
                        r.get::<i16>(4)?,
                        r.get::<Vec<Option<f32>>>(5)?,
                        r.get::<Vec<Option<f32>>>(6)?,
                        [
                            r.get::<f32>(7)?,
                            r.get::<f32>(8)?,
                            r.get::<f32>(9)?,
                            r.get::<f32>(10)?,
                            r.get::<f32>(11)?,
                        ],
                        r.get::<Vec<Option<f32>>>(12),
                        r.get::<String>(13),
                        r.get::<String>(14),
                        r.get::<pgrx::JsonB>(15),
                    ),
                ))
            },
        )?;
        let mut by_draw: HashMap<usize, _> = joined.into_iter().flatten().collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    /// A tree in memory.
    #[derive(Default)]
    struct Mem(HashMap<(u16, i64), Vec<f64>>);

    impl Blocks for Mem {
        fn read(
            &mut self,
            level: u16,
            blocks: &[i64],
        ) -> Result<HashMap<i64, Vec<f64>>, FractalityError> {
            Ok(blocks
                .iter()
                .filter_map(|b| self.0.get(&(level, *b)).map(|v| (*b, v.clone())))
                .collect())
        }
        fn write(
            &mut self,
            level: u16,
            blocks: &BTreeMap<i64, Vec<f64>>,
        ) -> Result<(), FractalityError> {
            for (b, v) in blocks {
                self.0.insert((level, *b), v.clone());
            }
            Ok(())
        }
        fn range(
            &mut self,
            level: u16,
            lo: i64,
            hi: i64,
        ) -> Result<HashMap<i64, Vec<f64>>, FractalityError> {
            Ok(self
                .0
                .iter()
                .filter(|((l, b), _)| *l == level && *b >= lo && *b < hi)
                .map(|((_, b), v)| (*b, v.clone()))
                .collect())
        }
    }

    fn leaves_of(values: &[f64]) -> BTreeMap<i64, Vec<f64>> {
        let mut out = BTreeMap::new();
        for (s, v) in values.iter().enumerate() {
            out.entry(s as i64 / FANOUT as i64)
                .or_insert_with(|| vec![0.0; FANOUT])[s % FANOUT] = *v;
        }
        out
    }

    #[test]
    fn levels_grow_with_the_log_of_the_slots() {
        assert_eq!(levels_for(0), 1);
        assert_eq!(levels_for(128), 1);
        assert_eq!(levels_for(129), 2);
        assert_eq!(levels_for(16_384), 2);
        assert_eq!(levels_for(16_385), 3);
        assert_eq!(levels_for(10_000_000), 4);
    }

    #[test]
    fn every_parent_is_the_sum_of_its_children_after_updates() {
        let values: Vec<f64> = (0..40_000)
            .map(|i| ((i * 37) % 101) as f64 / 10.0 + 0.01)
            .collect();
        let levels = levels_for(values.len() as u64);
        let mut t = Mem::default();
        refresh(&mut t, levels, leaves_of(&values)).unwrap();
        assert_relative_eq!(
            total(&mut t, levels).unwrap(),
            values.iter().sum::<f64>(),
            max_relative = 1e-12
        );
        // change a few slots: only their blocks are given
        let mut values = values;
        let mut changed = BTreeMap::new();
        for s in [3usize, 129, 20_000, 39_999] {
            values[s] = 7.5;
            let b = (s / FANOUT) as i64;
            let lo = b as usize * FANOUT;
            let hi = (lo + FANOUT).min(values.len());
            let mut v = vec![0.0; FANOUT];
            v[..hi - lo].copy_from_slice(&values[lo..hi]);
            changed.insert(b, v);
        }
        refresh(&mut t, levels, changed).unwrap();
        for ((level, b), sums) in t.0.clone() {
            if level == 0 {
                continue;
            }
            let kids = t
                .range(level - 1, b * FANOUT as i64, (b + 1) * FANOUT as i64)
                .unwrap();
            for (c, k) in kids {
                assert_relative_eq!(
                    sums[(c % FANOUT as i64) as usize],
                    k.iter().sum::<f64>(),
                    max_relative = 1e-12
                );
            }
        }
        assert_relative_eq!(
            total(&mut t, levels).unwrap(),
            values.iter().sum::<f64>(),
            max_relative = 1e-12
        );
    }

    #[test]
    fn draws_follow_the_weights() {
        // 300 slots of weights 1..300, some empty
        let values: Vec<f64> = (0..300)
            .map(|i| if i % 7 == 3 { 0.0 } else { (i + 1) as f64 })
            .collect();
        let levels = levels_for(300);
        let mut t = Mem::default();
        refresh(&mut t, levels, leaves_of(&values)).unwrap();
        let sum: f64 = values.iter().sum();
        // points at every boundary land on the right slot, never on an empty one
        let mut prefix = 0.0;
        let mut points = Vec::new();
        let mut expect = Vec::new();
        for (s, v) in values.iter().enumerate() {
            if *v > 0.0 {
                points.push(prefix);
                points.push(prefix + v * 0.5);
                expect.push(s as i64);
                expect.push(s as i64);
            }
            prefix += v;
        }
        points.push(sum * (1.0 - 1e-17));
        expect.push(299);
        let got: Vec<i64> = descend(&mut t, levels, &points)
            .unwrap()
            .into_iter()
            .map(|d| d.unwrap().0)
            .collect();
        assert_eq!(got, expect);
        // frequencies of random draws match p / sum (chi-square, df = 256, alpha 0.001: 330.5)
        let mut rng = StdRng::seed_from_u64(7);
        let n = 200_000;
        let pts: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * sum).collect();
        let mut counts = vec![0u64; 300];
        for d in descend(&mut t, levels, &pts).unwrap() {
            counts[d.unwrap().0 as usize] += 1;
        }
        let mut chi2 = 0.0;
        for (s, v) in values.iter().enumerate() {
            if *v > 0.0 {
                let e = n as f64 * v / sum;
                chi2 += (counts[s] as f64 - e).powi(2) / e;
            } else {
                assert_eq!(counts[s], 0);
            }
        }
        assert!(chi2 < 330.5, "chi-square {chi2}");
    }

    #[test]
    fn weights_are_normalised_importance_corrections() {
        let w = weights(&[0.5, 0.25, 0.25], 4, 0.5);
        assert_relative_eq!(w[0], (4.0f64 * 0.5).powf(-0.5) / (4.0f64 * 0.25).powf(-0.5));
        assert_relative_eq!(w[1], 1.0);
        assert_eq!(weights(&[0.1, 0.2], 10, 0.0), vec![1.0, 1.0]);
    }

    #[test]
    fn pick_skips_empty_children() {
        assert_eq!(pick(&[0.0, 2.0, 0.0, 3.0], 0.0), Some((1, 0.0)));
        assert_eq!(pick(&[0.0, 2.0, 0.0, 3.0], 2.5), Some((3, 0.5)));
        assert_eq!(pick(&[0.0, 2.0, 0.0, 3.0], 9.0).map(|p| p.0), Some(3));
        assert_eq!(pick(&[0.0, 0.0], 0.0), None);
    }
}
