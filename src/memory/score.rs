//! recall's score as plain functions, tested without a server: `w_sim * relevance + w_energy *
//! energy + w_edge * edge weight to the context` ([`score`]), the reciprocal-rank fusion of the
//! vector and the full-text ranking ([`rrf`]), and the bound above which no unread memory can
//! score ([`stop_bound`]).

use crate::errors::{in_range, FractalityError};

/// The constant of reciprocal-rank fusion (Cormack et al. 2009).
pub const RRF_K: f64 = 60.0;

/// The weights of recall's score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub sim: f64,
    pub energy: f64,
    pub edge: f64,
}

fn unit(name: &'static str, v: f64) -> Result<f64, FractalityError> {
    const HINT: &str = "A weight lies in [0, 1] (the defaults are 0.5, 0.3 and 0.2).";
    in_range(name, v, 0.0, 1.0, HINT)
}

impl Weights {
    pub fn new(sim: f64, energy: f64, edge: f64) -> Result<Self, FractalityError> {
        Ok(Weights {
            sim: unit("w_sim", sim)?,
            energy: unit("w_energy", energy)?,
            edge: unit("w_edge", edge)?,
        })
    }
}

/// recall's score of one memory.
pub fn score(relevance: f64, energy: f64, edge: f64, w: Weights) -> f64 {
    w.sim * relevance + w.energy * energy + w.edge * edge
}

/// The most a memory not yet read can score: its relevance is at most `similarity` (what the
/// scan in distance order has reached), its energy at most 1, and its edge to the context 0 (the
/// context's neighbours are scored before the scan).
pub fn stop_bound(similarity: f64, w: Weights) -> f64 {
    w.sim * similarity + w.energy
}

/// Reciprocal-rank fusion of a vector rank and a text rank (1-based, None where the memory is
/// not in that list), scaled to [0, 1]: 1 for the first of both lists.
pub fn rrf(vector_rank: Option<usize>, text_rank: Option<usize>) -> f64 {
    let part = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / (RRF_K + r as f64));
    (part(vector_rank) + part(text_rank)) / (2.0 / (RRF_K + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn score_weighs_relevance_energy_and_edge() {
        let w = Weights::new(0.5, 0.3, 0.2).unwrap();
        assert_relative_eq!(score(0.8, 0.5, 1.0, w), 0.4 + 0.15 + 0.2);
        assert_relative_eq!(score(0.8, 0.5, -1.0, w), 0.4 + 0.15 - 0.2);
        assert!(Weights::new(0.5, f64::NAN, 0.2).is_err());
        assert!(Weights::new(1.5, 0.3, 0.2).is_err());
        assert!(Weights::new(0.5, 0.3, -0.1).is_err());
    }

    #[test]
    fn nothing_unread_beats_the_stop_bound() {
        let w = Weights::new(0.5, 0.3, 0.2).unwrap();
        // whatever its energy (<= 1) and edge (0: not a neighbour of the context)
        for s in [0.9, 0.5, 0.1, -0.3] {
            for atp in [0.0, 0.4, 1.0] {
                assert!(score(s, atp, 0.0, w) <= stop_bound(s, w) + 1e-12);
            }
        }
        assert_relative_eq!(stop_bound(0.6, w), 0.6);
    }

    #[test]
    fn reciprocal_rank_fusion_is_scaled_to_one() {
        assert_relative_eq!(rrf(Some(1), Some(1)), 1.0);
        assert_relative_eq!(rrf(Some(1), None), 0.5);
        assert_relative_eq!(rrf(None, Some(1)), 0.5);
        assert_eq!(rrf(None, None), 0.0);
        assert!(rrf(Some(1), Some(10)) > rrf(Some(2), Some(10)));
        assert!(rrf(Some(3), Some(3)) > rrf(Some(1), None));
    }
}
