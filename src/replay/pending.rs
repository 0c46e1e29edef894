//! Priorities written back and not yet folded into the sum tree, as plain Rust tested without a
//! server.
//!
//! `update_priorities` does not rewrite the tree: it appends one row to `replay_pending` (the
//! slots it changed, the priority the tree holds for each, the priority it gets), and the rows
//! are folded into `replay_items` and the tree in bulk, once `fractality.replay_fold_after`
//! priorities were written since the last fold, before any other change of the tree, or by
//! `fold_priorities` and `run_maintenance`.
//! A learner's update then writes one row instead of a tree block per item, and a fold rewrites
//! each block once for all the updates that touched it.
//!
//! Samplers read the pending rows with the tree in one snapshot and see the tree as the fold
//! would leave it: [`Pending::adjust`] adds to a block's entries the change of every pending slot
//! under each, so that a descent through adjusted blocks draws with the current
//! priorities, exactly.

use super::tree::FANOUT;

/// The pending slots of one buffer, in slot order: the priority the tree holds for each and the
/// latest one written, with prefix sums of the change of p^alpha.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    alpha: f64,
    slots: Vec<i64>,
    stored: Vec<f64>,
    latest: Vec<f64>,
    /// prefix[k]: the change of p^alpha of slots[..k]
    prefix: Vec<f64>,
}

/// One row of `replay_pending`: slots, the priority the tree holds for each, the new one.
pub type Write = (Vec<i64>, Vec<f64>, Vec<f64>);

impl Pending {
    /// No slot pending.
    pub fn empty(alpha: f64) -> Pending {
        Pending {
            alpha,
            prefix: vec![0.0],
            ..Pending::default()
        }
    }

    /// The pending writes in the order they were made: a slot's stored priority is the one the
    /// tree holds (its first write's old), its latest the one its last write gave it.
    pub fn from_writes(alpha: f64, writes: impl IntoIterator<Item = Write>) -> Pending {
        // (slot, order of the write, old, new), sorted by slot and order: a slot's first entry
        // has its stored priority, its last the latest
        let mut all: Vec<(i64, usize, f64, f64)> = Vec::new();
        for (w, (slots, olds, news)) in writes.into_iter().enumerate() {
            all.extend(
                slots
                    .into_iter()
                    .zip(olds)
                    .zip(news)
                    .map(|((s, old), new)| (s, w, old, new)),
            );
        }
        // each write's slots are in order: a stable sort merges the runs
        all.sort_by_key(|e| (e.0, e.1));
        let mut p = Pending::empty(alpha);
        for e in all {
            if p.slots.last() == Some(&e.0) {
                *p.latest.last_mut().expect("a slot has its entries") = e.3;
            } else {
                p.slots.push(e.0);
                p.stored.push(e.2);
                p.latest.push(e.3);
            }
        }
        p.sum_up();
        p
    }

    fn sum_up(&mut self) {
        self.prefix = Vec::with_capacity(self.slots.len() + 1);
        let mut acc = 0.0;
        self.prefix.push(acc);
        for k in 0..self.slots.len() {
            acc += self.latest[k].powf(self.alpha) - self.stored[k].powf(self.alpha);
            self.prefix.push(acc);
        }
    }

    /// How many slots are pending.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The latest priority written for `slot`, if one is pending.
    pub fn latest(&self, slot: i64) -> Option<f64> {
        self.slots.binary_search(&slot).ok().map(|k| self.latest[k])
    }

    /// Every pending slot with its latest priority, in slot order (what a fold writes).
    pub fn latest_all(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.slots.iter().copied().zip(self.latest.iter().copied())
    }

    /// The change of the tree's total the pending slots make.
    pub fn delta(&self) -> f64 {
        self.prefix[self.slots.len()]
    }

    /// Block `block` of `level` (its FANOUT entries as the tree holds them) brought to the
    /// pending slots under it, in place: a leaf entry of a pending slot becomes its latest
    /// p^alpha, an entry above the leaves its stored sum plus the change of the pending slots
    /// below it (never below 0). A block with no pending slot under it is left as it is.
    pub fn adjust(&self, level: u16, block: i64, entries: &mut [f64]) {
        if self.slots.is_empty() {
            return;
        }
        // the slots an entry of this level spans, and those the block spans
        let span = (FANOUT as i128).saturating_pow(level as u32);
        let lo = (block as i128).saturating_mul(span.saturating_mul(FANOUT as i128));
        let hi = lo.saturating_add(span.saturating_mul(FANOUT as i128));
        let first = self.slots.partition_point(|s| (*s as i128) < lo);
        let end = self.slots.partition_point(|s| (*s as i128) < hi);
        let mut k = first;
        while k < end {
            let j = ((self.slots[k] as i128 - lo) / span) as usize;
            if level == 0 {
                entries[j] = self.latest[k].powf(self.alpha);
                k += 1;
            } else {
                // every pending slot under entry j at once, from the prefix sums
                let entry_hi = lo + (j as i128 + 1) * span;
                let stop = k + self.slots[k..end].partition_point(|s| (*s as i128) < entry_hi);
                entries[j] = (entries[j] + self.prefix[stop] - self.prefix[k]).max(0.0);
                k = stop;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn the_last_write_of_a_slot_counts_over_the_first_stored() {
        let p = Pending::from_writes(
            1.0,
            [
                (vec![5, 300], vec![1.0, 2.0], vec![4.0, 3.0]),
                (vec![5], vec![4.0], vec![0.5]),
            ],
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p.latest(5), Some(0.5));
        assert_eq!(p.latest(300), Some(3.0));
        assert_eq!(p.latest(6), None);
        // slot 5: 1.0 -> 0.5, slot 300: 2.0 -> 3.0
        assert_relative_eq!(p.delta(), 0.5);
        let q = Pending::from_writes(
            1.0,
            [
                (vec![5, 300], vec![1.0, 2.0], vec![4.0, 3.0]),
                (vec![5], vec![4.0], vec![0.5]),
                (vec![7, 300], vec![1.0, 2.0], vec![2.0, 1.0]),
            ],
        );
        assert_eq!(
            q.latest_all().collect::<Vec<_>>(),
            [(5, 0.5), (7, 2.0), (300, 1.0)]
        );
        assert_relative_eq!(q.delta(), -0.5 + 1.0 - 1.0);
    }

    #[test]
    fn adjusted_blocks_are_the_blocks_of_the_folded_tree() {
        let alpha = 0.6;
        let n = 40_000usize;
        let stored: Vec<f64> = (0..n).map(|i| 0.5 + (i % 97) as f64 / 10.0).collect();
        let changes: Vec<(i64, f64)> = (0..n as i64)
            .step_by(37)
            .map(|s| (s, 0.01 + (s % 13) as f64))
            .collect();
        let pending = Pending::from_writes(
            alpha,
            [(
                changes.iter().map(|c| c.0).collect(),
                changes.iter().map(|c| stored[c.0 as usize]).collect(),
                changes.iter().map(|c| c.1).collect(),
            )],
        );
        let mut folded = stored.clone();
        for (s, p) in &changes {
            folded[*s as usize] = *p;
        }
        // level sums of a tree over values: block b of level l, entry j
        let entry = |values: &[f64], level: u32, b: usize, j: usize| -> f64 {
            let span = FANOUT.pow(level);
            let lo = (b * FANOUT + j) * span;
            values
                .iter()
                .skip(lo)
                .take(span)
                .map(|v| v.powf(alpha))
                .sum()
        };
        for level in 0..3u32 {
            let blocks = n.div_ceil(FANOUT.pow(level + 1));
            for b in 0..blocks {
                let mut adjusted: Vec<f64> =
                    (0..FANOUT).map(|j| entry(&stored, level, b, j)).collect();
                pending.adjust(level as u16, b as i64, &mut adjusted);
                for (j, got) in adjusted.iter().enumerate() {
                    assert_relative_eq!(
                        *got,
                        entry(&folded, level, b, j),
                        epsilon = 1e-9,
                        max_relative = 1e-12
                    );
                }
            }
        }
        let before: f64 = stored.iter().map(|v| v.powf(alpha)).sum();
        let after: f64 = folded.iter().map(|v| v.powf(alpha)).sum();
        assert_relative_eq!(before + pending.delta(), after, max_relative = 1e-12);
    }

    #[test]
    fn blocks_without_pending_slots_are_left_as_they_are() {
        let p = Pending::from_writes(1.0, [(vec![1000], vec![1.0], vec![2.0])]);
        let e = vec![1.0; FANOUT];
        let mut b0 = e.clone();
        p.adjust(0, 0, &mut b0);
        assert_eq!(b0, e);
        let mut b7 = e.clone();
        p.adjust(0, 7, &mut b7);
        assert_eq!(b7[1000 % FANOUT], 2.0);
        let mut root = e.clone();
        Pending::empty(1.0).adjust(2, 0, &mut root);
        assert_eq!(root, e);
    }
}
