//! recall's work: the context and its neighbours scored first, then the tenant read in distance
//! order ([`crate::search`]) until no unread memory can beat the k-th best ([`stop_bound`]), or,
//! with words, the nearest `pool` fused with the full-text ranking ([`rrf`]); the returned
//! memories pulsed when asked.

use std::collections::HashMap;

use pgrx::Uuid;

use crate::errors::FractalityError;
use crate::models::Model;
use crate::search::{Path, TenantScan};
use crate::vector::{CosineTo, Vector};

use super::input::{check_direction, check_energy, check_k, check_similarity};
use super::score::{rrf, score, stop_bound, Weights};
use super::store::{self, details, Detail};

/// A memory recall looked at.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node_id: Uuid,
    pub node_key: String,
    pub content: Option<String>,
    pub metadata: crate::jsonb::JsonbText,
    pub similarity: Option<f64>,
    pub vector_rank: Option<usize>,
    pub text_rank: Option<f64>,
    pub text_position: Option<usize>,
    pub relevance: f64,
    pub atp: f64,
    pub edge_weight: f64,
    pub score: f64,
}

/// What recall found, and how.
pub struct Recalled {
    /// Every candidate looked at, best first; the first `returned` are the answer.
    pub candidates: Vec<Candidate>,
    pub returned: usize,
    pub path: Path,
}

/// The arguments of recall.
pub struct RecallArgs<'a> {
    pub query: &'a [f32],
    pub k: i32,
    pub query_text: Option<&'a str>,
    pub context: Option<&'a str>,
    pub model: &'a str,
    pub min_similarity: f64,
    pub reinforce: f64,
    pub weights: Weights,
    /// Score every hit read (recall_explain), not only those that can still be among the k.
    pub score_all: bool,
}

/// Without words, the fewest hits scored at a time (one query for their details) while fewer
/// than k are: a hit without details (expired) or already scored (the context's) leaves a gap.
const MIN_SCORED: usize = 4;

/// The k-th best of the scores so far (at least k of them), keeping only the best k.
fn kth_best(best: &mut Vec<f64>, k: usize) -> f64 {
    best.sort_by(|x, y| y.total_cmp(x));
    best.truncate(k);
    best[k - 1]
}

/// recall's work (SPI connected).
pub fn recall_in(a: &RecallArgs<'_>) -> Result<Recalled, FractalityError> {
    let k = check_k(a.k)?;
    let min_sim = check_similarity("min_similarity", a.min_similarity)?;
    let reinforce = check_energy("reinforce", a.reinforce)?;
    if let Some(ctx) = a.context {
        crate::graph::check_key_named("context", ctx)?;
    }
    let w = a.weights;
    let model = Model::lookup(a.model)?;
    model.check_as("query", &Vector::from_slice(a.query)?)?;
    check_direction("query", a.query)?;
    let tenant = crate::tenant::required()?;
    let pool = (4 * k).max(40);
    // the words' matches first: words that match nothing (stop words alone, a typo) are no
    // words, and the ranking stays the vector's, not a fusion with an empty text ranking that
    // knocked the nearest memory out
    let text_hits = match a.query_text {
        Some(q) => store::text(tenant, q, pool as i64, &model.name)?,
        None => Vec::new(),
    };
    let query_text = a.query_text.filter(|_| !text_hits.is_empty());
    let a = &RecallArgs { query_text, ..*a };

    // the context and its neighbours (with their edge weights), scored before the scan
    let mut edge_of: HashMap<Uuid, f64> = HashMap::new();
    if let Some(ctx) = a.context {
        let rows = store::context(tenant, ctx)?;
        if rows.is_empty() {
            return Err(crate::errors::node_not_found(format!("'{ctx}'")));
        }
        for (id, w) in rows {
            if let (Some(id), Some(w)) = (id, w) {
                let e = edge_of.entry(id).or_insert(w);
                if crate::resonance::stronger_edge(w, *e) {
                    *e = w;
                }
            }
        }
    }

    let mut sims: HashMap<Uuid, f64> = HashMap::new();
    let mut vector_order: Vec<Uuid> = Vec::new();
    let first = if a.query_text.is_some() { pool } else { k + 1 };
    let mut scan = TenantScan::open(&model, tenant, a.query, false, first)?;
    let path = scan.path();
    let mut info: HashMap<Uuid, Detail> = HashMap::new();
    let score_of = |relevance: f64, atp: f64, edge: f64| score(relevance, atp, edge, w);
    let to_query = CosineTo::new(a.query);

    // the context's neighbours: their similarity from their embeddings
    if !edge_of.is_empty() {
        let ids: Vec<Uuid> = edge_of.keys().copied().collect();
        for (id, v) in crate::resonance::embeddings_of(tenant, &ids, &model)? {
            if let Some(s) = to_query.of(&v)? {
                sims.insert(id, s);
            }
        }
        info.extend(details(&ids)?);
    }

    // vector candidates: without words, until nothing unread can beat the k-th best score;
    // with words, the nearest `pool` (then fused with the text ranking)
    let mut best: Vec<f64> = Vec::new(); // scores of the candidates so far, for the k-th best
    for (id, s) in &sims {
        // a neighbour below min_similarity is not returned: its score must not stop the scan
        if let (Some((_, _, _, atp)), true) = (info.get(id), *s >= min_sim) {
            best.push(score_of(*s, *atp, edge_of.get(id).copied().unwrap_or(0.0)));
        }
    }
    'scan: loop {
        let batch = scan.next_batch()?;
        if batch.is_empty() {
            break;
        }
        let margin = scan.margin();
        // the hits at or above min_similarity, in order (the rest of the scan is below it)
        let within = batch
            .iter()
            .take_while(|h| h.order >= min_sim - margin)
            .count();
        let mut i = 0;
        while i < within {
            // how many hits to score now: with words (or explaining) all of them; without, first
            // those that bring the scored to k, then those whose bound can still beat the k-th
            // best: a hit of a lower bound is not among the k, nor is any hit after it, and its
            // details are not read
            let n = if a.query_text.is_some() || a.score_all {
                within - i
            } else if best.len() < k {
                (k - best.len()).max(MIN_SCORED).min(within - i)
            } else {
                let kth = kth_best(&mut best, k);
                let n = batch[i..within]
                    .iter()
                    .take_while(|h| stop_bound(h.order + margin, w) >= kth)
                    .count();
                if n == 0 {
                    break 'scan;
                }
                n
            };
            let mut fresh = Vec::with_capacity(n);
            for h in &batch[i..i + n] {
                if !sims.contains_key(&h.node_id) {
                    fresh.push(h.node_id);
                }
                sims.insert(h.node_id, h.similarity);
            }
            info.extend(details(&fresh)?);
            // a place in the vector ranking for what can be returned only: a live memory (an
            // expired one has no details) at or above min_similarity (an index of reduced
            // precision orders a little below it too)
            for h in &batch[i..i + n] {
                if h.similarity >= min_sim && info.contains_key(&h.node_id) {
                    vector_order.push(h.node_id);
                }
            }
            for id in &fresh {
                if let (Some((_, _, _, atp)), Some(s)) = (info.get(id), sims.get(id)) {
                    if *s >= min_sim {
                        best.push(score_of(*s, *atp, edge_of.get(id).copied().unwrap_or(0.0)));
                    }
                }
            }
            i += n;
        }
        if within < batch.len() {
            break;
        }
        if a.query_text.is_some() {
            if vector_order.len() >= pool {
                break 'scan;
            }
        } else if best.len() >= k
            && stop_bound(batch[within - 1].order + margin, w) < kth_best(&mut best, k)
        {
            break 'scan;
        }
    }
    drop(scan);

    // text candidates
    let mut text_rank: HashMap<Uuid, (usize, f64)> = HashMap::new();
    if a.query_text.is_some() {
        // each with its details and embedding: those the vector side did not bring are scored
        // from them
        for (i, hit) in text_hits.into_iter().enumerate() {
            text_rank.insert(hit.id, (i + 1, hit.rank));
            if let std::collections::hash_map::Entry::Vacant(e) = info.entry(hit.id) {
                e.insert(hit.detail);
                if let Some(v) = hit.embedding {
                    if let Some(s) = to_query.of(&v)? {
                        sims.insert(hit.id, s);
                    }
                }
            }
        }
    }

    let vector_rank: HashMap<Uuid, usize> = vector_order
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i + 1))
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut ids: Vec<Uuid> = info.keys().copied().collect();
    ids.sort();
    for id in ids {
        let (key, content, metadata, atp) = info[&id].clone();
        let similarity = sims.get(&id).copied();
        if similarity.unwrap_or(-1.0) < min_sim && !text_rank.contains_key(&id) {
            continue;
        }
        if a.query_text.is_none() && similarity.is_none() {
            continue;
        }
        let relevance = if a.query_text.is_some() {
            rrf(
                vector_rank.get(&id).copied(),
                text_rank.get(&id).map(|t| t.0),
            )
        } else {
            similarity.unwrap_or(0.0)
        };
        let edge = edge_of.get(&id).copied().unwrap_or(0.0);
        candidates.push(Candidate {
            node_id: id,
            node_key: key,
            content,
            metadata,
            similarity,
            vector_rank: vector_rank.get(&id).copied(),
            text_rank: text_rank.get(&id).map(|t| t.1),
            text_position: text_rank.get(&id).map(|t| t.0),
            relevance,
            atp,
            edge_weight: edge,
            score: score_of(relevance, atp, edge),
        });
    }
    candidates.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(
                y.similarity
                    .unwrap_or(-2.0)
                    .total_cmp(&x.similarity.unwrap_or(-2.0)),
            )
            .then(x.node_id.cmp(&y.node_id))
    });
    let returned = candidates.len().min(k);

    if reinforce > 0.0 && returned > 0 {
        let ids: Vec<Uuid> = candidates[..returned].iter().map(|c| c.node_id).collect();
        store::pulse(ids, reinforce, tenant)?;
    }
    Ok(Recalled {
        candidates,
        returned,
        path,
    })
}
