//! The experience store's ingest: `write_event`, `write_events` (a JSON array parsed natively
//! with serde, or typed arrays), `write_event_with_metadata`.
//!
//! Every form validates the whole batch first (plain Rust, unit-tested: [`event`] is the
//! reference reader of JSON, [`fast`] the readers of jsonb in place and of JSON text, [`arrays`]
//! the typed arrays), then [`store`] writes it through PostgreSQL's own COPY FROM machinery, fed
//! the batch in binary COPY format from memory (the metadata, if any, with one INSERT over arrays
//! through SPI). A malformed batch is refused whole with an error naming the element and the
//! field; nothing of it is written. This file is the `#[pg_extern]` layer.

pub mod arrays;
pub mod event;
pub mod fast;
pub mod store;

use pgrx::prelude::*;

use crate::errors::{required, EventForm, FractalityError, OrReport};
use crate::jsonb::JsonbArg;

pub use arrays::events_from_arrays;
pub use event::{
    check_unique, hex, parse_batch, parse_event, parse_event_id, parse_metadata, Event, Metadata,
    REWARD_FIELDS,
};
pub use fast::{parse_batch_jsonb, parse_batch_text};
pub use store::{encode_copy, insert_events};

use arrays::single_field;

/// Writes a batch of events given as a JSON array of objects (the seed's column names; an
/// optional "metadata" object per event). Returns the number of events written.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn write_events(events: JsonbArg<'_>) -> i64 {
    let _trim = crate::heap::Trim;
    crate::errors::writer(c"write_events");
    let batch = parse_batch_jsonb(&events).unwrap_or_report();
    insert_events(&batch).unwrap_or_report()
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

/// `write_events_json`: a batch of events given as JSON text (`text` and `json`, declared in
/// sql/experience_api.sql): the array of objects of `write_events(jsonb)`, read by serde straight
/// from the text. Returns the number of events written.
///
/// Until 0.5.0 this C symbol was `write_events(jsonb)`'s, and a 0.1.0-0.4.0 catalog still names
/// it for that function until `ALTER EXTENSION fractality UPDATE` has run; a jsonb argument is
/// therefore read as jsonb (the argument's type comes from the call, not the symbol).
#[pg_extern(volatile, strict, parallel_unsafe, sql = false)]
fn write_events_json(events: pgrx::AnyElement) -> i64 {
    let _trim = crate::heap::Trim;
    let batch = if events.oid() == pg_sys::JSONBOID {
        crate::errors::writer(c"write_events");
        // SAFETY: a non-null jsonb datum of this call
        let jsonb = unsafe { JsonbArg::from_datum(events.datum()) };
        parse_batch_jsonb(&jsonb)
    } else {
        crate::errors::writer(c"write_events_json");
        // SAFETY: a non-null datum of a text category type (text or json) of this call
        let text = required("events", unsafe {
            <&str as FromDatum>::from_datum(events.datum(), false)
        });
        parse_batch_text(text)
    };
    insert_events(&batch.unwrap_or_report()).unwrap_or_report()
}

/// The C symbol 0.3.0 and 0.4.0 declared `write_events_json(text)` and `(json)` with: their
/// install and upgrade scripts (run on the way to 0.5.0) still name it. It is `write_events_json`.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_write_events_text_wrapper() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// See [`pg_finfo_write_events_text_wrapper`].
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid call frame.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub unsafe extern "C-unwind" fn write_events_text_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the frame PostgreSQL gave, passed on unchanged
    unsafe { write_events_json_wrapper(fcinfo) }
}

/// The arrays of `write_events`' typed form: one value an event in one dimension; states and
/// actions 8 values an event, rewards 4, one after another or as rows of that many.
///
/// # Safety
/// `fcinfo` is that function's call.
unsafe fn check_event_arrays(fcinfo: pg_sys::FunctionCallInfo) -> Result<(), FractalityError> {
    use crate::errors::{one_dimensional, rows_of};
    unsafe {
        for (n, name) in [
            (0, "event_ids"),
            (1, "timestamps"),
            (2, "episode_ids"),
            (3, "step_numbers"),
            (4, "event_types"),
            (5, "flags"),
            (9, "adna_version_hashes"),
            (10, "sequence_numbers"),
        ] {
            one_dimensional(fcinfo, n, name)?;
        }
        rows_of(fcinfo, 6, "states", 8)?;
        rows_of(fcinfo, 7, "actions", 8)?;
        rows_of(fcinfo, 8, "rewards", 4)
    }
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
    fcinfo: pg_sys::FunctionCallInfo,
) -> i64 {
    let _trim = crate::heap::Trim;
    crate::errors::writer(c"write_events");
    // SAFETY: the call's own arguments, arrays by the signature
    unsafe { check_event_arrays(fcinfo) }.unwrap_or_report();
    // the lengths are checked by events_from_arrays, before anything is written
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
    .map_err(|e| e.in_event_form(EventForm::Arrays))
    .unwrap_or_report();
    insert_events(&events).unwrap_or_report()
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
    state: Option<Array<'_, f32>>,
    action: Option<Array<'_, f32>>,
    adna_version_hash: Option<i32>,
    sequence_number: Option<i32>,
    reward_homeostasis: default!(Option<f32>, 0.0),
    reward_curiosity: default!(Option<f32>, 0.0),
    reward_efficiency: default!(Option<f32>, 0.0),
    reward_goal: default!(Option<f32>, 0.0),
    metadata: default!(Option<crate::jsonb::JsonValue>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) {
    crate::errors::writer(c"write_event");
    // SAFETY: the call's own arguments, arrays by the signature
    unsafe {
        crate::errors::rows_of(fcinfo, 6, "state", 8)
            .and_then(|()| crate::errors::rows_of(fcinfo, 7, "action", 8))
    }
    .unwrap_or_report();
    let id = required("event_id", event_id);
    // every column but the metadata (22004 for a NULL; a reward left out is 0)
    let adna_version_hash = Some(required("adna_version_hash", adna_version_hash));
    let sequence_number = Some(required("sequence_number", sequence_number));
    let reward_homeostasis = Some(required("reward_homeostasis", reward_homeostasis));
    let reward_curiosity = Some(required("reward_curiosity", reward_curiosity));
    let reward_efficiency = Some(required("reward_efficiency", reward_efficiency));
    let reward_goal = Some(required("reward_goal", reward_goal));
    let timestamp = Some(required("timestamp", timestamp));
    let episode_id = Some(required("episode_id", episode_id));
    let step_number = Some(required("step_number", step_number));
    let event_type = Some(required("event_type", event_type));
    let flags = Some(required("flags", flags));
    let state = crate::errors::elements("state", &required("state", state));
    let action = crate::errors::elements("action", &required("action", action));
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
            form: EventForm::Arguments,
        },
        FractalityError::NullEventField { field, .. } => FractalityError::NullEventField {
            context: "write_event".into(),
            field: single_field(&field).to_string(),
            form: EventForm::Arguments,
        },
        other => other,
    })
    .unwrap_or_report();
    if let Some(m) = metadata {
        events[0].metadata = Some(parse_metadata("write_event", &m.0).unwrap_or_report());
    }
    insert_events(&events).unwrap_or_report();
}

/// One event as a JSON object (as in `write_events`) with its action metadata
/// {intent_type, executor_id, parameters}. Not STRICT: a NULL for either is refused (22004),
/// where a STRICT function returning void would have written nothing without a word.
#[pg_extern(volatile, parallel_unsafe)]
fn write_event_with_metadata(
    event: Option<crate::jsonb::JsonValue>,
    metadata: Option<crate::jsonb::JsonValue>,
) {
    crate::errors::writer(c"write_event_with_metadata");
    let (event, metadata) = (required("event", event), required("metadata", metadata));
    let ctx = "write_event_with_metadata";
    let mut e = parse_event(ctx, &event.0).unwrap_or_report();
    let given = parse_metadata(ctx, &metadata.0).unwrap_or_report();
    // metadata given twice, in the event and as the argument: one of them would be lost
    if e.metadata.as_ref().is_some_and(|own| *own != given) {
        event::bad(
            ctx,
            "metadata",
            "the event's own \"metadata\" differs from the metadata argument; give it once",
        )
        .report()
    }
    e.metadata = Some(given);
    insert_events(&[e]).unwrap_or_report();
}
