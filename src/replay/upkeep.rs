//! Keeping a buffer's counters and sum tree in step with its items: new items (the entry
//! trigger's), removed ones (deleted or archived events), priorities written back and folded,
//! and the whole tree rebuilt from the items. Runs with SPI connected and the buffer locked by
//! the caller; the queries are [`super::store`]'s, the tree's arithmetic [`super::tree`]'s.

use std::collections::{BTreeMap, BTreeSet};

use crate::errors::FractalityError;

use super::blocks::{leaf, leaves, Block};
use super::items;
use super::pending::Pending;
use super::store::{self, buffer, Buffer, SpiTree};
use super::tree::{levels_for, place, refresh, Blocks, OrderedBlocks, FANOUT};

/// The tree of `b` with the leaf blocks `leaves` (their entries given) and every block above
/// them brought up to date, with levels for `slots`. New levels above the old root are refreshed
/// as the others: a block missing there is made from all of its children, so a batch that adds
/// several levels at once (a first batch of more than 14 400 items, or the first after a
/// TRUNCATE, whose slots start where the old ones ended) leaves no leaf block without a parent.
fn refresh_leaves(
    b: &mut Buffer,
    leaves: OrderedBlocks,
    slots: u64,
) -> Result<(), FractalityError> {
    let needed = levels_for(slots).max(b.levels);
    refresh(&mut SpiTree::new(b.id, false), needed, leaves)?;
    b.levels = needed;
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
pub(super) fn fold(
    b: &mut Buffer,
    pending: &Pending,
    written: bool,
) -> Result<usize, FractalityError> {
    if pending.is_empty() {
        return Ok(0);
    }
    let (slots, ps): (Vec<i64>, Vec<f64>) = pending.latest_all().unzip();
    items::fold_items(b.id, slots.clone(), ps.clone())?;
    let blocks: BTreeSet<i64> = slots.iter().map(|s| s / FANOUT as i64).collect();
    let alpha = b.alpha;
    let changed = slots.iter().zip(&ps).map(|(s, p)| (*s, p.powf(alpha)));
    let leaves = leaves_with(b, &blocks, changed, |missing| {
        items::leaf_values(b, missing)
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
pub(super) fn fold_all() -> Result<(), FractalityError> {
    for id in store::pending_buffers()? {
        let mut b = buffer(None, Some(id), true)?;
        let pending = store::pending(&b)?;
        fold(&mut b, &pending, true)?;
        store::save_counters(&b)?;
    }
    Ok(())
}

/// The slot of the item with sequence number `seq` (with a capacity, slots are reused in turn).
fn slot_of(b: &Buffer, seq: i64) -> i64 {
    match b.capacity {
        Some(c) => seq % c,
        None => seq,
    }
}

/// The events (`timestamps`, `event_ids`) entering buffer `buffer_id` (the trigger's, the buffer
/// locked): entry j takes sequence number next_seq + j and its slot (with a capacity, only the
/// last `capacity` entries are written: the earlier ones would be overwritten by them at once),
/// at the buffer's largest priority; then the counters and the tree.
pub(super) fn entered(
    buffer_id: i32,
    timestamps: &[i64],
    event_ids: &[&[u8]],
) -> Result<(), FractalityError> {
    let mut b = buffer(None, Some(buffer_id), true)?;
    let first_seq = b.next_seq;
    let k = timestamps.len() as i64;
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
    // without a capacity only the first block can hold items already
    let stored = match b.capacity {
        Some(_) => blocks.clone(),
        None => blocks.iter().take(1).copied().collect(),
    };
    let mut items = items::read_blocks(b.id, &stored)?;
    let mut fresh = 0;
    for seq in from..first_seq + k {
        let j = (seq - first_seq) as usize;
        let (block, entry) = place(slot_of(&b, seq));
        let held = items.entry(block).or_insert_with(Block::empty);
        if held.set(entry, timestamps[j], event_ids[j], b.max_priority)? {
            fresh += 1;
        }
    }
    items::write_blocks(b.id, &items)?;
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
}

/// What leaves one buffer: slots to empty, blocks deleted whole (block, how many items).
#[derive(Default)]
struct Leaving {
    slots: BTreeSet<i64>,
    gone: Vec<(i64, i64)>,
}

/// Items leaving their buffers (the buffers locked, their pending priorities folded): `held`
/// (buffer, slot) taken out of their blocks, `gone` (buffer, block, items) blocks already
/// deleted whole. Each buffer's tree follows from the blocks as they are left (no second read)
/// and its size from the items taken out. How many items left.
pub(super) fn remove_items(
    held: Vec<(i32, i64)>,
    gone: Vec<(i32, i64, i64)>,
) -> Result<i64, FractalityError> {
    let mut per_buffer: BTreeMap<i32, Leaving> = BTreeMap::new();
    for (b, slot) in held {
        per_buffer.entry(b).or_default().slots.insert(slot);
    }
    for (b, block, n) in gone {
        per_buffer.entry(b).or_default().gone.push((block, n));
    }
    let mut total = 0;
    for (id, Leaving { slots, gone }) in per_buffer {
        let mut b = buffer(None, Some(id), true)?;
        let blocks: BTreeSet<i64> = slots.iter().map(|s| place(*s).0).collect();
        let mut items = items::read_blocks(id, &blocks)?;
        let mut removed = 0;
        for slot in slots {
            let (block, entry) = place(slot);
            if items.get_mut(&block).is_some_and(|h| h.clear(entry)) {
                removed += 1;
            }
        }
        items::write_blocks(id, &items)?;
        let mut leaves = leaves(&blocks, b.alpha, |k| {
            items.get(&k).map(|h| h.priorities.as_slice())
        });
        for (block, n) in gone {
            leaves.insert(block, vec![0.0; FANOUT]);
            removed += n;
        }
        b.size -= removed;
        let span = b.slots();
        refresh_leaves(&mut b, leaves, span)?;
        store::save_counters(&b)?;
        total += removed;
    }
    Ok(total)
}

/// The whole tree of `b` built from its items (one pass in slot order).
fn rebuild(b: &mut Buffer) -> Result<(), FractalityError> {
    b.levels = levels_for(b.slots());
    let mut leaves: OrderedBlocks = BTreeMap::new();
    let mut cursor = items::all_items(b.id)?;
    loop {
        let rows = cursor.fetch(1_000, |r| r.get::<i64>(1).zip(r.array::<f64>(2)));
        if rows.is_empty() {
            break;
        }
        for (block, ps) in rows.into_iter().flatten() {
            leaves.insert(block, leaf(&ps, b.alpha));
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

/// A new buffer `id` filled with the hot events already stored that pass its filter: its
/// counters and its tree.
pub(super) fn backfill(id: i32) -> Result<(), FractalityError> {
    store::lock_events()?;
    let mut b = buffer(None, Some(id), true)?;
    let k = items::backfill(id)?;
    b.next_seq = k;
    b.size = k;
    rebuild(&mut b)?;
    store::save_counters(&b)
}

/// Buffer `buffer_id`'s counters and whole tree rebuilt from its items, the pending priorities
/// folded into the items first; returns its size.
pub(super) fn rebuild_from_items(buffer_id: i32) -> Result<i64, FractalityError> {
    let mut b = buffer(None, Some(buffer_id), true)?;
    // the pending priorities into the items the tree is built from
    let pending = store::pending(&b)?;
    if !pending.is_empty() {
        let (slots, ps): (Vec<i64>, Vec<f64>) = pending.latest_all().unzip();
        items::fold_items(buffer_id, slots, ps)?;
        store::clear_pending(buffer_id)?;
    }
    b.pending = 0;
    b.size = items::size(buffer_id)?;
    b.next_seq = b.next_seq.max(b.size);
    store::clear_tree(buffer_id)?;
    rebuild(&mut b)?;
    store::save_counters(&b)?;
    Ok(b.size)
}
