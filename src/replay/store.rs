//! Replay's queries: the one part of `replay` that knows tables and columns. Each function runs
//! one query of `sql/queries/replay_*.sql` through [`crate::spi`]; SPI must be connected
//! ([`crate::spi::connect`]). Samplers read with the calling statement's snapshot; writers see
//! their own earlier writes.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::errors::FractalityError;
use crate::spi::{self, query, Cursor, Query};

use super::blocks::{Block, ID_BYTES};
use super::pending::{Pending, Seen, SeenRow, Write};
use super::tree::{place, BlockMap, Blocks, OrderedBlocks, FANOUT};

const TREE_READ: Query<'static> = query!("replay_tree_read", [INT4OID, INT2OID, INT8ARRAYOID]);
const TREE_RANGE: Query<'static> =
    query!("replay_tree_range", [INT4OID, INT2OID, INT8OID, INT8OID]);
const TREE_WRITE: Query<'static> = query!(
    "replay_tree_write",
    [INT4OID, INT2OID, INT8ARRAYOID, FLOAT8ARRAYOID, INT4OID]
);
const TREE_CLEAR: Query<'static> = query!("replay_tree_clear", [INT4OID]);
const LEAVES: Query<'static> = query!("replay_leaves", [INT4OID, INT8ARRAYOID]);
/// Read as it is, or with ` FOR UPDATE` appended to lock the buffer.
const BUFFER: &str = include_str!("../../sql/queries/replay_buffer.sql");
const ENTERED: Query<'static> = query!(
    "replay_entered",
    [INT4OID, INT8OID, INT8OID, INT2OID, FLOAT8OID, INT8OID]
);
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
const PENDING_READ: Query<'static> = query!("replay_pending_read", [INT4OID, INT8OID]);
const PENDING_WRITE: Query<'static> = query!(
    "replay_pending_write",
    [INT4OID, INT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID]
);
const PENDING_CLEAR: Query<'static> = query!("replay_pending_clear", [INT4OID]);
const PENDING_BUFFERS: Query<'static> = query!("replay_pending_buffers", []);
const CREATE: Query<'static> = query!(
    "replay_create",
    [TEXTOID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT8OID, INT2OID, INT4OID]
);
const BACKFILL: Query<'static> = query!("replay_backfill", [INT4OID]);
const ALL_ITEMS: Query<'static> = query!("replay_all_items", [INT4OID]);
const DROP: Query<'static> = query!("replay_drop", [TEXTOID]);
const DROP_ITEMS: Query<'static> = query!("replay_drop_items", [INT4OID]);
const BATCH: Query<'static> = query!("replay_batch", [INT8ARRAYOID, BYTEAARRAYOID, INT8OID]);
const LOCK_ALL: Query<'static> = query!("replay_lock_all", []);

// ---- the tree in replay_tree -------------------------------------------------------------------

/// A block as read: its number and entries (copied out in one piece).
fn block(r: &spi::Row) -> Option<(i64, Vec<f64>)> {
    Some((r.get::<i64>(1)?, r.array::<f64>(2)?))
}

/// One buffer's tree through SPI (`read_only` for samplers).
pub struct SpiTree {
    buffer: i32,
    read_only: bool,
}

impl SpiTree {
    pub fn new(buffer: i32, read_only: bool) -> SpiTree {
        SpiTree { buffer, read_only }
    }
}

impl Blocks for SpiTree {
    fn read(&mut self, level: u16, blocks: &[i64]) -> Result<BlockMap, FractalityError> {
        if blocks.is_empty() {
            return Ok(HashMap::new());
        }
        let args = [
            self.buffer.into(),
            (level as i16).into(),
            blocks.to_vec().into(),
        ];
        spi::some_rows(&TREE_READ, &args, self.read_only, block)
    }

    fn range(&mut self, level: u16, lo: i64, hi: i64) -> Result<BlockMap, FractalityError> {
        let args = [
            self.buffer.into(),
            (level as i16).into(),
            lo.into(),
            hi.into(),
        ];
        spi::some_rows(&TREE_RANGE, &args, self.read_only, block)
    }

    fn write(&mut self, level: u16, blocks: &OrderedBlocks) -> Result<(), FractalityError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = blocks.keys().copied().collect();
        let flat: Vec<f64> = blocks.values().flat_map(|v| v.iter().copied()).collect();
        spi::run(
            &TREE_WRITE,
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

/// Every block of buffer `id`'s tree deleted.
pub fn clear_tree(id: i32) -> Result<(), FractalityError> {
    spi::run(&TREE_CLEAR, &[id.into()])?;
    Ok(())
}

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
    let mut out: OrderedBlocks = blocks.iter().map(|k| (*k, vec![0.0; FANOUT])).collect();
    for (block, ps) in priorities(b.id, blocks)? {
        if let Some(entries) = out.get_mut(&block) {
            for (e, p) in entries.iter_mut().zip(ps) {
                *e = if p > 0.0 { p.powf(b.alpha) } else { 0.0 };
            }
        }
    }
    Ok(out)
}

// ---- buffers -----------------------------------------------------------------------------------

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
    /// Priorities written back since the last fold (a slot once a call).
    pub pending: i64,
}

impl Buffer {
    /// The slots the tree must span.
    pub fn slots(&self) -> u64 {
        match self.capacity {
            Some(c) => c as u64,
            None => self.next_seq.max(1) as u64,
        }
    }
}

/// The buffer `name` (or of id `id`), locked for the transaction when `lock`.
pub fn buffer(name: Option<&str>, id: Option<i32>, lock: bool) -> Result<Buffer, FractalityError> {
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
                pending: r.get(11)?,
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

/// Writes `b`'s counters (next sequence number, size, levels, largest priority, pending).
pub fn save_counters(b: &Buffer) -> Result<(), FractalityError> {
    spi::run(
        &ENTERED,
        &[
            b.id.into(),
            b.next_seq.into(),
            b.size.into(),
            (b.levels as i16).into(),
            b.max_priority.into(),
            b.pending.into(),
        ],
    )?;
    Ok(())
}

/// How many items buffer `id` holds (with the transaction's own writes).
pub fn size(id: i32) -> Result<i64, FractalityError> {
    Ok(spi::one::<i64>(&SIZE, &[id.into()], false)?.unwrap_or(0))
}

/// Every buffer locked (before items leave them).
pub fn lock_all() -> Result<(), FractalityError> {
    spi::run(&LOCK_ALL, &[])?;
    Ok(())
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
/// block) of each, and how many items they held.
pub fn remove_before(cutoff_us: i64) -> Result<(Vec<(i32, i64)>, i64), FractalityError> {
    let rows: Vec<(i32, i64, i16)> =
        spi::some_rows(&REMOVE_BEFORE, &[cutoff_us.into()], false, |r| {
            Some((r.get::<i32>(1)?, r.get::<i64>(2)?, r.get::<i16>(3)?))
        })?;
    let n = rows.iter().map(|r| r.2 as i64).sum();
    Ok((rows.into_iter().map(|r| (r.0, r.1)).collect(), n))
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
    spi::some_rows(&BLOCKS_READ, &[id.into(), ids.into()], false, |r| {
        let block =
            Block::from_parts(r.array::<i64>(2)?, r.get::<Vec<u8>>(3)?, r.array::<f64>(4)?)?;
        Some((r.get::<i64>(1)?, block))
    })
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

/// Inserts a buffer; its id, None when one of that name exists already.
#[allow(clippy::too_many_arguments)] // the buffer's columns
pub fn create(
    name: &str,
    alpha: f64,
    beta: f64,
    epsilon: f64,
    capacity: Option<i64>,
    event_type: Option<i16>,
    policy_version: Option<i32>,
) -> Result<Option<i32>, FractalityError> {
    spi::one::<i32>(
        &CREATE,
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
    )
}

/// The stored hot events that pass buffer `id`'s filter entered into it; how many.
pub fn backfill(id: i32) -> Result<i64, FractalityError> {
    Ok(spi::one::<i64>(&BACKFILL, &[id.into()], false)?.unwrap_or(0))
}

/// A cursor over buffer `id`'s blocks of items: (block, the priorities of its slots).
pub fn all_items(id: i32) -> Result<Cursor, FractalityError> {
    Cursor::open(&ALL_ITEMS, &[id.into()], false)
}

/// Deletes the buffer `name` with its items, tree and pending priorities; false when there was
/// none.
pub fn drop(name: &str) -> Result<bool, FractalityError> {
    let Some(id) = spi::one::<i32>(&DROP, &[name.into()], false)? else {
        return Ok(false);
    };
    spi::run(&DROP_ITEMS, &[id.into()])?;
    Ok(true)
}

// ---- items -------------------------------------------------------------------------------------

/// An item: its event's timestamp and id, its priority.
pub type Item = (i64, Vec<u8>, f64);

/// Buffer `id`'s items in `slots`, by slot (`read_only`: in the calling statement's snapshot).
fn items_at(
    id: i32,
    slots: Vec<i64>,
    read_only: bool,
) -> Result<HashMap<i64, Item>, FractalityError> {
    spi::some_rows(&ITEMS_BY_SLOT, &[id.into(), slots.into()], read_only, |r| {
        Some((
            r.get::<i64>(1)?,
            (r.get::<i64>(2)?, r.get::<Vec<u8>>(3)?, r.get::<f64>(4)?),
        ))
    })
}

/// Buffer `id`'s items in `slots`, by slot, as a sampler sees them.
pub fn items_by_slot(id: i32, slots: Vec<i64>) -> Result<HashMap<i64, Item>, FractalityError> {
    items_at(id, slots, true)
}

thread_local! {
    /// The slots at which this backend's samples drew events, by (buffer, event id): where
    /// `find` looks first.
    static DRAWN: RefCell<HashMap<(i32, u128), i64>> = RefCell::new(HashMap::new());
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
        if m.len() + drawn.len() > DRAWN_EVENTS {
            m.clear();
        }
        for (event, slot) in drawn {
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
        let items = items_at(id, drawn.iter().map(|d| d.1).collect(), false)?;
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

// ---- pending priorities ------------------------------------------------------------------------

/// Buffer `id`'s pending writes in the order they were made, each with its table's OID and its
/// number, and its arrays when it is after write number `after` (-1: every one).
fn pending_rows(id: i32, after: i64, read_only: bool) -> Result<Vec<SeenRow>, FractalityError> {
    spi::some_rows(&PENDING_READ, &[id.into(), after.into()], read_only, |r| {
        let write = match r.array::<i64>(3) {
            Some(slots) => Some((slots, r.array::<f64>(4)?, r.array::<f64>(5)?)),
            None => None,
        };
        Some((r.get::<i64>(1)?, r.get::<i64>(2)?, write))
    })
}

/// Buffer `b`'s pending writes in the order they were made (with the transaction's own);
/// none read when its counter says there are none.
pub fn pending_writes(b: &Buffer) -> Result<Vec<Write>, FractalityError> {
    if b.pending == 0 {
        return Ok(Vec::new());
    }
    Ok(pending_rows(b.id, -1, false)?
        .into_iter()
        .filter_map(|r| r.2)
        .collect())
}

/// Buffer `b`'s pending priorities (with the transaction's own writes).
pub fn pending(b: &Buffer) -> Result<Pending, FractalityError> {
    Ok(Pending::from_writes(b.alpha, pending_writes(b)?))
}

thread_local! {
    /// The samplers' copies of pending writes, by buffer (see [`Seen`]).
    static SEEN: RefCell<HashMap<i32, Seen>> = RefCell::new(HashMap::new());
}
/// Buffers whose copies a backend keeps, at most (all dropped when more are sampled).
const SEEN_BUFFERS: usize = 64;

/// `f` of buffer `b`'s pending priorities as a sampler sees them (the statement's snapshot):
/// the backend's copy of the writes it read before, brought up to date with the arrays of only
/// the writes made since, and kept (not copied) for the next sample.
pub fn with_pending_seen<R>(
    b: &Buffer,
    f: impl FnOnce(&Pending) -> Result<R, FractalityError>,
) -> Result<R, FractalityError> {
    let held = SEEN.with(|m| m.borrow_mut().remove(&b.id));
    if b.pending == 0 {
        return f(&Pending::empty(b.alpha));
    }
    let after = held.as_ref().map_or(-1, Seen::last);
    let mut rows = pending_rows(b.id, after, true)?;
    let mut seen = match held {
        Some(h) if h.holds(b.alpha, &rows) => h,
        held => {
            if held.is_some() {
                // a fold or a rollback since: every write again
                rows = pending_rows(b.id, -1, true)?;
            }
            Seen::new(rows.first().map_or(0, |r| r.0), b.alpha)
        }
    };
    seen.advance(rows);
    let r = f(seen.pending());
    SEEN.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= SEEN_BUFFERS {
            m.clear();
        }
        m.insert(b.id, seen);
    });
    r
}

/// One write of priorities to buffer `id` appended: `slots`, the priorities they had, the new.
pub fn write_pending(id: i32, (slots, olds, news): Write) -> Result<(), FractalityError> {
    spi::run(
        &PENDING_WRITE,
        &[id.into(), slots.into(), olds.into(), news.into()],
    )?;
    Ok(())
}

/// Buffer `id`'s pending priorities deleted (once folded).
pub fn clear_pending(id: i32) -> Result<(), FractalityError> {
    spi::run(&PENDING_CLEAR, &[id.into()])?;
    Ok(())
}

/// The buffers with priorities pending.
pub fn pending_buffers() -> Result<Vec<i32>, FractalityError> {
    spi::some_rows(&PENDING_BUFFERS, &[], false, |r| r.get::<i32>(1))
}

/// What `replay_batch` joins to a draw: episode, step, type, state, action, the five rewards,
/// the next state, and the action metadata (intent type, executor, parameters).
pub type Joined = (
    i64,
    i32,
    i16,
    Vec<Option<f32>>,
    Vec<Option<f32>>,
    [f32; 5],
    Option<Vec<Option<f32>>>,
    Option<String>,
    Option<String>,
    Option<JsonB>,
);

/// The events of the draws (`ts`, `ids`, in draw order) joined to their state, action, rewards,
/// next state within `within_us` and metadata, by draw number (from 1).
pub fn batch(
    ts: Vec<i64>,
    ids: Vec<Vec<u8>>,
    within_us: i64,
) -> Result<HashMap<usize, Joined>, FractalityError> {
    spi::some_rows(
        &BATCH,
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
                    r.get::<JsonB>(15),
                ),
            ))
        },
    )
}
