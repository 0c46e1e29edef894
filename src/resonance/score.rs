//! The resonance formula as plain Rust: the weights, the score with its input checks, the
//! re-ranking of candidates, the choice among several edges. Tested without a server.

use crate::errors::{count_in_range, in_range, FractalityError};

pub const W_SIM: f64 = 0.5;
pub const W_ENERGY: f64 = 0.3;
pub const W_EDGE: f64 = 0.2;

/// Largest `k` find_resonant accepts.
pub const MAX_K: i32 = 1000;
/// find_resonant scores its candidates within the threshold this many at a time (their details
/// and edges in one query each), checking after each chunk whether an unread one can still beat
/// the k-th best ([`unread_bound`]).
pub const CHUNK: usize = 2000;
/// find_resonant reads the source's edges whole while they number at most this many.
pub const SOURCE_EDGES: usize = 256;

/// The weights of the three terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub sim: f64,
    pub energy: f64,
    pub edge: f64,
}

pub const SEED_WEIGHTS: Weights = Weights {
    sim: W_SIM,
    energy: W_ENERGY,
    edge: W_EDGE,
};

impl Weights {
    /// Each weight finite and in [0, 1].
    pub fn new(sim: f64, energy: f64, edge: f64) -> Result<Self, FractalityError> {
        const HINT: &str = "Weights are numbers in [0, 1] (the seed's are 0.5, 0.3 and 0.2).";
        Ok(Weights {
            sim: in_range("w_sim", sim, 0.0, 1.0, HINT)?,
            energy: in_range("w_energy", energy, 0.0, 1.0, HINT)?,
            edge: in_range("w_edge", edge, 0.0, 1.0, HINT)?,
        })
    }
}

/// A similarity threshold: finite, in [-1, 1].
pub fn threshold(v: f64) -> Result<f64, FractalityError> {
    in_range(
        "threshold",
        v,
        -1.0,
        1.0,
        "A threshold is a cosine similarity in [-1, 1] (e.g. 0.7).",
    )
}

/// The resonance of two nodes: validated inputs, weighted sum.
pub fn score(
    similarity: f64,
    atp_a: f64,
    atp_b: f64,
    edge_weight: f64,
    w: Weights,
) -> Result<f64, FractalityError> {
    let similarity = in_range(
        "similarity",
        similarity,
        -1.0,
        1.0,
        "A similarity is a cosine in [-1, 1].",
    )?;
    const ATP: &str = "Energy (ATP) lies in [0, 1].";
    let atp_a = in_range("atp_a", atp_a, 0.0, 1.0, ATP)?;
    let atp_b = in_range("atp_b", atp_b, 0.0, 1.0, ATP)?;
    let edge_weight = in_range(
        "edge_weight",
        edge_weight,
        -1.0,
        1.0,
        "Edge weights lie in [-1, 1]; pass 0 where there is no edge.",
    )?;
    Ok(raw_score(similarity, atp_a, atp_b, edge_weight, w))
}

/// The weighted sum itself, for inputs already known to be in range.
#[inline]
pub fn raw_score(similarity: f64, atp_a: f64, atp_b: f64, edge_weight: f64, w: Weights) -> f64 {
    w.sim * similarity + w.energy * atp_a * atp_b + w.edge * edge_weight
}

/// The most resonance a node not read yet can have with the source: its similarity at most
/// `similarity` (where the search in order of similarity has reached), its energy at most 1, its
/// edge to the source at most `edge` (the strongest of the source's, or 1 where they were not all
/// read). Weights are the seed's.
pub fn unread_bound(similarity: f64, atp_source: f64, edge: f64) -> f64 {
    raw_score(
        similarity.min(1.0),
        atp_source,
        1.0,
        edge.max(0.0),
        SEED_WEIGHTS,
    )
}

/// A candidate of find_resonant before and after re-ranking.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub similarity: f64,
    pub resonance: f64,
}

/// Orders by resonance (highest first), then similarity, then input order; keeps `k`.
pub fn rerank(mut c: Vec<Ranked>, k: usize) -> Vec<Ranked> {
    c.sort_by(|a, b| {
        b.resonance
            .total_cmp(&a.resonance)
            .then(b.similarity.total_cmp(&a.similarity))
            .then(a.index.cmp(&b.index))
    });
    c.truncate(k);
    c
}

// ---- SQL: the pure function -------------------------------------------------------------------

/// Whether weight `w` wins over `than`: greater |weight|, the positive one on a tie.
pub fn stronger_edge(w: f64, than: f64) -> bool {
    w.abs() > than.abs() || (w.abs() == than.abs() && w > than)
}

/// `k` of find_resonant: 1 to [`MAX_K`].
pub fn check_k(k: i32) -> Result<usize, FractalityError> {
    const HINT: &str = "k is the number of results wanted, from 1 to 1000.";
    count_in_range("k", k, 1, MAX_K, HINT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn score_is_the_seeds_weighted_sum() {
        assert_relative_eq!(
            score(0.8, 0.5, 0.6, 1.0, SEED_WEIGHTS).unwrap(),
            0.5 * 0.8 + 0.3 * 0.5 * 0.6 + 0.2 * 1.0
        );
        assert_relative_eq!(score(1.0, 1.0, 1.0, 1.0, SEED_WEIGHTS).unwrap(), 1.0);
        assert_relative_eq!(score(-1.0, 0.0, 0.0, -1.0, SEED_WEIGHTS).unwrap(), -0.7);
        let w = Weights::new(1.0, 0.0, 0.0).unwrap();
        assert_relative_eq!(score(0.25, 1.0, 1.0, 1.0, w).unwrap(), 0.25);
    }

    #[test]
    fn nothing_unread_beats_the_unread_bound() {
        // every node at or below the similarity reached, of any energy, with any edge up to the
        // bound, scores at most the bound
        for &(reached, atp_src, edge_bound) in &[
            (0.9, 1.0, 0.0),
            (0.7, 0.4, 0.5),
            (1.2, 0.0, 1.0),
            (-0.3, 0.8, -0.2),
        ] {
            let bound = unread_bound(reached, atp_src, edge_bound);
            for sim in [-1.0, -0.3, 0.0, 0.5, 0.7, 0.9, 1.0] {
                if sim > reached {
                    continue;
                }
                for atp in [0.0, 0.5, 1.0] {
                    for edge in [-1.0, 0.0, edge_bound.max(0.0)] {
                        let s = score(sim, atp_src, atp, edge, SEED_WEIGHTS).unwrap();
                        assert!(s <= bound + 1e-12, "{s} > {bound}");
                    }
                }
            }
        }
        // and it is reached: the bound is the score of such a node
        assert_relative_eq!(
            unread_bound(0.8, 0.5, 0.25),
            score(0.8, 0.5, 1.0, 0.25, SEED_WEIGHTS).unwrap()
        );
        assert_relative_eq!(unread_bound(1.5, 1.0, 2.0), 1.0 + 0.2);
    }

    #[test]
    fn score_refuses_nan_infinities_and_out_of_range() {
        let e = score(f64::NAN, 0.5, 0.5, 0.0, SEED_WEIGHTS).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for similarity: NaN");
        assert!(score(1.5, 0.5, 0.5, 0.0, SEED_WEIGHTS).is_err());
        assert!(score(0.5, -0.1, 0.5, 0.0, SEED_WEIGHTS).is_err());
        assert!(score(0.5, 0.5, f64::INFINITY, 0.0, SEED_WEIGHTS).is_err());
        assert!(score(0.5, 0.5, 0.5, 1.01, SEED_WEIGHTS).is_err());
        assert!(Weights::new(0.5, -0.3, 0.2).is_err());
        assert!(Weights::new(0.5, 0.3, f64::NAN).is_err());
        assert!(Weights::new(1.5, 0.3, 0.2).is_err());
        assert!(threshold(1.1).is_err());
        assert!(threshold(f64::NEG_INFINITY).is_err());
        assert_eq!(threshold(0.7), Ok(0.7));
    }

    #[test]
    fn k_must_be_sane() {
        assert!(check_k(0).is_err());
        assert!(check_k(-3).is_err());
        assert!(check_k(MAX_K + 1).is_err());
        assert_eq!(check_k(20), Ok(20));
    }

    #[test]
    fn the_strongest_edge_wins() {
        assert!(stronger_edge(-0.9, 0.5));
        assert!(stronger_edge(0.5, -0.5));
        assert!(!stronger_edge(-0.5, 0.5));
        assert!(!stronger_edge(0.2, 0.3));
    }

    #[test]
    fn rerank_orders_by_resonance_then_similarity() {
        let c = vec![
            Ranked {
                index: 0,
                similarity: 0.9,
                resonance: 0.5,
            },
            Ranked {
                index: 1,
                similarity: 0.7,
                resonance: 0.8,
            },
            Ranked {
                index: 2,
                similarity: 0.8,
                resonance: 0.5,
            },
            Ranked {
                index: 3,
                similarity: 0.75,
                resonance: 0.1,
            },
        ];
        let r: Vec<usize> = rerank(c, 3).iter().map(|r| r.index).collect();
        assert_eq!(r, vec![1, 0, 2]);
    }
}
