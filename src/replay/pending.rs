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
//! priorities, exactly. A learner's session keeps what it read ([`Seen`]) and, at its next
//! sample, reads and merges only the writes made since.

use super::tree::FANOUT;

/// The pending slots of one buffer, in slot order: the priority the tree holds for each and the
/// latest one written, with the change of p^alpha each makes.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    alpha: f64,
    slots: Vec<i64>,
    stored: Vec<f64>,
    latest: Vec<f64>,
    /// change[k]: latest[k]^alpha - stored[k]^alpha
    change: Vec<f64>,
    /// The change of the tree's total: the sum of `change`.
    total: f64,
}

/// One row of `replay_pending`: slots, the priority the tree holds for each, the new one.
pub type Write = (Vec<i64>, Vec<f64>, Vec<f64>);

impl Pending {
    /// The bytes its arrays hold.
    pub fn bytes(&self) -> usize {
        8 * (self.slots.capacity()
            + self.stored.capacity()
            + self.latest.capacity()
            + self.change.capacity())
    }

    /// No slot pending.
    pub fn empty(alpha: f64) -> Pending {
        Pending {
            alpha,
            ..Pending::default()
        }
    }

    /// The pending writes in the order they were made: a slot's stored priority is the one the
    /// tree holds (its first write's old), its latest the one its last write gave it.
    pub fn from_writes(alpha: f64, writes: impl IntoIterator<Item = Write>) -> Pending {
        let mut p = Pending::empty(alpha);
        p.extend(writes);
        p
    }

    /// Writes made after those already here, in the order they were made: each slot written
    /// keeps the stored priority of its first write and takes the latest of its last. The
    /// same numbers, bit for bit, as [`Pending::from_writes`] of every write at once.
    pub fn extend(&mut self, writes: impl IntoIterator<Item = Write>) {
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
        if all.is_empty() {
            return;
        }
        // each write's slots are in order: a stable sort merges the runs
        all.sort_by_key(|e| (e.0, e.1));
        let mut written: Vec<(i64, f64, f64)> = Vec::with_capacity(all.len());
        for (slot, _, old, new) in all {
            match written.last_mut() {
                Some(last) if last.0 == slot => last.2 = new,
                _ => written.push((slot, old, new)),
            }
        }
        // merged with the slots already pending, in slot order
        let n = self.slots.len() + written.len();
        let mut merged = Pending {
            alpha: self.alpha,
            slots: Vec::with_capacity(n),
            stored: Vec::with_capacity(n),
            latest: Vec::with_capacity(n),
            change: Vec::with_capacity(n),
            total: 0.0,
        };
        let alpha = self.alpha;
        let push = |m: &mut Pending, slot: i64, stored: f64, latest: f64, change: Option<f64>| {
            m.slots.push(slot);
            m.stored.push(stored);
            m.latest.push(latest);
            m.change
                .push(change.unwrap_or_else(|| latest.powf(alpha) - stored.powf(alpha)));
        };
        let mut k = 0;
        for w in written.into_iter().map(Some).chain([None]) {
            // the pending slots before this write's (after the last one: all that are left)
            while k < self.slots.len() && w.is_none_or(|(slot, _, _)| self.slots[k] < slot) {
                let change = Some(self.change[k]);
                push(
                    &mut merged,
                    self.slots[k],
                    self.stored[k],
                    self.latest[k],
                    change,
                );
                k += 1;
            }
            let Some((slot, old, new)) = w else { break };
            if k < self.slots.len() && self.slots[k] == slot {
                // pending already: its stored priority stays, the latest is this write's
                push(&mut merged, slot, self.stored[k], new, None);
                k += 1;
            } else {
                push(&mut merged, slot, old, new, None);
            }
        }
        merged.total = merged.change.iter().sum();
        *self = merged;
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
        self.total
    }

    /// Whether a pending priority lies under block `block` of leaves (level 0).
    pub fn touches_leaf(&self, block: i64) -> bool {
        let lo = block.saturating_mul(FANOUT as i64);
        let first = self.slots.partition_point(|s| *s < lo);
        self.slots
            .get(first)
            .is_some_and(|s| *s < lo.saturating_add(FANOUT as i64))
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
                // every pending slot under entry j at once, summed apart from every other
                // entry's (a running sum over all the slots would carry a large change of one
                // block into the difference taken for another, and lose a small one there)
                let entry_hi = lo + (j as i128 + 1) * span;
                let stop = k + self.slots[k..end].partition_point(|s| (*s as i128) < entry_hi);
                let change: f64 = self.change[k..stop].iter().sum();
                entries[j] = (entries[j] + change).max(0.0);
                k = stop;
            }
        }
    }
}

/// Whether writing `new` over the priority `stored` the tree holds for a slot takes away nearly
/// all of that slot's p^alpha (more than 2^32 times what is left): the blocks above it hold
/// sums that include the old p^alpha, in which the slot's neighbours may have been lost to
/// rounding, so that the stored sum plus the change would no longer be the sum of what is left.
/// Such a write is folded at once (the fold sums every block again from its entries) instead of
/// being left pending.
pub fn cancels(alpha: f64, stored: f64, new: f64) -> bool {
    stored.powf(alpha) > new.powf(alpha) * CANCELS
}

/// See [`cancels`]: 2^32 leaves at most 2^-20 of what is left to the rounding of the old sum.
const CANCELS: f64 = 4_294_967_296.0;

/// A sampler's copy of one buffer's pending writes, kept by the backend from one sample to the
/// next, so that a sample reads the arrays of only the writes made since the last (a learner
/// appends one between two samples) instead of every write since the last fold, and merges them
/// instead of sorting all of them again. Writers of a buffer hold its lock until they commit, so
/// a snapshot sees the writes since the last fold up to some number: the copy is good while the
/// writes a snapshot sees up to its last are exactly those it holds (a fold, a write rolled back,
/// a table created anew make a sampler read every write again).
#[derive(Clone, Debug)]
pub struct Seen {
    /// The OID of the table the writes were read from.
    table: i64,
    seqs: Vec<i64>,
    pending: Pending,
}

/// A pending write as a sampler reads it: the table's OID, the write's number, and the write
/// itself when it is after the sampler's last.
pub type SeenRow = (i64, i64, Option<Write>);

impl Seen {
    /// None held yet.
    pub fn new(table: i64, alpha: f64) -> Seen {
        Seen {
            table,
            seqs: Vec::new(),
            pending: Pending::empty(alpha),
        }
    }

    /// The bytes the copy holds.
    pub fn bytes(&self) -> usize {
        8 * self.seqs.capacity() + self.pending.bytes()
    }

    /// The number of the last write held (-1: none).
    pub fn last(&self) -> i64 {
        self.seqs.last().copied().unwrap_or(-1)
    }

    /// Whether the writes of `rows` up to [`Seen::last`] are exactly those held, from the same
    /// table and with the same alpha.
    pub fn holds(&self, alpha: f64, rows: &[SeenRow]) -> bool {
        let last = self.last();
        let upto = rows.iter().take_while(|r| r.1 <= last);
        self.pending.alpha.to_bits() == alpha.to_bits()
            && upto.clone().count() == self.seqs.len()
            && upto
                .zip(&self.seqs)
                .all(|(r, s)| r.0 == self.table && r.1 == *s)
    }

    /// The writes of `rows` after the last held added, in order (each comes with its arrays).
    pub fn advance(&mut self, rows: Vec<SeenRow>) {
        let last = self.last();
        let mut writes = Vec::new();
        for (_, seq, write) in rows {
            if seq > last {
                self.seqs.push(seq);
                writes.extend(write);
            }
        }
        self.pending.extend(writes);
    }

    pub fn pending(&self) -> &Pending {
        &self.pending
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

    /// Pendings equal bit for bit.
    fn same(a: &Pending, b: &Pending) -> bool {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        a.slots == b.slots
            && bits(&a.stored) == bits(&b.stored)
            && bits(&a.latest) == bits(&b.latest)
            && bits(&a.change) == bits(&b.change)
            && a.total.to_bits() == b.total.to_bits()
    }

    /// Writes of slots spread over 0..5000, some slots written several times.
    fn some_writes(n: usize) -> Vec<Write> {
        (0..n)
            .map(|w| {
                let mut slots: Vec<i64> = (0..40)
                    .map(|i| ((w * 131 + i * 977) % 5000) as i64)
                    .collect();
                slots.sort();
                slots.dedup();
                let olds = slots.iter().map(|s| 0.5 + (*s % 17) as f64).collect();
                let news = slots
                    .iter()
                    .map(|s| 0.01 + ((*s as usize + w) % 23) as f64 / 3.0)
                    .collect();
                (slots, olds, news)
            })
            .collect()
    }

    #[test]
    fn writes_added_later_give_the_numbers_of_all_at_once() {
        let writes = some_writes(30);
        let all = Pending::from_writes(0.6, writes.clone());
        for split in [0, 1, 7, 29, 30] {
            let mut p = Pending::from_writes(0.6, writes[..split].to_vec());
            p.extend(writes[split..].to_vec());
            assert!(same(&p, &all), "split at {split}");
        }
        // one write at a time
        let mut p = Pending::empty(0.6);
        for w in &writes {
            p.extend([w.clone()]);
        }
        assert!(same(&p, &all));
    }

    #[test]
    fn a_samplers_copy_holds_while_it_sees_the_same_writes() {
        let writes = some_writes(6);
        let rows = |upto: usize, after: i64| -> Vec<SeenRow> {
            (0..upto)
                .map(|i| {
                    let seq = 10 + i as i64;
                    (4242, seq, (seq > after).then(|| writes[i].clone()))
                })
                .collect()
        };
        let mut seen = Seen::new(4242, 0.6);
        assert_eq!(seen.last(), -1);
        seen.advance(rows(3, -1));
        assert_eq!(seen.last(), 12);
        assert!(same(
            seen.pending(),
            &Pending::from_writes(0.6, writes[..3].to_vec())
        ));
        // three more: the earlier rows come without their arrays
        let later = rows(6, 12);
        assert!(seen.holds(0.6, &later));
        seen.advance(later);
        assert!(same(
            seen.pending(),
            &Pending::from_writes(0.6, writes.clone())
        ));
        // a write rolled back, a fold (none of the earlier seen), another table or alpha
        let mut gone = rows(6, 15);
        gone.remove(4);
        assert!(!seen.holds(0.6, &gone));
        assert!(!seen.holds(0.6, &[]));
        let other: Vec<SeenRow> = rows(6, 15).into_iter().map(|r| (1, r.1, r.2)).collect();
        assert!(!seen.holds(0.6, &other));
        assert!(!seen.holds(0.5, &rows(6, 15)));
        assert!(seen.holds(0.6, &rows(6, 15)));
    }

    #[test]
    fn a_large_change_of_one_entry_does_not_swallow_anothers() {
        // slot 0 from 1 to 1e40, slot FANOUT (the next block of leaves) from 1 to 2: the entries
        // above them change by exactly their own slots' changes
        let p = Pending::from_writes(
            1.0,
            [(vec![0, FANOUT as i64], vec![1.0, 1.0], vec![1e40, 2.0])],
        );
        let mut level1 = vec![5.0; FANOUT];
        p.adjust(1, 0, &mut level1);
        assert_relative_eq!(level1[0], 5.0 + 1e40 - 1.0, max_relative = 1e-15);
        assert_relative_eq!(level1[1], 6.0, epsilon = 1e-12);
        assert_eq!(level1[2], 5.0);
        // and back down, in another write: slot 0's change is 0 again, slot FANOUT's still 1
        let q = Pending::from_writes(
            1.0,
            [
                (vec![0, FANOUT as i64], vec![1.0, 1.0], vec![1e40, 2.0]),
                (vec![0], vec![1.0], vec![1.0]),
            ],
        );
        let mut level1 = vec![5.0; FANOUT];
        q.adjust(1, 0, &mut level1);
        assert_relative_eq!(level1[..2], [5.0, 6.0][..], epsilon = 1e-12);
        assert_eq!(level1[2], 5.0);
        assert_relative_eq!(q.delta(), 1.0, epsilon = 1e-12);
    }

    #[test]
    fn a_write_that_takes_away_nearly_all_of_a_slot_is_folded() {
        assert!(cancels(1.0, 1e17, 1.0));
        assert!(cancels(10.0, 1e20, 1.0));
        assert!(!cancels(1.0, 1e9, 1.0));
        assert!(!cancels(0.6, 1e15, 1.0), "1e9 of p^alpha: within 2^32");
        assert!(!cancels(1.0, 1.0, 1e17), "a rise is never folded early");
        assert!(!cancels(0.0, 1e300, 1e-300), "alpha 0: every p^alpha is 1");
    }

    #[test]
    fn blocks_without_pending_slots_are_left_as_they_are() {
        let p = Pending::from_writes(1.0, [(vec![1000], vec![1.0], vec![2.0])]);
        let e = vec![1.0; FANOUT];
        let mut b0 = e.clone();
        p.adjust(0, 0, &mut b0);
        assert_eq!(b0, e);
        let block = (1000 / FANOUT) as i64;
        let mut under = e.clone();
        p.adjust(0, block, &mut under);
        assert_relative_eq!(under[1000 % FANOUT], 2.0, epsilon = 1e-12);
        // only the block of leaves that holds the slot is touched
        assert!(p.touches_leaf(block));
        assert!(!p.touches_leaf(block - 1) && !p.touches_leaf(block + 1) && !p.touches_leaf(0));
        assert!(!Pending::empty(1.0).touches_leaf(block));
        let mut root = e.clone();
        Pending::empty(1.0).adjust(2, 0, &mut root);
        assert_eq!(root, e);
    }
}
