//! The math of a consensus, plain Rust tested without a server: the bounds of
//! `min_contributors`, the unit centroid, the group resonance in one pass and the coarse rounding
//! of what a consensus publishes.

use std::collections::HashSet;

use crate::errors::{count_in_range, FractalityError};
use crate::vector::normalize;

/// The largest `min_contributors`.
pub const MAX_CONTRIBUTORS: i32 = 1000;

/// Fewest distinct users a consensus may have: with two, one contributor's vector and the
/// aggregate give away the other's.
pub const MIN_CONTRIBUTORS: i32 = 3;

pub fn check_min_contributors(n: i32) -> Result<usize, FractalityError> {
    const HINT: &str = "A consensus needs from 3 to 1000 distinct users (default 3): fewer would expose one user's node to another.";
    count_in_range(
        "min_contributors",
        n,
        MIN_CONTRIBUTORS,
        MAX_CONTRIBUTORS,
        HINT,
    )
}

/// The unit centroid of unit-normalised vectors; None when they cancel out (their mean is the
/// zero vector, which has no direction: members on opposite sides, with a threshold <= 0).
pub fn centroid(vectors: &[&[f32]]) -> Result<Option<Vec<f32>>, FractalityError> {
    let dims = vectors.first().map_or(0, |v| v.len());
    let mut sum = vec![0.0f64; dims];
    for v in vectors {
        if v.len() != dims {
            return Err(FractalityError::DimensionMismatch(dims, v.len()));
        }
        let unit = normalize(v)?;
        for (s, x) in sum.iter_mut().zip(unit) {
            *s += x as f64;
        }
    }
    let mean: Vec<f32> = sum
        .iter()
        .map(|s| (s / vectors.len() as f64) as f32)
        .collect();
    // the mean of unit vectors has a norm in [0, 1]: below 1e-6 what is left is the sums'
    // rounding, not a direction
    let norm = mean
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm < 1e-6 {
        return Ok(None);
    }
    normalize(&mean).map(Some)
}

/// Mean cosine similarity over all pairs; None with fewer than two vectors (a zero vector, which
/// has no direction, takes part in no pair). For unit vectors u the pairs' dot products sum to
/// (|sum of u|^2 - n) / 2, so this is one pass over the vectors, not n^2 / 2 cosines (1 000
/// members: 1 000 sums, not 499 500 cosines).
pub fn group_resonance(vectors: &[&[f32]]) -> Result<Option<f64>, FractalityError> {
    let dims = vectors.first().map_or(0, |v| v.len());
    let mut sum = vec![0.0f64; dims];
    let mut n = 0u64;
    for v in vectors {
        if v.len() != dims {
            return Err(FractalityError::DimensionMismatch(dims, v.len()));
        }
        let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        for (s, &x) in sum.iter_mut().zip(v.iter()) {
            *s += x as f64 / norm;
        }
        n += 1;
    }
    if n < 2 {
        return Ok(None);
    }
    let squared: f64 = sum.iter().map(|s| s * s).sum();
    let n = n as f64;
    Ok(Some(((squared - n) / (n * (n - 1.0))).clamp(-1.0, 1.0)))
}

/// What a consensus publishes of a score that depends on other tenants' vectors: one decimal.
/// A consensus tells its readers how many users hold ideas near its seed and roughly how close
/// they are, never a number precise enough to solve for one of them (see docs/API.md, consensus, and docs/OPERATIONS.md, "Privileges").
pub fn coarse(x: f64) -> f64 {
    ((x * 10.0).round() / 10.0).clamp(-1.0, 1.0)
}

pub fn distinct_users<T: Eq + std::hash::Hash + Copy>(users: &[T]) -> usize {
    users.iter().copied().collect::<HashSet<T>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::cosine;
    use approx::assert_relative_eq;

    #[test]
    fn centroid_is_the_normalised_mean_direction() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 3.0];
        let c = centroid(&[&a, &b]).unwrap().unwrap();
        assert_relative_eq!(c[0], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-6);
        assert_relative_eq!(c[1], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-6);
        assert!(centroid(&[&[1.0, 0.0], &[1.0, 0.0, 0.0]]).is_err());
        // opposite directions cancel out: no centroid, not an error
        assert_eq!(centroid(&[&[1.0, 0.0], &[-2.0, 0.0]]).unwrap(), None);
        // nor do they up to rounding
        assert_eq!(
            centroid(&[&[1.0, 0.0, 0.0], &[-1.0, 1e-9, 0.0]]).unwrap(),
            None
        );
    }

    #[test]
    fn group_resonance_is_the_mean_pairwise_cosine() {
        let (a, b, c) = ([1.0f32, 0.0], [0.0f32, 1.0], [1.0f32, 1.0]);
        let g = group_resonance(&[&a, &b, &c]).unwrap().unwrap();
        assert_relative_eq!(
            g,
            (0.0 + 2.0 * std::f64::consts::FRAC_1_SQRT_2) / 3.0,
            epsilon = 1e-9
        );
        assert_eq!(group_resonance(&[&a]).unwrap(), None);
        assert!(group_resonance(&[&a, &[1.0, 0.0, 0.0]]).is_err());
    }

    #[test]
    fn group_resonance_agrees_with_every_pair() {
        // 40 vectors of 16 dimensions (a zero one among them), from a fixed generator
        let mut x = 12345u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        };
        let mut vectors: Vec<Vec<f32>> =
            (0..40).map(|_| (0..16).map(|_| next()).collect()).collect();
        vectors[7] = vec![0.0; 16];
        let refs: Vec<&[f32]> = vectors.iter().map(|v| v.as_slice()).collect();
        let (mut sum, mut pairs) = (0.0, 0);
        for (i, a) in refs.iter().enumerate() {
            for b in &refs[i + 1..] {
                if let Some(c) = cosine(a, b).unwrap() {
                    sum += c;
                    pairs += 1;
                }
            }
        }
        let g = group_resonance(&refs).unwrap().unwrap();
        assert_relative_eq!(g, sum / pairs as f64, epsilon = 1e-12);
    }

    #[test]
    fn published_scores_have_one_decimal() {
        // exact on purpose: k / 10.0 is correctly rounded, so the nearest f64 to the decimal (what
        // prints as one decimal); a tolerance would pass 0.9000000000000001 (k * 0.1)
        assert_eq!(coarse(0.8734), 0.9);
        assert_eq!(coarse(0.7499), 0.7);
        assert_eq!(coarse(-0.04), -0.0);
        assert_eq!(coarse(1.0), 1.0);
        assert_eq!(coarse(1.04), 1.0);
    }

    #[test]
    fn min_contributors_is_checked() {
        for n in [1, 2, 1001] {
            let e = check_min_contributors(n).unwrap_err();
            assert_eq!(
                e.sqlstate(),
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "{n}"
            );
        }
        assert_eq!(check_min_contributors(3), Ok(3));
        assert_eq!(distinct_users(&[1, 2, 2, 3]), 3);
    }
}
