//! What a learner calls: draws from a buffer's sum tree with their importance weights, and the
//! priorities it writes back (appended as pending, folded in bulk by [`super::upkeep`]).

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;

use pgrx::datum::Array;

use crate::errors::{in_range, pg_float, required, FractalityError, OrReport};
use crate::spi;

use super::blocks::{leaf, leaf_entries, leaf_entry, ID_BYTES};
use super::input::check_draws;
use super::items;
use super::pending::{self, Pending};
use super::store::{self, buffer, SpiTree};
use super::tree::{descend, pick, points, total, weights, BlockMap, Blocks, OrderedBlocks, FANOUT};
use super::upkeep::fold;

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

/// The sum tree as a sampler descends it: the levels above the leaves from `replay_tree`, the
/// leaves from the items' own blocks (p^alpha of each slot's priority, which is what the tree's
/// leaves hold), read in place as the scan finds them: a draw computes the entries of its block
/// only up to the slot it lands on and copies out only that slot's item, so that a draw costs one
/// block read at the bottom and no copy of the block.
struct Descent {
    tree: SpiTree,
    buffer: i32,
    alpha: f64,
    /// The items the draws landed on, by slot: timestamp, id, priority.
    items: FxHashMap<i64, (i64, Vec<u8>, f64)>,
    /// The root's level and the root as first read (the total reads it, then the descent).
    top: u16,
    root: Option<BlockMap>,
}

impl Blocks for Descent {
    fn read(&mut self, level: u16, blocks: &[i64]) -> Result<BlockMap, FractalityError> {
        if level == self.top && level > 0 && blocks == [0] {
            if self.root.is_none() {
                self.root = Some(self.tree.read(level, blocks)?);
            }
            return Ok(self.root.clone().unwrap_or_default());
        }
        if level > 0 {
            return self.tree.read(level, blocks);
        }
        let alpha = self.alpha;
        let mut leaves = BlockMap::default();
        items::each_block_seen(self.buffer, blocks, |b, _, _, priorities| {
            leaves.insert(b, leaf(priorities, alpha));
        })?;
        Ok(leaves)
    }

    fn write(&mut self, _level: u16, _blocks: &OrderedBlocks) -> Result<(), FractalityError> {
        Err(FractalityError::Internal {
            query: "sample_experiences",
            detail: "a sampler does not write the tree".into(),
        })
    }

    fn range(&mut self, level: u16, lo: i64, hi: i64) -> Result<BlockMap, FractalityError> {
        self.tree.range(level, lo, hi)
    }

    fn land(
        &mut self,
        at: &[Option<(i64, f64)>],
        pending: &Pending,
    ) -> Result<Vec<Option<(i64, f64)>>, FractalityError> {
        // the points by leaf block
        let mut by_block: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, a) in at.iter().enumerate() {
            if let Some((b, _)) = a {
                by_block.entry(*b).or_default().push(i);
            }
        }
        let blocks: Vec<i64> = by_block.keys().copied().collect();
        let (alpha, items) = (self.alpha, &mut self.items);
        let mut landed = vec![None; at.len()];
        items::each_block_seen(self.buffer, &blocks, |b, timestamps, ids, priorities| {
            let Some(points) = by_block.get(&b) else {
                return;
            };
            // the whole block's entries where several points land in it or pending priorities
            // change it; otherwise each entry up to the landing slot, computed as it is passed
            let whole = (points.len() > 1 || pending.touches_leaf(b)).then(|| {
                let mut entries = leaf(priorities, alpha);
                pending.adjust(0, b, &mut entries);
                entries
            });
            for &i in points {
                let Some((_, u)) = at[i] else { continue };
                let found = match &whole {
                    Some(entries) => pick(entries.iter().copied(), u).map(|(j, _)| (j, entries[j])),
                    None => pick(leaf_entries(priorities, alpha), u)
                        .map(|(j, _)| (j, leaf_entry(priorities[j], alpha))),
                };
                let Some((j, w)) = found else { continue };
                let slot = b * FANOUT as i64 + j as i64;
                landed[i] = Some((slot, w));
                items.entry(slot).or_insert_with(|| {
                    (
                        timestamps[j],
                        ids[j * ID_BYTES..(j + 1) * ID_BYTES].to_vec(),
                        priorities[j],
                    )
                });
            }
        })?;
        Ok(landed)
    }
}

/// The most a leaf of the sum tree may hold, (priority + epsilon) ^ alpha: sums of up to 1e18
/// such leaves stay finite.
const MAX_HELD: f64 = 1e290;

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
    let mut tree = Descent {
        tree: SpiTree::new(b.id, true),
        buffer: b.id,
        alpha: b.alpha,
        items: FxHashMap::default(),
        top: b.levels.saturating_sub(1),
        root: None,
    };
    // the priorities written back and not folded yet, in the same snapshot as the tree
    store::with_pending_seen(&b, |pending| {
        let total = total(&mut tree, b.levels, pending)?;
        if n == 0 || b.size == 0 || total <= 0.0 {
            return Ok(Vec::new());
        }
        let points = points(n, total, seed);
        let landed = descend(&mut tree, b.levels, &points, pending)?;
        let mut draws: Vec<Draw> = landed
            .into_iter()
            .flatten()
            .filter_map(|(slot, w)| {
                let (ts, id, p) = tree.items.get(&slot)?;
                Some(Draw {
                    slot,
                    event_timestamp: *ts,
                    event_id: id.clone(),
                    priority: pending.latest(slot).unwrap_or(*p),
                    probability: w / total,
                    weight: 0.0,
                })
            })
            .collect();
        items::note_drawn(b.id, draws.iter().map(|d| (&d.event_id, d.slot)));
        let probs: Vec<f64> = draws.iter().map(|d| d.probability).collect();
        for (d, w) in draws.iter_mut().zip(weights(&probs, beta)) {
            d.weight = w;
        }
        Ok(draws)
    })
}

/// update_priorities' body: `timestamps`, when given, one per id.
pub(super) fn write_back(
    buffer: Option<&str>,
    event_ids: Option<Array<'_, &[u8]>>,
    priorities: Option<Array<'_, f64>>,
    timestamps: Option<Vec<Option<i64>>>,
) -> i64 {
    let name = required("buffer", buffer);
    let ids: Vec<Option<Vec<u8>>> =
        crate::errors::elements("event_ids", &required("event_ids", event_ids))
            .into_iter()
            .map(|b| b.map(<[u8]>::to_vec))
            .collect();
    let ps = crate::errors::elements("priorities", &required("priorities", priorities));
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
        if id.len() != super::blocks::ID_BYTES {
            // no event has it: not an unknown id (skipped) but no id at all
            FractalityError::invalid(
                "event_ids",
                format!("{} bytes at position {}", id.len(), i + 1),
                "An event id is 16 bytes, as sample_experiences returns it.",
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
    // under pg_catalog alone, as every replay function (see _replay_entered)
    spi::connect_pinned(|| -> Result<i64, FractalityError> {
        let mut b = self::buffer(Some(name), None, true)?;
        // the last priority given for an id counts
        let mut by_id: HashMap<Vec<u8>, f64> = HashMap::new();
        for (i, (id, p)) in pairs.iter().enumerate() {
            // the tree holds (p + epsilon)^alpha and sums it over every item: a priority whose
            // power overflows (or nears it, so that a sum would) would make every draw land
            // on the last item
            let held = (p + b.epsilon).powf(b.alpha);
            if held.is_nan() || held > MAX_HELD {
                return Err(FractalityError::invalid(
                    "priority",
                    format!("{} at position {}", pg_float(*p), i + 1),
                    "What the sum tree holds, (priority + epsilon) ^ alpha with the buffer's alpha, is at most 1e290: pass a smaller priority (or use a buffer of a smaller alpha).",
                ));
            }
            by_id.insert(id.clone(), p + b.epsilon);
        }
        // the items of the ids
        let mut found = if timestamps.is_some() {
            items::find_at(b.id, by_id.keys().map(|id| (id.clone(), at[id])).collect())?
        } else {
            items::find(b.id, by_id.keys().cloned().collect())?
        };
        // an id not among them is skipped, as Reverb skips it: an event that left the buffer
        // since it was drawn (its slot taken by a newer event, archived, deleted, dropped by
        // retention) or never entered it; the count returned says how many were written
        b.max_priority = found
            .iter()
            .map(|f| by_id[&f.0])
            .fold(b.max_priority, f64::max);
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
        // a write taking nearly all of a slot's p^alpha away is folded at once (see
        // pending::cancels), as is the write that reaches fold_after
        let cancels = found
            .iter()
            .any(|(id, _, stored)| pending::cancels(b.alpha, *stored, by_id[id]));
        if cancels
            || (b.pending + found.len() as i64) as u64 >= crate::gucs::replay_fold_after() as u64
        {
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
