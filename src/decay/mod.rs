//! Consciousness decay: a node's energy (ATP) fades as `atp * rate ^ (elapsed / tick)`, never
//! below a floor, and a value already below the floor stays as it is.
//!
//! The decay is lazy: `nodes.atp` is the energy as of `nodes.atp_at`, and [`current_atp`] reads
//! it decayed to any instant with the settings `fractality.decay_rate`, `fractality.decay_tick`
//! and `fractality.atp_floor`, so energy is always current without any write. Decay composes
//! (writing the decayed value at t1 and reading at t2 gives what reading at t2 gives), so
//! [`materialize_decay`] can write it back at any time without changing what readers at or after
//! t1 see (a transaction whose now() is before t1 reads the written value, as for any write).
//! [`apply_consciousness_decay`] is the seed's explicit tick on the energy of now, and [`pulse`]
//! feeds energy to a node and records a stream point.
//!
//! Decay writes (`apply_consciousness_decay`, `materialize_decay`) do not send one
//! `consciousness_update` notification per row: they switch `fractality.notify` off for their own
//! statement and, where it was on, send ONE summary notification
//! `{"action": "DECAY" | "MATERIALIZE", "rows": n, "tenant": md5 of the tenant id or null}` when they wrote rows.
//!
//! The levels: [`curve`] is the curve, its checks and the tick's parser, plain Rust tested without
//! a server; [`store`] runs the writers' queries (`sql/queries/decay_*.sql`); this file is the
//! `#[pg_extern]` layer.

pub mod curve;
pub mod store;

use crate::errors::{finite, required, FractalityError, OrReport};
use crate::gucs;
use crate::spi;
use pgrx::prelude::*;

pub use curve::{check_curve, check_level, check_rate, decay, interval_secs, parse_tick};

// ---- SQL: the curve and the lazy read ------------------------------------------------------------

fn secs_of(iv: Interval) -> f64 {
    interval_secs(iv.months(), iv.days(), iv.micros())
}

/// `max(floor, atp * rate ^ (elapsed / tick))`; `atp` itself where it is already below the floor.
#[pg_extern(immutable, parallel_safe, strict)]
pub fn decay_atp(atp: f64, elapsed: Interval, rate: f64, tick: Interval, floor: f64) -> f64 {
    let (e, t) = (secs_of(elapsed), secs_of(tick));
    check_curve(atp, e, rate, t, floor, |which| {
        crate::errors::pg_interval(if which == "elapsed" { &elapsed } else { &tick })
    })
    .unwrap_or_report();
    decay(atp, e, rate, t, floor)
}

fn finite_ts(name: &'static str, ts: TimestampWithTimeZone) -> Result<i64, FractalityError> {
    let raw = ts.into_inner();
    if raw == i64::MIN || raw == i64::MAX {
        Err(FractalityError::invalid(
            name,
            if raw > 0 { "infinity" } else { "-infinity" },
            "Pass a finite timestamp.",
        ))
    } else {
        Ok(raw)
    }
}

/// The energy as of `at` of a node whose energy was `atp` at `atp_at`, decayed with the settings
/// fractality.decay_rate, fractality.decay_tick and fractality.atp_floor. An `atp_at` later than
/// `at` (a write committed after the reading transaction began) reads as `atp`.
#[inline]
pub fn current(atp: f64, atp_at_us: i64, at_us: i64) -> f64 {
    let elapsed_us = at_us as f64 - atp_at_us as f64;
    decay(
        atp,
        elapsed_us,
        gucs::decay_rate(),
        gucs::decay_tick_us() as f64,
        gucs::atp_floor(),
    )
}

/// Lazy decay with the settings: a node's energy now (or at `at`) without any write.
#[pg_extern(stable, parallel_safe, strict)]
pub fn current_atp(
    atp: f64,
    atp_at: TimestampWithTimeZone,
    at: default!(TimestampWithTimeZone, "now()"),
) -> f64 {
    check_level("atp", atp).unwrap_or_report();
    let from = finite_ts("atp_at", atp_at).unwrap_or_report();
    let to = finite_ts("at", at).unwrap_or_report();
    current(atp, from, to)
}

// ---- SQL: writers --------------------------------------------------------------------------------

/// Switches the per-row notification off for one statement; returns whether it was on.
fn notify_off() -> Result<bool, FractalityError> {
    let was_on = gucs::notify_enabled();
    if was_on {
        store::set_notify("off")?;
    }
    Ok(was_on)
}

/// Restores the notification setting and, if it was on and rows were written, sends one summary.
fn notify_restore(
    was_on: bool,
    action: &str,
    rows: i64,
    user: Option<pgrx::Uuid>,
) -> Result<(), FractalityError> {
    if !was_on {
        return Ok(());
    }
    store::set_notify("on")?;
    if rows > 0 {
        store::notify(action, rows, user)?;
    }
    Ok(())
}

/// 0.4.0's per-row step of the explicit tick, `greatest(atp * rate, floor)`: no longer in the
/// schema (the upgrade drops it), but its symbol stays in the library so that the install
/// scripts of 0.4.0 and earlier still load against it (an installation being upgraded).
#[pg_extern(sql = false, volatile, strict, parallel_unsafe)]
pub fn decay_tick(_node_id: pgrx::Uuid, atp: f64, rate: f64, floor: f64) -> f64 {
    curve::tick(atp, rate, floor)
}

/// The seed's one-tick decay: every node whose energy now is above `min_atp` (of one tenant
/// when `p_user_id` is given) keeps `decay_rate` of it, never dropping below `min_atp`, written
/// as of now (`atp_at` = now(): the tick comes on top of the lazy decay since the last write).
/// Returns the exact old and new energies of the rows it changed, and touches no other row. A
/// row a concurrent transaction changed while this ran is decayed from that transaction's
/// value (as any UPDATE would), and that value is the old one reported.
#[pg_extern(volatile)]
pub fn apply_consciousness_decay(
    decay_rate: default!(Option<f64>, 0.95),
    min_atp: default!(Option<f64>, 0.1),
    p_user_id: default!(Option<pgrx::Uuid>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(node_id, pgrx::Uuid),
        name!(old_atp, f64),
        name!(new_atp, f64),
    ),
> {
    crate::errors::writer(c"apply_consciousness_decay");
    let rate = check_rate("decay_rate", required("decay_rate", decay_rate)).unwrap_or_report();
    let floor = check_level("min_atp", required("min_atp", min_atp)).unwrap_or_report();
    // an application role decays its session's tenant alone (22004 without one); the owner
    // every tenant, or the one it names
    let tenant = crate::tenant::scope(c"nodes", p_user_id).unwrap_or_report();
    let rows = spi::connect(|| -> Result<Vec<(pgrx::Uuid, f64, f64)>, FractalityError> {
        let was_on = notify_off()?;
        let rows = store::apply(rate, floor, p_user_id)?;
        notify_restore(was_on, "DECAY", rows.len() as i64, tenant)?;
        Ok(rows)
    })
    .unwrap_or_report();
    TableIterator::new(rows)
}

/// How long the plain batches of materialize_decay wait for a row a writer holds before the run
/// falls back to batches that skip such rows. Well below deadlock_timeout (1 s by default), so a
/// writer waiting for a row materialize_decay already wrote never sees a deadlock.
const WRITER_WAIT: &str = "10ms";

/// Writes the lazily decayed energy back into `atp` (and `atp_at` = now) for every node whose
/// stored value is stale, in batches of about `batch_size` rows (ranges of the table's blocks).
/// It does not wait for writers: the batches are plain UPDATEs that give up on a row a concurrent
/// transaction holds after 10 ms, and then the whole run is rolled back and redone in batches that
/// skip the rows writers hold (left for the next run), so it cannot deadlock with a writer either.
/// Readers whose now() is at or after this call's see the same energy before and after (an older
/// transaction reads the written value, as for any write after it began). Returns the rows written.
#[pg_extern(volatile)]
pub fn materialize_decay(batch_size: default!(Option<i32>, 10000)) -> i64 {
    let batch = required("batch_size", batch_size);
    crate::errors::writer(c"materialize_decay");
    if batch <= 0 {
        FractalityError::invalid(
            "batch_size",
            batch,
            "Pass a positive number of rows per batch.",
        )
        .report();
    }
    let batch = i64::from(batch);
    // what the summary names: an application role writes its session's tenant's rows alone
    let tenant = if crate::tenant::restricted(c"nodes") {
        crate::tenant::current().unwrap_or_report()
    } else {
        None
    };
    // run_maintenance's step, called by the owner on its own too: a fixed search path
    spi::connect_pinned(|| -> Result<i64, FractalityError> {
        let was_on = notify_off()?;
        // blocks now, and rows per block as the statistics last saw them
        let plan = store::materialize_plan()?;
        let ranges = curve::block_ranges(plan.blocks, plan.per_block, batch);
        // plain batches, in one subtransaction, waiting at most WRITER_WAIT for a held row
        let plain = store::in_subtransaction(|| -> Result<i64, FractalityError> {
            store::set_lock_timeout(WRITER_WAIT)?;
            store::materialize(&store::MATERIALIZE_PLAIN, plan.now, &ranges)
        });
        let written = match plain {
            Some(written) => {
                store::set_lock_timeout(&plan.lock_timeout)?;
                written?
            }
            // a writer held a row: everything above was rolled back (lock_timeout with it)
            None => store::materialize(&store::MATERIALIZE_SKIP_LOCKED, plan.now, &ranges)?,
        };
        notify_restore(was_on, "MATERIALIZE", written, tenant)?;
        Ok(written)
    })
    .unwrap_or_report()
}

/// Feeds `energy` to a node: its ATP becomes min(1, current + energy), never below 0 (a negative
/// energy drains), `atp_at` becomes now, and one point (now, new ATP) is appended to
/// consciousness_streams. Returns the new ATP.
#[pg_extern(volatile)]
pub fn pulse(node_id: Option<pgrx::Uuid>, energy: Option<f64>) -> f64 {
    crate::errors::writer(c"pulse");
    let id = required("node_id", node_id);
    let energy = finite("energy", required("energy", energy)).unwrap_or_report();
    // the session's tenant's node of that id (tenants' nodes may share one)
    let tenant = crate::tenant::current().unwrap_or_report();
    let atp = spi::connect(|| store::pulse(id, energy, tenant)).unwrap_or_report();
    match atp {
        Some(v) => v,
        None => crate::errors::node_not_found(id).report(),
    }
}
