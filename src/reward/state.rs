//! The arithmetic of the rewards as plain Rust, tested without a server: `total_reward`'s sum
//! and checks, and the state machines of the aggregates (`discounted_return` in step order and by
//! step number, `episode_sums`, `reward_stats`' Welford with Chan's combination).

use crate::errors::{pg_float, pg_real, FractalityError};

/// total_reward's arithmetic and checks.
pub fn sum_rewards(h: f32, c: f32, e: f32, g: f32) -> Result<f32, FractalityError> {
    let [h, c, e, g] = finite_rewards([h, c, e, g])?;
    let sum = h + c + e + g;
    if sum.is_finite() {
        Ok(sum)
    } else {
        Err(FractalityError::SumOverflow {
            what: "total_reward",
            terms: format!(
                "{} + {} + {} + {} is beyond a real",
                pg_real(h),
                pg_real(c),
                pg_real(e),
                pg_real(g)
            ),
        })
    }
}

/// The four rewards of an event, each refused unless a finite number.
fn finite_rewards(rewards: [f32; 4]) -> Result<[f32; 4], FractalityError> {
    let names = [
        "reward_homeostasis",
        "reward_curiosity",
        "reward_efficiency",
        "reward_goal",
    ];
    for (name, v) in names.into_iter().zip(rewards) {
        if !v.is_finite() {
            return Err(FractalityError::invalid(
                name,
                pg_float(v as f64),
                "Rewards are finite numbers (not NaN or an infinity).",
            ));
        }
    }
    Ok(rewards)
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

/// A row (or a partial state) whose gamma is not the one the aggregate started with.
fn gamma_changed(gamma: f64) -> FractalityError {
    FractalityError::invalid(
        "gamma",
        pg_float(gamma),
        "gamma must be the same for every row of one discounted_return.",
    )
}

/// The little-endian f64 at byte `i` of a state's bytes (their length checked by the caller).
fn f64_at(b: &[u8], i: usize) -> f64 {
    f64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// The little-endian i64 at byte `i` of a state's bytes (their length checked by the caller).
fn i64_at(b: &[u8], i: usize) -> i64 {
    i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
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
            return Err(gamma_changed(gamma));
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
            return Err(gamma_changed(gamma));
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

impl DiscountedBySteps {
    /// Two partial states of one group (parallel aggregation): each sum rescaled to the smaller
    /// first step. Equal, up to rounding, to pushing every row into one state.
    pub fn combine(&self, other: &DiscountedBySteps) -> Result<DiscountedBySteps, FractalityError> {
        if !self.started {
            return Ok(*other);
        }
        if !other.started {
            return Ok(*self);
        }
        if other.gamma != self.gamma {
            return Err(gamma_changed(other.gamma));
        }
        let first = self.first_step.min(other.first_step);
        Ok(DiscountedBySteps {
            sum: self.sum * gpow(self.gamma, self.first_step - first)
                + other.sum * gpow(self.gamma, other.first_step - first),
            first_step: first,
            gamma: self.gamma,
            started: true,
        })
    }

    /// sum, first step, gamma, started: 25 bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25);
        out.extend_from_slice(&self.sum.to_le_bytes());
        out.extend_from_slice(&self.first_step.to_le_bytes());
        out.extend_from_slice(&self.gamma.to_le_bytes());
        out.push(u8::from(self.started));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<DiscountedBySteps> {
        if b.len() != 25 || b[24] > 1 {
            return None;
        }
        Some(DiscountedBySteps {
            sum: f64_at(b, 0),
            first_step: i64_at(b, 8),
            gamma: f64_at(b, 16),
            started: b[24] == 1,
        })
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
        let [h, c, e, g] = finite_rewards(rewards)?.map(f64::from);
        self.steps += 1;
        for (sum, r) in self.components.iter_mut().zip([h, c, e, g]) {
            *sum += r;
        }
        // the event's reward in double precision, as the totals count it: at gamma = 1 the
        // discounted return is the total (a sum in real had lost up to one part in 10^7)
        self.discounted.push(h + c + e + g, gamma, step)
    }

    /// Two partial states of one episode (parallel aggregation).
    pub fn combine(&self, other: &EpisodeSums) -> Result<EpisodeSums, FractalityError> {
        let mut components = self.components;
        for (a, b) in components.iter_mut().zip(other.components) {
            *a += b;
        }
        Ok(EpisodeSums {
            steps: self.steps + other.steps,
            components,
            discounted: self.discounted.combine(&other.discounted)?,
        })
    }

    /// steps, the four sums, the discounted state: 65 bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        out.extend_from_slice(&self.steps.to_le_bytes());
        for v in self.components {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend(self.discounted.to_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<EpisodeSums> {
        if b.len() != 65 {
            return None;
        }
        Some(EpisodeSums {
            steps: i64_at(b, 0),
            components: [f64_at(b, 8), f64_at(b, 16), f64_at(b, 24), f64_at(b, 32)],
            discounted: DiscountedBySteps::from_bytes(&b[40..])?,
        })
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
        Some(Welford {
            n: i64_at(b, 0),
            mean: f64_at(b, 8),
            m2: f64_at(b, 16),
            min: f64_at(b, 24),
            max: f64_at(b, 32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn total_reward_is_the_real_sum() {
        assert_relative_eq!(
            sum_rewards(0.1, 0.2, 0.3, 0.4).unwrap(),
            0.1f32 + 0.2 + 0.3 + 0.4,
            max_relative = 1e-6
        );
        assert_eq!(
            sum_rewards(0.1, f32::NAN, 0.3, 0.4)
                .unwrap_err()
                .to_string(),
            "invalid value for reward_curiosity: NaN"
        );
        assert!(sum_rewards(f32::INFINITY, 0.0, 0.0, 0.0).is_err());
        assert_eq!(
            sum_rewards(3e38, 3e38, 0.0, -1.5)
                .unwrap_err()
                .to_string(),
            "value out of range: overflow in total_reward: 3e+38 + 3e+38 + 0 + -1.5 is beyond a real"
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
    fn partial_states_combine_to_the_one_pass_state() {
        // rows in a shuffled order, split into three workers' partial states
        let rows: Vec<(i64, [f32; 4])> = (0..40)
            .map(|k| {
                (
                    (k * 17) % 40,
                    [k as f32 * 0.25, 1.0 - k as f32 * 0.01, 0.5, -0.125],
                )
            })
            .collect();
        let mut one = EpisodeSums::default();
        let mut parts = [EpisodeSums::default(); 3];
        for (i, (step, r)) in rows.iter().enumerate() {
            one.push(*step, *r, 0.9).unwrap();
            parts[i % 3].push(*step, *r, 0.9).unwrap();
        }
        let merged = EpisodeSums::default()
            .combine(&parts[2])
            .unwrap()
            .combine(&parts[0])
            .unwrap()
            .combine(&parts[1])
            .unwrap();
        assert_eq!(merged.steps, one.steps);
        for (a, b) in merged.values().iter().zip(one.values()) {
            assert_relative_eq!(*a, b, max_relative = 1e-12);
        }
        // the discounted return of consecutive steps from 0 is sum g^k r_k
        let want: f64 = (0..40)
            .map(|s| {
                let k = (0..40).find(|k| (k * 17) % 40 == s).unwrap();
                0.9f64.powi(s)
                    * f64::from((k as f32 * 0.25) + (1.0 - k as f32 * 0.01) + 0.5 + -0.125)
            })
            .sum();
        assert_relative_eq!(merged.discounted.sum, want, max_relative = 1e-6);
        // through bytes and back
        let back = EpisodeSums::from_bytes(&merged.to_bytes()).unwrap();
        assert_eq!(back, merged);
        assert!(EpisodeSums::from_bytes(&[0; 64]).is_none());
        // at gamma = 1 the discounted return is the total, whatever the rewards' magnitudes (each
        // event's reward summed in real had given 0 here against a total of 1)
        let mut wide = EpisodeSums::default();
        wide.push(0, [16_777_216.0, 1.0, -16_777_216.0, 0.0], 1.0)
            .unwrap();
        let total: f64 = wide.components.iter().sum();
        assert_eq!(total, 1.0);
        assert_eq!(wide.discounted.sum, total);
        assert!(wide.push(1, [f32::NAN, 0.0, 0.0, 0.0], 1.0).is_err());
        // another gamma in another worker is refused
        let mut other = DiscountedBySteps::default();
        other.push(1.0, 0.5, 3).unwrap();
        assert!(one.discounted.combine(&other).is_err());
        assert_eq!(DiscountedBySteps::default().combine(&other).unwrap(), other);
    }

    #[test]
    fn episode_sums_in_one_pass() {
        let mut e = EpisodeSums::default();
        e.push(1, [1.0, 0.0, 0.0, 0.0], 0.5).unwrap();
        e.push(0, [0.0, 2.0, 0.0, 1.0], 0.5).unwrap();
        assert_relative_eq!(
            e.values()[..],
            [2.0, 1.0, 2.0, 0.0, 1.0, 3.0 + 0.5][..],
            epsilon = 1e-12
        );
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

    /// The SSPACE each aggregate of sql/reward.sql declares is the size of its state: the
    /// planner sizes a hash aggregate by it.
    #[test]
    fn aggregates_declare_the_size_of_their_states() {
        let sql = include_str!("../../sql/reward.sql");
        let declared = |sfunc: &str| -> usize {
            let at = sql
                .find(&format!("SFUNC = fractality.{sfunc},"))
                .unwrap_or_else(|| panic!("no aggregate over {sfunc}"));
            let rest = &sql[at..];
            let space = &rest[rest.find("SSPACE = ").expect("no SSPACE") + 9..];
            space[..space.find(',').unwrap()].parse().unwrap()
        };
        assert_eq!(
            declared("discounted_return_sfunc"),
            std::mem::size_of::<Discounted>()
        );
        assert_eq!(
            declared("discounted_return_steps_sfunc"),
            std::mem::size_of::<DiscountedBySteps>()
        );
        assert_eq!(
            declared("episode_sums_sfunc"),
            std::mem::size_of::<EpisodeSums>()
        );
        assert_eq!(
            declared("reward_stats_sfunc"),
            std::mem::size_of::<Welford>()
        );
    }
}
