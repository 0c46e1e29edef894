//! User-facing errors: each carries a SQLSTATE, a message that names the bad value, and a hint.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// The form an event was given in, which the hint of its errors describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventForm {
    /// A JSON object (`write_events` over jsonb, `write_events_json`, `write_event_with_metadata`).
    Json,
    /// `write_events` over typed arrays, an array per column.
    Arrays,
    /// `write_event`, an argument per column.
    Arguments,
    /// An event's action metadata (in any form).
    Metadata,
}

impl FractalityError {
    /// A malformed or NULL field of an event as one of the `form` given (its hint describes
    /// that form); any other error as it is.
    pub fn in_event_form(self, form: EventForm) -> FractalityError {
        match self {
            FractalityError::BadEvent {
                context,
                field,
                problem,
                ..
            } => FractalityError::BadEvent {
                context,
                field,
                problem,
                form,
            },
            FractalityError::NullEventField { context, field, .. } => {
                FractalityError::NullEventField {
                    context,
                    field,
                    form,
                }
            }
            other => other,
        }
    }
}

impl EventForm {
    fn hint(self) -> &'static str {
        match self {
            EventForm::Json => "An event is an object with the columns of experience_events: event_id (32 hex digits or a UUID), timestamp (integer microseconds, 0 to 9223372036854775806), episode_id, step_number, event_type, flags, state_l1..state_l8, action_l1..action_l8, adna_version_hash, sequence_number; rewards default to 0. Nothing of the batch was written.",
            EventForm::Arrays => "The typed-array form takes an array per column, an element per event, none NULL: event_ids (16 bytes each), timestamps (integer microseconds, 0 to 9223372036854775806), episode_ids, step_numbers, event_types, flags, states and actions (8 finite reals an event), rewards (4 an event: homeostasis, curiosity, efficiency, goal), adna_version_hashes, sequence_numbers. Nothing of the batch was written.",
            EventForm::Metadata => "Action metadata is an object of intent_type and executor_id (each a text of 1 to 255 characters) and, optionally, parameters (an object). Nothing was written.",
            EventForm::Arguments => "write_event takes one event's columns, none NULL: event_id (16 bytes), timestamp (integer microseconds, 0 to 9223372036854775806), episode_id, step_number, event_type, flags, state and action (8 finite reals each), adna_version_hash, sequence_number, the four rewards (finite reals, 0 when left out) and optional metadata. Nothing was written.",
        }
    }
}

#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum FractalityError {
    /// 22000 data_exception, as pgvector reports it.
    #[error("different vector dimensions {0} and {1}")]
    DimensionMismatch(usize, usize),

    /// 22023 invalid_parameter_value: NaN, infinities, out-of-range rates, negative sizes.
    #[error("invalid value for {name}: {value}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        hint: &'static str,
    },

    /// 22004 null_value_not_allowed.
    #[error("{0} must not be NULL")]
    NullNotAllowed(&'static str),

    /// 22004 null_value_not_allowed: a NULL element (counted from 1) of an array argument whose
    /// elements all need a value, as PostgreSQL reports "array must not contain nulls".
    #[error("invalid value for {name}: NULL at position {position}")]
    NullElement {
        name: &'static str,
        position: usize,
        hint: &'static str,
    },

    /// XX001 data_corrupted: a datum that does not have the layout its type promises.
    #[error("corrupt vector datum: {0}")]
    CorruptVector(String),

    /// P0002 no_data_found: a node (or other row) that does not exist or that the caller may not
    /// see (row-level security hides it).
    #[error("{what} {key} does not exist or is not visible")]
    NotFound { what: &'static str, key: String },

    /// 22004 null_value_not_allowed: a function that needs the session's tenant, called without one.
    #[error("fractality.user_id is not set")]
    NoTenant,

    /// 22023 invalid_parameter_value: one element of an event batch (or the single event) is
    /// malformed; names the element and the field.
    #[error("{context}, field \"{}\": {}", shown(field.clone()), shown_ends(problem))]
    BadEvent {
        context: String,
        field: String,
        problem: String,
        form: EventForm,
    },

    /// 22004 null_value_not_allowed: a NULL element of the typed-array form of an event batch (or
    /// of the single event), as PostgreSQL reports "array must not contain nulls" (a JSON null
    /// is a value of the wrong kind: [`FractalityError::BadEvent`]).
    #[error("{context}, field \"{}\": NULL", shown(field.clone()))]
    NullEventField {
        context: String,
        field: String,
        form: EventForm,
    },

    /// 22P02 invalid_text_representation: text given as JSON that does not parse.
    #[error("{context}: invalid JSON: {detail}")]
    InvalidJson {
        context: &'static str,
        detail: String,
    },

    /// The SQLSTATE of `inner`: one memory of a remember_many batch (`element`, counted from 1
    /// as the batch's parse errors count) fails a check a single memory would fail the same way.
    #[error("memory {element}: {inner}")]
    InMemory {
        element: usize,
        inner: Box<FractalityError>,
    },

    /// 22023 invalid_parameter_value: one element of a remember_many batch is malformed.
    #[error("memory {element}, field \"{}\": {}", shown(field.clone()), shown_ends(problem))]
    BadMemory {
        element: usize,
        field: String,
        problem: String,
    },

    /// 42710 duplicate_object: a replay buffer of that name exists already.
    #[error("replay buffer \"{0}\" already exists")]
    BufferExists(String),

    /// 22003 numeric_value_out_of_range: a result beyond its type, as PostgreSQL's arithmetic.
    #[error("value out of range: overflow in {0}")]
    Overflow(&'static str),

    /// 22003 numeric_value_out_of_range: a sum of the values `terms` (written out) beyond its
    /// type.
    #[error("value out of range: overflow in {what}: {terms}")]
    SumOverflow { what: &'static str, terms: String },

    /// 22023 invalid_parameter_value: a model that is not registered.
    #[error("unknown embedding model '{0}'")]
    UnknownModel(String),

    /// 22000 data_exception: an embedding (or a query vector, `what`) whose dimension is not its
    /// model's.
    #[error("{what} of {got} dimensions for model '{model}' of {dims} dimensions")]
    ModelDimension {
        what: &'static str,
        model: String,
        got: usize,
        dims: usize,
    },

    /// 42704 undefined_object: pgvector's type, or its schema, is not in this database.
    #[error("{0} of extension vector does not exist")]
    NoVector(&'static str),

    /// 55000 object_not_in_prerequisite_state: the library is newer than the database's schema.
    #[error("the fractality schema of this database is older than its library")]
    SchemaBehind,

    /// 40001 serialization_failure: another session changed what the call was writing (a
    /// memory it was telling again deleted, a key it was storing taken); the call can be run
    /// again as it was.
    #[error("memory {0} was changed by another session while remember ran")]
    ConcurrentChange(String),

    /// 40001 serialization_failure: a consensus the call was updating was deleted by another
    /// session while the call waited for it; the call can be run again as it was.
    #[error(
        "consensus {0} was deleted by another session while crystallize_consensus waited for it"
    )]
    ConsensusGone(pgrx::Uuid),

    /// XX000 internal_error: SPI refused one of fractality's own queries (not an error of the
    /// query itself, which PostgreSQL reports as it is).
    #[error("fractality: internal query {query} failed: {detail}")]
    Internal { query: &'static str, detail: String },

    /// XX000 internal_error: a step of fractality's own machinery outside SPI failed (an
    /// aggregate's support function called on its own, an object of the schema missing).
    #[error("fractality: {0}")]
    InternalStep(String),

    /// 55000 object_not_in_prerequisite_state: a call that must see what other sessions commit
    /// while it waits for their locks, run at an isolation level whose snapshot predates them.
    #[error("{0} needs READ COMMITTED, not {1}")]
    NeedsReadCommitted(&'static str, &'static str),

    /// 0A000 feature_not_supported: a table under row-level security that a function writes by
    /// COPY FROM, which refuses it as PostgreSQL's COPY FROM does.
    #[error("COPY FROM not supported with row-level security: {0} writes {1} by COPY")]
    CopyUnderRowSecurity(&'static str, &'static str),

    /// 54000 program_limit_exceeded: a JSON argument (or one element of a batch) holding more
    /// values than one document read whole may (`json::MAX_VALUES`).
    #[error("{context}: {detail}")]
    TooLarge { context: String, detail: String },

    /// 54000 program_limit_exceeded: a result a call would hold in the process's own memory
    /// (beyond PostgreSQL's memory contexts) past its bound, with how to ask for less.
    #[error("{what}")]
    Limit { what: String, hint: &'static str },

    /// 23505 unique_violation: an event id given twice or already stored (whatever the timestamp).
    #[error("duplicate event (timestamp {timestamp}, event_id {event_id}): {detail}")]
    DuplicateEvent {
        timestamp: i64,
        event_id: String,
        detail: String,
    },
}

impl FractalityError {
    /// 22023: `value` of `name` is refused; a long value is cut in the message ([`shown`]).
    pub fn invalid(name: &'static str, value: impl ToString, hint: &'static str) -> Self {
        FractalityError::InvalidParameter {
            name,
            value: shown(value.to_string()),
            hint,
        }
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            FractalityError::DimensionMismatch(..) => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            FractalityError::InvalidParameter { .. } => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            FractalityError::NullNotAllowed(_) | FractalityError::NullElement { .. } => {
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED
            }
            FractalityError::NullEventField { .. } => {
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED
            }
            FractalityError::CorruptVector(_) => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            FractalityError::NotFound { .. } => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            FractalityError::NoTenant => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            FractalityError::BadEvent { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            FractalityError::InvalidJson { .. } => {
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
            }
            FractalityError::DuplicateEvent { .. } => PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            FractalityError::TooLarge { .. } | FractalityError::Limit { .. } => {
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED
            }
            FractalityError::UnknownModel(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            FractalityError::Overflow(_) | FractalityError::SumOverflow { .. } => {
                PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE
            }
            FractalityError::BadMemory { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            FractalityError::InMemory { inner, .. } => inner.sqlstate(),
            FractalityError::BufferExists(_) => PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            FractalityError::ModelDimension { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            FractalityError::Internal { .. } | FractalityError::InternalStep(_) => {
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            }
            FractalityError::SchemaBehind => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            FractalityError::ConcurrentChange(_) | FractalityError::ConsensusGone(_) => {
                PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE
            }
            FractalityError::NoVector(_) => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            FractalityError::CopyUnderRowSecurity(..) => {
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED
            }
            FractalityError::NeedsReadCommitted(..) => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            FractalityError::DimensionMismatch(..) => {
                Some("Both vectors must have the same number of dimensions.")
            }
            FractalityError::InvalidParameter { hint, .. }
            | FractalityError::NullElement { hint, .. } => Some(hint),
            FractalityError::InMemory { inner, .. } => inner.hint(),
            FractalityError::NullNotAllowed(_) => Some(
                "Pass a value; an argument with a default may be left out to take it.",
            ),
            FractalityError::CorruptVector(_) => None,
            FractalityError::NotFound { .. } => Some(
                "Check the id or key, and that fractality.user_id names the tenant that owns it (row-level security shows only its rows).",
            ),
            FractalityError::NoTenant => Some(
                "SET fractality.user_id = '<tenant uuid>' (or pass user_id where the function takes one).",
            ),
            FractalityError::BadEvent { form, .. } | FractalityError::NullEventField { form, .. } => {
                Some(form.hint())
            }
            FractalityError::InvalidJson { .. } => Some(
                "The batch is a JSON array of event objects; nothing of it was written.",
            ),
            FractalityError::DuplicateEvent { .. } => Some(
                "An event id is written once, whatever its timestamp; nothing of the batch was written.",
            ),
            FractalityError::Limit { hint, .. } => Some(hint),
            FractalityError::TooLarge { .. } => Some(
                "A JSON document read whole (an event, a memory, a metadata object, a batch that is not an array) holds at most 8 000 000 values (a number counts as two, and one more for every 32 characters of its text), and the metadata of one batch at most 32 000 000 together: split the batch. Nothing was written.",
            ),
            FractalityError::UnknownModel(_) => Some(
                "Register it first: SELECT fractality.register_model('<model>', <dimensions>); fractality.embedding_models lists the models.",
            ),
            FractalityError::ModelDimension { .. } => Some(
                "Every embedding of a model has the model's dimension (fractality.embedding_models); register another model for another dimension.",
            ),
            FractalityError::Internal { .. } | FractalityError::InternalStep(_) => None,
            FractalityError::Overflow(_) => None,
            FractalityError::SumOverflow { .. } => {
                Some("The sum is a real: at most 3.4e+38 either way.")
            }
            FractalityError::BufferExists(_) => Some(
                "A name names one buffer: use the one there is (fractality.replay_buffers holds its id) or drop_replay_buffer it first.",
            ),
            FractalityError::BadMemory { .. } => Some(
                "A memory is an object {content, embedding[, node_key, metadata, ttl]}; nothing of the batch was written.",
            ),
            FractalityError::SchemaBehind => {
                Some("Run ALTER EXTENSION fractality UPDATE (docs/UPGRADES.md says what it does).")
            }
            FractalityError::ConcurrentChange(_) => Some(
                "Another session deleted or wrote that memory meanwhile (forget, run_maintenance, upsert_node, freeze); nothing was written: run the call again.",
            ),
            FractalityError::ConsensusGone(_) => Some(
                "Nothing was written: run the call again (it then makes the group a consensus of its own).",
            ),
            FractalityError::NoVector(_) => {
                Some("CREATE EXTENSION vector (fractality requires it).")
            }
            FractalityError::NeedsReadCommitted(..) => Some(
                "Run it in a READ COMMITTED transaction (the default): it waits for other sessions' writes and must then see them.",
            ),
            FractalityError::CopyUnderRowSecurity(..) => Some(
                "Write the events with INSERT statements, or turn row-level security off on the table; nothing was written.",
            ),
        }
    }

    /// Raise this error as a PostgreSQL ERROR: the transaction aborts, nothing is written.
    #[track_caller]
    pub fn report(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "fractality");
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint.to_string());
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

/// `result.unwrap_or_report()`: the value, or the error raised as a PostgreSQL ERROR.
pub trait OrReport<T> {
    fn unwrap_or_report(self) -> T;
}

impl<T> OrReport<T> for Result<T, FractalityError> {
    #[track_caller]
    fn unwrap_or_report(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.report(),
        }
    }
}

/// A node that does not exist or that the caller may not see (P0002).
pub fn node_not_found(key: impl ToString) -> FractalityError {
    FractalityError::NotFound {
        what: "node",
        key: shown(key.to_string()),
    }
}

/// A sentence about a caller's value, as a message shows it: whole up to [`SHOWN_CHARS`]
/// characters, else its start and its end (where the reason usually is: "... is not a finite
/// real") around what was left out.
pub fn shown_ends(text: &str) -> String {
    let n = text.chars().count();
    if n <= SHOWN_CHARS {
        return text.to_string();
    }
    let head: String = text.chars().take(SHOWN_CHARS / 2).collect();
    let tail: String = text.chars().skip(n - SHOWN_CHARS / 4).collect();
    format!(
        "{head}... ({} characters left out) ...{tail}",
        n - SHOWN_CHARS / 2 - SHOWN_CHARS / 4
    )
}

/// Lets a cancel or `statement_timeout` through at every `every`th step `i` of a long loop in
/// Rust (reading a batch, walking a graph): the statement ends there with PostgreSQL's 57014, the
/// Rust frames unwound as for any error. (Plain unit tests run outside a server: nothing to
/// check there.)
#[inline]
pub fn interrupts_every(i: usize, every: usize) {
    if i.is_multiple_of(every) {
        interrupts();
    }
}

/// [`interrupts_every`] step.
#[inline]
pub fn interrupts() {
    #[cfg(not(test))]
    pgrx::check_for_interrupts!();
}

/// The most characters of a caller's value an error message repeats.
const SHOWN_CHARS: usize = 200;

/// `value` as a message shows it: whole up to [`SHOWN_CHARS`] characters, else its start and its
/// length. A message goes to the server's log too (`log_min_error_statement`), where a caller's
/// whole metadata or a key of megabytes has no place.
pub fn shown(value: String) -> String {
    // a value quoted by its caller ('...') is cut inside its quotes, its own characters counted
    let quoted = value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'');
    let inner = if quoted {
        &value[1..value.len() - 1]
    } else {
        value.as_str()
    };
    let n = inner.chars().count();
    if n <= SHOWN_CHARS {
        return value;
    }
    let head: String = inner.chars().take(SHOWN_CHARS - 3).collect();
    if quoted {
        format!("'{head}...' ({n} characters)")
    } else {
        format!("{head}... ({n} characters)")
    }
}

/// An interval as PostgreSQL's default style prints it (e.g. `-1 days`, `1 mon 02:00:00`),
/// computed here (no call into the server, and whatever the session's
/// IntervalStyle), for messages.
pub fn pg_interval(t: &pgrx::datum::Interval) -> String {
    // PostgreSQL writes a '+' before a positive field that follows a negative one
    let mut negative_before = false;
    let mut parts = Vec::new();
    let mut field = |n: i64, one: &str, many: &str| {
        let sign = if negative_before && n > 0 { "+" } else { "" };
        negative_before |= n < 0;
        format!("{sign}{n} {}", if n == 1 { one } else { many })
    };
    if t.months() != 0 {
        let (y, m) = (t.months() / 12, t.months() % 12);
        if y != 0 {
            parts.push(field(y as i64, "year", "years"));
        }
        if m != 0 {
            parts.push(field(m as i64, "mon", "mons"));
        }
    }
    if t.days() != 0 {
        parts.push(field(t.days() as i64, "day", "days"));
    }
    let us = t.micros();
    if us != 0 || parts.is_empty() {
        let sign = if us < 0 {
            "-"
        } else if negative_before {
            "+"
        } else {
            ""
        };
        let a = us.unsigned_abs();
        let (h, m, s, f) = (
            a / 3_600_000_000,
            a / 60_000_000 % 60,
            a / 1_000_000 % 60,
            a % 1_000_000,
        );
        let frac = if f == 0 {
            String::new()
        } else {
            format!(".{f:06}").trim_end_matches('0').to_string()
        };
        parts.push(format!("{sign}{h:02}:{m:02}:{s:02}{frac}"));
    }
    parts.join(" ")
}

/// A float as PostgreSQL prints it: NaN, Infinity, -Infinity, or the number in its fewest
/// digits, in exponent notation below 1e-4 and from 1e15 on (`1e-300`, `1.5e+20`, `0.0001`).
pub fn pg_float(value: f64) -> String {
    pg_number(value, format!("{value:e}"), value.to_string(), 15)
}

/// A real as PostgreSQL prints it, in the fewest digits that read back as the same real
/// (`3.4e+38`, not the double's `3.3999999521443642e+38`).
pub fn pg_real(value: f32) -> String {
    pg_number(value as f64, format!("{value:e}"), value.to_string(), 6)
}

/// [`pg_float`] and [`pg_real`]: `scientific` and `plain` are the value's shortest forms, and
/// exponent notation starts at 1e`digits` (PostgreSQL's: 15 for a double, 6 for a real).
fn pg_number(value: f64, scientific: String, plain: String, digits: i32) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if value == 0.0 || (-4..digits).contains(&exponent) {
        plain
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// A float argument that must be a finite number.
pub fn finite(name: &'static str, value: f64) -> Result<f64, FractalityError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(FractalityError::invalid(
            name,
            pg_float(value),
            "Pass a finite number (not NaN or an infinity).",
        ))
    }
}

/// A float argument that must be a finite number in [lo, hi]: 22023 with `hint` otherwise.
pub fn in_range(
    name: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    hint: &'static str,
) -> Result<f64, FractalityError> {
    let value = finite(name, value)?;
    if value < lo || value > hi {
        return Err(FractalityError::invalid(name, value, hint));
    }
    Ok(value)
}

/// An integer argument that counts something (results, draws, levels) in [lo, hi], lo >= 0, as a
/// `usize`: 22023 with `hint` otherwise.
pub fn count_in_range(
    name: &'static str,
    value: i32,
    lo: i32,
    hi: i32,
    hint: &'static str,
) -> Result<usize, FractalityError> {
    if (lo..=hi).contains(&value) {
        Ok(value as usize)
    } else {
        Err(FractalityError::invalid(name, value, hint))
    }
}

/// The longest text of words to search for (`recall`'s `query_text`, `search_nodes`' `query`), in
/// characters: a text search of 50 000 words ran out of stack (54001) and a long one of distinct
/// words failed with a message holding the whole text (54000); 5 000 words search well.
pub const MAX_WORDS_CHARS: usize = 10_000;

/// Words to search for, at most [`MAX_WORDS_CHARS`] characters: 22023 naming `name` and the length
/// otherwise (not the text).
pub fn check_words(name: &'static str, text: &str) -> Result<(), FractalityError> {
    let n = text.chars().count();
    if n > MAX_WORDS_CHARS {
        return Err(FractalityError::invalid(
            name,
            format!("a text of {n} characters"),
            "Words to search for are at most 10 000 characters: pass the few that matter.",
        ));
    }
    Ok(())
}

/// The most elements an array argument may hold: what a call copies out of one is the process's
/// own memory, beyond PostgreSQL's memory contexts (a NULL element of a 17 MB array takes 24
/// bytes of it), where a failed allocation ends the server, not the statement.
pub const MAX_ELEMENTS: usize = 1_000_000;

/// An array argument of `n` elements: 22023 above [`MAX_ELEMENTS`], before any is copied out
/// (taken as pgrx's lazy `Array`, not as a `Vec`, which pgrx fills before the function runs).
pub fn check_elements(name: &'static str, n: usize) -> Result<(), FractalityError> {
    if n > MAX_ELEMENTS {
        return Err(FractalityError::invalid(
            name,
            format!("an array of {n} elements"),
            "An array argument holds at most 1 000 000 elements: split the call into calls of that size or less.",
        ));
    }
    Ok(())
}

/// The dimensions of array argument `n` of the call (its first header bytes read, not the
/// array): None when it is NULL or was not passed.
///
/// # Safety
/// `fcinfo` is the call's, and argument `n`, when passed, is an array.
unsafe fn array_dims(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<Vec<i32>> {
    unsafe {
        if fcinfo.is_null() || ((*fcinfo).nargs as usize) <= n {
            return None;
        }
        let datum = pgrx::fcinfo::pg_getarg_datum(fcinfo, n)?;
        // the header after the length word: ndim, dataoffset, elemtype, then up to 6 dimensions
        let arr = pg_sys::pg_detoast_datum_slice(datum.cast_mut_ptr(), 0, 12 + 4 * 6)
            as *const pg_sys::ArrayType;
        let ndim = (*arr).ndim.clamp(0, 6) as usize;
        let dims = (arr as *const u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const i32;
        Some((0..ndim).map(|i| *dims.add(i)).collect())
    }
}

/// 22023 unless array argument `n` (`name`) has one dimension, as a list does: PostgreSQL takes
/// `'{{1,2},{3,4}}'` for any `T[]`, and its elements read in a row would pass for a list of four.
/// An empty array (no dimension) passes.
///
/// # Safety
/// As [`array_dims`].
pub unsafe fn one_dimensional(
    fcinfo: pg_sys::FunctionCallInfo,
    n: usize,
    name: &'static str,
) -> Result<(), FractalityError> {
    match unsafe { array_dims(fcinfo, n) } {
        Some(d) if d.len() > 1 => Err(FractalityError::invalid(
            name,
            format!("an array of {} dimensions", d.len()),
            "Pass a one-dimensional array, one element per item.",
        )),
        _ => Ok(()),
    }
}

/// [`one_dimensional`] for each of `args` (position, name), raised.
///
/// # Safety
/// As [`array_dims`], for each.
pub unsafe fn one_dimensional_args(
    fcinfo: pg_sys::FunctionCallInfo,
    args: &[(usize, &'static str)],
) {
    for &(n, name) in args {
        unsafe { one_dimensional(fcinfo, n, name) }.unwrap_or_report();
    }
}

/// 22023 unless array argument `n` (`name`) holds rows of `width` values: one dimension (the
/// rows one after another), or two of which the second is `width` (a row per element of the
/// first, as a client's list of lists arrives).
///
/// # Safety
/// As [`array_dims`].
pub unsafe fn rows_of(
    fcinfo: pg_sys::FunctionCallInfo,
    n: usize,
    name: &'static str,
    width: i32,
) -> Result<(), FractalityError> {
    match unsafe { array_dims(fcinfo, n) } {
        Some(d) if d.len() > 2 || (d.len() == 2 && d[1] != width) => {
            Err(FractalityError::invalid(
                name,
                format!(
                    "an array of dimensions {}",
                    d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" x ")
                ),
                "Pass the values one after another in one dimension, or an array of rows of as many values as an event holds.",
            ))
        }
        _ => Ok(()),
    }
}

/// The elements of the array argument `name` (a NULL element as None), at most
/// [`MAX_ELEMENTS`], counted before any is read.
pub fn elements<'a, T>(
    name: &'static str,
    array: &'a pgrx::datum::Array<'_, T>,
) -> Vec<Option<T::As<'a>>>
where
    T: pgrx::datum::UnboxDatum,
{
    check_elements(name, array.len()).unwrap_or_report();
    array.iter().collect()
}

/// An argument of a function that is not strict (it has other arguments where NULL means
/// something) that must not be NULL: 22004 otherwise.
#[track_caller]
pub fn required<T>(name: &'static str, value: Option<T>) -> T {
    match value {
        Some(v) => v,
        None => FractalityError::NullNotAllowed(name).report(),
    }
}

/// A writer refuses a read-only transaction (a hot standby, `default_transaction_read_only`,
/// `SET TRANSACTION READ ONLY`) with PostgreSQL's own error, 25006, before it reads or locks
/// anything.
pub fn writer(name: &std::ffi::CStr) {
    // SAFETY: a C string; PostgreSQL raises the ERROR itself
    unsafe { pg_sys::PreventCommandIfReadOnly(name.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_value() {
        assert_eq!(
            FractalityError::DimensionMismatch(3, 4).to_string(),
            "different vector dimensions 3 and 4"
        );
        let e = finite("decay_rate", f64::NAN).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for decay_rate: NaN");
        assert_eq!(
            e.sqlstate(),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            finite("x", f64::INFINITY).unwrap_err().to_string(),
            "invalid value for x: Infinity"
        );
        assert_eq!(finite("x", 0.5), Ok(0.5));
    }

    /// Floats in messages read as PostgreSQL's float8out writes them (-1e-300 had been written
    /// out in 317 characters).
    #[test]
    fn floats_print_as_postgresql_prints_them() {
        for (v, want) in [
            (-1e-300, "-1e-300"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (0.5, "0.5"),
            (-0.0, "-0"),
            (0.0, "0"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.5e20, "1.5e+20"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE / 4.0, "5.562684646268003e-309"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(pg_float(v), want, "{v:e}");
        }
        // and reals as float4out writes them (from 1e6 on in exponent notation)
        for (v, want) in [
            (3.4e38f32, "3.4e+38"),
            (-3.4e38, "-3.4e+38"),
            (1234567.0, "1.234567e+06"),
            (123456.0, "123456"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1.5, "1.5"),
            (f32::INFINITY, "Infinity"),
        ] {
            assert_eq!(pg_real(v), want, "{v:e}");
        }
    }

    #[test]
    fn in_range_is_finite_and_within_the_bounds() {
        assert_eq!(
            in_range("w", 1.5, 0.0, 1.0, "in [0, 1]")
                .unwrap_err()
                .to_string(),
            "invalid value for w: 1.5"
        );
        assert_eq!(
            in_range("w", f64::NAN, 0.0, 1.0, "in [0, 1]")
                .unwrap_err()
                .to_string(),
            "invalid value for w: NaN"
        );
        assert_eq!(in_range("w", -1.0, -1.0, 1.0, "in [-1, 1]"), Ok(-1.0));
    }

    #[test]
    fn count_in_range_is_within_the_bounds() {
        assert_eq!(
            count_in_range("k", 0, 1, 10, "1 to 10")
                .unwrap_err()
                .to_string(),
            "invalid value for k: 0"
        );
        assert!(count_in_range("k", 11, 1, 10, "1 to 10").is_err());
        assert_eq!(count_in_range("k", 10, 1, 10, "1 to 10"), Ok(10));
    }
}
