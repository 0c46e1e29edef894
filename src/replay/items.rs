//! Replay's items through [`crate::spi`], as `replay_blocks` holds them (120 slots a row, the
//! sum tree's leaf blocks: [`super::blocks`]): read and written by block, found by slot (the
//! samplers), by an event's timestamp (removals, archiving, `update_priorities`), folded, counted.
//! SPI must be connected ([`crate::spi::connect`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rustc_hash::FxHashMap;

use crate::errors::FractalityError;
use crate::spi::{self, query, Cursor, Query};

use super::blocks::{leaves, whole, Block, ID_BYTES};
use super::store::Buffer;
use super::tree::{place, OrderedBlocks, FANOUT};

const LEAVES: Query<'static> = query!("replay_leaves", [INT4OID, INT8ARRAYOID]);
const REMOVE: Query<'static> = query!("replay_remove", [BYTEAARRAYOID, INT8ARRAYOID]);
const REMOVE_BEFORE: Query<'static> = query!("replay_remove_before", [INT8OID]);
const OLDER: Query<'static> = query!("replay_older", [INT8OID]);
const BLOCKS_READ: Query<'static> = query!("replay_blocks_read", [INT4OID, INT8ARRAYOID]);
const BLOCKS_WRITE: Query<'static> = query!(
    "replay_blocks_write",
    [
        INT4OID,
        INT8ARRAYOID,
        INT8ARRAYOID,
        BYTEAOID,
        FLOAT8ARRAYOID,
        INT2ARRAYOID,
        INT8ARRAYOID,
        INT8ARRAYOID
    ]
);
const BLOCKS_DELETE: Query<'static> = query!("replay_blocks_delete", [INT4OID, INT8ARRAYOID]);
const SIZE: Query<'static> = query!("replay_size", [INT4OID]);
const ITEMS_BY_SLOT: Query<'static> = query!("replay_items_by_slot", [INT4OID, INT8ARRAYOID]);
const FIND: Query<'static> = query!("replay_find", [INT4OID, BYTEAARRAYOID]);
const REGISTERED: Query<'static> = query!("replay_registered", [BYTEAARRAYOID]);
const FIND_AT: Query<'static> = query!("replay_find_at", [INT4OID, BYTEAARRAYOID, INT8ARRAYOID]);
const FIND_IN_SPANS: Query<'static> = query!(
    "replay_find_in_spans",
    [INT4OID, BYTEAARRAYOID, INT8ARRAYOID]
);
const FOLD_ITEMS: Query<'static> =
    query!("replay_fold_items", [INT4OID, INT8ARRAYOID, FLOAT8ARRAYOID]);
const BACKFILL: Query<'static> = query!("replay_backfill", [INT4OID]);
const ALL_ITEMS: Query<'static> = query!("replay_all_items", [INT4OID]);
const DROP_ITEMS: Query<'static> = query!("replay_drop_items", [INT4OID]);

/// The priorities of buffer `id`'s items in blocks `blocks` (0 for an empty slot), by block.
fn priorities(id: i32, blocks: &BTreeSet<i64>) -> Result<BTreeMap<i64, Vec<f64>>, FractalityError> {
    if blocks.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids: Vec<i64> = blocks.iter().copied().collect();
    spi::some_rows(&LEAVES, &[id.into(), ids.into()], false, |r| {
        Some((r.get::<i64>(1)?, r.array::<f64>(2)?))
    })
}

/// p^alpha of the items of leaf blocks `blocks`, as the leaves of the tree.
pub fn leaf_values(b: &Buffer, blocks: &BTreeSet<i64>) -> Result<OrderedBlocks, FractalityError> {
    let held = priorities(b.id, blocks)?;
    Ok(leaves(blocks, b.alpha, |k| held.get(&k).map(Vec::as_slice)))
}

/// How many items buffer `id` holds (with the transaction's own writes).
pub fn size(id: i32) -> Result<i64, FractalityError> {
    Ok(spi::one::<i64>(&SIZE, &[id.into()], false)?.unwrap_or(0))
}

/// Where the events (`event_ids`, `timestamps`) are held, in every buffer: (buffer, slot).
pub fn held(
    event_ids: Vec<Option<Vec<u8>>>,
    timestamps: Vec<Option<i64>>,
) -> Result<Vec<(i32, i64)>, FractalityError> {
    let args = [event_ids.into(), timestamps.into()];
    spi::some_rows(&REMOVE, &args, false, spi::Row::pair)
}

/// The blocks holding only events older than `cutoff_us` deleted from every buffer: (buffer,
/// block, how many items it held) of each.
pub fn remove_before(cutoff_us: i64) -> Result<Vec<(i32, i64, i64)>, FractalityError> {
    spi::some_rows(&REMOVE_BEFORE, &[cutoff_us.into()], false, |r| {
        Some((r.get::<i32>(1)?, r.get::<i64>(2)?, r.get::<i16>(3)? as i64))
    })
}

/// The slots of every buffer holding events older than `cutoff_us`: (buffer, slot).
pub fn older(cutoff_us: i64) -> Result<Vec<(i32, i64)>, FractalityError> {
    spi::some_rows(&OLDER, &[cutoff_us.into()], false, spi::Row::pair)
}

/// Blocks `blocks` of buffer `id`'s items, whole (those that hold none are absent).
pub fn read_blocks(
    id: i32,
    blocks: &BTreeSet<i64>,
) -> Result<BTreeMap<i64, Block>, FractalityError> {
    if blocks.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids: Vec<i64> = blocks.iter().copied().collect();
    spi::some_rows(&BLOCKS_READ, &[id.into(), ids.into()], false, block_row)
}

/// `f` of each of blocks `blocks` of buffer `id`'s items as a sampler sees them (the calling
/// statement's snapshot): the block's number and its slots' timestamps, ids and priorities, read
/// in place (nothing copied but what `f` keeps).
pub fn each_block_seen(
    id: i32,
    blocks: &[i64],
    mut f: impl FnMut(i64, &[i64], &[u8], &[f64]),
) -> Result<(), FractalityError> {
    if blocks.is_empty() {
        return Ok(());
    }
    spi::stream(
        &BLOCKS_READ,
        &[id.into(), blocks.to_vec().into()],
        true,
        |r| {
            let Some(block) = r.get::<i64>(1) else {
                return;
            };
            r.with_array(2, |ts: &[i64]| {
                r.with_bytes(3, |ids| {
                    r.with_array(4, |ps: &[f64]| {
                        if whole(ts.len(), ids.len(), ps.len()) {
                            f(block, ts, ids, ps)
                        }
                    })
                })
            });
        },
    )?;
    Ok(())
}

/// A row of `replay_blocks_read.sql`: the block's number and its items.
fn block_row(r: &spi::Row) -> Option<(i64, Block)> {
    let block = Block::from_parts(r.array::<i64>(2)?, r.get::<Vec<u8>>(3)?, r.array::<f64>(4)?)?;
    Some((r.get::<i64>(1)?, block))
}

/// Blocks written by one statement at most (~4 MB of arrays).
const BLOCKS_A_WRITE: usize = 1024;

/// Blocks of buffer `id`'s items written whole; those left empty deleted.
pub fn write_blocks(id: i32, blocks: &BTreeMap<i64, Block>) -> Result<(), FractalityError> {
    let (held, gone): (Vec<_>, Vec<_>) = blocks.iter().partition(|(_, b)| b.span().is_some());
    for chunk in held.chunks(BLOCKS_A_WRITE) {
        let mut numbers = Vec::with_capacity(chunk.len());
        let mut timestamps = Vec::with_capacity(chunk.len() * FANOUT);
        let mut event_ids = Vec::with_capacity(chunk.len() * FANOUT * ID_BYTES);
        let mut priorities = Vec::with_capacity(chunk.len() * FANOUT);
        let (mut filled, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
        for (n, b) in chunk {
            let (first, last) = b.span().unwrap_or_default();
            numbers.push(**n);
            timestamps.extend_from_slice(&b.timestamps);
            event_ids.extend_from_slice(&b.event_ids);
            priorities.extend_from_slice(&b.priorities);
            filled.push(b.filled() as i16);
            lo.push(first);
            hi.push(last);
        }
        spi::run(
            &BLOCKS_WRITE,
            &[
                id.into(),
                numbers.into(),
                timestamps.into(),
                event_ids.into(),
                priorities.into(),
                filled.into(),
                lo.into(),
                hi.into(),
            ],
        )?;
    }
    if !gone.is_empty() {
        let gone: Vec<i64> = gone.into_iter().map(|(n, _)| *n).collect();
        spi::run(&BLOCKS_DELETE, &[id.into(), gone.into()])?;
    }
    Ok(())
}

/// The stored hot events that pass buffer `id`'s filter entered into it; how many.
pub fn backfill(id: i32) -> Result<i64, FractalityError> {
    Ok(spi::one::<i64>(&BACKFILL, &[id.into()], false)?.unwrap_or(0))
}

/// A cursor over buffer `id`'s blocks of items: (block, the priorities of its slots).
pub fn all_items(id: i32) -> Result<Cursor, FractalityError> {
    Cursor::open(&ALL_ITEMS, &[id.into()], false)
}

/// An item: its event's timestamp and id, its priority.
type Item = (i64, Vec<u8>, f64);

/// Buffer `id`'s items in `slots`, by slot, in the latest committed state.
fn items_at(id: i32, slots: Vec<i64>) -> Result<HashMap<i64, Item>, FractalityError> {
    spi::some_rows(&ITEMS_BY_SLOT, &[id.into(), slots.into()], false, |r| {
        Some((
            r.get::<i64>(1)?,
            (r.get::<i64>(2)?, r.get::<Vec<u8>>(3)?, r.get::<f64>(4)?),
        ))
    })
}

thread_local! {
    /// The slots at which this backend's samples drew events, by (buffer, event id): where
    /// `find` looks first.
    static DRAWN: RefCell<FxHashMap<(i32, u128), i64>> = RefCell::new(FxHashMap::default());
}
/// Drawn events a backend keeps the slots of (about 3 MB), all buffers together; all forgotten
/// when a sample would go past it.
const DRAWN_EVENTS: usize = 1 << 16;

/// An event id as a key (event ids are 16 bytes; another length is never kept).
fn drawn_key(id: i32, event: &[u8]) -> Option<(i32, u128)> {
    Some((id, u128::from_be_bytes(event.try_into().ok()?)))
}

/// The slots at which a sample of buffer `id` found its events, kept for [`find`] (a learner
/// writes back the priorities of what it sampled).
pub fn note_drawn<'a>(id: i32, drawn: impl ExactSizeIterator<Item = (&'a Vec<u8>, i64)>) {
    DRAWN.with(|m| {
        let mut m = m.borrow_mut();
        // at most DRAWN_EVENTS kept: a larger sample keeps its first ones (the others are found
        // as any item is); a map past the bound is replaced, which frees it (clear() would not)
        if m.len() + drawn.len().min(DRAWN_EVENTS) > DRAWN_EVENTS {
            *m = Default::default();
        }
        for (event, slot) in drawn.take(DRAWN_EVENTS) {
            if let Some(key) = drawn_key(id, event) {
                m.insert(key, slot);
            }
        }
    })
}

/// A row of `replay_find*.sql`: (event id, slot, the priority the tree holds).
fn found_row(r: &spi::Row) -> Option<(Vec<u8>, i64, f64)> {
    Some((r.get::<Vec<u8>>(1)?, r.get::<i64>(2)?, r.get::<f64>(3)?))
}

/// The items of events `ids` in buffer `id`: (event id, slot, the priority the tree holds), in
/// the latest committed state (a writer, holding the buffer's lock). An event this backend drew
/// from the buffer is looked for at the slot it was drawn from (by primary key, where the sample
/// read it); the others, and those no longer there, through their timestamps in the event-id
/// registry (the items have no index on the event id: see sql/replay.sql).
pub fn find(id: i32, ids: Vec<Vec<u8>>) -> Result<Vec<(Vec<u8>, i64, f64)>, FractalityError> {
    let mut drawn: Vec<(Vec<u8>, i64)> = Vec::new();
    let mut rest: Vec<Vec<u8>> = Vec::new();
    DRAWN.with(|m| {
        let m = m.borrow();
        for event in ids {
            match drawn_key(id, &event).and_then(|k| m.get(&k)) {
                Some(slot) => drawn.push((event, *slot)),
                None => rest.push(event),
            }
        }
    });
    let mut found = Vec::with_capacity(drawn.len() + rest.len());
    if !drawn.is_empty() {
        let items = items_at(id, drawn.iter().map(|d| d.1).collect())?;
        for (event, slot) in drawn {
            match items.get(&slot) {
                Some((_, held, p)) if *held == event => found.push((event, slot, *p)),
                _ => rest.push(event),
            }
        }
    }
    if !rest.is_empty() {
        let quick: Vec<(Vec<u8>, i64, f64)> =
            spi::some_rows(&FIND, &[id.into(), rest.clone().into()], false, found_row)?;
        let missed: Vec<Vec<u8>> = {
            let seen: HashSet<&[u8]> = quick.iter().map(|f| f.0.as_slice()).collect();
            rest.into_iter()
                .filter(|e| !seen.contains(e.as_slice()))
                .collect()
        };
        found.extend(quick);
        if !missed.is_empty() {
            let registered: Vec<(Vec<u8>, i64)> =
                spi::some_rows(&REGISTERED, &[missed.into()], false, spi::Row::pair)?;
            found.extend(in_spans(id, registered)?);
        }
    }
    Ok(found)
}

/// The items of events `events` (id, timestamp) in buffer `id`, found by timestamp: (event id,
/// slot, the priority the tree holds), in the latest committed state. Each is looked for first
/// in the block that starts last at or before its timestamp (one B-tree probe), the rest in
/// every block whose span holds it.
pub fn find_at(
    id: i32,
    events: Vec<(Vec<u8>, i64)>,
) -> Result<Vec<(Vec<u8>, i64, f64)>, FractalityError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, ts): (Vec<Vec<u8>>, Vec<i64>) = events.iter().cloned().unzip();
    let mut found: Vec<(Vec<u8>, i64, f64)> = spi::some_rows(
        &FIND_AT,
        &[id.into(), ids.into(), ts.into()],
        false,
        found_row,
    )?;
    let missed: Vec<(Vec<u8>, i64)> = {
        let seen: HashSet<&[u8]> = found.iter().map(|f| f.0.as_slice()).collect();
        events
            .into_iter()
            .filter(|(e, _)| !seen.contains(e.as_slice()))
            .collect()
    };
    found.extend(in_spans(id, missed)?);
    Ok(found)
}

/// The items of events `events` (id, timestamp) in buffer `id`, looked for in every block whose
/// span holds the timestamp.
fn in_spans(
    id: i32,
    events: Vec<(Vec<u8>, i64)>,
) -> Result<Vec<(Vec<u8>, i64, f64)>, FractalityError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, ts): (Vec<Vec<u8>>, Vec<i64>) = events.into_iter().unzip();
    spi::some_rows(
        &FIND_IN_SPANS,
        &[id.into(), ids.into(), ts.into()],
        false,
        found_row,
    )
}

/// A fold: the items of buffer `id` in `slots` get the priorities `ps` (empty slots stay
/// empty).
pub fn fold_items(id: i32, slots: Vec<i64>, ps: Vec<f64>) -> Result<(), FractalityError> {
    let blocks: BTreeSet<i64> = slots.iter().map(|s| place(*s).0).collect();
    let mut held = priorities(id, &blocks)?;
    for (slot, p) in slots.into_iter().zip(ps) {
        let (block, entry) = place(slot);
        if let Some(e) = held.get_mut(&block).and_then(|v| v.get_mut(entry)) {
            if *e > 0.0 {
                *e = p;
            }
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i64> = held.keys().copied().collect();
    let flat: Vec<f64> = held.into_values().flatten().collect();
    spi::run(&FOLD_ITEMS, &[id.into(), numbers.into(), flat.into()])?;
    Ok(())
}

/// Every item of buffer `id` deleted (its buffer dropped).
pub fn drop_items(id: i32) -> Result<(), FractalityError> {
    spi::run(&DROP_ITEMS, &[id.into()])?;
    Ok(())
}
