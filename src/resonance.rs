//! Resonance: how strongly two nodes of a mind resonate.
//!
//! `resonance = w_sim * cosine similarity + w_energy * atp_a * atp_b + w_edge * edge weight`,
//! with the seed's weights 0.5, 0.3 and 0.2. [`score`] is the pure math. `resonance_with` (and
//! `calculate_resonance`, its one-pair form) reads the nodes, their embeddings and the edges
//! between them in three queries and computes the rest natively; `find_resonant` takes the
//! source's neighbours from the tenant's search ([`crate::search`]) and re-ranks them natively.
//!
//! Every query runs as the caller through SQL: row-level security decides what each sees.

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::Uuid;

use crate::errors::{finite, node_not_found, FractalityError, OrReport};
use crate::models::{model_arg, Model};
use crate::search::TenantScan;
use crate::spi::{self, Query};
use crate::vector::{cosine, Vector};

pub const W_SIM: f64 = 0.5;
pub const W_ENERGY: f64 = 0.3;
pub const W_EDGE: f64 = 0.2;

/// Largest `k` find_resonant accepts.
pub const MAX_K: i32 = 1000;
/// At most this many candidates within the threshold are re-ranked (the nearest ones).
pub const MAX_CANDIDATES: i64 = 2000;

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

fn in_range(
    name: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
    hint: &'static str,
) -> Result<f64, FractalityError> {
    let v = finite(name, v)?;
    if v < lo || v > hi {
        return Err(FractalityError::invalid(name, v, hint));
    }
    Ok(v)
}

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

/// `w_sim * similarity + w_energy * atp_a * atp_b + w_edge * edge_weight`; every input validated.
#[pg_extern(immutable, strict, parallel_safe)]
fn resonance_score(
    similarity: f64,
    atp_a: f64,
    atp_b: f64,
    edge_weight: f64,
    w_sim: default!(f64, 0.5),
    w_energy: default!(f64, 0.3),
    w_edge: default!(f64, 0.2),
) -> f64 {
    let w = Weights::new(w_sim, w_energy, w_edge).unwrap_or_report();
    score(similarity, atp_a, atp_b, edge_weight, w).unwrap_or_report()
}

// ---- reading nodes, embeddings and edges (as the caller) ---------------------------------------

const NODE_BY_ID: &str = include_str!("../sql/queries/node_by_id.sql");
const NODE_BY_KEY: &str = include_str!("../sql/queries/node_by_key.sql");
const NODES_BY_IDS: &str = include_str!("../sql/queries/nodes_by_ids.sql");
const EMBEDDINGS_OF: &str = include_str!("../sql/queries/embeddings_of.sql");
const EDGES_BETWEEN: &str = include_str!("../sql/queries/edges_between.sql");
const NODE_DETAILS: &str = include_str!("../sql/queries/node_details.sql");

/// A node as the resonance functions need it.
#[derive(Clone, Copy, Debug)]
pub struct NodeEnergy {
    pub id: Uuid,
    pub tenant: Uuid,
    pub atp: f64,
}

fn node_row(r: &spi::Row) -> Option<NodeEnergy> {
    Some(NodeEnergy {
        id: r.get(1)?,
        tenant: r.get(2)?,
        atp: r.get(3)?,
    })
}

/// A node by id or by key (of the session's tenant).
pub enum NodeRef<'a> {
    Id(Uuid),
    Key(&'a str),
}

/// The node `r` as the caller sees it, or P0002.
pub fn node(r: &NodeRef<'_>) -> Result<NodeEnergy, FractalityError> {
    let found = match r {
        NodeRef::Id(id) => spi::rows(
            &Query {
                name: "node_by_id",
                text: NODE_BY_ID,
                types: &[pg_sys::UUIDOID],
            },
            &[(*id).into()],
            true,
            node_row,
        )?,
        NodeRef::Key(key) => spi::rows(
            &Query {
                name: "node_by_key",
                text: NODE_BY_KEY,
                types: &[pg_sys::TEXTOID],
            },
            &[(*key).into()],
            true,
            node_row,
        )?,
    };
    found.into_iter().flatten().next().ok_or_else(|| match r {
        NodeRef::Id(id) => node_not_found(id),
        NodeRef::Key(key) => node_not_found(format!("'{key}'")),
    })
}

/// The embeddings of `model` of `ids` (all of `tenant`), copied out.
pub fn embeddings_of(
    tenant: Uuid,
    ids: &[Uuid],
    model: &Model,
) -> Result<HashMap<Uuid, Vec<f32>>, FractalityError> {
    let rows = spi::rows(
        &Query {
            name: "embeddings_of",
            text: EMBEDDINGS_OF,
            types: &[pg_sys::UUIDOID, pg_sys::UUIDARRAYOID, pg_sys::TEXTOID],
        },
        &[
            tenant.into(),
            ids.to_vec().into(),
            model.name.as_str().into(),
        ],
        true,
        |r| -> Result<Option<(Uuid, Vec<f32>)>, FractalityError> {
            let (Some(id), Some(d)) = (r.get::<Uuid>(1), r.datum(2)) else {
                return Ok(None);
            };
            // SAFETY: a non-null vector datum of the row being read
            let v = unsafe { Vector::from_datum_ref(d) }?;
            Ok(Some((id, v.as_slice().to_vec())))
        },
    )?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        if let Some((id, v)) = r? {
            out.insert(id, v);
        }
    }
    Ok(out)
}

/// The edge between `node` and each of `others` in either direction: of several, the one of
/// greatest |weight| (the positive one on a tie).
pub fn edges_between(node: Uuid, others: &[Uuid]) -> Result<HashMap<Uuid, f64>, FractalityError> {
    let rows = spi::rows(
        &Query {
            name: "edges_between",
            text: EDGES_BETWEEN,
            types: &[pg_sys::UUIDOID, pg_sys::UUIDARRAYOID],
        },
        &[node.into(), others.to_vec().into()],
        true,
        |r| r.get::<Uuid>(1).zip(r.get::<f64>(2)),
    )?;
    let mut out: HashMap<Uuid, f64> = HashMap::new();
    for (other, w) in rows.into_iter().flatten() {
        let e = out.entry(other).or_insert(w);
        if stronger_edge(w, *e) {
            *e = w;
        }
    }
    Ok(out)
}

/// Whether weight `w` wins over `than`: greater |weight|, the positive one on a tie.
pub fn stronger_edge(w: f64, than: f64) -> bool {
    w.abs() > than.abs() || (w.abs() == than.abs() && w > than)
}

// ---- SQL: resonance_with and calculate_resonance ---------------------------------------------

/// One row of `resonance_with`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub node_id: Uuid,
    pub similarity: Option<f64>,
    pub atp: f64,
    pub edge_weight: f64,
    pub resonance: Option<f64>,
}

/// The resonance of `source` with each of `others`, in the order given: three queries (the
/// nodes, their embeddings per tenant, the edges), the rest native. P0002 for a node that does
/// not exist or that the caller may not see; similarity and resonance NULL where either node has
/// no embedding of the model (or a zero one).
pub fn resonance_set(
    source: Uuid,
    others: &[Uuid],
    model: &str,
) -> Result<Vec<Pair>, FractalityError> {
    let model = Model::lookup(model)?;
    let mut ids = Vec::with_capacity(others.len() + 1);
    ids.push(source);
    ids.extend_from_slice(others);
    let nodes: HashMap<Uuid, NodeEnergy> = spi::rows(
        &Query {
            name: "nodes_by_ids",
            text: NODES_BY_IDS,
            types: &[pg_sys::UUIDARRAYOID],
        },
        &[ids.clone().into()],
        true,
        node_row,
    )?
    .into_iter()
    .flatten()
    .map(|n| (n.id, n))
    .collect();
    for id in &ids {
        if !nodes.contains_key(id) {
            return Err(node_not_found(id));
        }
    }
    let src = nodes[&source];
    // the embeddings, one query per tenant (one in the common case)
    let mut by_tenant: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for id in &ids {
        let n = nodes[id];
        let group = by_tenant.entry(n.tenant).or_default();
        if !group.contains(id) {
            group.push(*id);
        }
    }
    let mut embeddings: HashMap<Uuid, Vec<f32>> = HashMap::new();
    for (tenant, group) in &by_tenant {
        embeddings.extend(embeddings_of(*tenant, group, &model)?);
    }
    let edges = edges_between(source, others)?;
    let source_vec = embeddings.get(&source);
    others
        .iter()
        .map(|id| {
            let n = nodes[id];
            let edge = edges.get(id).copied().unwrap_or(0.0);
            let similarity = match (source_vec, embeddings.get(id)) {
                (Some(a), Some(b)) => cosine(a, b)?,
                _ => None,
            };
            let resonance = similarity
                .map(|s| score(s, src.atp, n.atp, edge, SEED_WEIGHTS))
                .transpose()?;
            Ok(Pair {
                node_id: *id,
                similarity,
                atp: n.atp,
                edge_weight: edge,
                resonance,
            })
        })
        .collect()
}

/// The seed's resonance of `node` with each of `others` (its set form): 0.5 x cosine similarity
/// of their embeddings of `model` + 0.3 x the product of their current energies + 0.2 x the edge
/// between them (either direction; 0 without one). One row per element of `others`, in order.
/// P0002 for a node that does not exist or that the caller may not see; similarity and
/// resonance are NULL where either node has no embedding of the model.
#[pg_extern(stable, strict)]
#[allow(clippy::type_complexity)] // the table pgrx declares
fn resonance_with(
    node: Uuid,
    others: Vec<Option<Uuid>>,
    model: default!(&str, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(similarity, Option<f64>),
        name!(atp, f64),
        name!(edge_weight, f64),
        name!(resonance, Option<f64>),
    ),
> {
    let others: Vec<Uuid> = others
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| FractalityError::NullNotAllowed("an element of others").report())
        })
        .collect();
    let pairs = spi::connect(|| resonance_set(node, &others, model)).unwrap_or_report();
    TableIterator::new(
        pairs
            .into_iter()
            .map(|p| (p.node_id, p.similarity, p.atp, p.edge_weight, p.resonance)),
    )
}

/// The seed's resonance of two nodes: 0.5 x cosine similarity + 0.3 x energy product + 0.2 x
/// edge weight (0 without an edge). NULL where either node has no embedding of `model` (or a
/// zero one). P0002 for a node that does not exist or that the caller may not see.
#[pg_extern(
    stable,
    strict,
    sql = r#"
CREATE FUNCTION fractality."calculate_resonance"(
    "node_a" uuid, "node_b" uuid, "model" text DEFAULT 'default'
) RETURNS double precision STRICT STABLE
LANGUAGE c AS 'MODULE_PATHNAME', 'calculate_resonance_wrapper';
"#
)]
fn calculate_resonance(
    node_a: Uuid,
    node_b: Uuid,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<f64> {
    let model = unsafe { model_arg(fcinfo, 2) }.expect("strict");
    spi::connect(|| resonance_set(node_a, &[node_b], &model))
        .unwrap_or_report()
        .into_iter()
        .next()
        .and_then(|p| p.resonance)
}

// ---- SQL: find_resonant -------------------------------------------------------------------------

/// One row of find_resonant.
type Resonant = (Uuid, String, Option<String>, f64, f64, f64);

fn check_k(k: i32) -> Result<usize, FractalityError> {
    if k <= 0 || k > MAX_K {
        return Err(FractalityError::invalid(
            "k",
            k,
            "k is the number of results wanted, from 1 to 1000.",
        ));
    }
    Ok(k as usize)
}

/// find_resonant's work: the source, its embedding, its neighbours within the threshold from the
/// tenant's search (at most MAX_CANDIDATES, the nearest), their details, the native re-ranking.
fn resonant(
    source: NodeRef<'_>,
    threshold_: f64,
    k: i32,
    model: &str,
) -> Result<Vec<Resonant>, FractalityError> {
    let threshold_ = threshold(threshold_)?;
    let k = check_k(k)?;
    let model = Model::lookup(model)?;
    let src = node(&source)?;
    let Some(query) = embeddings_of(src.tenant, &[src.id], &model)?.remove(&src.id) else {
        return Ok(Vec::new());
    };
    if query.iter().all(|x| *x == 0.0) {
        return Ok(Vec::new()); // no direction, no similarity
    }
    let mut scan = TenantScan::open(&model, src.tenant, &query, true, k + 1)?;
    let mut found: Vec<(Uuid, f64)> = Vec::new();
    'scan: loop {
        let batch = scan.next_batch()?;
        if batch.is_empty() {
            break;
        }
        for h in batch {
            if h.order < threshold_ - scan.margin() {
                break 'scan;
            }
            if h.node_id != src.id && h.similarity >= threshold_ {
                found.push((h.node_id, h.similarity));
                if found.len() >= MAX_CANDIDATES as usize {
                    break 'scan;
                }
            }
        }
    }
    drop(scan);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = found.iter().map(|f| f.0).collect();
    let edges = edges_between(src.id, &ids)?;
    let details: HashMap<Uuid, (String, Option<String>, f64)> = spi::rows(
        &Query {
            name: "node_details",
            text: NODE_DETAILS,
            types: &[pg_sys::UUIDARRAYOID],
        },
        &[ids.clone().into()],
        true,
        |r| {
            Some((
                r.get::<Uuid>(1)?,
                (r.get::<String>(2)?, r.get::<String>(3), r.get::<f64>(4)?),
            ))
        },
    )?
    .into_iter()
    .flatten()
    .collect();
    let ranked: Vec<Ranked> = found
        .iter()
        .enumerate()
        .filter_map(|(i, (id, sim))| {
            let (_, _, atp) = details.get(id)?;
            let edge = edges.get(id).copied().unwrap_or(0.0);
            Some(Ranked {
                index: i,
                similarity: *sim,
                resonance: raw_score(*sim, src.atp, *atp, edge, SEED_WEIGHTS),
            })
        })
        .collect();
    Ok(rerank(ranked, k)
        .into_iter()
        .map(|r| {
            let id = found[r.index].0;
            let (key, label, atp) = details[&id].clone();
            (id, key, label, r.similarity, atp, r.resonance)
        })
        .collect())
}

/// The nodes of the source's tenant that resonate with it: similarity (of their embeddings of
/// `model`) at least `threshold`, ordered by resonance (highest first), at most `k`. A tenant of
/// at most `fractality.exact_scan_limit` embeddings of the model is read whole; a larger one
/// through the model's HNSW index in the tenant's partition, in distance order until the
/// threshold. Every read is the caller's: what row-level security hides is left out. The source
/// is never in its own result; empty when it has no embedding of the model.
#[pg_extern(
    stable,
    strict,
    sql = r#"
CREATE FUNCTION fractality."find_resonant"(
    "node" uuid, "threshold" double precision DEFAULT 0.7, "k" integer DEFAULT 20,
    "model" text DEFAULT 'default'
) RETURNS TABLE (
    "node_id" uuid, "node_key" text, "label" text, "similarity" double precision,
    "atp" double precision, "resonance" double precision
) STRICT STABLE
LANGUAGE c AS 'MODULE_PATHNAME', 'find_resonant_wrapper';
"#
)]
fn find_resonant(
    node: Uuid,
    threshold: f64,
    k: i32,
    fcinfo: pg_sys::FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(label, Option<String>),
        name!(similarity, f64),
        name!(atp, f64),
        name!(resonance, f64),
    ),
> {
    let model = unsafe { model_arg(fcinfo, 3) }.expect("strict");
    TableIterator::new(
        spi::connect(|| resonant(NodeRef::Id(node), threshold, k, &model)).unwrap_or_report(),
    )
}

/// As `find_resonant(uuid, ...)`, the source named by its key in the caller's tenant
/// (`fractality.user_id`).
#[pg_extern(
    stable,
    strict,
    sql = r#"
CREATE FUNCTION fractality."find_resonant"(
    "node_key" text, "threshold" double precision DEFAULT 0.7, "k" integer DEFAULT 20,
    "model" text DEFAULT 'default'
) RETURNS TABLE (
    "node_id" uuid, "node_key" text, "label" text, "similarity" double precision,
    "atp" double precision, "resonance" double precision
) STRICT STABLE
LANGUAGE c AS 'MODULE_PATHNAME', 'find_resonant_by_key_wrapper';
"#
)]
fn find_resonant_by_key(
    node_key: &str,
    threshold: f64,
    k: i32,
    fcinfo: pg_sys::FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(label, Option<String>),
        name!(similarity, f64),
        name!(atp, f64),
        name!(resonance, f64),
    ),
> {
    let model = unsafe { model_arg(fcinfo, 3) }.expect("strict");
    TableIterator::new(
        spi::connect(|| resonant(NodeRef::Key(node_key), threshold, k, &model)).unwrap_or_report(),
    )
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
