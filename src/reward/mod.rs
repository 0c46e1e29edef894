//! Reward aggregation: `total_reward`, the aggregates `discounted_return` and `reward_stats`
//! (their state machines are plain Rust in [`state`]), and prioritised experience sampling
//! (0.4.0's form: the math in [`sample`], the query in [`store`]). `episode_returns` and
//! `refresh_policy_rewards` are SQL over these, in sql/reward.sql. This file is the
//! `#[pg_extern]` layer, with the plumbing that keeps an aggregate's state in its memory context.

pub mod sample;
pub mod state;
pub mod store;

use pgrx::prelude::*;
use pgrx::{pg_sys, Internal};

use crate::errors::{required, FractalityError, OrReport};
use crate::replay::input::check_draws;
use crate::replay::points;

pub use sample::{importance_weights, prioritised_sample, PRIORITY_EPSILON};
pub use state::{check_gamma, sum_rewards, Discounted, DiscountedBySteps, EpisodeSums, Welford};

use sample::check_unit;

/// The sum of the four reward components, in real arithmetic left to right: exactly the value
/// of the seed's index expression `reward_homeostasis + reward_curiosity + reward_efficiency +
/// reward_goal`. A NaN or an infinity is refused (22023), as every function refuses them (stored
/// events cannot hold one); a sum beyond real overflows (22003), as real `+` does.
#[pg_extern(immutable, strict, parallel_safe)]
pub fn total_reward(homeostasis: f32, curiosity: f32, efficiency: f32, goal: f32) -> f32 {
    sum_rewards(homeostasis, curiosity, efficiency, goal).unwrap_or_report()
}

// ---- aggregate plumbing: plain Copy states in the aggregate's memory context -----------------

/// The aggregate's memory context, or an error when called outside an aggregate.
unsafe fn agg_context(fcinfo: pg_sys::FunctionCallInfo, name: &str) -> pg_sys::MemoryContext {
    let mut cx: pg_sys::MemoryContext = std::ptr::null_mut();
    if pg_sys::AggCheckCallContext(fcinfo, &mut cx) == 0 {
        FractalityError::InternalStep(format!("{name} called outside an aggregate")).report();
    }
    cx
}

/// The state behind `state`, allocated (as `T::default()`) in the aggregate context if absent.
unsafe fn state_mut<'a, T: Copy + Default>(
    state: &'a mut Internal,
    fcinfo: pg_sys::FunctionCallInfo,
    name: &str,
) -> &'a mut T {
    if !state.initialized() {
        let cx = agg_context(fcinfo, name);
        let p = pg_sys::MemoryContextAlloc(cx, std::mem::size_of::<T>()) as *mut T;
        p.write(T::default());
        *state = Internal::from(Some(pg_sys::Datum::from(p)));
    }
    state
        .get_mut::<T>()
        .unwrap_or_else(|| FractalityError::InternalStep(format!("{name}: no state")).report())
}

/// A combine function's work: `a`'s state (in `a`'s memory) combined with `b`'s by `combine`.
unsafe fn combined<T: Copy + Default>(
    mut a: Internal,
    b: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
    name: &str,
    combine: impl FnOnce(&T, &T) -> Result<T, FractalityError>,
) -> Internal {
    let other = unsafe { b.get::<T>() }.copied().unwrap_or_default();
    let s: &mut T = unsafe { state_mut(&mut a, fcinfo, name) };
    *s = combine(s, &other).unwrap_or_report();
    a
}

/// A deserial function's work: the state `decoded` from `bytes` in a new Internal (XX001, naming
/// the aggregate `what`, for bytes that hold no such state).
unsafe fn deserialized<T: Copy + Default>(
    bytes: &[u8],
    decoded: Option<T>,
    what: &str,
    fcinfo: pg_sys::FunctionCallInfo,
    name: &str,
) -> Internal {
    let d = decoded.unwrap_or_else(|| {
        FractalityError::CorruptVector(format!("{what} state of {} bytes", bytes.len())).report()
    });
    let mut state = Internal::default();
    let s: &mut T = unsafe { state_mut(&mut state, fcinfo, name) };
    *s = d;
    state
}

#[pg_extern(immutable, parallel_safe)]
fn discounted_return_sfunc(
    mut state: Internal,
    reward: Option<f64>,
    gamma: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let s: &mut Discounted = unsafe { state_mut(&mut state, fcinfo, "discounted_return_sfunc") };
    if let Some(r) = reward {
        let g = required("gamma", gamma);
        s.push(r, g).unwrap_or_report();
    }
    state
}

/// `v`, or 22003 naming `what` when it went beyond a double (as PostgreSQL's `sum` and `avg` of
/// float8 raise): an aggregate over finite rewards whose sums overflow.
fn finite_result(v: f64, what: &'static str) -> f64 {
    if v.is_finite() {
        v
    } else {
        FractalityError::Overflow(what).report()
    }
}

#[pg_extern(immutable, parallel_safe)]
fn discounted_return_ffunc(state: Internal) -> Option<f64> {
    let s = unsafe { state.get::<Discounted>() }?;
    s.started.then(|| finite_result(s.sum, "discounted_return"))
}

#[pg_extern(immutable, parallel_safe)]
fn discounted_return_steps_sfunc(
    mut state: Internal,
    reward: Option<f64>,
    gamma: Option<f64>,
    step: Option<i32>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let s: &mut DiscountedBySteps =
        unsafe { state_mut(&mut state, fcinfo, "discounted_return_steps_sfunc") };
    if let Some(r) = reward {
        let g = required("gamma", gamma);
        let st = required("step", step);
        s.push(r, g, st.into()).unwrap_or_report();
    }
    state
}

#[pg_extern(immutable, parallel_safe)]
fn discounted_return_steps_ffunc(state: Internal) -> Option<f64> {
    let s = unsafe { state.get::<DiscountedBySteps>() }?;
    s.started.then(|| finite_result(s.sum, "discounted_return"))
}

// Parallel aggregation of discounted_return(reward, gamma, step): partial states per worker,
// combined by rescaling to the smaller first step, sent between processes as bytes.
#[pg_extern(immutable, parallel_safe)]
fn discounted_return_steps_combine(
    a: Internal,
    b: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let name = "discounted_return_steps_combine";
    unsafe { combined(a, b, fcinfo, name, DiscountedBySteps::combine) }
}

#[pg_extern(immutable, strict, parallel_safe)]
fn discounted_return_steps_serial(state: Internal) -> Vec<u8> {
    unsafe { state.get::<DiscountedBySteps>() }
        .copied()
        .unwrap_or_default()
        .to_bytes()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn discounted_return_steps_deserial(
    bytes: Vec<u8>,
    _unused: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let d = DiscountedBySteps::from_bytes(&bytes);
    let name = "discounted_return_steps_deserial";
    unsafe { deserialized(&bytes, d, "discounted_return", fcinfo, name) }
}

#[allow(clippy::too_many_arguments)]
/// Transition of the aggregate `fractality.episode_sums` behind episode_returns: one call per
/// event instead of one per sum.
#[pg_extern(immutable, parallel_safe)]
fn episode_sums_sfunc(
    mut state: Internal,
    step: Option<i32>,
    homeostasis: Option<f32>,
    curiosity: Option<f32>,
    efficiency: Option<f32>,
    goal: Option<f32>,
    gamma: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let s: &mut EpisodeSums = unsafe { state_mut(&mut state, fcinfo, "episode_sums_sfunc") };
    let rewards = [
        homeostasis.unwrap_or(0.0),
        curiosity.unwrap_or(0.0),
        efficiency.unwrap_or(0.0),
        goal.unwrap_or(0.0),
    ];
    let step = required("step", step);
    let gamma = required("gamma", gamma);
    s.push(step.into(), rewards, gamma).unwrap_or_report();
    state
}

/// steps, homeostasis, curiosity, efficiency, goal, discounted; NULL for no rows.
#[pg_extern(immutable, parallel_safe)]
fn episode_sums_ffunc(state: Internal) -> Option<Vec<f64>> {
    unsafe { state.get::<EpisodeSums>() }.map(|s| {
        s.values()
            .into_iter()
            .map(|v| finite_result(v, "episode_sums"))
            .collect()
    })
}

/// Two workers' partial sums of one episode (parallel aggregation).
#[pg_extern(immutable, parallel_safe)]
fn episode_sums_combine(a: Internal, b: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    unsafe { combined(a, b, fcinfo, "episode_sums_combine", EpisodeSums::combine) }
}

#[pg_extern(immutable, strict, parallel_safe)]
fn episode_sums_serial(state: Internal) -> Vec<u8> {
    unsafe { state.get::<EpisodeSums>() }
        .copied()
        .unwrap_or_default()
        .to_bytes()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn episode_sums_deserial(
    bytes: Vec<u8>,
    _unused: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let e = EpisodeSums::from_bytes(&bytes);
    unsafe { deserialized(&bytes, e, "episode_sums", fcinfo, "episode_sums_deserial") }
}

#[pg_extern(immutable, parallel_safe)]
fn reward_stats_sfunc(
    mut state: Internal,
    value: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let s: &mut Welford = unsafe { state_mut(&mut state, fcinfo, "reward_stats_sfunc") };
    if let Some(v) = value {
        s.push(crate::errors::finite("reward", v).unwrap_or_report());
    }
    state
}

#[pg_extern(immutable, parallel_safe)]
fn reward_stats_combine(a: Internal, b: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let combine = |s: &Welford, o: &Welford| Ok(s.combine(o));
    unsafe { combined(a, b, fcinfo, "reward_stats_combine", combine) }
}

#[pg_extern(immutable, strict, parallel_safe)]
fn reward_stats_serial(state: Internal) -> Vec<u8> {
    unsafe { state.get::<Welford>() }
        .copied()
        .unwrap_or_default()
        .to_bytes()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn reward_stats_deserial(
    bytes: Vec<u8>,
    _unused: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let w = Welford::from_bytes(&bytes);
    unsafe { deserialized(&bytes, w, "reward_stats", fcinfo, "reward_stats_deserial") }
}

#[pg_extern(immutable, parallel_safe, requires = ["reward_types"])]
fn reward_stats_ffunc(
    state: Internal,
) -> pgrx::composite_type!('static, "fractality.reward_stats_result") {
    let w = unsafe { state.get::<Welford>() }
        .copied()
        .unwrap_or_default();
    let failed = |e: &dyn std::fmt::Display| -> ! {
        FractalityError::InternalStep(format!("reward_stats_result: {e}")).report()
    };
    let mut t = PgHeapTuple::new_composite_type("fractality.reward_stats_result")
        .unwrap_or_else(|e| failed(&e));
    let some = |v: f64| (w.n > 0).then(|| finite_result(v, "reward_stats"));
    let stddev = w.stddev().map(|sd| finite_result(sd, "reward_stats"));
    let set = (|| {
        t.set_by_name("n", w.n)?;
        t.set_by_name("mean", some(w.mean))?;
        t.set_by_name("stddev", stddev)?;
        t.set_by_name("min", some(w.min))?;
        t.set_by_name("max", some(w.max))
    })();
    if let Err(e) = set {
        failed(&e);
    }
    t
}

// ---- prioritised experience replay (0.4.0) -----------------------------------------------------

/// Prioritised replay over the hot events (0.4.0's form, kept for one release: replay buffers,
/// `sample_experiences(buffer, n)`, replace it): n draws with replacement, priority
/// |total_reward|^alpha + 1e-6, importance weights normalised to max 1. The same seed gives the
/// same sample (for the same stored events); without a seed the draw is random. It reads the
/// events twice and holds only the draws (memory O(n), time O(N)).
#[pg_extern(volatile, parallel_unsafe)]
fn sample_experiences(
    n: Option<i32>,
    alpha: default!(Option<f64>, 0.6),
    beta: default!(Option<f64>, 0.4),
    seed: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(event_id, Vec<u8>),
        name!(priority, f64),
        name!(weight, f64),
    ),
> {
    // not strict (a NULL seed means a random draw): the other arguments refuse NULL themselves
    let n = required("n", n);
    let (alpha, beta) = (required("alpha", alpha), required("beta", beta));
    let n = check_draws(n).unwrap_or_report();
    check_unit(
        "alpha",
        alpha,
        "alpha must be a finite number >= 0 (0: uniform).",
    )
    .unwrap_or_report();
    check_unit(
        "beta",
        beta,
        "beta must be a finite number >= 0 (0: no correction).",
    )
    .unwrap_or_report();
    // Two passes over the hot events in one order, holding only the n draws: the first sums
    // the priorities, the second walks their running sum past the n points drawn in [0, sum).
    // (Replay buffers, fractality.sample_experiences(buffer, n), draw in O(log N) instead.)
    let priority = |r: f64| r.abs().powf(alpha) + PRIORITY_EPSILON;
    let draws: Vec<(Vec<u8>, f64, f64)> = crate::spi::connect(|| -> Result<_, FractalityError> {
        let (mut count, mut total) = (0u64, 0.0f64);
        let mut cursor = store::hot_events()?;
        loop {
            let rows = cursor.fetch(10_000, |r| r.get::<f64>(2).unwrap_or(0.0));
            if rows.is_empty() {
                break;
            }
            for r in rows {
                count += 1;
                total += priority(r);
            }
        }
        drop(cursor);
        if count == 0 || n == 0 {
            return Ok(Vec::new());
        }
        if !total.is_finite() {
            // |reward| ^ alpha past a double: the draws could not tell the events apart
            return Err(FractalityError::Overflow(
                "the sum of the priorities |reward| ^ alpha (a smaller alpha)",
            ));
        }
        let points = points(n, total, seed);
        let mut order: Vec<usize> = (0..points.len()).collect();
        order.sort_by(|a, b| points[*a].total_cmp(&points[*b]));
        let mut picked: Vec<Option<(Vec<u8>, f64)>> = vec![None; points.len()];
        let (mut next, mut running, mut last) = (0usize, 0.0f64, None);
        let mut cursor = store::hot_events()?;
        'walk: loop {
            let rows = cursor.fetch(10_000, |r| {
                (
                    r.get::<Vec<u8>>(1).unwrap_or_default(),
                    r.get::<f64>(2).unwrap_or(0.0),
                )
            });
            if rows.is_empty() {
                break;
            }
            for (id, r) in rows {
                let p = priority(r);
                running += p;
                while next < order.len() && points[order[next]] < running {
                    picked[order[next]] = Some((id.clone(), p));
                    next += 1;
                }
                last = Some((id, p));
                if next == order.len() {
                    break 'walk;
                }
            }
        }
        drop(cursor);
        // a point at the very end (rounding) takes the last event
        let weights_of: Vec<(Vec<u8>, f64)> = picked
            .into_iter()
            .map(|d| d.or_else(|| last.clone()).unwrap_or_default())
            .collect();
        let mut draws: Vec<(Vec<u8>, f64, f64)> =
            weights_of.into_iter().map(|(id, p)| (id, p, 0.0)).collect();
        importance_weights(&mut draws, beta);
        Ok(draws)
    })
    .unwrap_or_report();
    TableIterator::new(draws)
}
