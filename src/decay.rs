//! Consciousness decay: a node's energy (ATP) fades as `atp * rate ^ (elapsed / tick)`, never
//! below a floor, and a value already below the floor stays as it is.
//!
//! The decay is lazy: `nodes.atp` is the energy as of `nodes.atp_at`, and [`current_atp`] reads
//! it decayed to any instant with the settings `fractality.decay_rate`, `fractality.decay_tick`
//! and `fractality.atp_floor`, so energy is always current without any write. Decay composes
//! (writing the decayed value at t1 and reading at t2 gives what reading at t2 gives), so
//! [`materialize_decay`] can write it back at any time without changing what readers see.
//! [`apply_consciousness_decay`] is the seed's explicit tick on the stored value, and [`pulse`]
//! feeds energy to a node and records a stream point.
//!
//! Decay writes (`apply_consciousness_decay`, `materialize_decay`) do not send one
//! `consciousness_update` notification per row: they switch `fractality.notify` off for their own
//! statement and, where it was on, send ONE summary notification
//! `{"action": "DECAY" | "MATERIALIZE", "rows": n, "user_id": …}` when they wrote rows.

use crate::errors::{finite, FractalityError, OrReport};
use crate::gucs;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

const USECS_PER_SEC: f64 = 1_000_000.0;
const SECS_PER_DAY: f64 = 86_400.0;

// ---- the math ----------------------------------------------------------------------------------

/// Seconds in an interval, as PostgreSQL's `date_part('epoch', interval)` counts them: a year of
/// months is 365.25 days, a remaining month 30 days, a day 24 hours.
pub fn interval_secs(months: i32, days: i32, micros: i64) -> f64 {
    let years = f64::from(months / 12);
    let rest = f64::from(months % 12);
    years * 365.25 * SECS_PER_DAY
        + rest * 30.0 * SECS_PER_DAY
        + f64::from(days) * SECS_PER_DAY
        + micros as f64 / USECS_PER_SEC
}

/// `max(floor, atp * rate ^ (elapsed / tick))`, and `atp` itself where it is already below the
/// floor. The arguments are assumed valid (see [`check_curve`]); `elapsed` and `tick` share a unit.
#[inline]
pub fn decay(atp: f64, elapsed: f64, rate: f64, tick: f64, floor: f64) -> f64 {
    if atp <= floor || elapsed <= 0.0 || rate >= 1.0 {
        return atp;
    }
    (atp * rate.powf(elapsed / tick)).max(floor)
}

/// A rate in (0, 1].
pub fn check_rate(name: &'static str, rate: f64) -> Result<f64, FractalityError> {
    let rate = finite(name, rate)?;
    if rate > 0.0 && rate <= 1.0 {
        Ok(rate)
    } else {
        Err(FractalityError::invalid(
            name,
            rate,
            "A decay rate is the fraction kept per tick: a number in (0, 1].",
        ))
    }
}

/// An energy level in [0, 1] (ATP, or a floor).
pub fn check_level(name: &'static str, value: f64) -> Result<f64, FractalityError> {
    let value = finite(name, value)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(FractalityError::invalid(
            name,
            value,
            "Energy levels (ATP and its floor) lie in [0, 1].",
        ))
    }
}

/// Validates the arguments of a decay curve; `elapsed` and `tick` in seconds, `shown` renders
/// them for the message.
pub fn check_curve(
    atp: f64,
    elapsed: f64,
    rate: f64,
    tick: f64,
    floor: f64,
    shown: impl Fn(&'static str) -> String,
) -> Result<(), FractalityError> {
    check_level("atp", atp)?;
    if elapsed < 0.0 {
        return Err(FractalityError::invalid(
            "elapsed",
            shown("elapsed"),
            "Elapsed time cannot be negative.",
        ));
    }
    check_rate("rate", rate)?;
    if tick <= 0.0 {
        return Err(FractalityError::invalid(
            "tick",
            shown("tick"),
            "The tick (the time one decay step takes) must be positive.",
        ));
    }
    check_level("floor", floor)?;
    Ok(())
}

/// Parses the setting `fractality.decay_tick` into microseconds: a positive duration written as
/// number-unit pairs (`1 hour`, `90 minutes`, `1h 30min`, `2.5 days`, `1 week`), `HH:MM[:SS]`, or a
/// bare number of seconds. Units: us, ms, s, min, h, d, w and their long forms. Months and years
/// are refused: they have no fixed length.
pub fn parse_tick(text: &str) -> Result<i64, String> {
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err("the tick is empty".into());
    }
    let secs: f64 = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(format!("\"{text}\" is not HH:MM[:SS]"));
        }
        let mut total = 0.0;
        for (i, p) in parts.iter().enumerate() {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("\"{text}\" is not HH:MM[:SS]"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(format!("\"{text}\" is not HH:MM[:SS]"));
            }
            total += v * [3600.0, 60.0, 1.0][i];
        }
        total
    } else {
        let mut total = 0.0;
        let mut rest = s.as_str();
        let mut pairs = 0;
        while !rest.trim_start().is_empty() {
            rest = rest.trim_start();
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
                .unwrap_or(rest.len());
            let number: f64 = rest[..end]
                .parse()
                .map_err(|_| format!("\"{text}\" is not a duration such as '1 hour'"))?;
            rest = rest[end..].trim_start();
            let uend = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = &rest[..uend];
            rest = &rest[uend..];
            let per = match unit {
                "" if pairs == 0 && rest.trim().is_empty() => 1.0, // a bare number: seconds
                "us" | "usec" | "usecs" | "microsecond" | "microseconds" => 1e-6,
                "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1e-3,
                "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
                "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
                "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
                "d" | "day" | "days" => SECS_PER_DAY,
                "w" | "week" | "weeks" => 7.0 * SECS_PER_DAY,
                "mon" | "mons" | "month" | "months" | "y" | "year" | "years" => {
                    return Err(format!(
                        "\"{text}\": months and years have no fixed length; use days"
                    ))
                }
                other => return Err(format!("\"{text}\": unknown unit \"{other}\"")),
            };
            total += number * per;
            pairs += 1;
        }
        total
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("\"{text}\" is not a positive duration"));
    }
    let micros = secs * USECS_PER_SEC;
    if !(1.0..=1e17).contains(&micros) {
        return Err(format!(
            "\"{text}\" is out of range (1 microsecond to about 3000 years)"
        ));
    }
    Ok(micros.round() as i64)
}

// ---- SQL: the curve and the lazy read ------------------------------------------------------------

fn interval_text(iv: Interval) -> String {
    // SAFETY: interval_out takes one non-null interval datum and returns a palloc'd C string.
    unsafe {
        pgrx::direct_function_call::<&core::ffi::CStr>(pg_sys::interval_out, &[iv.into_datum()])
    }
    .map(|c| c.to_string_lossy().into_owned())
    .unwrap_or_default()
}

fn secs_of(iv: Interval) -> f64 {
    interval_secs(iv.months(), iv.days(), iv.micros())
}

/// `max(floor, atp * rate ^ (elapsed / tick))`; `atp` itself where it is already below the floor.
#[pg_extern(immutable, parallel_safe, strict)]
pub fn decay_atp(atp: f64, elapsed: Interval, rate: f64, tick: Interval, floor: f64) -> f64 {
    let (e, t) = (secs_of(elapsed), secs_of(tick));
    check_curve(atp, e, rate, t, floor, |which| {
        interval_text(if which == "elapsed" { elapsed } else { tick })
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
        gucs::DECAY_RATE.get(),
        gucs::decay_tick_us() as f64,
        gucs::ATP_FLOOR.get(),
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
fn notify_off() -> bool {
    let was_on = gucs::NOTIFY.get();
    if was_on {
        Spi::run("SELECT pg_catalog.set_config('fractality.notify', 'off', true)")
            .expect("set_config");
    }
    was_on
}

/// Restores the notification setting and, if it was on and rows were written, sends one summary.
fn notify_restore(was_on: bool, action: &str, rows: i64, user: Option<pgrx::Uuid>) {
    if !was_on {
        return;
    }
    Spi::run("SELECT pg_catalog.set_config('fractality.notify', 'on', true)").expect("set_config");
    if rows > 0 {
        Spi::run_with_args(
            "SELECT pg_catalog.pg_notify('consciousness_update',
                    pg_catalog.json_build_object('action', $1::text, 'rows', $2::bigint,
                                                 'user_id', $3::uuid)::text)",
            &[action.into(), rows.into(), user.into()],
        )
        .expect("pg_notify");
    }
}

/// The explicit tick as one UPDATE. The rows are locked first (FOR NO KEY UPDATE, which under
/// READ COMMITTED returns the latest committed version of a row a concurrent transaction changed,
/// re-checked against the WHERE), so the locked row's value is exactly the one the UPDATE decays:
/// the old value comes from there, the new from RETURNING (PostgreSQL 15's RETURNING sees only
/// the new row).
const APPLY_SQL: &str = "
UPDATE fractality.nodes n
   SET atp = greatest(o.atp * $1, $2)
  FROM (SELECT id, user_id, atp
          FROM fractality.nodes
         WHERE atp > $2
           AND greatest(atp * $1, $2) <> atp
           AND ($3::uuid IS NULL OR user_id = $3::uuid)
           FOR NO KEY UPDATE) o
 WHERE n.id = o.id AND n.user_id = o.user_id
RETURNING n.id, o.atp, n.atp";

/// 0.4.0's per-row step of the explicit tick, `greatest(atp * rate, floor)`: no longer in the
/// schema (the upgrade drops it), but its symbol stays in the library so that the install
/// scripts of 0.4.0 and earlier still load against it (an installation being upgraded).
#[pg_extern(sql = false, volatile, strict, parallel_unsafe)]
pub fn decay_tick(_node_id: pgrx::Uuid, atp: f64, rate: f64, floor: f64) -> f64 {
    (atp * rate).max(floor)
}

/// The seed's one-tick decay over the stored energy: every node above `min_atp` (of one tenant
/// when `p_user_id` is given) keeps `decay_rate` of it, never dropping below `min_atp`. Returns the
/// exact old and new values of the rows it changed, and touches no other row. `atp_at` does not
/// move: the tick comes on top of the lazy decay. A row a concurrent transaction changed while
/// this ran is decayed from that transaction's value (as any UPDATE would), and that value is
/// the old one reported.
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
    let rate = decay_rate
        .ok_or(FractalityError::NullNotAllowed("decay_rate"))
        .and_then(|r| check_rate("decay_rate", r))
        .unwrap_or_report();
    let floor = min_atp
        .ok_or(FractalityError::NullNotAllowed("min_atp"))
        .and_then(|f| check_level("min_atp", f))
        .unwrap_or_report();

    let was_on = notify_off();
    let rows: Vec<(pgrx::Uuid, f64, f64)> = Spi::connect_mut(|client| {
        let table = client.update(
            APPLY_SQL,
            None,
            &[rate.into(), floor.into(), p_user_id.into()],
        )?;
        table
            .map(|row| {
                Ok((
                    row.get::<pgrx::Uuid>(1)?.expect("id"),
                    row.get::<f64>(2)?.expect("old atp"),
                    row.get::<f64>(3)?.expect("new atp"),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .expect("apply_consciousness_decay: UPDATE");
    notify_restore(was_on, "DECAY", rows.len() as i64, p_user_id);
    TableIterator::new(rows)
}

/// One batch, the fast way: the rows of a block range whose decayed value differs from the stored
/// one, written back with atp_at = $1 by a plain UPDATE (run with a short lock_timeout).
const MATERIALIZE_PLAIN_SQL: &str = "
UPDATE fractality.nodes n
   SET atp = fractality.current_atp(n.atp, n.atp_at, $1), atp_at = $1
 WHERE n.ctid >= pg_catalog.format('(%s,0)', $2::bigint)::tid
   AND n.ctid <  pg_catalog.format('(%s,0)', $3::bigint)::tid
   AND n.atp_at < $1
   AND fractality.current_atp(n.atp, n.atp_at, $1) <> n.atp";

/// One batch, the way that never waits: the same rows locked first with SKIP LOCKED, so rows a
/// concurrent transaction holds are left out.
const MATERIALIZE_SKIP_LOCKED_SQL: &str = "
UPDATE fractality.nodes n
   SET atp = fractality.current_atp(n.atp, n.atp_at, $1), atp_at = $1
  FROM (SELECT ctid
          FROM fractality.nodes
         WHERE ctid >= pg_catalog.format('(%s,0)', $2::bigint)::tid
           AND ctid <  pg_catalog.format('(%s,0)', $3::bigint)::tid
           AND atp_at < $1
           AND fractality.current_atp(atp, atp_at, $1) <> atp
           FOR NO KEY UPDATE SKIP LOCKED) b
 WHERE n.ctid = b.ctid
   AND n.ctid >= pg_catalog.format('(%s,0)', $2::bigint)::tid
   AND n.ctid <  pg_catalog.format('(%s,0)', $3::bigint)::tid";

/// How long the plain batches of materialize_decay wait for a row a writer holds before the run
/// falls back to batches that skip such rows. Well below deadlock_timeout (1 s by default), so a
/// writer waiting for a row materialize_decay already wrote never sees a deadlock.
const WRITER_WAIT: &str = "10ms";

/// Runs `f` in a subtransaction; `Some` when it committed, `None` when it failed with
/// lock_not_available (55P03, a lock_timeout) and was rolled back. Any other error (a cancel, a
/// constraint, anything) rolls the subtransaction back too and then propagates, so that a caller's
/// PL/pgSQL EXCEPTION block finds the transaction as it left it.
fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Option<R> {
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

/// Writes the lazily decayed energy back into `atp` (and `atp_at` = now) for every node whose
/// stored value is stale, in batches of about `batch_size` rows (ranges of the table's blocks).
/// It does not wait for writers: the batches are plain UPDATEs that give up on a row a concurrent
/// transaction holds after 10 ms, and then the whole run is rolled back and redone in batches that
/// skip the rows writers hold (left for the next run), so it cannot deadlock with a writer either.
/// Readers see the same energy before and after. Returns the rows written.
#[pg_extern(volatile)]
pub fn materialize_decay(batch_size: default!(Option<i32>, 10000)) -> i64 {
    let batch = batch_size
        .ok_or(FractalityError::NullNotAllowed("batch_size"))
        .and_then(|b| {
            crate::errors::writer(c"materialize_decay");
            if b > 0 {
                Ok(i64::from(b))
            } else {
                Err(FractalityError::invalid(
                    "batch_size",
                    b,
                    "Pass a positive number of rows per batch.",
                ))
            }
        })
        .unwrap_or_report();

    let was_on = notify_off();
    let written = Spi::connect_mut(|client| {
        // blocks now, and rows per block as the statistics last saw them
        let row = client
            .select(
                "SELECT pg_catalog.pg_relation_size('fractality.nodes'::regclass)
                            / pg_catalog.current_setting('block_size')::bigint,
                        CASE WHEN c.relpages > 0 AND c.reltuples > 0
                             THEN c.reltuples / c.relpages ELSE 0 END::float8,
                        pg_catalog.now(),
                        pg_catalog.current_setting('lock_timeout')
                   FROM pg_catalog.pg_class c
                  WHERE c.oid = 'fractality.nodes'::regclass",
                None,
                &[],
            )?
            .first();
        let blocks = row.get::<i64>(1)?.unwrap_or(0);
        let per_block = row.get::<f64>(2)?.unwrap_or(0.0);
        let now = row.get::<TimestampWithTimeZone>(3)?.expect("now()");
        let lock_timeout = row.get::<String>(4)?.expect("lock_timeout");
        let step = if per_block >= 1.0 {
            ((batch as f64 / per_block).floor() as i64).max(1)
        } else {
            // no statistics yet: assume the tightest packing an 8 kB page allows for this table
            (batch / 60).max(1)
        };
        let ranges: Vec<(i64, i64)> = (0..blocks)
            .step_by(step as usize)
            .map(|from| (from, (from + step).min(blocks)))
            .collect();
        let run = |client: &mut pgrx::spi::SpiClient<'_>, sql: &str| {
            let mut written = 0i64;
            for &(from, to) in &ranges {
                let t = client.update(sql, None, &[now.into(), from.into(), to.into()])?;
                written += t.len() as i64;
            }
            Ok::<_, pgrx::spi::Error>(written)
        };
        // plain batches, in one subtransaction, waiting at most WRITER_WAIT for a held row
        let plain = in_subtransaction(|| {
            Spi::run_with_args(
                "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
                &[WRITER_WAIT.into()],
            )
            .expect("set_config");
            run(client, MATERIALIZE_PLAIN_SQL)
        });
        match plain {
            Some(written) => {
                Spi::run_with_args(
                    "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
                    &[lock_timeout.into()],
                )?;
                written
            }
            // a writer held a row: everything above was rolled back (lock_timeout with it)
            None => run(client, MATERIALIZE_SKIP_LOCKED_SQL),
        }
    })
    .expect("materialize_decay: UPDATE");
    notify_restore(was_on, "MATERIALIZE", written, None);
    written
}

/// Feeds `energy` to a node: its ATP becomes min(1, current + energy), never below 0 (a negative
/// energy drains), `atp_at` becomes now, and one point (now, new ATP) is appended to
/// consciousness_streams. Returns the new ATP.
#[pg_extern(volatile)]
pub fn pulse(node_id: Option<pgrx::Uuid>, energy: Option<f64>) -> f64 {
    crate::errors::writer(c"pulse");
    let id = node_id
        .ok_or(FractalityError::NullNotAllowed("node_id"))
        .unwrap_or_report();
    let energy = energy
        .ok_or(FractalityError::NullNotAllowed("energy"))
        .and_then(|e| finite("energy", e))
        .unwrap_or_report();
    let atp = Spi::connect_mut(|client| {
        let table = client.update(
            "WITH u AS (
             UPDATE fractality.nodes
                SET atp = least(1.0, greatest(0.0,
                              fractality.current_atp(atp, atp_at, pg_catalog.now()) + $2)),
                    atp_at = pg_catalog.now()
              WHERE id = $1
             RETURNING id, user_id, atp, atp_at)
         INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
         SELECT atp_at, id, user_id, atp FROM u
         RETURNING atp_level",
            None,
            &[id.into(), energy.into()],
        )?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get_one::<f64>()
    })
    .expect("pulse: UPDATE");
    match atp {
        Some(v) => v,
        None => crate::errors::node_not_found(id).report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::{Rng, SeedableRng};

    const HOUR: f64 = 3600.0;

    #[test]
    fn one_tick_keeps_the_rate() {
        assert_relative_eq!(decay(0.8, HOUR, 0.95, HOUR, 0.1), 0.76);
        assert_relative_eq!(decay(0.8, 2.0 * HOUR, 0.5, HOUR, 0.1), 0.2);
        assert_relative_eq!(decay(0.8, 0.5 * HOUR, 0.25, HOUR, 0.0), 0.4);
    }

    #[test]
    fn the_floor_clamps_and_values_below_it_stay() {
        assert_eq!(decay(0.8, 100.0 * HOUR, 0.5, HOUR, 0.1), 0.1);
        assert_eq!(decay(0.05, 10.0 * HOUR, 0.5, HOUR, 0.1), 0.05);
        assert_eq!(decay(0.1, 10.0 * HOUR, 0.5, HOUR, 0.1), 0.1);
        assert_eq!(decay(0.7, 0.0, 0.5, HOUR, 0.1), 0.7);
        assert_eq!(decay(0.7, 5.0 * HOUR, 1.0, HOUR, 0.1), 0.7);
    }

    #[test]
    fn decay_composes_over_many_random_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..100_000 {
            let atp: f64 = rng.random_range(0.0..=1.0);
            let rate: f64 = rng.random_range(0.01..=1.0);
            let floor: f64 = rng.random_range(0.0..=1.0);
            let tick: f64 = rng.random_range(1.0..100_000.0);
            let t1: f64 = rng.random_range(0.0..1_000_000.0);
            let t2: f64 = rng.random_range(0.0..1_000_000.0);
            let direct = decay(atp, t1 + t2, rate, tick, floor);
            let stepwise = decay(decay(atp, t1, rate, tick, floor), t2, rate, tick, floor);
            assert_relative_eq!(direct, stepwise, max_relative = 1e-9, epsilon = 1e-300);
            assert!(direct >= floor.min(atp) && direct <= atp);
        }
    }

    #[test]
    fn intervals_count_seconds_like_date_part_epoch() {
        assert_eq!(interval_secs(0, 0, 3_600_000_000), 3600.0);
        assert_eq!(interval_secs(0, 1, 0), 86_400.0);
        assert_eq!(interval_secs(1, 0, 0), 30.0 * 86_400.0);
        assert_eq!(interval_secs(12, 0, 0), 365.25 * 86_400.0);
        assert_eq!(interval_secs(0, 0, -1_000_000), -1.0);
    }

    #[test]
    fn ticks_parse_in_many_spellings() {
        let h = 3_600_000_000;
        assert_eq!(parse_tick("1 hour"), Ok(h));
        assert_eq!(parse_tick(" 1 HOUR "), Ok(h));
        assert_eq!(parse_tick("60 minutes"), Ok(h));
        assert_eq!(parse_tick("1h"), Ok(h));
        assert_eq!(parse_tick("1h 30min"), Ok(h + h / 2));
        assert_eq!(parse_tick("01:30:00"), Ok(h + h / 2));
        assert_eq!(parse_tick("3600"), Ok(h));
        assert_eq!(parse_tick("2.5 days"), Ok(60 * h));
        assert_eq!(parse_tick("1 week"), Ok(168 * h));
        assert_eq!(parse_tick("500 ms"), Ok(500_000));
        for bad in [
            "",
            "0",
            "-1 hour",
            "1 fortnight",
            "1 month",
            "hour",
            "1:2:3:4",
            "abc",
        ] {
            assert!(parse_tick(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn bad_curves_are_refused_naming_the_value() {
        let show = |w: &'static str| w.to_string();
        let e = check_curve(0.5, 1.0, 1.5, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for rate: 1.5");
        let e = check_curve(0.5, 1.0, 0.0, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for rate: 0");
        let e = check_curve(f64::NAN, 1.0, 0.5, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for atp: NaN");
        let e = check_curve(0.5, -1.0, 0.5, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for elapsed: elapsed");
        let e = check_curve(0.5, 1.0, 0.5, 0.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for tick: tick");
        let e = check_curve(0.5, 1.0, 0.5, 1.0, f64::INFINITY, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for floor: Infinity");
        assert!(check_curve(0.5, 0.0, 1.0, 1.0, 0.0, show).is_ok());
    }
}
