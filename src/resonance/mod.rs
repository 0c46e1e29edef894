//! Resonance: how strongly two nodes of a mind resonate.
//!
//! `resonance = w_sim * cosine similarity + w_energy * atp_a * atp_b + w_edge * edge weight`,
//! with the seed's weights 0.5, 0.3 and 0.2. [`score`] is the pure math, [`store`] the queries (as
//! the caller), this file the `#[pg_extern]` layer and the two set computations. `resonance_with` (and
//! `calculate_resonance`, its one-pair form) reads the nodes, their embeddings and the edges
//! between them in three queries and computes the rest natively; `find_resonant` takes the
//! source's neighbours from the tenant's search ([`crate::search`]) and re-ranks them natively.
//!
//! Every query runs as the caller through SQL: row-level security decides what each sees.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use pgrx::prelude::*;
use pgrx::Uuid;

pub mod score;
pub mod store;

use crate::errors::{node_not_found, required, FractalityError, OrReport};
use crate::models::{model_arg, Model};
use crate::search::TenantScan;
use crate::spi;
use crate::vector::CosineTo;

pub use score::*;
pub use store::{edges_between, embeddings_of, node, NodeEnergy, NodeRef};
use store::{similarities_in_tenant, similarities_to};

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

/// `resonance_with` reads the source's tenant in one pass, instead of probing for each other node,
/// when the tenant holds fewer than this many embeddings of the model per other node.
const TENANT_PER_OTHER: usize = 2;
/// ... and only from this many others on.
const READ_TENANT_FROM: usize = 64;

/// The resonance of `source` with each of `others`, in the order given: the nodes, the
/// similarities of their embeddings to the source's (one query per tenant), the edges, the rest
/// native. Where the others are most of the source's tenant, its nodes and embeddings are each
/// read in one pass rather than probed for one by one. P0002 for a node that does not exist or
/// that the caller may not see; similarity and resonance NULL where either node has no embedding
/// of the model (or a zero one).
pub fn resonance_set(
    source: Uuid,
    others: &[Uuid],
    model: &str,
) -> Result<Vec<Pair>, FractalityError> {
    let model = Model::lookup(model)?;
    let wanted: HashSet<Uuid> = others.iter().copied().collect();
    let (nodes, whole) = nodes_of(source, &wanted, &model)?;
    if let Some(id) = std::iter::once(&source)
        .chain(others)
        .find(|id| !nodes.contains_key(id))
    {
        return Err(node_not_found(id));
    }
    let src = nodes[&source];
    let similarity = similarities(&src, &wanted, &nodes, &model, whole)?;
    let edges = edges_between(source, others)?;
    others
        .iter()
        .map(|id| {
            let n = nodes[id];
            let edge = edges.get(id).copied().unwrap_or(0.0);
            let similarity = similarity.get(id).copied().flatten();
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

/// `source` and the `wanted` nodes as the caller sees them (those it may not see left out), and
/// whether the source's tenant was read in one pass: from [`READ_TENANT_FROM`] others on, when
/// the tenant holds fewer than [`TENANT_PER_OTHER`] embeddings of `model` per other node (the
/// nodes of other tenants, and any beyond the pass's limit, are probed for).
fn nodes_of(
    source: Uuid,
    wanted: &HashSet<Uuid>,
    model: &Model,
) -> Result<(HashMap<Uuid, NodeEnergy>, bool), FractalityError> {
    if wanted.len() < READ_TENANT_FROM {
        let mut ids = Vec::with_capacity(wanted.len() + 1);
        ids.push(source);
        ids.extend(wanted.iter().copied());
        return Ok((store::nodes_by_ids(&ids)?, false));
    }
    let src = node(&NodeRef::Id(source))?;
    let cap = (wanted.len() * TENANT_PER_OTHER) as i64;
    let whole = crate::search::tenant_size(model, src.tenant, cap, true)? < cap;
    let mut nodes = if whole {
        store::nodes_in_tenant(src.tenant, wanted, 2 * cap)?
    } else {
        HashMap::default()
    };
    nodes.insert(source, src);
    let missing: Vec<Uuid> = wanted
        .iter()
        .filter(|id| !nodes.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        nodes.extend(store::nodes_by_ids(&missing)?);
    }
    Ok((nodes, whole))
}

/// The similarity of each of the `wanted` nodes' embeddings of `model` to the source's, one query
/// per tenant: for a few, the embeddings copied out with the source's; for many, the source's
/// first, then each other's computed where the scan reads it (the source's tenant in one pass
/// when `whole`).
fn similarities(
    source: &NodeEnergy,
    wanted: &HashSet<Uuid>,
    nodes: &HashMap<Uuid, NodeEnergy>,
    model: &Model,
    whole: bool,
) -> Result<HashMap<Uuid, Option<f64>>, FractalityError> {
    let mut by_tenant: HashMap<Uuid, Vec<Uuid>> = HashMap::default();
    for id in wanted {
        by_tenant.entry(nodes[id].tenant).or_default().push(*id);
    }
    let mut out = HashMap::default();
    if wanted.len() < READ_TENANT_FROM {
        by_tenant.entry(source.tenant).or_default().push(source.id);
        let mut vectors = HashMap::default();
        for (tenant, group) in &by_tenant {
            vectors.extend(embeddings_of(*tenant, group, model)?);
        }
        if let Some(query) = vectors.get(&source.id) {
            let to = CosineTo::new(query);
            for id in wanted {
                if let Some(v) = vectors.get(id) {
                    out.insert(*id, to.of(v)?);
                }
            }
        }
        return Ok(out);
    }
    let Some(query) = embeddings_of(source.tenant, &[source.id], model)?.remove(&source.id) else {
        return Ok(out);
    };
    for (tenant, group) in &by_tenant {
        out.extend(if whole && *tenant == source.tenant {
            similarities_in_tenant(*tenant, wanted, model, &query)?
        } else {
            similarities_to(*tenant, group, model, &query)?
        });
    }
    Ok(out)
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
    others: Array<'_, Uuid>,
    model: default!(&str, "'default'"),
    fcinfo: pg_sys::FunctionCallInfo,
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
    // SAFETY: the call's own arguments, `others` an array by the signature
    unsafe { crate::errors::one_dimensional_args(fcinfo, &[(1, "others")]) };
    let others: Vec<Uuid> = crate::errors::elements("others", &others)
        .into_iter()
        .map(|o| required("an element of others", o))
        .collect();
    let _settings = crate::search::Pinned::path();
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

/// find_resonant's work: the source, its embedding and its edges, its neighbours within the
/// threshold from the tenant's search in order of similarity, scored a chunk of
/// [`CHUNK`] at a time (their details, expired memories left out), until the threshold or until
/// nothing unread can beat the k-th best resonance ([`unread_bound`]); then the native re-ranking.
fn resonant(
    source: NodeRef<'_>,
    threshold_: f64,
    k: i32,
    model: &str,
) -> Result<Vec<Resonant>, FractalityError> {
    let threshold_ = threshold(threshold_)?;
    let k = check_k(k)?;
    if let NodeRef::Key(key) = source {
        crate::graph::check_key(key)?;
    }
    let model = Model::lookup(model)?;
    let src = node(&source)?;
    let Some(query) = embeddings_of(src.tenant, &[src.id], &model)?.remove(&src.id) else {
        return Ok(Vec::new());
    };
    if query.iter().all(|x| *x == 0.0) {
        return Ok(Vec::new()); // no direction, no similarity
    }
    let mut scan = TenantScan::open(&model, src.tenant, &query, true, k + 1)?;
    let margin = scan.margin();
    let mut found = Found::default();
    let mut chunk: Vec<(Uuid, f64)> = Vec::new();
    'scan: loop {
        let batch = scan.next_batch()?;
        if batch.is_empty() {
            break;
        }
        for h in batch {
            if h.order < threshold_ - margin {
                break 'scan;
            }
            if h.node_id != src.id && h.similarity >= threshold_ {
                chunk.push((h.node_id, h.similarity));
                if chunk.len() >= CHUNK {
                    found.score(&mut chunk, &src)?;
                    // what is unread lies at most at this hit's order (strict order)
                    let bound = unread_bound(h.order + margin, src.atp, found.edge_bound());
                    if found.kth_best(k).is_some_and(|kth| bound < kth) {
                        break 'scan;
                    }
                }
            }
        }
    }
    drop(scan);
    found.score(&mut chunk, &src)?;
    let Found { ranked, rows, .. } = found;
    Ok(rerank(ranked, k)
        .into_iter()
        .map(|r| {
            let (id, key, label, atp) = rows[r.index].clone();
            (id, key, label, r.similarity, atp, r.resonance)
        })
        .collect())
}

/// find_resonant's candidates within the threshold scored so far, nearest first.
#[derive(Default)]
struct Found {
    ranked: Vec<Ranked>,
    /// Id, key, label and energy of each, at its `index`.
    rows: Vec<(Uuid, String, Option<String>, f64)>,
    /// The source's edges, read at the first chunk (none when nothing is found): whole while
    /// they number at most [`SOURCE_EDGES`] (Some: each candidate's edge known, an unread one's
    /// at most the strongest of them), else asked for a chunk at a time (None).
    source_edges: Option<Option<HashMap<Uuid, f64>>>,
}

impl Found {
    /// Scores the `chunk` (ids and similarities, nearest first) and empties it: their details
    /// (an expired memory has none, and is left out) and their edges to the source.
    fn score(
        &mut self,
        chunk: &mut Vec<(Uuid, f64)>,
        src: &NodeEnergy,
    ) -> Result<(), FractalityError> {
        if chunk.is_empty() {
            return Ok(());
        }
        if self.source_edges.is_none() {
            self.source_edges = Some(store::edges_of(src.id, SOURCE_EDGES)?);
        }
        let ids: Vec<Uuid> = chunk.iter().map(|c| c.0).collect();
        let asked;
        let edges = match self.source_edges.as_ref().and_then(|e| e.as_ref()) {
            Some(e) => e,
            None => {
                asked = edges_between(src.id, &ids)?;
                &asked
            }
        };
        let mut details = store::node_details(&ids)?;
        for (id, sim) in chunk.drain(..) {
            let Some((key, label, atp)) = details.remove(&id) else {
                continue;
            };
            let edge = edges.get(&id).copied().unwrap_or(0.0);
            self.ranked.push(Ranked {
                index: self.rows.len(),
                similarity: sim,
                resonance: raw_score(sim, src.atp, atp, edge, SEED_WEIGHTS),
            });
            self.rows.push((id, key, label, atp));
        }
        Ok(())
    }

    /// The most an unread candidate's edge to the source can weigh: the strongest of the
    /// source's edges where they were read whole, else 1.
    fn edge_bound(&self) -> f64 {
        match self.source_edges.as_ref().and_then(|e| e.as_ref()) {
            Some(e) => e.values().copied().fold(0.0, f64::max),
            None => 1.0,
        }
    }

    /// The k-th best resonance so far, once there are k.
    fn kth_best(&self, k: usize) -> Option<f64> {
        if self.ranked.len() < k {
            return None;
        }
        let mut r: Vec<f64> = self.ranked.iter().map(|c| c.resonance).collect();
        let (_, kth, _) = r.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        Some(*kth)
    }
}

/// Both `find_resonant`s' rows, the model their fourth argument.
fn resonant_rows(
    source: NodeRef<'_>,
    threshold: f64,
    k: i32,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Vec<Resonant> {
    // SAFETY: the call info of the running find_resonant call
    let model = unsafe { model_arg(fcinfo, 3) }.expect("strict");
    let _settings = crate::search::Pinned::search();
    spi::connect(|| resonant(source, threshold, k, &model)).unwrap_or_report()
}

/// The nodes of the source's tenant that resonate with it: similarity (of their embeddings of
/// `model`) at least `threshold`, ordered by resonance (highest first), at most `k`. A tenant of
/// at most `fractality.exact_scan_limit` embeddings of the model is read whole; a larger one
/// through an HNSW index (its own graph, or the partition's), in distance order until the
/// threshold or until no node unread can beat the k-th best resonance, at most the 10 000 nearest
/// (an expired memory not yet deleted among them). Every read is the caller's: what row-level security hides is left out, and so is an
/// expired memory (as `recall` never recalls one). The source is never in its own result; empty
/// when it has no embedding of the model.
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
) -> TableIterator<'static, (Uuid, String, Option<String>, f64, f64, f64)> {
    TableIterator::new(resonant_rows(NodeRef::Id(node), threshold, k, fcinfo))
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
) -> TableIterator<'static, (Uuid, String, Option<String>, f64, f64, f64)> {
    TableIterator::new(resonant_rows(NodeRef::Key(node_key), threshold, k, fcinfo))
}
