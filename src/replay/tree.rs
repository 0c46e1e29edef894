//! The sum tree as plain Rust, tested without a server: its levels, the descent of a point to a
//! slot, the importance weights, and the refresh of the blocks above changed leaves, over any
//! [`Blocks`] (the table `replay_tree` through [`super::store::SpiTree`], a map in the tests).
//!
//! Slot `s` of a buffer holds one item; level 0 block `s / FANOUT` holds `p^alpha` of its slots
//! (0 for an empty slot), block `b` of level `l + 1` holds the sums of blocks `b * FANOUT ..` of
//! level `l`; the root is block 0 of the top level. A parent's entries are always recomputed from
//! its children's sums (never adjusted by differences), so the tree does not drift from its items.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::errors::FractalityError;

use super::pending::Pending;

/// Partial sums per block, and slots per block of items (960 bytes of float8 a block of the tree;
/// a block of items, 32 bytes a slot, is 3.9 KB: two versions of it fit in a page, so that its
/// rewrites are HOT updates; sql/replay.sql says more).
pub const FANOUT: usize = 120;

/// Where slot (or block) `n` lies one level up: the block there, and its entry in that block.
pub fn place(n: i64) -> (i64, usize) {
    (n / FANOUT as i64, (n % FANOUT as i64) as usize)
}

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
pub fn pick(entries: impl IntoIterator<Item = f64>, u: f64) -> Option<(usize, f64)> {
    let mut left = u;
    let mut last = None;
    for (j, w) in entries.into_iter().enumerate() {
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

/// The `n` points a sample draws, uniform in [0, `total`): the same for the same `seed`, random
/// without one.
pub fn points(n: usize, total: f64, seed: Option<i64>) -> Vec<f64> {
    let mut rng = match seed {
        Some(s) => StdRng::seed_from_u64(s as u64),
        None => StdRng::from_rng(&mut rand::rng()),
    };
    (0..n).map(|_| rng.random::<f64>() * total).collect()
}

/// Importance weights `(N P(i))^-beta`, normalised by their maximum over the draw.
pub fn weights(probabilities: &[f64], beta: f64) -> Vec<f64> {
    let p_min = probabilities.iter().copied().fold(f64::INFINITY, f64::min);
    probabilities
        .iter()
        .map(|&p| weight(p_min, p, beta))
        .collect()
}

/// The importance weight of a draw of probability (or priority) `p`, `(N P(i))^-beta` divided by
/// the largest of the draw, which is `(p_min / p)^beta` with `p_min` the smallest drawn: N and the
/// total cancel, so no power of a large or small number is formed, and every weight is in [0, 1]
/// (1 for the draws of `p_min`, even a `p_min` of 0).
pub fn weight(p_min: f64, p: f64, beta: f64) -> f64 {
    if p <= p_min {
        1.0
    } else {
        (p_min / p).powf(beta)
    }
}

/// Blocks of one level by number, each with its FANOUT entries, as read.
pub type BlockMap = rustc_hash::FxHashMap<i64, Vec<f64>>;
/// The same in block order, as written.
pub type OrderedBlocks = BTreeMap<i64, Vec<f64>>;

/// The blocks of one buffer's tree, as the sampler and the updater see them.
pub trait Blocks {
    /// Blocks of `level` (absent ones are missing from the answer).
    fn read(&mut self, level: u16, blocks: &[i64]) -> Result<BlockMap, FractalityError>;
    /// Writes blocks of `level`.
    fn write(&mut self, level: u16, blocks: &OrderedBlocks) -> Result<(), FractalityError>;
    /// Every block of `level` whose number lies in [lo, hi).
    fn range(&mut self, level: u16, lo: i64, hi: i64) -> Result<BlockMap, FractalityError>;

    /// The last step of a descent: for each point (its leaf block, what is left of it there),
    /// the slot it lands on and the slot's weight, the leaves seen with the `pending` priorities.
    fn land(
        &mut self,
        at: &[Option<(i64, f64)>],
        pending: &Pending,
    ) -> Result<Vec<Option<(i64, f64)>>, FractalityError> {
        let mut need: Vec<i64> = at.iter().flatten().map(|(b, _)| *b).collect();
        need.sort_unstable();
        need.dedup();
        let mut leaves = self.read(0, &need)?;
        for (b, entries) in leaves.iter_mut() {
            pending.adjust(0, *b, entries);
        }
        Ok(at
            .iter()
            .map(|a| {
                let (b, u) = (*a)?;
                let entries = leaves.get(&b)?;
                let (j, _) = pick(entries.iter().copied(), u)?;
                Some((b * FANOUT as i64 + j as i64, entries[j]))
            })
            .collect())
    }
}

/// The sum of the whole tree (the root's entries) with the `pending` priorities.
pub fn total(
    tree: &mut impl Blocks,
    levels: u16,
    pending: &Pending,
) -> Result<f64, FractalityError> {
    Ok(tree.read(levels - 1, &[0])?.get_mut(&0).map_or(0.0, |r| {
        pending.adjust(levels - 1, 0, r);
        r.iter().sum()
    }))
}

/// The slot each of `points` (each in [0, total)) falls on, with the slot's weight: one pass down
/// the tree, reading the blocks all points need at a level in one read, each block seen with the
/// `pending` priorities under it.
pub fn descend(
    tree: &mut impl Blocks,
    levels: u16,
    points: &[f64],
    pending: &Pending,
) -> Result<Vec<Option<(i64, f64)>>, FractalityError> {
    // (block at the current level, what is left of the point inside it) per point
    let mut at: Vec<Option<(i64, f64)>> = points.iter().map(|u| Some((0i64, *u))).collect();
    for level in (1..levels).rev() {
        let mut need: Vec<i64> = at.iter().flatten().map(|(b, _)| *b).collect();
        need.sort_unstable();
        need.dedup();
        let mut blocks = tree.read(level, &need)?;
        for (b, entries) in blocks.iter_mut() {
            pending.adjust(level, *b, entries);
        }
        for slot in at.iter_mut() {
            let Some((b, u)) = *slot else { continue };
            *slot = blocks
                .get(&b)
                .and_then(|entries| pick(entries.iter().copied(), u))
                .map(|(j, left)| (b * FANOUT as i64 + j as i64, left));
        }
    }
    tree.land(&at, pending)
}

/// Rewrites the leaf blocks `leaves` (their values given) and every block above them: each
/// parent's entry for a changed child is the child's new sum; a parent that did not exist yet is
/// filled from all of its children.
pub fn refresh(
    tree: &mut impl Blocks,
    levels: u16,
    leaves: OrderedBlocks,
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
        let mut next: OrderedBlocks = BTreeMap::new();
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
            let (p, entry) = place(*c);
            next.get_mut(&p).expect("parent read")[entry] = sums.iter().sum();
        }
        changed = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// A tree in memory.
    #[derive(Default)]
    struct Mem(HashMap<(u16, i64), Vec<f64>>);

    impl Blocks for Mem {
        fn read(&mut self, level: u16, blocks: &[i64]) -> Result<BlockMap, FractalityError> {
            Ok(blocks
                .iter()
                .filter_map(|b| self.0.get(&(level, *b)).map(|v| (*b, v.clone())))
                .collect())
        }
        fn write(&mut self, level: u16, blocks: &OrderedBlocks) -> Result<(), FractalityError> {
            for (b, v) in blocks {
                self.0.insert((level, *b), v.clone());
            }
            Ok(())
        }
        fn range(&mut self, level: u16, lo: i64, hi: i64) -> Result<BlockMap, FractalityError> {
            Ok(self
                .0
                .iter()
                .filter(|((l, b), _)| *l == level && *b >= lo && *b < hi)
                .map(|((_, b), v)| (*b, v.clone()))
                .collect())
        }
    }

    fn leaves_of(values: &[f64]) -> OrderedBlocks {
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
        assert_eq!(levels_for(120), 1);
        assert_eq!(levels_for(121), 2);
        assert_eq!(levels_for(14_400), 2);
        assert_eq!(levels_for(14_401), 3);
        assert_eq!(levels_for(10_000_000), 4);
    }

    #[test]
    fn a_tree_grown_by_several_levels_at_once_counts_every_leaf() {
        // a tree of one level over 50 slots, then a batch to 20 000 slots: three levels
        let values: Vec<f64> = (0..20_000).map(|i| 1.0 + (i % 7) as f64).collect();
        let mut t = Mem::default();
        refresh(&mut t, 1, leaves_of(&values[..50])).unwrap();
        let levels = levels_for(values.len() as u64);
        assert_eq!(levels, 3);
        refresh(&mut t, levels, leaves_of(&values)).unwrap();
        assert_relative_eq!(
            total(&mut t, levels, &Pending::empty(1.0)).unwrap(),
            values.iter().sum::<f64>(),
            max_relative = 1e-12
        );
        // an emptied tree (TRUNCATE) whose slots start at 2 000 000: four levels at once
        let mut t = Mem::default();
        let mut far = OrderedBlocks::new();
        for b in [16_666i64, 16_667, 16_700] {
            far.insert(b, vec![0.5; FANOUT]);
        }
        let levels = levels_for(16_701 * FANOUT as u64);
        assert_eq!(levels, 4);
        refresh(&mut t, levels, far).unwrap();
        assert_relative_eq!(
            total(&mut t, levels, &Pending::empty(1.0)).unwrap(),
            3.0 * 0.5 * FANOUT as f64,
            max_relative = 1e-12
        );
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
            total(&mut t, levels, &Pending::empty(1.0)).unwrap(),
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
            total(&mut t, levels, &Pending::empty(1.0)).unwrap(),
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
        let got: Vec<i64> = descend(&mut t, levels, &points, &Pending::empty(1.0))
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
        for d in descend(&mut t, levels, &pts, &Pending::empty(1.0)).unwrap() {
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
    fn pending_priorities_draw_as_the_folded_tree() {
        let alpha = 0.6;
        let n = 20_000usize;
        let stored: Vec<f64> = (0..n).map(|i| 0.5 + (i % 89) as f64 / 10.0).collect();
        let changed: Vec<(i64, f64)> = (0..n as i64)
            .step_by(53)
            .map(|s| (s, if s % 2 == 0 { 40.0 } else { 1e-6 }))
            .collect();
        let pending = Pending::from_writes(
            alpha,
            [(
                changed.iter().map(|c| c.0).collect(),
                changed.iter().map(|c| stored[c.0 as usize]).collect(),
                changed.iter().map(|c| c.1).collect(),
            )],
        );
        let mut folded = stored.clone();
        for (s, p) in &changed {
            folded[*s as usize] = *p;
        }
        let levels = levels_for(n as u64);
        let pow = |v: &[f64]| v.iter().map(|x| x.powf(alpha)).collect::<Vec<f64>>();
        let (mut a, mut b) = (Mem::default(), Mem::default());
        refresh(&mut a, levels, leaves_of(&pow(&stored))).unwrap();
        refresh(&mut b, levels, leaves_of(&pow(&folded))).unwrap();
        let none = Pending::empty(alpha);
        let sum = total(&mut b, levels, &none).unwrap();
        assert_relative_eq!(
            total(&mut a, levels, &pending).unwrap(),
            sum,
            max_relative = 1e-12
        );
        let mut rng = StdRng::seed_from_u64(3);
        let pts: Vec<f64> = (0..20_000).map(|_| rng.random::<f64>() * sum).collect();
        let over = descend(&mut a, levels, &pts, &pending).unwrap();
        let direct = descend(&mut b, levels, &pts, &none).unwrap();
        let mut same = 0;
        for (o, d) in over.iter().zip(&direct) {
            let (o, d) = (o.unwrap(), d.unwrap());
            if o.0 == d.0 {
                same += 1;
                assert_relative_eq!(o.1, d.1, max_relative = 1e-12);
            }
        }
        // only a point within rounding of a boundary may land on a neighbour
        assert!(same >= pts.len() - 2, "{same} of {} draws agree", pts.len());
    }

    #[test]
    fn weights_are_normalised_importance_corrections() {
        let w = weights(&[0.5, 0.25, 0.25], 0.5);
        assert_relative_eq!(w[0], (4.0f64 * 0.5).powf(-0.5) / (4.0f64 * 0.25).powf(-0.5));
        assert_relative_eq!(w[1], 1.0);
        assert_relative_eq!(
            weights(&[0.1, 0.2], 0.0)[..],
            [1.0, 1.0][..],
            epsilon = 1e-12
        );
        // a probability that underflowed to 0 is the largest weight, the others' tend to 0
        // (the quotient form gave every draw 1)
        assert_relative_eq!(
            weights(&[0.0, 0.5, 0.25], 0.4)[..],
            [1.0, 0.0, 0.0][..],
            epsilon = 1e-12
        );
        assert_eq!(weights(&[1e-300, 1e-300], 1.0), vec![1.0, 1.0]);
    }

    #[test]
    fn pick_skips_empty_children() {
        assert_eq!(pick([0.0, 2.0, 0.0, 3.0], 0.0), Some((1, 0.0)));
        assert_eq!(pick([0.0, 2.0, 0.0, 3.0], 2.5), Some((3, 0.5)));
        assert_eq!(pick([0.0, 2.0, 0.0, 3.0], 9.0).map(|p| p.0), Some(3));
        assert_eq!(pick([0.0, 0.0], 0.0), None);
    }
}
