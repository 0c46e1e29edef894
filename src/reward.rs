//! Reward aggregation: `total_reward`, the aggregates `discounted_return` and `reward_stats`
//! (their state machines are plain Rust, tested below), and prioritised experience sampling.
//! `episode_returns` and `refresh_policy_rewards` are SQL over these, in sql/reward.sql.

use pgrx::prelude::*;
use pgrx::{pg_sys, Internal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::errors::{pg_float, FractalityError, OrReport};

/// The sum of the four reward components, in real arithmetic left to right: exactly the value
/// of the seed's index expression `reward_homeostasis + reward_curiosity + reward_efficiency +
/// reward_goal`. A NaN or an infinity is refused (22023), as every function refuses them (stored
/// events cannot hold one); a sum beyond real overflows (22003), as real `+` does.
#[pg_extern(immutable, strict, parallel_safe)]
pub fn total_reward(homeostasis: f32, curiosity: f32, efficiency: f32, goal: f32) -> f32 {
    sum_rewards(homeostasis, curiosity, efficiency, goal).unwrap_or_report()
}

/// total_reward's arithmetic and checks.
pub fn sum_rewards(h: f32, c: f32, e: f32, g: f32) -> Result<f32, FractalityError> {
    for (name, v) in [
        ("reward_homeostasis", h),
        ("reward_curiosity", c),
        ("reward_efficiency", e),
        ("reward_goal", g),
    ] {
        if !v.is_finite() {
            return Err(FractalityError::invalid(
                name,
                pg_float(v as f64),
                "Rewards are finite numbers (not NaN or an infinity).",
            ));
        }
    }
    let sum = h + c + e + g;
    if sum.is_finite() {
        Ok(sum)
    } else {
        Err(FractalityError::Overflow("total_reward"))
    }
}

pub fn check_gamma(gamma: f64) -> Result<f64, FractalityError> {
    if gamma.is_finite() && (0.0..=1.0).contains(&gamma) {
        Ok(gamma)
    } else {
        Err(FractalityError::invalid(
            "gamma",
            pg_float(gamma),
            "The discount factor gamma must be a number in [0, 1].",
        ))
    }
}

fn check_reward(r: f64) -> Result<f64, FractalityError> {
    crate::errors::finite("reward", r)
}

// ---- discounted return in step order ---------------------------------------------------------

/// Rewards in step order: G = r0 + g r1 + g^2 r2 + ...
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Discounted {
    pub sum: f64,
    pub weight: f64,
    pub gamma: f64,
    pub started: bool,
}

impl Discounted {
    pub fn push(&mut self, reward: f64, gamma: f64) -> Result<(), FractalityError> {
        let reward = check_reward(reward)?;
        if !self.started {
            self.gamma = check_gamma(gamma)?;
            self.weight = 1.0;
            self.started = true;
        } else if gamma != self.gamma {
            return Err(FractalityError::invalid(
                "gamma",
                pg_float(gamma),
                "gamma must be the same for every row of one discounted_return.",
            ));
        }
        self.sum += self.weight * reward;
        self.weight *= self.gamma;
        Ok(())
    }
}

// ---- discounted return by step number (order-free, so hash aggregation needs no sort) ---------

/// G = sum over rows of g^(step - first step) * reward, where first step is the smallest step
/// seen. Rows may come in any order; equal to `Discounted` over the rows sorted by step when the
/// steps are consecutive.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiscountedBySteps {
    pub sum: f64,
    pub first_step: i64,
    pub gamma: f64,
    pub started: bool,
}

fn gpow(gamma: f64, exponent: i64) -> f64 {
    if exponent <= i64::from(i32::MAX) {
        gamma.powi(exponent as i32)
    } else {
        gamma.powf(exponent as f64)
    }
}

impl DiscountedBySteps {
    pub fn push(&mut self, reward: f64, gamma: f64, step: i64) -> Result<(), FractalityError> {
        let reward = check_reward(reward)?;
        if !self.started {
            self.gamma = check_gamma(gamma)?;
            self.first_step = step;
            self.sum = reward;
            self.started = true;
            return Ok(());
        }
        if gamma != self.gamma {
            return Err(FractalityError::invalid(
                "gamma",
                pg_float(gamma),
                "gamma must be the same for every row of one discounted_return.",
            ));
        }
        if step >= self.first_step {
            self.sum += reward * gpow(self.gamma, step - self.first_step);
        } else {
            self.sum = self.sum * gpow(self.gamma, self.first_step - step) + reward;
            self.first_step = step;
        }
        Ok(())
    }
}

// ---- one episode's sums in one pass (episode_returns) ----------------------------------------

/// Steps, the four component sums and the discounted return by step number of one episode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EpisodeSums {
    pub steps: i64,
    pub components: [f64; 4],
    pub discounted: DiscountedBySteps,
}

impl EpisodeSums {
    pub fn push(
        &mut self,
        step: i64,
        rewards: [f32; 4],
        gamma: f64,
    ) -> Result<(), FractalityError> {
        self.steps += 1;
        for (sum, r) in self.components.iter_mut().zip(rewards) {
            *sum += f64::from(r);
        }
        let [h, c, e, g] = rewards;
        self.discounted
            .push(f64::from(sum_rewards(h, c, e, g)?), gamma, step)
    }

    /// steps, homeostasis, curiosity, efficiency, goal, discounted.
    pub fn values(&self) -> Vec<f64> {
        let mut v = vec![self.steps as f64];
        v.extend(self.components);
        v.push(self.discounted.sum);
        v
    }
}

// ---- reward_stats: Welford, with Chan's combination ------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Welford {
    pub n: i64,
    pub mean: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
}

impl Welford {
    pub fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn combine(&self, other: &Welford) -> Welford {
        if self.n == 0 {
            return *other;
        }
        if other.n == 0 {
            return *self;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        let (na, nb, nf) = (self.n as f64, other.n as f64, n as f64);
        Welford {
            n,
            mean: self.mean + delta * nb / nf,
            m2: self.m2 + other.m2 + delta * delta * na * nb / nf,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// Sample standard deviation; None below two values.
    pub fn stddev(&self) -> Option<f64> {
        (self.n >= 2).then(|| (self.m2 / (self.n - 1) as f64).sqrt())
    }

    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.n.to_le_bytes());
        for v in [self.mean, self.m2, self.min, self.max] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Welford> {
        if b.len() != 40 {
            return None;
        }
        let f = |i: usize| f64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Welford {
            n: i64::from_le_bytes(b[0..8].try_into().ok()?),
            mean: f(8),
            m2: f(16),
            min: f(24),
            max: f(32),
        })
    }
}

// ---- aggregate plumbing: plain Copy states in the aggregate's memory context -----------------

/// The aggregate's memory context, or an error when called outside an aggregate.
unsafe fn agg_context(fcinfo: pg_sys::FunctionCallInfo, name: &str) -> pg_sys::MemoryContext {
    let mut cx: pg_sys::MemoryContext = std::ptr::null_mut();
    if pg_sys::AggCheckCallContext(fcinfo, &mut cx) == 0 {
        error!("{name} called outside an aggregate");
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
    state.get_mut::<T>().expect("initialised above")
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
        let g = gamma
            .ok_or(FractalityError::NullNotAllowed("gamma"))
            .unwrap_or_report();
        s.push(r, g).unwrap_or_report();
    }
    state
}

#[pg_extern(immutable, parallel_safe)]
fn discounted_return_ffunc(state: Internal) -> Option<f64> {
    let s = unsafe { state.get::<Discounted>() }?;
    s.started.then_some(s.sum)
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
        let g = gamma
            .ok_or(FractalityError::NullNotAllowed("gamma"))
            .unwrap_or_report();
        let st = step
            .ok_or(FractalityError::NullNotAllowed("step"))
            .unwrap_or_report();
        s.push(r, g, st.into()).unwrap_or_report();
    }
    state
}

#[pg_extern(immutable, parallel_safe)]
fn discounted_return_steps_ffunc(state: Internal) -> Option<f64> {
    let s = unsafe { state.get::<DiscountedBySteps>() }?;
    s.started.then_some(s.sum)
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
    let need = |name: &'static str| FractalityError::NullNotAllowed(name);
    let rewards = [
        homeostasis.unwrap_or(0.0),
        curiosity.unwrap_or(0.0),
        efficiency.unwrap_or(0.0),
        goal.unwrap_or(0.0),
    ];
    let step = step.ok_or_else(|| need("step")).unwrap_or_report();
    let gamma = gamma.ok_or_else(|| need("gamma")).unwrap_or_report();
    s.push(step.into(), rewards, gamma).unwrap_or_report();
    state
}

/// steps, homeostasis, curiosity, efficiency, goal, discounted; NULL for no rows.
#[pg_extern(immutable, parallel_safe)]
fn episode_sums_ffunc(state: Internal) -> Option<Vec<f64>> {
    unsafe { state.get::<EpisodeSums>() }.map(EpisodeSums::values)
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
fn reward_stats_combine(
    mut a: Internal,
    b: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let other = unsafe { b.get::<Welford>() }.copied().unwrap_or_default();
    let s: &mut Welford = unsafe { state_mut(&mut a, fcinfo, "reward_stats_combine") };
    *s = s.combine(&other);
    a
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
    let w = Welford::from_bytes(&bytes).unwrap_or_else(|| {
        FractalityError::CorruptVector(format!("reward_stats state of {} bytes", bytes.len()))
            .report()
    });
    let mut state = Internal::default();
    let s: &mut Welford = unsafe { state_mut(&mut state, fcinfo, "reward_stats_deserial") };
    *s = w;
    state
}

#[pg_extern(immutable, parallel_safe, requires = ["reward_types"])]
fn reward_stats_ffunc(
    state: Internal,
) -> pgrx::composite_type!('static, "fractality.reward_stats_result") {
    let w = unsafe { state.get::<Welford>() }
        .copied()
        .unwrap_or_default();
    let mut t = PgHeapTuple::new_composite_type("fractality.reward_stats_result")
        .unwrap_or_else(|e| error!("reward_stats_result: {e}"));
    let some = |v: f64| (w.n > 0).then_some(v);
    t.set_by_name("n", w.n).expect("n");
    t.set_by_name("mean", some(w.mean)).expect("mean");
    t.set_by_name("stddev", w.stddev()).expect("stddev");
    t.set_by_name("min", some(w.min)).expect("min");
    t.set_by_name("max", some(w.max)).expect("max");
    t
}

// ---- prioritised experience replay -----------------------------------------------------------

pub const PRIORITY_EPSILON: f64 = 1e-6;

/// At most this many draws per call: the sample is built in memory, and an allocation the
/// server cannot make aborts the process rather than raising an ERROR.
pub const MAX_DRAWS: i32 = 1_000_000;

/// Priorities |r|^alpha + epsilon; `n` draws with replacement, P(i) proportional to the
/// priority; importance weights (N P(i))^-beta normalised so that the largest drawn is 1.
/// Returns (index, priority, weight) per draw.
pub fn prioritised_sample(
    rewards: &[f64],
    n: usize,
    alpha: f64,
    beta: f64,
    rng: &mut impl Rng,
) -> Vec<(usize, f64, f64)> {
    if rewards.is_empty() || n == 0 {
        return Vec::new();
    }
    let priorities: Vec<f64> = rewards
        .iter()
        .map(|r| r.abs().powf(alpha) + PRIORITY_EPSILON)
        .collect();
    let mut cumulative = Vec::with_capacity(priorities.len());
    let mut total = 0.0;
    for p in &priorities {
        total += p;
        cumulative.push(total);
    }
    let count = priorities.len() as f64;
    let mut draws: Vec<(usize, f64, f64)> = (0..n)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            let i = cumulative
                .partition_point(|&c| c <= u)
                .min(priorities.len() - 1);
            let prob = priorities[i] / total;
            (i, priorities[i], (count * prob).powf(-beta))
        })
        .collect();
    let max_w = draws.iter().map(|d| d.2).fold(0.0, f64::max);
    if max_w > 0.0 {
        for d in &mut draws {
            d.2 /= max_w;
        }
    }
    draws
}

fn check_unit(name: &'static str, v: f64, hint: &'static str) -> Result<f64, FractalityError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(FractalityError::invalid(name, pg_float(v), hint))
    }
}

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
    let need = |v: Option<f64>, name: &'static str| {
        v.ok_or(FractalityError::NullNotAllowed(name))
            .unwrap_or_report()
    };
    let n = n
        .ok_or(FractalityError::NullNotAllowed("n"))
        .unwrap_or_report();
    let (alpha, beta) = (need(alpha, "alpha"), need(beta, "beta"));
    if !(0..=MAX_DRAWS).contains(&n) {
        FractalityError::invalid(
            "n",
            n,
            "The number of draws n is from 0 to 1000000 (draw larger samples in several calls).",
        )
        .report();
    }
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
    let mut rng = match seed {
        Some(s) => StdRng::seed_from_u64(s as u64),
        None => StdRng::from_rng(&mut rand::rng()),
    };
    let priority = |r: f64| r.abs().powf(alpha) + PRIORITY_EPSILON;
    let draws: Vec<(Vec<u8>, f64, f64)> = crate::spi::connect(|| -> Result<_, FractalityError> {
        let q = crate::spi::Query {
            name: "sample_hot_events",
            text: SAMPLE_HOT_EVENTS,
            types: &[],
        };
        let (mut count, mut total) = (0u64, 0.0f64);
        let mut cursor = crate::spi::Cursor::open(&q, &[], true)?;
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
        let points: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * total).collect();
        let mut order: Vec<usize> = (0..points.len()).collect();
        order.sort_by(|a, b| points[*a].total_cmp(&points[*b]));
        let mut picked: Vec<Option<(Vec<u8>, f64)>> = vec![None; points.len()];
        let (mut next, mut running, mut last) = (0usize, 0.0f64, None);
        let mut cursor = crate::spi::Cursor::open(&q, &[], true)?;
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
        let mut draws: Vec<(Vec<u8>, f64, f64)> = weights_of
            .into_iter()
            .map(|(id, p)| {
                let w = (count as f64 * (p / total)).powf(-beta);
                (id, p, w)
            })
            .collect();
        let max_w = draws.iter().map(|d| d.2).fold(0.0, f64::max);
        if max_w > 0.0 {
            for d in &mut draws {
                d.2 /= max_w;
            }
        }
        Ok(draws)
    })
    .unwrap_or_report();
    TableIterator::new(draws)
}

/// The hot events in one fixed order with their total reward (sample_experiences' two passes).
const SAMPLE_HOT_EVENTS: &str = "SELECT event_id, fractality.total_reward(reward_homeostasis,
       reward_curiosity, reward_efficiency, reward_goal)::float8
  FROM fractality.experience_events
 WHERE NOT archived
 ORDER BY \"timestamp\", event_id";

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn total_reward_is_the_real_sum() {
        assert_eq!(
            sum_rewards(0.1, 0.2, 0.3, 0.4),
            Ok(0.1f32 + 0.2 + 0.3 + 0.4)
        );
        assert_eq!(
            sum_rewards(0.1, f32::NAN, 0.3, 0.4)
                .unwrap_err()
                .to_string(),
            "invalid value for reward_curiosity: NaN"
        );
        assert!(sum_rewards(f32::INFINITY, 0.0, 0.0, 0.0).is_err());
        assert_eq!(
            sum_rewards(3e38, 3e38, 0.0, 0.0),
            Err(FractalityError::Overflow("total_reward"))
        );
    }

    #[test]
    fn discounted_in_order() {
        let mut d = Discounted::default();
        for r in [1.0, 2.0, 3.0] {
            d.push(r, 0.5).unwrap();
        }
        assert_relative_eq!(d.sum, 1.0 + 0.5 * 2.0 + 0.25 * 3.0);
        assert!(d.push(1.0, 0.9).is_err());
        assert!(Discounted::default().push(1.0, 1.5).is_err());
        assert!(Discounted::default().push(f64::NAN, 0.5).is_err());
    }

    #[test]
    fn discounted_by_steps_is_order_free() {
        let rewards = [(3, 0.5), (0, 1.0), (2, -2.0), (1, 4.0)];
        let mut d = DiscountedBySteps::default();
        for (s, r) in rewards {
            d.push(r, 0.9, s).unwrap();
        }
        let mut o = Discounted::default();
        for r in [1.0, 4.0, -2.0, 0.5] {
            o.push(r, 0.9).unwrap();
        }
        assert_relative_eq!(d.sum, o.sum, epsilon = 1e-12);
        assert_eq!(d.first_step, 0);
    }

    #[test]
    fn episode_sums_in_one_pass() {
        let mut e = EpisodeSums::default();
        e.push(1, [1.0, 0.0, 0.0, 0.0], 0.5).unwrap();
        e.push(0, [0.0, 2.0, 0.0, 1.0], 0.5).unwrap();
        assert_eq!(e.values(), vec![2.0, 1.0, 2.0, 0.0, 1.0, 3.0 + 0.5]);
    }

    #[test]
    fn welford_matches_two_pass_and_combines() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| ((i * 37) % 101) as f64 / 7.0 - 3.0)
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        let mut all = Welford::default();
        xs.iter().for_each(|&x| all.push(x));
        assert_relative_eq!(all.mean, mean, epsilon = 1e-12);
        assert_relative_eq!(all.stddev().unwrap(), var.sqrt(), epsilon = 1e-12);
        let (mut a, mut b) = (Welford::default(), Welford::default());
        xs[..300].iter().for_each(|&x| a.push(x));
        xs[300..].iter().for_each(|&x| b.push(x));
        let c = a.combine(&b);
        assert_eq!(c.n, 1000);
        assert_relative_eq!(c.mean, all.mean, epsilon = 1e-12);
        assert_relative_eq!(c.m2, all.m2, epsilon = 1e-9);
        assert_eq!((c.min, c.max), (all.min, all.max));
        assert_eq!(Welford::from_bytes(&c.to_bytes()), Some(c));
        assert_eq!(Welford::default().stddev(), None);
    }

    #[test]
    fn sampling_follows_priorities_and_is_reproducible() {
        let rewards = [1.0, 0.0, 3.0, -2.0];
        let mut rng = StdRng::seed_from_u64(7);
        let draws = prioritised_sample(&rewards, 200_000, 1.0, 0.4, &mut rng);
        let mut counts = [0usize; 4];
        for d in &draws {
            counts[d.0] += 1;
        }
        let total: f64 = rewards
            .iter()
            .map(|r: &f64| r.abs() + PRIORITY_EPSILON)
            .sum();
        for (i, r) in rewards.iter().enumerate() {
            let expected = (r.abs() + PRIORITY_EPSILON) / total;
            assert!((counts[i] as f64 / 200_000.0 - expected).abs() < 0.01);
        }
        assert_relative_eq!(draws.iter().map(|d| d.2).fold(0.0, f64::max), 1.0);
        let again = prioritised_sample(&rewards, 100, 1.0, 0.4, &mut StdRng::seed_from_u64(9));
        let same = prioritised_sample(&rewards, 100, 1.0, 0.4, &mut StdRng::seed_from_u64(9));
        assert_eq!(again, same);
    }
}
