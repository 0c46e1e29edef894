//! The experience store's ingest: `write_event`, `write_events` (a JSON array parsed natively
//! with serde, or typed arrays), `write_event_with_metadata`.
//!
//! Every form validates the whole batch first (plain Rust, unit-tested below), then writes it
//! through PostgreSQL's own COPY FROM machinery, fed the batch in binary COPY format from memory
//! (the metadata, if any, with one INSERT over arrays through SPI). A malformed batch is refused
//! whole with an error naming the element and the field; nothing of it is written.

use std::collections::HashSet;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::errors::{FractalityError, OrReport};
use crate::jsonb::{self, JsonbArg};

/// One event, column for column as in experience_events.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub timestamp: i64,
    pub event_id: [u8; 16],
    pub episode_id: i64,
    pub step_number: i32,
    pub event_type: i16,
    pub flags: i16,
    pub state: [f32; 8],
    pub action: [f32; 8],
    /// homeostasis, curiosity, efficiency, goal.
    pub rewards: [f32; 4],
    pub adna_version_hash: i32,
    pub sequence_number: i32,
    pub metadata: Option<Metadata>,
}

/// One action_metadata row.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub intent_type: String,
    pub executor_id: String,
    pub parameters: Value,
}

pub const REWARD_FIELDS: [&str; 4] = [
    "reward_homeostasis",
    "reward_curiosity",
    "reward_efficiency",
    "reward_goal",
];
const STATE_FIELDS: [&str; 8] = [
    "state_l1", "state_l2", "state_l3", "state_l4", "state_l5", "state_l6", "state_l7", "state_l8",
];
const ACTION_FIELDS: [&str; 8] = [
    "action_l1",
    "action_l2",
    "action_l3",
    "action_l4",
    "action_l5",
    "action_l6",
    "action_l7",
    "action_l8",
];

fn bad(context: &str, field: &str, problem: impl Into<String>) -> FractalityError {
    FractalityError::BadEvent {
        context: context.to_string(),
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A JSON value, short, for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(57)])
    } else {
        s
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// 32 hex digits, or a UUID string (8-4-4-4-12 hex digits with hyphens); `\x` may lead.
pub fn parse_event_id(text: &str) -> Result<[u8; 16], String> {
    let t = text.strip_prefix("\\x").unwrap_or(text);
    let digits: String = if t.len() == 36 && t.matches('-').count() == 4 {
        let parts: Vec<&str> = t.split('-').collect();
        if parts.iter().map(|p| p.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(format!("\"{text}\" is not a UUID"));
        }
        parts.concat()
    } else {
        t.to_string()
    };
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 32 hex digits or a UUID, got \"{text}\" (not hexadecimal)"
        ));
    }
    if digits.len() != 32 {
        return Err(format!(
            "expected 16 bytes (32 hex digits or a UUID), got \"{text}\" ({} hex digits{})",
            digits.len(),
            if digits.len().is_multiple_of(2) {
                format!(", {} bytes", digits.len() / 2)
            } else {
                String::new()
            }
        ));
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

fn int_field(
    ctx: &str,
    obj: &Map<String, Value>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<i64, FractalityError> {
    let v = obj.get(name).ok_or_else(|| bad(ctx, name, "missing"))?;
    let n = v
        .as_i64()
        .ok_or_else(|| bad(ctx, name, format!("expected an integer, got {}", show(v))))?;
    if n < min || n > max {
        return Err(bad(
            ctx,
            name,
            format!("{n} is out of range [{min}, {max}]"),
        ));
    }
    Ok(n)
}

fn real_field(
    ctx: &str,
    obj: &Map<String, Value>,
    name: &str,
    default: Option<f32>,
) -> Result<f32, FractalityError> {
    let v = match (obj.get(name), default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d),
        (None, None) => return Err(bad(ctx, name, "missing")),
    };
    let x = v
        .as_f64()
        .ok_or_else(|| bad(ctx, name, format!("expected a number, got {}", show(v))))?;
    finite_real(ctx, name, x)
}

fn finite_real(ctx: &str, name: &str, x: f64) -> Result<f32, FractalityError> {
    let r = x as f32;
    if !r.is_finite() {
        return Err(bad(
            ctx,
            name,
            format!("{} is not a finite real", crate::errors::pg_float(x)),
        ));
    }
    Ok(r)
}

fn text_field(ctx: &str, obj: &Map<String, Value>, name: &str) -> Result<String, FractalityError> {
    let v = obj.get(name).ok_or_else(|| bad(ctx, name, "missing"))?;
    let s = v
        .as_str()
        .ok_or_else(|| bad(ctx, name, format!("expected a string, got {}", show(v))))?;
    if s.is_empty() || s.chars().count() > 255 {
        return Err(bad(
            ctx,
            name,
            format!("expected 1 to 255 characters, got {}", s.chars().count()),
        ));
    }
    Ok(s.to_string())
}

/// An action_metadata object: intent_type, executor_id, parameters (an object, default {}).
pub fn parse_metadata(ctx: &str, v: &Value) -> Result<Metadata, FractalityError> {
    let obj = v.as_object().ok_or_else(|| {
        bad(
            ctx,
            "metadata",
            format!("expected an object, got {}", show(v)),
        )
    })?;
    for key in obj.keys() {
        if !["intent_type", "executor_id", "parameters"].contains(&key.as_str()) {
            return Err(bad(ctx, &format!("metadata.{key}"), "unknown field"));
        }
    }
    let intent_type = text_field(ctx, obj, "intent_type").map_err(|_| {
        bad(
            ctx,
            "metadata.intent_type",
            "expected a string of 1 to 255 characters",
        )
    })?;
    let executor_id = text_field(ctx, obj, "executor_id").map_err(|_| {
        bad(
            ctx,
            "metadata.executor_id",
            "expected a string of 1 to 255 characters",
        )
    })?;
    for (name, v) in [("intent_type", &intent_type), ("executor_id", &executor_id)] {
        if v.contains('\0') {
            return Err(bad(
                ctx,
                &format!("metadata.{name}"),
                "contains \\u0000, which text cannot hold",
            ));
        }
    }
    let parameters = match obj.get("parameters") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) if has_nul(p) => {
            return Err(bad(
                ctx,
                "metadata.parameters",
                "contains \\u0000, which jsonb cannot hold",
            ))
        }
        Some(p @ Value::Object(_)) => p.clone(),
        Some(p) => {
            return Err(bad(
                ctx,
                "metadata.parameters",
                format!("expected an object, got {}", show(p)),
            ))
        }
    };
    Ok(Metadata {
        intent_type,
        executor_id,
        parameters,
    })
}

/// Whether a string (or key) anywhere in `v` holds U+0000 (JSON text can, jsonb cannot).
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn known_field(k: &str) -> bool {
    match k {
        // the columns besides state, action and rewards, and the optional metadata object
        "event_id" | "timestamp" | "episode_id" | "step_number" | "event_type" | "flags"
        | "adna_version_hash" | "sequence_number" | "metadata" => true,
        _ => {
            (k.len() == 8 && k.starts_with("state_l") && (b'1'..=b'8').contains(&k.as_bytes()[7]))
                || (k.len() == 9
                    && k.starts_with("action_l")
                    && (b'1'..=b'8').contains(&k.as_bytes()[8]))
                || REWARD_FIELDS.contains(&k)
        }
    }
}

/// One event object with the seed's column names.
pub fn parse_event(ctx: &str, v: &Value) -> Result<Event, FractalityError> {
    let obj = v.as_object().ok_or_else(|| {
        bad(
            ctx,
            "(event)",
            format!("expected an object, got {}", show(v)),
        )
    })?;
    if let Some(k) = obj.keys().find(|k| !known_field(k)) {
        return Err(bad(ctx, k, "unknown field"));
    }
    let id_value = obj
        .get("event_id")
        .ok_or_else(|| bad(ctx, "event_id", "missing"))?;
    let id_text = id_value.as_str().ok_or_else(|| {
        bad(
            ctx,
            "event_id",
            format!(
                "expected a string of 32 hex digits or a UUID, got {}",
                show(id_value)
            ),
        )
    })?;
    let event_id = parse_event_id(id_text).map_err(|m| bad(ctx, "event_id", m))?;
    let mut state = [0f32; 8];
    for (s, name) in state.iter_mut().zip(STATE_FIELDS) {
        *s = real_field(ctx, obj, name, None)?;
    }
    let mut action = [0f32; 8];
    for (a, name) in action.iter_mut().zip(ACTION_FIELDS) {
        *a = real_field(ctx, obj, name, None)?;
    }
    let mut rewards = [0f32; 4];
    for (r, name) in rewards.iter_mut().zip(REWARD_FIELDS) {
        *r = real_field(ctx, obj, name, Some(0.0))?;
    }
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m) => Some(parse_metadata(ctx, m)?),
    };
    Ok(Event {
        timestamp: int_field(ctx, obj, "timestamp", 0, i64::MAX)?,
        event_id,
        episode_id: int_field(ctx, obj, "episode_id", i64::MIN, i64::MAX)?,
        step_number: int_field(ctx, obj, "step_number", i32::MIN.into(), i32::MAX.into())? as i32,
        event_type: int_field(ctx, obj, "event_type", i16::MIN.into(), i16::MAX.into())? as i16,
        flags: int_field(ctx, obj, "flags", i16::MIN.into(), i16::MAX.into())? as i16,
        state,
        action,
        rewards,
        adna_version_hash: int_field(
            ctx,
            obj,
            "adna_version_hash",
            i32::MIN.into(),
            i32::MAX.into(),
        )? as i32,
        sequence_number: int_field(
            ctx,
            obj,
            "sequence_number",
            i32::MIN.into(),
            i32::MAX.into(),
        )? as i32,
        metadata,
    })
}

/// A JSON array of event objects; the first malformed element refuses the whole batch.
pub fn parse_batch(batch: &Value) -> Result<Vec<Event>, FractalityError> {
    let items = batch.as_array().ok_or_else(|| {
        bad(
            "write_events",
            "(batch)",
            format!("expected a JSON array of events, got {}", show(batch)),
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(parse_event(&format!("write_events: element {i}"), item)?);
    }
    check_unique(&out)?;
    Ok(out)
}

/// No two events of a batch share an event id (whatever their timestamps).
pub fn check_unique(events: &[Event]) -> Result<(), FractalityError> {
    let mut seen = std::collections::HashMap::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if let Some(first) = seen.insert(e.event_id, i) {
            return Err(FractalityError::DuplicateEvent {
                timestamp: e.timestamp,
                event_id: hex(&e.event_id),
                detail: format!("elements {first} and {i} of the batch"),
            });
        }
    }
    Ok(())
}

// ---- writing ---------------------------------------------------------------------------------

const INSERT_METADATA: &str = r#"
INSERT INTO fractality.action_metadata (event_timestamp, event_id, intent_type, executor_id, parameters)
SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::jsonb[])"#;

/// The stored events (hot or archived) that hold one of the batch's ids, whatever their
/// timestamps: primary-key probes of experience_event_ids.
const STORED_IDS: &str = r#"
SELECT i."timestamp", i.event_id FROM fractality.experience_event_ids i
 WHERE i.event_id = ANY($1)"#;

/// For a schema of 0.4.0 and earlier served by this library until `ALTER EXTENSION fractality
/// UPDATE` has run (no experience_event_ids): the stored events of the batch's time window, in
/// the hot tier and in the cold one (sql/archive.sql).
const STORED_IN_WINDOW: &str = r#"
SELECT "timestamp", event_id FROM fractality.experience_events
 WHERE "timestamp" BETWEEN $1 AND $2
UNION ALL
SELECT "timestamp", event_id FROM fractality.experience_events_archive
 WHERE "timestamp" BETWEEN $1 AND $2"#;

/// The same in the hot tier alone, for a schema of 0.1.0 (no cold tier) served by this library
/// until `ALTER EXTENSION fractality UPDATE` has run.
const STORED_IN_WINDOW_HOT: &str = r#"
SELECT "timestamp", event_id FROM fractality.experience_events
 WHERE "timestamp" BETWEEN $1 AND $2"#;

/// Whether the cold tier of events exists (two syscache lookups).
fn cold_tier_exists() -> bool {
    relation_exists(c"experience_events_archive")
}

fn relation_exists(name: &std::ffi::CStr) -> bool {
    // SAFETY: plain catalog lookups by name, inside a transaction.
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"fractality".as_ptr(), true);
        ns != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(name.as_ptr(), ns) != pg_sys::InvalidOid
    }
}

/// The columns the COPY below fills, in its order.
const COPY_COLUMNS: [&str; 28] = [
    "timestamp",
    "event_id",
    "episode_id",
    "step_number",
    "event_type",
    "flags",
    "state_l1",
    "state_l2",
    "state_l3",
    "state_l4",
    "state_l5",
    "state_l6",
    "state_l7",
    "state_l8",
    "action_l1",
    "action_l2",
    "action_l3",
    "action_l4",
    "action_l5",
    "action_l6",
    "action_l7",
    "action_l8",
    "reward_homeostasis",
    "reward_curiosity",
    "reward_efficiency",
    "reward_goal",
    "adna_version_hash",
    "sequence_number",
];

/// The batch in PostgreSQL's binary COPY format, columns as in `COPY_COLUMNS`.
pub fn encode_copy(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + events.len() * 250 + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    for e in events {
        out.extend_from_slice(&(COPY_COLUMNS.len() as i16).to_be_bytes());
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
/// experience_events, as for an INSERT.
fn copy_events(events: &[Event]) -> u64 {
    use pgrx::pg_sys;
    COPY_SOURCE.with(|src| *src.borrow_mut() = (encode_copy(events), 0));
    let copied = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"fractality".as_ptr(), false);
        let relid = pg_sys::get_relname_relid(c"experience_events".as_ptr(), nsp);
        if relid == pg_sys::InvalidOid {
            error!("fractality.experience_events does not exist");
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
        // as COPY FROM: INSERT privilege on the table (an error otherwise)
        (*(*nsitem).p_rte).requiredPerms = pg_sys::ACL_INSERT as pg_sys::AclMode;
        pg_sys::ExecCheckRTPerms((*pstate).p_rtable, true);
        let mut columns: *mut pg_sys::List = std::ptr::null_mut();
        for name in COPY_COLUMNS {
            let c = std::ffi::CString::new(name).expect("no NUL");
            let node = pg_sys::makeString(pg_sys::pstrdup(c.as_ptr()));
            columns = pg_sys::lappend(columns, node.cast());
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
    };
    COPY_SOURCE.with(|src| *src.borrow_mut() = (Vec::new(), 0));
    copied
}

/// Writes a validated batch: refuses duplicates of stored events, then COPYs the events and
/// INSERTs their metadata. Returns the number of events written.
pub fn insert_events(events: &[Event]) -> i64 {
    if events.is_empty() {
        return 0;
    }
    let lo = events.iter().map(|e| e.timestamp).min().unwrap_or(0);
    let hi = events.iter().map(|e| e.timestamp).max().unwrap_or(0);

    // duplicates of stored events (see the storage note in sql/experience.sql); a concurrent
    // writer of the same id is stopped by experience_event_ids' primary key
    let registry = relation_exists(c"experience_event_ids");
    Spi::connect(|client| {
        let stored = if registry {
            let ids: Vec<Vec<u8>> = events.iter().map(|e| e.event_id.to_vec()).collect();
            client.select(STORED_IDS, None, &[ids.into()])
        } else {
            client.select(
                if cold_tier_exists() {
                    STORED_IN_WINDOW
                } else {
                    STORED_IN_WINDOW_HOT
                },
                None,
                &[lo.into(), hi.into()],
            )
        }
        .unwrap_or_else(|e| error!("reading stored events: {e}"));
        if stored.is_empty() {
            return;
        }
        let batch: HashSet<(i64, [u8; 16])> =
            events.iter().map(|e| (e.timestamp, e.event_id)).collect();
        let ids: HashSet<[u8; 16]> = events.iter().map(|e| e.event_id).collect();
        for row in stored {
            let ts: i64 = row.get(1).ok().flatten().unwrap_or_default();
            let id: Vec<u8> = row.get(2).ok().flatten().unwrap_or_default();
            if let Ok(id16) = <[u8; 16]>::try_from(id.as_slice()) {
                if (registry && ids.contains(&id16)) || batch.contains(&(ts, id16)) {
                    FractalityError::DuplicateEvent {
                        timestamp: ts,
                        event_id: hex(&id16),
                        detail: "already stored".into(),
                    }
                    .report();
                }
            }
        }
    });

    let copied = copy_events(events);
    if copied != events.len() as u64 {
        error!(
            "write_events: COPY took {copied} of {} events",
            events.len()
        );
    }

    let with_meta: Vec<&Event> = events.iter().filter(|e| e.metadata.is_some()).collect();
    if !with_meta.is_empty() {
        Spi::connect_mut(|client| {
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
            client
                .update(INSERT_METADATA, None, &margs)
                .unwrap_or_else(|e| error!("inserting action metadata: {e}"));
        });
    }
    events.len() as i64
}

// ---- the SQL functions -----------------------------------------------------------------------

/// Writes a batch of events given as a JSON array of objects (the seed's column names; an
/// optional "metadata" object per event). Returns the number of events written.
#[pg_extern(volatile, strict, parallel_unsafe, name = "write_events")]
fn write_events_json(events: JsonbArg<'_>) -> i64 {
    crate::errors::writer(c"write_events");
    let batch = parse_batch_jsonb(&events).unwrap_or_report();
    insert_events(&batch)
}

/// [`parse_batch`] over the jsonb in place: each element decoded straight from its binary
/// container ([`event_from_jsonb`]); an element it does not take as it is (a metadata object, a
/// number it cannot convert exactly, anything malformed) goes through serde and
/// [`parse_event`] as its JSON text, so results and error messages are those of parse_batch.
pub fn parse_batch_jsonb(batch: &JsonbArg<'_>) -> Result<Vec<Event>, FractalityError> {
    let root = batch.root();
    if !root.is_array() {
        return parse_batch(&batch.to_serde()?);
    }
    let mut out = Vec::new();
    let mut failed = None;
    jsonb::elements(&root, |i, item| {
        if failed.is_some() {
            return;
        }
        let event = match event_from_jsonb(&item) {
            Some(e) => Ok(e),
            None => item
                .to_serde()
                .and_then(|v| parse_event(&format!("write_events: element {i}"), &v)),
        };
        match event {
            Ok(e) => out.push(e),
            Err(e) => failed = Some(e),
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    check_unique(&out)?;
    Ok(out)
}

/// The slot of the optional metadata object.
const METADATA: usize = 28;

/// Fields of an event object, by their slot in [`Fields`].
fn field_slot(key: &[u8]) -> Option<usize> {
    Some(match key {
        b"event_id" => 0,
        b"timestamp" => 1,
        b"episode_id" => 2,
        b"step_number" => 3,
        b"event_type" => 4,
        b"flags" => 5,
        b"adna_version_hash" => 6,
        b"sequence_number" => 7,
        b"reward_homeostasis" => 24,
        b"reward_curiosity" => 25,
        b"reward_efficiency" => 26,
        b"reward_goal" => 27,
        b"metadata" => METADATA,
        _ if key.len() == 8 && key.starts_with(b"state_l") && (b'1'..=b'8').contains(&key[7]) => {
            8 + (key[7] - b'1') as usize
        }
        _ if key.len() == 9 && key.starts_with(b"action_l") && (b'1'..=b'8').contains(&key[8]) => {
            16 + (key[8] - b'1') as usize
        }
        _ => return None,
    })
}

/// An event object's fields as a fast reader meets them, in any order ([`event_from_jsonb`] over
/// a jsonb container, [`parse_batch_text`] over JSON text). Each setter answers false for what it
/// does not take as it is; [`Fields::finish`] gives the event only where [`parse_event`] gives the
/// same one, and None for anything else (the caller then asks parse_event, which explains).
struct Fields {
    seen: [bool; 29],
    id: [u8; 16],
    ints: [i64; 8],
    /// state 8, action 8, rewards 4
    reals: [f32; 20],
}

impl Fields {
    fn new() -> Self {
        Fields {
            seen: [false; 29],
            id: [0; 16],
            ints: [0; 8],
            reals: [0.0; 20],
        }
    }

    /// The slot (of [`field_slot`]) of a field met for the first time; None for a repeated one.
    fn claim(&mut self, slot: usize) -> Option<usize> {
        (!std::mem::replace(&mut self.seen[slot], true)).then_some(slot)
    }

    fn id(&mut self, text: &str) -> bool {
        match parse_event_id(text) {
            Ok(b) => {
                self.id = b;
                true
            }
            Err(_) => false,
        }
    }

    /// An integer field (slots 1 to 7), in its column's range.
    fn int(&mut self, slot: usize, n: i64) -> bool {
        let (min, max) = match slot {
            1 => (0, i64::MAX),
            2 => (i64::MIN, i64::MAX),
            4 | 5 => (i16::MIN.into(), i16::MAX.into()),
            3 | 6 | 7 => (i32::MIN.into(), i32::MAX.into()),
            _ => return false,
        };
        if n < min || n > max {
            return false;
        }
        self.ints[slot] = n;
        true
    }

    /// A real field (slots 8 to 27), finite as a real.
    fn real(&mut self, slot: usize, x: f64) -> bool {
        let r = x as f32;
        if !(8..=27).contains(&slot) || !r.is_finite() {
            return false;
        }
        self.reals[slot - 8] = r;
        true
    }

    /// The event, once every field but the rewards (0 when absent) and metadata was met.
    fn finish(&self, metadata: Option<Metadata>) -> Option<Event> {
        if !self.seen[..24].iter().all(|&s| s) {
            return None;
        }
        let r = &self.reals;
        Some(Event {
            timestamp: self.ints[1],
            event_id: self.id,
            episode_id: self.ints[2],
            step_number: self.ints[3] as i32,
            event_type: self.ints[4] as i16,
            flags: self.ints[5] as i16,
            state: r[..8].try_into().expect("8 reals"),
            action: r[8..16].try_into().expect("8 reals"),
            rewards: r[16..].try_into().expect("4 reals"),
            adna_version_hash: self.ints[6] as i32,
            sequence_number: self.ints[7] as i32,
            metadata,
        })
    }
}

/// One well-formed event object without metadata, read from its jsonb container; None for
/// anything else (the caller then asks [`parse_event`], which accepts or explains it). Where it
/// returns an event, parse_event returns the same one.
pub fn event_from_jsonb(item: &jsonb::Value<'_>) -> Option<Event> {
    let mut f = Fields::new();
    let ok = jsonb::pairs(item, |key, v| {
        match field_slot(key).and_then(|s| f.claim(s)) {
            Some(0) => v.as_str().is_some_and(|t| f.id(t)),
            Some(slot @ 1..=7) => v.as_i64().is_some_and(|n| f.int(slot, n)),
            Some(slot @ 8..=27) => v.as_f64().is_some_and(|x| f.real(slot, x)),
            // metadata: only a null one is taken here
            Some(_) => matches!(v, jsonb::Value::Null),
            None => false,
        }
    });
    if !ok {
        return None;
    }
    f.finish(None)
}

// ---- JSON text: serde straight into events ----------------------------------------------------

/// A batch as JSON text (`write_events_json`, over `text` or `json`): read by serde straight
/// into events, field by field, without a JSON tree; a batch that reader does not take as it is
/// (anything malformed, a repeated field, a metadata object it refuses) is read again as a
/// `serde_json::Value` by [`parse_batch`], whose results and error messages are the reference.
pub fn parse_batch_text(text: &str) -> Result<Vec<Event>, FractalityError> {
    match read_text(text) {
        Some(events) => {
            check_unique(&events)?;
            Ok(events)
        }
        None => {
            let value: Value =
                serde_json::from_str(text).map_err(|e| FractalityError::InvalidJson {
                    context: "write_events_json",
                    detail: e.to_string(),
                })?;
            parse_batch(&value)
        }
    }
}

/// The events of a batch the text reader takes as it is; None for anything else.
fn read_text(text: &str) -> Option<Vec<Event>> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let events = TextBatch.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(events)
}

mod text_reader {
    //! The serde visitors of [`super::parse_batch_text`]: an array of objects, each object's
    //! values put in [`super::Fields`]; any error only means "not taken as it is".
    use super::{field_slot, parse_metadata, Event, Fields, METADATA};
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;
    use std::fmt;

    fn refuse<E: de::Error>() -> E {
        E::custom("not taken by the fast reader")
    }

    /// The batch: a JSON array of event objects.
    pub struct TextBatch;

    impl<'de> DeserializeSeed<'de> for TextBatch {
        type Value = Vec<Event>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Event>, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for TextBatch {
        type Value = Vec<Event>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Event>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(e) = seq.next_element_seed(TextEvent { index: out.len() })? {
                out.push(e);
            }
            Ok(out)
        }
    }

    /// One event object, element `index` of the batch.
    struct TextEvent {
        index: usize,
    }

    impl<'de> DeserializeSeed<'de> for TextEvent {
        type Value = Event;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for TextEvent {
        type Value = Event;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an event object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
            let mut f = Fields::new();
            let mut metadata = None;
            while let Some(Key(key)) = map.next_key()? {
                let Some(slot) = key.and_then(|s| f.claim(s)) else {
                    return Err(refuse());
                };
                let ok = if slot == METADATA {
                    match map.next_value::<Value>()? {
                        Value::Null => true,
                        m => {
                            let ctx = format!("write_events: element {}", self.index);
                            metadata = parse_metadata(&ctx, &m).ok();
                            metadata.is_some()
                        }
                    }
                } else {
                    match (slot, map.next_value::<Scalar>()?) {
                        (0, Scalar::Str(t)) => f.id(&t),
                        (1..=7, Scalar::Int(n)) => f.int(slot, n),
                        (8..=27, Scalar::Int(n)) => f.real(slot, n as f64),
                        (8..=27, Scalar::UInt(n)) => f.real(slot, n as f64),
                        (8..=27, Scalar::Float(x)) => f.real(slot, x),
                        _ => false,
                    }
                };
                if !ok {
                    return Err(refuse());
                }
            }
            f.finish(metadata).ok_or_else(refuse)
        }
    }

    /// A field name as its slot ([`field_slot`]); None for a name the reader does not know.
    struct Key(Option<usize>);

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                    Ok(Key(field_slot(v.as_bytes())))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// A field's value as JSON has it: an integer (as `serde_json::Value::as_i64` and `as_f64`
    /// take it), a float, a string; anything else is Other.
    enum Scalar<'a> {
        Int(i64),
        UInt(u64),
        Float(f64),
        Str(std::borrow::Cow<'a, str>),
        Other,
    }

    impl<'de> de::Deserialize<'de> for Scalar<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Scalar<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a JSON value")
                }
                fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Int(v))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                    Ok(i64::try_from(v).map_or(Scalar::UInt(v), Scalar::Int))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Float(v))
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Str(v.into()))
                }
                fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Str(v.to_string().into()))
                }
                fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Other)
                }
                fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Other)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Scalar<'de>, A::Error> {
                    Err(refuse())
                }
                fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Scalar<'de>, A::Error> {
                    Err(refuse())
                }
            }
            d.deserialize_any(V)
        }
    }
}
use text_reader::TextBatch;

fn array_len<T>(
    name: &'static str,
    a: &[Option<T>],
    per_event: usize,
    n: usize,
) -> Result<(), FractalityError> {
    if a.len() != n * per_event {
        return Err(bad(
            "write_events",
            name,
            format!(
                "expected {} values ({n} events x {per_event}), got {}",
                n * per_event,
                a.len()
            ),
        ));
    }
    Ok(())
}

fn elem<T: Copy>(
    a: &[Option<T>],
    i: usize,
    name: &str,
    event: usize,
) -> Result<T, FractalityError> {
    a[i].ok_or_else(|| bad(&format!("write_events: element {event}"), name, "NULL"))
}

/// The typed-array batch: one array per column, element i of each is event i. `states` and
/// `actions` hold 8 values per event and `rewards` 4 (homeostasis, curiosity, efficiency, goal),
/// event after event (a 2-D array n x 8 is read the same way).
#[allow(clippy::too_many_arguments)]
pub fn events_from_arrays(
    event_ids: &[Option<Vec<u8>>],
    timestamps: &[Option<i64>],
    episode_ids: &[Option<i64>],
    step_numbers: &[Option<i32>],
    event_types: &[Option<i16>],
    flags: &[Option<i16>],
    states: &[Option<f32>],
    actions: &[Option<f32>],
    rewards: &[Option<f32>],
    adna_version_hashes: &[Option<i32>],
    sequence_numbers: &[Option<i32>],
) -> Result<Vec<Event>, FractalityError> {
    let n = event_ids.len();
    array_len("timestamps", timestamps, 1, n)?;
    array_len("episode_ids", episode_ids, 1, n)?;
    array_len("step_numbers", step_numbers, 1, n)?;
    array_len("event_types", event_types, 1, n)?;
    array_len("flags", flags, 1, n)?;
    array_len("states", states, 8, n)?;
    array_len("actions", actions, 8, n)?;
    array_len("rewards", rewards, 4, n)?;
    array_len("adna_version_hashes", adna_version_hashes, 1, n)?;
    array_len("sequence_numbers", sequence_numbers, 1, n)?;
    let mut out = Vec::with_capacity(n);
    for (i, id) in event_ids.iter().enumerate() {
        let ctx = format!("write_events: element {i}");
        let id = id.as_ref().ok_or_else(|| bad(&ctx, "event_ids", "NULL"))?;
        let event_id = <[u8; 16]>::try_from(id.as_slice()).map_err(|_| {
            bad(
                &ctx,
                "event_ids",
                format!("expected 16 bytes, got {} bytes", id.len()),
            )
        })?;
        let timestamp = elem(timestamps, i, "timestamps", i)?;
        if timestamp < 0 {
            return Err(bad(&ctx, "timestamps", format!("{timestamp} is negative")));
        }
        let mut state = [0f32; 8];
        let mut action = [0f32; 8];
        let mut rew = [0f32; 4];
        for k in 0..8 {
            state[k] = finite_real(
                &ctx,
                STATE_FIELDS[k],
                elem(states, 8 * i + k, STATE_FIELDS[k], i)?.into(),
            )?;
            action[k] = finite_real(
                &ctx,
                ACTION_FIELDS[k],
                elem(actions, 8 * i + k, ACTION_FIELDS[k], i)?.into(),
            )?;
        }
        for k in 0..4 {
            rew[k] = finite_real(
                &ctx,
                REWARD_FIELDS[k],
                elem(rewards, 4 * i + k, REWARD_FIELDS[k], i)?.into(),
            )?;
        }
        out.push(Event {
            timestamp,
            event_id,
            episode_id: elem(episode_ids, i, "episode_ids", i)?,
            step_number: elem(step_numbers, i, "step_numbers", i)?,
            event_type: elem(event_types, i, "event_types", i)?,
            flags: elem(flags, i, "flags", i)?,
            state,
            action,
            rewards: rew,
            adna_version_hash: elem(adna_version_hashes, i, "adna_version_hashes", i)?,
            sequence_number: elem(sequence_numbers, i, "sequence_numbers", i)?,
            metadata: None,
        });
    }
    check_unique(&out)?;
    Ok(out)
}

/// The elements of a fixed-size array: straight from the array's data when it has no NULLs.
fn opts<T>(a: &Array<'_, T>) -> Vec<Option<T>>
where
    T: pgrx::array::Scalar + 'static,
    for<'a> T: pgrx::datum::UnboxDatum<As<'a> = T>,
{
    match a.as_slice() {
        Ok(values) => values.iter().map(|&v| Some(v)).collect(),
        Err(_) => a.iter().collect(),
    }
}

/// `write_events_json`: a batch of events given as JSON text (`text`, and `json` through the same
/// C function, declared in sql/experience_api.sql): the array of objects of `write_events(jsonb)`,
/// read by serde straight from the text. Returns the number of events written.
#[pg_extern(volatile, strict, parallel_unsafe, name = "write_events_json")]
fn write_events_text(events: &str) -> i64 {
    crate::errors::writer(c"write_events_json");
    let batch = parse_batch_text(events).unwrap_or_report();
    insert_events(&batch)
}

/// The typed-array form of `write_events`, for clients that send arrays.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, strict, parallel_unsafe, name = "write_events")]
fn write_events_arrays(
    event_ids: Array<'_, &[u8]>,
    timestamps: Array<'_, i64>,
    episode_ids: Array<'_, i64>,
    step_numbers: Array<'_, i32>,
    event_types: Array<'_, i16>,
    flags: Array<'_, i16>,
    states: Array<'_, f32>,
    actions: Array<'_, f32>,
    rewards: Array<'_, f32>,
    adna_version_hashes: Array<'_, i32>,
    sequence_numbers: Array<'_, i32>,
) -> i64 {
    crate::errors::writer(c"write_events");
    let (timestamps, episode_ids, step_numbers) =
        (opts(&timestamps), opts(&episode_ids), opts(&step_numbers));
    let (event_types, flags) = (opts(&event_types), opts(&flags));
    let (states, actions, rewards) = (opts(&states), opts(&actions), opts(&rewards));
    let (adna_version_hashes, sequence_numbers) =
        (opts(&adna_version_hashes), opts(&sequence_numbers));
    let event_ids: Vec<Option<Vec<u8>>> = event_ids.iter().map(|b| b.map(<[u8]>::to_vec)).collect();
    let events = events_from_arrays(
        &event_ids,
        &timestamps,
        &episode_ids,
        &step_numbers,
        &event_types,
        &flags,
        &states,
        &actions,
        &rewards,
        &adna_version_hashes,
        &sequence_numbers,
    )
    .unwrap_or_report();
    insert_events(&events)
}

/// The argument of `write_event` behind a column array of `events_from_arrays`.
fn single_field(array: &str) -> &str {
    match array {
        "event_ids" => "event_id",
        "timestamps" => "timestamp",
        "episode_ids" => "episode_id",
        "step_numbers" => "step_number",
        "event_types" => "event_type",
        "states" => "state",
        "actions" => "action",
        "adna_version_hashes" => "adna_version_hash",
        "sequence_numbers" => "sequence_number",
        other => other,
    }
}

/// One event, every column; `state` and `action` as real[8]; optional action metadata as an
/// object {intent_type, executor_id, parameters}.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn write_event(
    event_id: Option<Vec<u8>>,
    timestamp: Option<i64>,
    episode_id: Option<i64>,
    step_number: Option<i32>,
    event_type: Option<i16>,
    flags: Option<i16>,
    state: Option<Vec<Option<f32>>>,
    action: Option<Vec<Option<f32>>>,
    adna_version_hash: Option<i32>,
    sequence_number: Option<i32>,
    reward_homeostasis: default!(Option<f32>, 0.0),
    reward_curiosity: default!(Option<f32>, 0.0),
    reward_efficiency: default!(Option<f32>, 0.0),
    reward_goal: default!(Option<f32>, 0.0),
    metadata: default!(Option<crate::jsonb::JsonValue>, "NULL"),
) {
    crate::errors::writer(c"write_event");
    let need = |name: &'static str| FractalityError::NullNotAllowed(name);
    let id = event_id.ok_or_else(|| need("event_id")).unwrap_or_report();
    let state = state.ok_or_else(|| need("state")).unwrap_or_report();
    let action = action.ok_or_else(|| need("action")).unwrap_or_report();
    let rewards = [
        reward_homeostasis,
        reward_curiosity,
        reward_efficiency,
        reward_goal,
    ];
    let mut events = events_from_arrays(
        &[Some(id)],
        &[timestamp],
        &[episode_id],
        &[step_number],
        &[event_type],
        &[flags],
        &state,
        &action,
        &rewards,
        &[adna_version_hash],
        &[sequence_number],
    )
    .map_err(|e| match e {
        FractalityError::BadEvent { field, problem, .. } => FractalityError::BadEvent {
            context: "write_event".into(),
            field: single_field(&field).to_string(),
            problem,
        },
        other => other,
    })
    .unwrap_or_report();
    if let Some(m) = metadata {
        events[0].metadata = Some(parse_metadata("write_event", &m.0).unwrap_or_report());
    }
    insert_events(&events);
}

/// One event as a JSON object (as in `write_events`) with its action metadata
/// {intent_type, executor_id, parameters}.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn write_event_with_metadata(event: crate::jsonb::JsonValue, metadata: crate::jsonb::JsonValue) {
    crate::errors::writer(c"write_event_with_metadata");
    let ctx = "write_event_with_metadata";
    let mut e = parse_event(ctx, &event.0).unwrap_or_report();
    e.metadata = Some(parse_metadata(ctx, &metadata.0).unwrap_or_report());
    insert_events(&[e]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(i: u8) -> Value {
        let mut o = json!({
            "event_id": format!("{:032x}", i),
            "timestamp": 1000 + i as i64,
            "episode_id": 1, "step_number": i, "event_type": 1, "flags": 0,
            "adna_version_hash": 7, "sequence_number": i,
            "reward_homeostasis": 0.5
        });
        for k in 1..=8 {
            o[format!("state_l{k}")] = json!(0.1 * k as f64);
            o[format!("action_l{k}")] = json!(-0.1 * k as f64);
        }
        o
    }

    fn err(batch: Value) -> String {
        parse_batch(&batch).unwrap_err().to_string()
    }

    #[test]
    fn a_good_batch_parses() {
        let b = parse_batch(&json!([event(1), event(2)])).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].timestamp, 1002);
        assert_eq!(b[1].event_id[15], 2);
        assert_eq!(b[0].rewards, [0.5, 0.0, 0.0, 0.0]);
        assert!((b[0].state[7] - 0.8).abs() < 1e-6);
        assert!(b[0].metadata.is_none());
    }

    #[test]
    fn ids_as_hex_or_uuid() {
        let a = parse_event_id("000102030405060708090a0b0c0d0e0f").unwrap();
        let b = parse_event_id("00010203-0405-0607-0809-0a0b0c0d0e0f").unwrap();
        let c = parse_event_id("\\x000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a[15], 15);
        assert!(parse_event_id("000102030405060708090a0b0c0d0e")
            .unwrap_err()
            .contains("15 bytes"));
        assert!(parse_event_id("zz0102030405060708090a0b0c0d0e0f")
            .unwrap_err()
            .contains("not hexadecimal"));
    }

    #[test]
    fn malformed_elements_are_named() {
        let mut missing = event(2);
        missing.as_object_mut().unwrap().remove("episode_id");
        assert_eq!(
            err(json!([event(1), missing])),
            "write_events: element 1, field \"episode_id\": missing"
        );
        let mut wrong = event(2);
        wrong["step_number"] = json!("three");
        assert!(err(json!([event(1), wrong]))
            .starts_with("write_events: element 1, field \"step_number\": expected an integer"));
        let mut short = event(1);
        short["event_id"] = json!("000102030405060708090a0b0c0d0e");
        assert!(err(json!([short])).contains("element 0, field \"event_id\""));
        let mut nan = event(1);
        nan["reward_goal"] = json!("NaN");
        assert!(err(json!([nan])).contains("field \"reward_goal\": expected a number"));
        let mut huge = event(1);
        huge["reward_goal"] = json!(1e300);
        assert!(err(json!([huge])).contains("is not a finite real"));
        let mut unknown = event(1);
        unknown["rewardd"] = json!(1);
        assert!(err(json!([unknown])).contains("field \"rewardd\": unknown field"));
        let mut negative = event(1);
        negative["timestamp"] = json!(-1);
        assert!(err(json!([negative])).contains("out of range"));
        let mut flags = event(1);
        flags["flags"] = json!(40000);
        assert!(err(json!([flags])).contains("field \"flags\""));
        assert!(err(json!({"a": 1})).contains("expected a JSON array"));
        assert!(err(json!([1])).contains("element 0"));
    }

    #[test]
    fn duplicates_are_refused() {
        let e = err(json!([event(1), event(2), event(1)]));
        assert!(e.starts_with("duplicate event (timestamp 1001"));
        assert!(e.contains("elements 0 and 2"));
        // an event id is written once, whatever its timestamp
        let mut later = event(1);
        later["timestamp"] = json!(5000);
        let e = err(json!([event(1), later]));
        assert!(e.starts_with("duplicate event (timestamp 5000"), "{e}");
        assert!(e.contains("elements 0 and 1"), "{e}");
        assert_eq!(parse_batch(&json!([event(1), event(2)])).unwrap().len(), 2);
    }

    #[test]
    fn metadata_is_validated() {
        let mut e = event(1);
        e["metadata"] =
            json!({"intent_type": "explore", "executor_id": "agent-1", "parameters": {"depth": 2}});
        let b = parse_batch(&json!([e])).unwrap();
        assert_eq!(
            b[0].metadata.as_ref().unwrap().parameters,
            json!({"depth": 2})
        );
        let mut e = event(1);
        e["metadata"] = json!({"intent_type": "explore"});
        assert!(err(json!([e])).contains("metadata.executor_id"));
    }

    /// The text reader against the reference: the same events, or the same error.
    fn same_as_reference(text: &str) -> Result<Vec<Event>, String> {
        let fast = parse_batch_text(text).map_err(|e| e.to_string());
        let reference = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| parse_batch(&v).map_err(|e| e.to_string()));
        match (&fast, &reference) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) if b.starts_with("invalid JSON") => {
                assert!(a.ends_with(b.as_str()), "{text}: {a} vs {b}")
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{text}"),
            _ => panic!("{text}: text reader {fast:?}, reference {reference:?}"),
        }
        fast
    }

    #[test]
    fn the_text_reader_gives_the_events_and_errors_of_the_reference() {
        let mut with_metadata = event(2);
        with_metadata["metadata"] =
            json!({"intent_type": "explore", "executor_id": "agent-1", "parameters": {"d": 2}});
        let good = json!([event(1), with_metadata]).to_string();
        assert_eq!(same_as_reference(&good).unwrap().len(), 2);
        // taken by the text reader itself, not by the fallback
        assert_eq!(read_text(&good).unwrap().len(), 2);
        // a malformed element, the reference's messages
        let mut variants: Vec<Value> = Vec::new();
        for (field, v) in [
            ("step_number", json!("three")),
            ("step_number", json!(1.0)),
            ("step_number", json!(1e3)),
            ("timestamp", json!(-1)),
            ("timestamp", json!(u64::MAX)),
            ("flags", json!(40000)),
            ("event_id", json!("000102030405060708090a0b0c0d0e")),
            ("event_id", json!(7)),
            ("reward_goal", json!(null)),
            ("reward_goal", json!("NaN")),
            ("reward_goal", json!(1e300)),
            ("reward_goal", json!(u64::MAX)),
            ("reward_goal", json!(-12)),
            ("state_l3", json!([1])),
            ("state_l3", json!({"x": 1})),
            ("state_l3", json!(true)),
            ("rewardd", json!(1)),
            ("metadata", json!(null)),
            ("metadata", json!({"intent_type": "explore"})),
            (
                "metadata",
                json!({"intent_type": "a", "executor_id": "b", "parameters": {"p": [1, {"q": null}]}}),
            ),
            (
                "metadata",
                json!({"intent_type": "a\u{0}b", "executor_id": "b"}),
            ),
            (
                "metadata",
                json!({"intent_type": "a", "executor_id": "b", "parameters": {"p": "\u{0}"}}),
            ),
        ] {
            let mut e = event(3);
            e[field] = v;
            variants.push(e);
        }
        let mut missing = event(3);
        missing.as_object_mut().unwrap().remove("action_l8");
        variants.push(missing);
        let mut no_rewards = event(3);
        no_rewards
            .as_object_mut()
            .unwrap()
            .remove("reward_homeostasis");
        variants.push(no_rewards);
        variants.push(json!(1));
        variants.push(json!([]));
        for v in variants {
            same_as_reference(&json!([event(1), v]).to_string()).ok();
        }
        let errors = [
            same_as_reference(&json!([event(1), event(1)]).to_string()),
            same_as_reference(r#"{"a": 1}"#),
            same_as_reference(r#"[{"event_id": "#),
            same_as_reference(r#"[] x"#),
            same_as_reference(""),
        ];
        assert!(errors.iter().all(Result::is_err));
        // escapes in keys and values, a repeated field (the last one counts, as in jsonb)
        let mut text = json!([event(1)]).to_string();
        text = text.replacen("\"flags\":0", "\"fl\\u0061gs\":5,\"flags\":0", 1);
        assert!(text.contains("\\u0061"));
        let got = same_as_reference(&text).unwrap();
        assert_eq!(got[0].flags, 0);
        assert!(
            read_text(&text).is_none(),
            "a repeated field is the fallback's"
        );
        let uuid = json!([event(1)]).to_string().replace(
            &format!("{:032x}", 1),
            "00000000-0000-0000-0000-00000000000\\u0031",
        );
        assert_eq!(same_as_reference(&uuid).unwrap()[0].event_id[15], 1);
        // numbers round to the nearest real through the nearest double, as the jsonb reader does
        let precise = json!([event(1)]).to_string().replace(
            "\"reward_homeostasis\":0.5",
            "\"reward_homeostasis\":0.10000000149011612",
        );
        assert_eq!(same_as_reference(&precise).unwrap()[0].rewards[0], 0.1f32);
    }

    #[test]
    fn invalid_json_text_is_22p02_with_its_position() {
        let e = parse_batch_text("[{\"event_id\": }]").unwrap_err();
        assert_eq!(
            e.sqlstate(),
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
        );
        assert!(e
            .to_string()
            .starts_with("write_events_json: invalid JSON: "));
        assert!(e.to_string().contains("line 1 column 15"), "{e}");
    }

    #[test]
    fn typed_arrays() {
        let ids = vec![Some(vec![1u8; 16]), Some(vec![2u8; 16])];
        fn two<T: Copy>(v: T) -> Vec<Option<T>> {
            vec![Some(v), Some(v)]
        }
        let st: Vec<Option<f32>> = vec![Some(0.5); 16];
        let rw: Vec<Option<f32>> = vec![Some(1.0); 8];
        let ok = events_from_arrays(
            &ids,
            &[Some(1), Some(2)],
            &two(1i64),
            &two(1i32),
            &two(0i16),
            &two(0i16),
            &st,
            &st,
            &rw,
            &two(3i32),
            &two(4i32),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let mut bad_rw = rw.clone();
        bad_rw[5] = Some(f32::NAN);
        let e = events_from_arrays(
            &ids,
            &[Some(1), Some(2)],
            &two(1i64),
            &two(1i32),
            &two(0i16),
            &two(0i16),
            &st,
            &st,
            &bad_rw,
            &two(3),
            &two(4),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "write_events: element 1, field \"reward_curiosity\": NaN is not a finite real"
        );
        let e = events_from_arrays(
            &ids,
            &[Some(1)],
            &two(1i64),
            &two(1i32),
            &two(0i16),
            &two(0i16),
            &st,
            &st,
            &rw,
            &two(3i32),
            &two(4i32),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field \"timestamps\": expected 2 values"));
        let short = vec![Some(vec![1u8; 15])];
        let e = events_from_arrays(
            &short,
            &[Some(1)],
            &[Some(1)],
            &[Some(1)],
            &[Some(0)],
            &[Some(0)],
            &st[..8],
            &st[..8],
            &rw[..4],
            &[Some(3)],
            &[Some(4)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("expected 16 bytes, got 15 bytes"));
    }
}
