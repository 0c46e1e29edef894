//! 0.4.0's prioritised sampling over the hot events as plain Rust, tested without a server: the
//! priorities, the draws and their importance weights.

use rand::Rng;

use crate::errors::{pg_float, FractalityError};

pub const PRIORITY_EPSILON: f64 = 1e-6;

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
    let mut draws: Vec<(usize, f64, f64)> = (0..n)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            let i = cumulative
                .partition_point(|&c| c <= u)
                .min(priorities.len() - 1);
            (i, priorities[i], 0.0)
        })
        .collect();
    importance_weights(&mut draws, beta);
    draws
}

/// The importance weights of `draws` (each draw's priority in its middle field, written to its
/// last), as the replay buffers' ([`crate::replay::tree::weight`]): every weight in [0, 1] for
/// any beta >= 0 (computed as (N P(i))^-beta and then divided, a beta of 2 000 gave infinities
/// and NaN).
pub fn importance_weights<T>(draws: &mut [(T, f64, f64)], beta: f64) {
    let p_min = draws.iter().map(|d| d.1).fold(f64::INFINITY, f64::min);
    for d in draws {
        d.2 = crate::replay::tree::weight(p_min, d.1, beta);
    }
}

/// A finite number >= 0 (alpha, beta), or 22023 with `hint`.
pub fn check_unit(name: &'static str, v: f64, hint: &'static str) -> Result<f64, FractalityError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(FractalityError::invalid(name, pg_float(v), hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

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

    #[test]
    fn importance_weights_are_the_normalised_powers_for_any_beta() {
        // (N P(i))^-beta over the largest drawn, written out, for a beta where that is finite
        let rewards = [1.0, 0.5, 3.0, -2.0];
        let draws = prioritised_sample(&rewards, 50, 1.0, 0.7, &mut StdRng::seed_from_u64(3));
        let total: f64 = rewards.iter().map(|r| r.abs() + PRIORITY_EPSILON).sum();
        let raw = |p: f64| (4.0 * p / total).powf(-0.7);
        let max_raw = draws.iter().map(|d| raw(d.1)).fold(0.0, f64::max);
        for d in &draws {
            assert_relative_eq!(d.2, raw(d.1) / max_raw, epsilon = 1e-12);
        }
        // and a beta where the powers themselves overflow: weights in [0, 1], the largest 1
        let draws = prioritised_sample(&rewards, 50, 1.0, 2000.0, &mut StdRng::seed_from_u64(3));
        assert!(
            draws.iter().all(|d| (0.0..=1.0).contains(&d.2)),
            "{draws:?}"
        );
        assert_relative_eq!(draws.iter().map(|d| d.2).fold(0.0, f64::max), 1.0);
    }
}
