//! The items of a buffer as `replay_blocks` holds them, in plain Rust: FANOUT slots a block (the
//! same blocks as the sum tree's leaves), each slot an event's timestamp, its 16-byte id and the
//! priority p the tree holds, or empty (timestamp -1, zero id, priority 0). No NULL, so that a
//! slot is reached by its offset in SQL too (`sql/queries/replay_items_by_slot.sql`).

use std::collections::BTreeSet;

use crate::errors::FractalityError;

use super::tree::{OrderedBlocks, FANOUT};

/// An empty slot's timestamp (events' timestamps are never negative).
pub const EMPTY: i64 = -1;
/// Bytes of an event id.
pub const ID_BYTES: usize = 16;

/// A slot's entry in a leaf block of the sum tree from its item's priority `p`: p^`alpha`, 0
/// where the slot is empty (0^0 would be 1). The one place the tree's leaves are computed from
/// the items.
pub fn leaf_entry(p: f64, alpha: f64) -> f64 {
    if p > 0.0 {
        p.powf(alpha)
    } else {
        0.0
    }
}

/// The entries of a leaf block of the sum tree from its slots' `priorities` (see
/// [`leaf_entry`]), computed as they are passed. A run of equal priorities is computed once: new
/// items enter at the buffer's largest priority, so most of a buffer's items share it until they
/// are drawn.
pub fn leaf_entries(priorities: &[f64], alpha: f64) -> impl Iterator<Item = f64> + '_ {
    let mut last = (f64::NAN, 0.0);
    priorities.iter().map(move |&p| {
        if p != last.0 {
            last = (p, leaf_entry(p, alpha));
        }
        last.1
    })
}

/// A leaf block of the sum tree from its slots' `priorities` (see [`leaf_entry`]).
pub fn leaf(priorities: &[f64], alpha: f64) -> Vec<f64> {
    leaf_entries(priorities, alpha).collect()
}

/// The leaf blocks `blocks` of the tree from their items' priorities (`priorities_of` a block;
/// None for a block that holds no item: its entries are 0).
pub fn leaves<'a>(
    blocks: &BTreeSet<i64>,
    alpha: f64,
    priorities_of: impl Fn(i64) -> Option<&'a [f64]>,
) -> OrderedBlocks {
    blocks
        .iter()
        .map(|k| {
            let entries = priorities_of(*k).map_or_else(|| vec![0.0; FANOUT], |ps| leaf(ps, alpha));
            (*k, entries)
        })
        .collect()
}

/// Whether arrays of these lengths are a block's: FANOUT timestamps and priorities, FANOUT ids.
pub fn whole(timestamps: usize, event_ids: usize, priorities: usize) -> bool {
    timestamps == FANOUT && priorities == FANOUT && event_ids == FANOUT * ID_BYTES
}

/// One block of items.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub timestamps: Vec<i64>,
    pub event_ids: Vec<u8>,
    pub priorities: Vec<f64>,
}

impl Block {
    /// A block of empty slots.
    pub fn empty() -> Block {
        Block {
            timestamps: vec![EMPTY; FANOUT],
            event_ids: vec![0; FANOUT * ID_BYTES],
            priorities: vec![0.0; FANOUT],
        }
    }

    /// A block as stored; None when its arrays do not have FANOUT entries.
    pub fn from_parts(
        timestamps: Vec<i64>,
        event_ids: Vec<u8>,
        priorities: Vec<f64>,
    ) -> Option<Block> {
        whole(timestamps.len(), event_ids.len(), priorities.len()).then_some(Block {
            timestamps,
            event_ids,
            priorities,
        })
    }

    /// Whether slot `entry` holds an item.
    pub fn holds(&self, entry: usize) -> bool {
        self.timestamps[entry] != EMPTY
    }

    /// Slot `entry` given the event (`ts`, `id`) at priority `p`; whether it was empty.
    pub fn set(
        &mut self,
        entry: usize,
        ts: i64,
        id: &[u8],
        p: f64,
    ) -> Result<bool, FractalityError> {
        if id.len() != ID_BYTES || ts < 0 {
            return Err(FractalityError::Internal {
                query: "replay_blocks",
                detail: format!(
                    "an event of {} bytes at timestamp {ts} cannot enter a buffer",
                    id.len()
                ),
            });
        }
        let was_empty = !self.holds(entry);
        self.timestamps[entry] = ts;
        self.event_ids[entry * ID_BYTES..(entry + 1) * ID_BYTES].copy_from_slice(id);
        self.priorities[entry] = p;
        Ok(was_empty)
    }

    /// Slot `entry` emptied; whether it held an item.
    pub fn clear(&mut self, entry: usize) -> bool {
        let held = self.holds(entry);
        self.timestamps[entry] = EMPTY;
        self.event_ids[entry * ID_BYTES..(entry + 1) * ID_BYTES].fill(0);
        self.priorities[entry] = 0.0;
        held
    }

    /// How many slots hold an item.
    pub fn filled(&self) -> usize {
        self.timestamps.iter().filter(|t| **t != EMPTY).count()
    }

    /// The smallest and largest timestamp held; None when the block is empty.
    pub fn span(&self) -> Option<(i64, i64)> {
        let mut held = self.timestamps.iter().copied().filter(|t| *t != EMPTY);
        let first = held.next()?;
        Some(held.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Vec<u8> {
        vec![n; ID_BYTES]
    }

    #[test]
    fn slots_are_set_and_cleared_in_place() {
        let mut b = Block::empty();
        assert_eq!(b.filled(), 0);
        assert_eq!(b.span(), None);
        assert!(b.set(3, 500, &id(7), 1.5).unwrap());
        assert!(b.set(FANOUT - 1, 20, &id(9), 2.0).unwrap());
        // a slot written again was not empty
        assert!(!b.set(3, 600, &id(8), 1.0).unwrap());
        assert_eq!(b.filled(), 2);
        assert_eq!(b.span(), Some((20, 600)));
        assert_eq!(&b.event_ids[3 * ID_BYTES..4 * ID_BYTES], &id(8)[..]);
        assert_eq!(b.timestamps[3], 600);
        assert!(b.clear(FANOUT - 1));
        assert!(!b.clear(FANOUT - 1));
        assert_eq!(b.filled(), 1);
        assert_eq!(b.span(), Some((600, 600)));
        assert_eq!(b.priorities[FANOUT - 1], 0.0);
        assert!(b.event_ids[(FANOUT - 1) * ID_BYTES..]
            .iter()
            .all(|x| *x == 0));
        // the other slots are untouched
        assert_eq!(b.priorities[3], 1.0);
        assert_eq!(
            b.timestamps.iter().filter(|t| **t == EMPTY).count(),
            FANOUT - 1
        );
    }

    #[test]
    fn items_and_leaf_entries_are_read_by_slot() {
        let mut b = Block::empty();
        b.set(5, 77, &id(3), 4.0).unwrap();
        assert!(b.holds(5) && !b.holds(6));
        assert_eq!(
            (
                b.timestamps[5],
                &b.event_ids[5 * ID_BYTES..6 * ID_BYTES],
                b.priorities[5]
            ),
            (77, &id(3)[..], 4.0)
        );
        let leaf = leaf(&b.priorities, 0.5);
        assert_eq!(leaf[5], 2.0);
        assert_eq!(leaf.iter().filter(|x| **x != 0.0).count(), 1);
        // alpha 0: every item weighs 1, an empty slot still 0
        assert_eq!(super::leaf(&b.priorities, 0.0).iter().sum::<f64>(), 1.0);
    }

    #[test]
    fn events_that_cannot_be_held_are_refused() {
        let mut b = Block::empty();
        assert!(b.set(0, 1, &[1u8; 8], 1.0).is_err());
        assert!(b.set(0, -5, &id(1), 1.0).is_err());
        assert_eq!(b, Block::empty());
    }

    #[test]
    fn stored_parts_must_have_every_slot() {
        assert!(Block::from_parts(
            vec![EMPTY; FANOUT],
            vec![0; FANOUT * ID_BYTES],
            vec![0.0; FANOUT]
        )
        .is_some());
        assert!(Block::from_parts(
            vec![EMPTY; FANOUT - 1],
            vec![0; FANOUT * ID_BYTES],
            vec![0.0; FANOUT]
        )
        .is_none());
        assert!(Block::from_parts(vec![EMPTY; FANOUT], vec![0; 16], vec![0.0; FANOUT]).is_none());
    }
}
