//! Replay's queries of its buffers, sum trees and pending priorities (the items' are in
//! [`super::items`]): with `items.rs`, the one part of `replay` that knows tables and columns.
//! Each function runs one query of `sql/queries/replay_*.sql` through [`crate::spi`]; SPI must
//! be connected ([`crate::spi::connect`]). Samplers read with the calling statement's snapshot;
//! writers see their own earlier writes.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::prelude::*;

use crate::errors::FractalityError;
use crate::spi::{self, query, Query};

use super::pending::{Pending, Seen, SeenRow, Write};
use super::tree::{BlockMap, Blocks, OrderedBlocks, FANOUT};

const TREE_READ: Query<'static> = query!("replay_tree_read", [INT4OID, INT2OID, INT8ARRAYOID]);
const TREE_RANGE: Query<'static> =
    query!("replay_tree_range", [INT4OID, INT2OID, INT8OID, INT8OID]);
const TREE_WRITE: Query<'static> = query!(
    "replay_tree_write",
    [INT4OID, INT2OID, INT8ARRAYOID, FLOAT8ARRAYOID, INT4OID]
);
const TREE_CLEAR: Query<'static> = query!("replay_tree_clear", [INT4OID]);
const LOCK_EVENTS: Query<'static> = query!("replay_lock_events", []);
/// Read as it is, or with ` FOR UPDATE` appended to lock the buffer.
const BUFFER: &str = include_str!("../../sql/queries/replay_buffer.sql");
const ENTERED: Query<'static> = query!(
    "replay_entered",
    [INT4OID, INT8OID, INT8OID, INT2OID, FLOAT8OID, INT8OID]
);
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
const DROP: Query<'static> = query!("replay_drop", [TEXTOID]);
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

    /// The blocks `q` returns (block, sums), each copied out as the scan finds it.
    fn blocks(
        &self,
        q: &Query<'_>,
        args: &[pgrx::datum::DatumWithOid<'_>],
    ) -> Result<BlockMap, FractalityError> {
        let mut out = BlockMap::default();
        spi::stream(q, args, self.read_only, |r| {
            if let Some((b, sums)) = block(r) {
                out.insert(b, sums);
            }
        })?;
        Ok(out)
    }
}

impl Blocks for SpiTree {
    fn read(&mut self, level: u16, blocks: &[i64]) -> Result<BlockMap, FractalityError> {
        if blocks.is_empty() {
            return Ok(BlockMap::default());
        }
        let args = [
            self.buffer.into(),
            (level as i16).into(),
            blocks.to_vec().into(),
        ];
        self.blocks(&TREE_READ, &args)
    }

    fn range(&mut self, level: u16, lo: i64, hi: i64) -> Result<BlockMap, FractalityError> {
        let args = [
            self.buffer.into(),
            (level as i16).into(),
            lo.into(),
            hi.into(),
        ];
        self.blocks(&TREE_RANGE, &args)
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
            per_tenant: false,
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

/// Every buffer locked (before items leave them).
pub fn lock_all() -> Result<(), FractalityError> {
    spi::run(&LOCK_ALL, &[])?;
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

/// Deletes the buffer `name` with its items, tree and pending priorities; false when there was
/// none.
pub fn drop(name: &str) -> Result<bool, FractalityError> {
    let Some(id) = spi::one::<i32>(&DROP, &[name.into()], false)? else {
        return Ok(false);
    };
    super::items::drop_items(id)?;
    forget_seen(id);
    Ok(true)
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

/// Bytes a backend's copies hold together, at most (all dropped when more would be kept); a
/// copy larger than this is not kept. Writers may leave a million priorities pending
/// (`fractality.replay_fold_after`), 32 bytes each in a copy (64 with the arrays' spare room):
/// one such copy is kept, and a pooled backend that samples many buffers no longer keeps
/// gigabytes for its whole life.
const SEEN_BYTES: usize = 128 << 20;

/// `seen` kept in `copies` for buffer `id`, within [`SEEN_BUFFERS`] and `budget` bytes.
fn keep_seen(copies: &mut HashMap<i32, Seen>, id: i32, seen: Seen, budget: usize) {
    let bytes = seen.bytes();
    copies.remove(&id);
    if bytes > budget {
        return;
    }
    let held: usize = copies.values().map(Seen::bytes).sum();
    if copies.len() >= SEEN_BUFFERS || held + bytes > budget {
        copies.clear();
    }
    copies.insert(id, seen);
}

/// Forgets the backend's copy of buffer `id`'s pending writes (the buffer dropped).
pub fn forget_seen(id: i32) {
    SEEN.with(|m| m.borrow_mut().remove(&id));
}

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
    SEEN.with(|m| keep_seen(&mut m.borrow_mut(), b.id, seen, SEEN_BYTES));
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
    Option<crate::jsonb::JsonbText>,
);

/// The events of the draws (`ts`, `ids`, in draw order) joined to their state, action, rewards,
/// next state within `within_us` and metadata, by draw number (from 1).
pub fn batch(
    ts: Vec<i64>,
    ids: Vec<Vec<u8>>,
    within_us: i64,
) -> Result<HashMap<usize, Joined>, FractalityError> {
    // the rows are held in the process's own memory until they are returned: at most
    // BATCH_BYTES of them (the draws are with replacement, so one event of large metadata can
    // come back a million times)
    let draws = ts.len();
    let mut held = 0usize;
    let rows: HashMap<usize, Joined> = spi::some_rows(
        &BATCH,
        &[ts.into(), ids.into(), within_us.into()],
        true,
        |r| {
            if held > BATCH_BYTES {
                return None;
            }
            let row = (
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
                    r.get::<crate::jsonb::JsonbText>(15),
                ),
            );
            let j = &row.1;
            held += 256
                + 8 * (j.3.len() + j.4.len() + j.6.as_ref().map_or(0, Vec::len))
                + j.7.as_ref().map_or(0, String::len)
                + j.8.as_ref().map_or(0, String::len)
                + j.9.as_ref().map_or(0, |p| p.0.len());
            Some(row)
        },
    )?;
    if held > BATCH_BYTES {
        return Err(FractalityError::Limit {
            what: format!(
                "replay_batch of {draws} draws: their events and metadata hold more than {BATCH_BYTES} bytes"
            ),
            hint: "Draw fewer events a call (n): a batch is held whole before it is returned, and each draw carries its event's metadata.",
        });
    }
    Ok(rows)
}

/// The most bytes of events and metadata [`batch`] holds (1 GiB).
const BATCH_BYTES: usize = 1 << 30;

/// The writers of events held off until the transaction ends (a backfill's): 55000 at an
/// isolation level whose snapshot predates the lock, which would not see an event committed
/// while it waited.
pub fn lock_events() -> Result<(), FractalityError> {
    // SAFETY: a plain read of the transaction's isolation level
    let level = unsafe { pg_sys::XactIsoLevel };
    if level >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(FractalityError::NeedsReadCommitted(
            "create_replay_buffer with backfill",
            if level == pg_sys::XACT_SERIALIZABLE as i32 {
                "SERIALIZABLE"
            } else {
                "REPEATABLE READ"
            },
        ));
    }
    spi::run(&LOCK_EVENTS, &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(writes: usize) -> Seen {
        let mut s = Seen::new(1, 0.6);
        s.advance(
            (0..writes as i64)
                .map(|i| (1, i, Some((vec![i], vec![1.0], vec![2.0]))))
                .collect(),
        );
        s
    }

    #[test]
    fn copies_are_kept_within_their_budget() {
        let mut m = HashMap::new();
        let one = copy(100).bytes();
        assert!(one > 0);
        keep_seen(&mut m, 1, copy(100), 3 * one);
        keep_seen(&mut m, 2, copy(100), 3 * one);
        assert_eq!(m.len(), 2);
        // past the budget: the copies held go, the new one stays
        keep_seen(&mut m, 3, copy(200), 3 * one);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![3]);
        // one larger than the whole budget is not kept, and takes its old copy with it
        keep_seen(&mut m, 3, copy(1000), 3 * one);
        assert!(m.is_empty());
    }
}
