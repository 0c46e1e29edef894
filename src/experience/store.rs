//! Writing a validated batch: the one part of `experience` that knows tables and columns.
//! [`insert_events`] refuses duplicates of stored events (a query of `sql/queries/`, through
//! [`crate::spi`]), COPYs the events through PostgreSQL's own COPY FROM machinery, fed the batch
//! in binary COPY format from memory ([`encode_copy`]), and INSERTs their metadata with one query
//! over arrays.

use pgrx::JsonB;

use crate::errors::FractalityError;
use crate::spi::{self, query, relation_exists, Query};

use super::event::{stored_duplicate, Event, ACTION_FIELDS, REWARD_FIELDS, STATE_FIELDS};

const INSERT_METADATA: Query<'static> = query!(
    "experience_insert_metadata",
    [
        INT8ARRAYOID,
        BYTEAARRAYOID,
        TEXTARRAYOID,
        TEXTARRAYOID,
        JSONBARRAYOID
    ]
);

/// The stored events (hot or archived) that hold one of the batch's ids, whatever their
/// timestamps: primary-key probes of experience_event_ids.
const STORED_IDS: Query<'static> = query!("experience_stored_ids", [BYTEAARRAYOID]);

/// For a schema of 0.4.0 and earlier served by this library until `ALTER EXTENSION fractality
/// UPDATE` has run (no experience_event_ids): the stored events of the batch's time window, in
/// the hot tier and in the cold one (sql/archive.sql).
const STORED_IN_WINDOW: Query<'static> = query!("experience_stored_in_window", [INT8OID, INT8OID]);

/// The same in the hot tier alone, for a schema of 0.1.0 (no cold tier) served by this library
/// until `ALTER EXTENSION fractality UPDATE` has run.
const STORED_IN_WINDOW_HOT: Query<'static> =
    query!("experience_stored_in_window_hot", [INT8OID, INT8OID]);

/// Whether the cold tier of events exists (two syscache lookups).
fn cold_tier_exists() -> bool {
    relation_exists(c"experience_events_archive")
}

/// The columns the COPY below fills, in its order: the event's own, its state, action and
/// rewards, and the policy's.
fn copy_columns() -> impl Iterator<Item = &'static str> {
    let event = [
        "timestamp",
        "event_id",
        "episode_id",
        "step_number",
        "event_type",
        "flags",
    ];
    let policy = ["adna_version_hash", "sequence_number"];
    event
        .into_iter()
        .chain(STATE_FIELDS)
        .chain(ACTION_FIELDS)
        .chain(REWARD_FIELDS)
        .chain(policy)
}

/// The batch in PostgreSQL's binary COPY format, columns as in [`copy_columns`].
pub fn encode_copy(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + events.len() * 250 + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let columns = (copy_columns().count() as i16).to_be_bytes();
    for e in events {
        out.extend_from_slice(&columns);
        field(&mut out, &e.timestamp.to_be_bytes());
        field(&mut out, &e.event_id);
        field(&mut out, &e.episode_id.to_be_bytes());
        field(&mut out, &e.step_number.to_be_bytes());
        field(&mut out, &e.event_type.to_be_bytes());
        field(&mut out, &e.flags.to_be_bytes());
        for x in e.state.iter().chain(&e.action).chain(&e.rewards) {
            field(&mut out, &x.to_be_bytes());
        }
        field(&mut out, &e.adna_version_hash.to_be_bytes());
        field(&mut out, &e.sequence_number.to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

thread_local! {
    /// The COPY data being fed to CopyFrom, and how much of it was read.
    static COPY_SOURCE: std::cell::RefCell<(Vec<u8>, usize)> =
        const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// COPY_SOURCE holding one call's data while the guard lives. Dropped on every way out (an ERROR
/// or a cancel unwinds through it), it gives back what was there before: the data is not kept
/// in the backend after a failed call, and a write_events called from a trigger of the COPY
/// (which reads its own data) leaves the outer one's data as it found it.
struct CopySourceGuard {
    outer: (Vec<u8>, usize),
}

impl CopySourceGuard {
    fn fill(data: Vec<u8>) -> CopySourceGuard {
        let outer = COPY_SOURCE.with(|src| std::mem::replace(&mut *src.borrow_mut(), (data, 0)));
        CopySourceGuard { outer }
    }
}

impl Drop for CopySourceGuard {
    fn drop(&mut self) {
        let outer = std::mem::take(&mut self.outer);
        COPY_SOURCE.with(|src| {
            if let Ok(mut src) = src.try_borrow_mut() {
                *src = outer;
            }
        });
    }
}

/// CopyFrom's data source: the next bytes of COPY_SOURCE; 0 at the end.
unsafe extern "C-unwind" fn copy_source(
    outbuf: *mut std::ffi::c_void,
    _minread: std::ffi::c_int,
    maxread: std::ffi::c_int,
) -> std::ffi::c_int {
    COPY_SOURCE.with(|src| {
        let mut src = src.borrow_mut();
        let (data, pos) = &mut *src;
        let n = (data.len() - *pos).min(maxread.max(0) as usize);
        std::ptr::copy_nonoverlapping(data.as_ptr().add(*pos), outbuf as *mut u8, n);
        *pos += n;
        n as std::ffi::c_int
    })
}

/// Inserts the events with PostgreSQL's own COPY FROM machinery (binary format from memory):
/// partition routing, multi-row inserts, index updates, constraints and triggers exactly as a
/// client's COPY, without a round trip through SQL text or arrays. The caller needs INSERT on
/// each column written, as for an INSERT; a table under row-level security is refused (0A000),
/// as COPY FROM refuses it.
fn copy_events(events: &[Event]) -> u64 {
    use pgrx::pg_sys;
    let _source = CopySourceGuard::fill(encode_copy(events));
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"fractality".as_ptr(), false);
        let relid = pg_sys::get_relname_relid(c"experience_events".as_ptr(), nsp);
        if relid == pg_sys::InvalidOid {
            FractalityError::InternalStep("fractality.experience_events does not exist".into())
                .report();
        }
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        let nsitem = pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            pg_sys::RowExclusiveLock as i32,
            std::ptr::null_mut(),
            false,
            false,
        );
        // as COPY FROM (DoCopy): INSERT privilege on each column written, an error otherwise;
        // a table under row-level security is refused, as COPY FROM refuses it
        let rte = (*nsitem).p_rte;
        (*rte).requiredPerms = pg_sys::ACL_INSERT as pg_sys::AclMode;
        let mut columns: *mut pg_sys::List = std::ptr::null_mut();
        for name in copy_columns() {
            let c = std::ffi::CString::new(name).expect("no NUL");
            let attno = pg_sys::attnameAttNum(rel, c.as_ptr(), false);
            if attno <= 0 {
                FractalityError::InternalStep(format!(
                    "fractality.experience_events has no column {name}"
                ))
                .report();
            }
            (*rte).insertedCols = pg_sys::bms_add_member(
                (*rte).insertedCols,
                attno as i32 - pg_sys::FirstLowInvalidHeapAttributeNumber,
            );
            let node = pg_sys::makeString(pg_sys::pstrdup(c.as_ptr()));
            columns = pg_sys::lappend(columns, node.cast());
        }
        pg_sys::ExecCheckRTPerms((*pstate).p_rtable, true);
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            FractalityError::CopyUnderRowSecurity("write_event(s)", "fractality.experience_events")
                .report();
        }
        let format = pg_sys::makeDefElem(
            pg_sys::pstrdup(c"format".as_ptr()),
            pg_sys::makeString(pg_sys::pstrdup(c"binary".as_ptr())).cast(),
            -1,
        );
        let options = pg_sys::lappend(std::ptr::null_mut(), format.cast());
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(copy_source),
            columns,
            options,
        );
        let n = pg_sys::CopyFrom(cstate);
        pg_sys::EndCopyFrom(cstate);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        n
    }
}

/// The stored events (timestamp, id) that the batch might duplicate: with the id registry
/// (`registry`), those of its ids; on an older schema, those of its time window.
fn stored_events(events: &[Event], registry: bool) -> Result<Vec<(i64, Vec<u8>)>, FractalityError> {
    let row = |r: &spi::Row| {
        (
            r.get::<i64>(1).unwrap_or_default(),
            r.get::<Vec<u8>>(2).unwrap_or_default(),
        )
    };
    if registry {
        let ids: Vec<Vec<u8>> = events.iter().map(|e| e.event_id.to_vec()).collect();
        return spi::rows(&STORED_IDS, &[ids.into()], false, row);
    }
    let lo = events.iter().map(|e| e.timestamp).min().unwrap_or(0);
    let hi = events.iter().map(|e| e.timestamp).max().unwrap_or(0);
    let q = if cold_tier_exists() {
        &STORED_IN_WINDOW
    } else {
        &STORED_IN_WINDOW_HOT
    };
    spi::rows(q, &[lo.into(), hi.into()], false, row)
}

/// INSERTs the action metadata of the events that have some.
fn insert_metadata(with_meta: &[&Event]) -> Result<(), FractalityError> {
    let meta = |e: &&Event| e.metadata.clone().expect("filtered");
    let margs: Vec<pgrx::datum::DatumWithOid> = vec![
        with_meta
            .iter()
            .map(|e| e.timestamp)
            .collect::<Vec<i64>>()
            .into(),
        with_meta
            .iter()
            .map(|e| e.event_id.to_vec())
            .collect::<Vec<Vec<u8>>>()
            .into(),
        with_meta
            .iter()
            .map(|e| meta(e).intent_type)
            .collect::<Vec<String>>()
            .into(),
        with_meta
            .iter()
            .map(|e| meta(e).executor_id)
            .collect::<Vec<String>>()
            .into(),
        with_meta
            .iter()
            .map(|e| JsonB(meta(e).parameters))
            .collect::<Vec<JsonB>>()
            .into(),
    ];
    spi::run(&INSERT_METADATA, &margs)?;
    Ok(())
}

/// Writes a validated batch: refuses duplicates of stored events, then COPYs the events and
/// INSERTs their metadata. Returns the number of events written.
pub fn insert_events(events: &[Event]) -> Result<i64, FractalityError> {
    if events.is_empty() {
        return Ok(0);
    }

    // duplicates of stored events (see the storage note in sql/experience.sql); a concurrent
    // writer of the same id is stopped by experience_event_ids' primary key
    let registry = relation_exists(c"experience_event_ids");
    let stored = spi::connect(|| stored_events(events, registry))?;
    if let Some(duplicate) = stored_duplicate(events, &stored, registry) {
        return Err(duplicate);
    }

    let copied = copy_events(events);
    if copied != events.len() as u64 {
        return Err(FractalityError::InternalStep(format!(
            "write_events: COPY took {copied} of {} events",
            events.len()
        )));
    }

    let with_meta: Vec<&Event> = events.iter().filter(|e| e.metadata.is_some()).collect();
    if !with_meta.is_empty() {
        spi::connect(|| insert_metadata(&with_meta))?;
    }
    Ok(events.len() as i64)
}
