//! The decay writers' queries: the one part of `decay` that knows tables and columns. Each
//! function runs one query of `sql/queries/decay_*.sql` through [`crate::spi`]; SPI must be
//! connected ([`crate::spi::connect`]). Every query but the plan of `materialize_decay` writes:
//! it marks the transaction as writing first (it takes a transaction id, as pgrx's
//! `SpiClient::update` did) and sees the transaction's earlier writes.

use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

use crate::errors::FractalityError;
use crate::spi::{self, query, Query};

const LOCK: Query<'static> = query!("decay_lock", [FLOAT8OID, FLOAT8OID]);
const LOCK_TENANT: Query<'static> = query!("decay_lock_tenant", [FLOAT8OID, FLOAT8OID, UUIDOID]);
const APPLY: Query<'static> = query!(
    "decay_apply",
    [TEXTARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID]
);
const MATERIALIZE_PLAN: Query<'static> = query!("decay_materialize_plan", []);
/// One batch, the fast way (run with a short lock_timeout).
pub const MATERIALIZE_PLAIN: Query<'static> = query!(
    "decay_materialize_plain",
    [TIMESTAMPTZOID, INT8OID, INT8OID]
);
/// One batch, the way that never waits (rows a writer holds are left out).
pub const MATERIALIZE_SKIP_LOCKED: Query<'static> = query!(
    "decay_materialize_skip_locked",
    [TIMESTAMPTZOID, INT8OID, INT8OID]
);
const PULSE: Query<'static> = query!("decay_pulse", [UUIDOID, FLOAT8OID, UUIDOID]);
const SET_NOTIFY: Query<'static> = query!("decay_set_notify", [TEXTOID]);
const SET_LOCK_TIMEOUT: Query<'static> = query!("decay_set_lock_timeout", [TEXTOID]);
const NOTIFY: Query<'static> = query!("decay_notify", [TEXTOID, INT8OID, UUIDOID]);

/// The transaction takes its id before a write (or ERRORs trying), as pgrx's
/// `SpiClient::update` did before each of these queries.
fn writing() {
    // SAFETY: returns the current transaction id, assigning one if needed, or raises an ERROR
    unsafe {
        pg_sys::GetCurrentTransactionId();
    }
}

/// Whether the transaction has no id yet: pgrx's `SpiClient::select` ran read only then.
fn no_xid_yet() -> bool {
    // SAFETY: a plain read of the transaction state
    unsafe { pg_sys::GetCurrentTransactionIdIfAny() == pg_sys::InvalidTransactionId }
}

/// A column that cannot be NULL was.
fn null_in(query: &'static str) -> FractalityError {
    FractalityError::Internal {
        query,
        detail: "NULL in a column that cannot hold one".into(),
    }
}

// ---- notification ------------------------------------------------------------------------------

/// `fractality.notify` set to `value` ('on' or 'off') until the transaction ends.
pub fn set_notify(value: &str) -> Result<(), FractalityError> {
    writing();
    spi::run(&SET_NOTIFY, &[value.into()])?;
    Ok(())
}

/// One summary notification: `{"action": action, "rows": rows, "user_id": user}`.
pub fn notify(action: &str, rows: i64, user: Option<Uuid>) -> Result<(), FractalityError> {
    writing();
    spi::run(&NOTIFY, &[action.into(), rows.into(), user.into()])?;
    Ok(())
}

// ---- writers -----------------------------------------------------------------------------------

/// apply_consciousness_decay's UPDATE, over every tenant or over `user`'s nodes: (node id, old
/// energy, new energy) of each row changed.
pub fn apply(
    rate: f64,
    floor: f64,
    user: Option<Uuid>,
) -> Result<Vec<(Uuid, f64, f64)>, FractalityError> {
    writing();
    // first the rows, locked in id order (decay_lock.sql says why in a statement of its own)
    let row = |r: &spi::Row| Some((r.get::<String>(1)?, r.get::<f64>(2)?));
    let (q, locked) = match user {
        None => (
            &LOCK,
            spi::rows(&LOCK, &[rate.into(), floor.into()], false, row)?,
        ),
        Some(u) => (
            &LOCK_TENANT,
            spi::rows(
                &LOCK_TENANT,
                &[rate.into(), floor.into(), u.into()],
                false,
                row,
            )?,
        ),
    };
    let locked = locked
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| null_in(q.name))?;
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    // each row's new energy, computed here (see decay_apply.sql), with its old one, by its place
    // (a node's id is its tenant's: two tenants' nodes may share one)
    let mut places = Vec::with_capacity(locked.len());
    let mut olds = Vec::with_capacity(locked.len());
    let mut news = Vec::with_capacity(locked.len());
    for (place, old) in locked {
        places.push(place);
        news.push(crate::decay::curve::tick(old, rate, floor));
        olds.push(old);
    }
    // (id, old, new)
    let row = |r: &spi::Row| Some((r.get::<Uuid>(1)?, r.get::<f64>(3)?, r.get::<f64>(2)?));
    spi::rows(
        &APPLY,
        &[places.into(), news.into(), olds.into()],
        false,
        row,
    )?
    .into_iter()
    .collect::<Option<Vec<_>>>()
    .ok_or_else(|| null_in(APPLY.name))
}

/// What materialize_decay plans its batches with.
pub struct Plan {
    /// Blocks of the table now.
    pub blocks: i64,
    /// Rows per block as the statistics last saw them (0 without statistics).
    pub per_block: f64,
    /// The transaction's now(), the new `atp_at`.
    pub now: TimestampWithTimeZone,
    /// The session's lock_timeout, restored after the plain batches.
    pub lock_timeout: String,
}

/// materialize_decay's plan, read only while the transaction has no id (as pgrx's
/// `SpiClient::select` ran it).
pub fn materialize_plan() -> Result<Plan, FractalityError> {
    let read_only = no_xid_yet();
    spi::rows(&MATERIALIZE_PLAN, &[], read_only, |r| {
        Some(Plan {
            blocks: r.get::<i64>(1).unwrap_or(0),
            per_block: r.get::<f64>(2).unwrap_or(0.0),
            now: r.get::<TimestampWithTimeZone>(3)?,
            lock_timeout: r.get::<String>(4)?,
        })
    })?
    .into_iter()
    .next()
    .ok_or_else(|| FractalityError::Internal {
        query: MATERIALIZE_PLAN.name,
        detail: "no row returned".into(),
    })?
    .ok_or_else(|| null_in(MATERIALIZE_PLAN.name))
}

/// Runs one batch query (`MATERIALIZE_PLAIN` or `MATERIALIZE_SKIP_LOCKED`) over every block
/// range; the rows written.
pub fn materialize(
    q: &Query<'_>,
    now: TimestampWithTimeZone,
    ranges: &[(i64, i64)],
) -> Result<i64, FractalityError> {
    let mut written = 0i64;
    for &(from, to) in ranges {
        writing();
        written += spi::run(q, &[now.into(), from.into(), to.into()])? as i64;
    }
    Ok(written)
}

/// lock_timeout set to `value` until the transaction ends.
pub fn set_lock_timeout(value: &str) -> Result<(), FractalityError> {
    writing();
    spi::run(&SET_LOCK_TIMEOUT, &[value.into()])?;
    Ok(())
}

/// pulse's UPDATE and stream point: the new energy, None when the node does not exist or is not
/// visible.
pub fn pulse(id: Uuid, energy: f64, tenant: Option<Uuid>) -> Result<Option<f64>, FractalityError> {
    writing();
    spi::one::<f64>(&PULSE, &[id.into(), energy.into(), tenant.into()], false)
}

// ---- subtransactions ---------------------------------------------------------------------------

/// Runs `f` in a subtransaction; `Some` when it committed, `None` when it failed with
/// lock_not_available (55P03, a lock_timeout) and was rolled back. Any other error (a cancel, a
/// constraint, anything) rolls the subtransaction back too and then propagates, so that a caller's
/// PL/pgSQL EXCEPTION block finds the transaction as it left it.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Option<R> {
    // SAFETY: the pattern of PL/pgSQL's exception blocks: begin an internal subtransaction, stay
    // in the caller's memory context, and on the way out release (or roll back) it and restore
    // the caller's memory context and resource owner.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
    }
    let out = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Some(f())))
        .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |_| None)
        .catch_others(|e| {
            // SAFETY: the error state is flushed (pgrx copied the error out); undo the
            // subtransaction as PL/pgSQL does before re-throwing
            unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
            restore();
            e.rethrow()
        })
        .execute();
    unsafe {
        if out.is_some() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
    }
    restore();
    out
}
