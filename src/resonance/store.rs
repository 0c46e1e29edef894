//! The store of the resonance functions: nodes, embeddings and edges read as the caller
//! (row-level security decides what each query sees), each query from sql/queries/.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use pgrx::Uuid;

use crate::errors::{node_not_found, FractalityError};
use crate::models::Model;
use crate::spi::{self, query, Query};
use crate::vector::{CosineTo, Vector};

use super::score::stronger_edge;

const NODE_BY_ID: Query<'static> = query!("node_by_id", [UUIDOID]);
const NODE_BY_KEY: Query<'static> = query!("node_by_key", [TEXTOID]);
const NODES_BY_IDS: Query<'static> = query!("nodes_by_ids", [UUIDARRAYOID]);
const EMBEDDINGS_OF: Query<'static> =
    query!("embeddings_of", [UUIDOID, UUIDARRAYOID, TEXTOID]).per_tenant();
const NODES_OF_TENANT: Query<'static> = query!("nodes_of_tenant", [UUIDOID, INT8OID]);
const EDGES_BETWEEN: Query<'static> = query!("edges_between", [UUIDOID, UUIDARRAYOID]);
const EDGES_OF: Query<'static> = query!("edges_of", [UUIDOID, INT8OID]);
const NODE_DETAILS: Query<'static> = query!("node_details", [UUIDARRAYOID]);

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

/// The node `r` as the caller sees it, or P0002 (a key without a session tenant: 22004). An id is
/// unique within a tenant only: a caller who sees several tenants' nodes of one id (the owner,
/// BYPASSRLS) gets the session tenant's, and 22023 when the session names none of them (rather
/// than whichever came first).
pub fn node(r: &NodeRef<'_>) -> Result<NodeEnergy, FractalityError> {
    if let NodeRef::Key(_) = r {
        // a key names a node of the session's tenant
        crate::tenant::required()?;
    }
    let found: Vec<NodeEnergy> = match r {
        NodeRef::Id(id) => spi::rows(&NODE_BY_ID, &[(*id).into()], true, node_row)?,
        NodeRef::Key(key) => spi::rows(&NODE_BY_KEY, &[(*key).into()], true, node_row)?,
    }
    .into_iter()
    .flatten()
    .collect();
    match (r, found.len()) {
        (NodeRef::Id(id), 0) => Err(node_not_found(id)),
        (NodeRef::Key(key), 0) => Err(node_not_found(format!("'{key}'"))),
        (_, 1) => Ok(found.into_iter().next().expect("one")),
        (_, n) => {
            let session = crate::tenant::current()?;
            found
                .into_iter()
                .find(|f| Some(f.tenant) == session)
                .ok_or_else(|| {
                    FractalityError::invalid(
                        "node",
                        format!("{} (a node of {n} tenants)", match r {
                            NodeRef::Id(id) => id.to_string(),
                            NodeRef::Key(key) => format!("'{key}'"),
                        }),
                        "A node id is unique within its tenant: set fractality.user_id to the tenant whose node is meant.",
                    )
                })
        }
    }
}

/// The nodes `ids` the caller sees, by id.
pub fn nodes_by_ids(ids: &[Uuid]) -> Result<HashMap<Uuid, NodeEnergy>, FractalityError> {
    spi::some_rows(&NODES_BY_IDS, &[ids.to_vec().into()], true, |r| {
        node_row(r).map(|n| (n.id, n))
    })
}

/// Key, label and current energy of the nodes `ids` the caller sees.
pub type Details = HashMap<Uuid, (String, Option<String>, f64)>;

/// [`Details`] of `ids`.
pub fn node_details(ids: &[Uuid]) -> Result<Details, FractalityError> {
    spi::some_rows(&NODE_DETAILS, &[ids.to_vec().into()], true, |r| {
        Some((
            r.get::<Uuid>(1)?,
            (r.get::<String>(2)?, r.get::<String>(3), r.get::<f64>(4)?),
        ))
    })
}

/// The embeddings of `model` of `ids` (all of `tenant`), copied out.
pub fn embeddings_of(
    tenant: Uuid,
    ids: &[Uuid],
    model: &Model,
) -> Result<HashMap<Uuid, Vec<f32>>, FractalityError> {
    let rows = spi::rows(
        &EMBEDDINGS_OF,
        &[
            tenant.into(),
            ids.to_vec().into(),
            model.name.as_str().into(),
        ],
        true,
        |r| -> Result<Option<(Uuid, Vec<f32>)>, FractalityError> {
            let Some(id) = r.get::<Uuid>(1) else {
                return Ok(None);
            };
            // SAFETY: column 2 is the embedding, a vector
            Ok(unsafe { r.vector(2) }?.map(|v| (id, v)))
        },
    )?;
    let mut out = HashMap::with_capacity_and_hasher(rows.len(), Default::default());
    for r in rows {
        if let Some((id, v)) = r? {
            out.insert(id, v);
        }
    }
    Ok(out)
}

/// The cosine similarity of `query` with the embedding of `model` of each of `ids` (all of
/// `tenant`) that has one: None where the embedding is zero.
pub fn similarities_to(
    tenant: Uuid,
    ids: &[Uuid],
    model: &Model,
    query: &[f32],
) -> Result<HashMap<Uuid, Option<f64>>, FractalityError> {
    let args = [
        tenant.into(),
        ids.to_vec().into(),
        model.name.as_str().into(),
    ];
    stream_similarities(&EMBEDDINGS_OF, &args, query, ids.len(), |_| true)
}

/// [`similarities_to`] for the `wanted` nodes of `tenant`, read with all its other embeddings of
/// `model` in one pass over the tenant's rows instead of an index probe for each.
pub fn similarities_in_tenant(
    tenant: Uuid,
    wanted: &HashSet<Uuid>,
    model: &Model,
    query: &[f32],
) -> Result<HashMap<Uuid, Option<f64>>, FractalityError> {
    let args = [tenant.into(), model.name.as_str().into()];
    stream_similarities(
        &crate::search::TENANT_VECTORS,
        &args,
        query,
        wanted.len(),
        |id| wanted.contains(id),
    )
}

/// The similarities to `query` of the embeddings (column 2) of the nodes (column 1) `q` returns
/// that `keep` keeps, computed where the scan reads each embedding, in the shared buffer: nothing
/// is copied out (copying 1 000 embeddings of 384 dimensions into a result table and then into
/// vectors took 1.2 ms of `resonance_with`'s 5.1).
fn stream_similarities(
    q: &Query<'_>,
    args: &[pgrx::datum::DatumWithOid<'_>],
    query: &[f32],
    expected: usize,
    keep: impl Fn(&Uuid) -> bool,
) -> Result<HashMap<Uuid, Option<f64>>, FractalityError> {
    let mut out = HashMap::with_capacity_and_hasher(expected, Default::default());
    let mut failed = None;
    let to = CosineTo::new(query);
    spi::stream(q, args, true, |r| {
        let (Some(id), None) = (r.get::<Uuid>(1), &failed) else {
            return;
        };
        let Some(d) = r.datum(2).filter(|_| keep(&id)) else {
            return;
        };
        // SAFETY: column 2 is the embedding, a vector, valid while this callback runs
        match unsafe { Vector::from_datum_ref(d) }.and_then(|v| to.of(v.as_slice())) {
            Ok(s) => {
                out.insert(id, s);
            }
            Err(e) => failed = Some(e),
        }
    })?;
    failed.map_or(Ok(out), Err)
}

/// The `wanted` nodes of `tenant` the caller sees, read in one pass with its other nodes, at most
/// `limit` of them (the caller probes for those it does not find).
pub fn nodes_in_tenant(
    tenant: Uuid,
    wanted: &HashSet<Uuid>,
    limit: i64,
) -> Result<HashMap<Uuid, NodeEnergy>, FractalityError> {
    let mut out = HashMap::with_capacity_and_hasher(wanted.len(), Default::default());
    // planned (and kept) under this setting: see Pinned::index_scans
    let _plan = crate::search::Pinned::index_scans();
    spi::stream(
        &NODES_OF_TENANT,
        &[tenant.into(), limit.into()],
        true,
        |r| {
            if let Some(n) = node_row(r).filter(|n| wanted.contains(&n.id)) {
                out.insert(n.id, n);
            }
        },
    )?;
    Ok(out)
}

/// Up to this many other nodes, [`edges_between`] probes the edge indexes for each of them.
const PROBE_AT_MOST: usize = 16;
/// Above [`PROBE_AT_MOST`], it reads the node's own edges instead while they number at most this
/// many per other node (a node with more, a hub, is probed after all).
const EDGES_PER_OTHER: usize = 4;

/// The edge between `node` and each of `others` in either direction: of several, the one of
/// greatest |weight| (the positive one on a tie). For many others (`resonance_with` of a
/// thousand nodes), the node's own edges in two range scans rather than four index probes per
/// other node (measured: 0.3-0.7 ms against 4.7-7 ms for 1 000 others and 12 edges).
pub fn edges_between(node: Uuid, others: &[Uuid]) -> Result<HashMap<Uuid, f64>, FractalityError> {
    if others.len() > PROBE_AT_MOST {
        if let Some(mut all) = edges_of(node, others.len() * EDGES_PER_OTHER)? {
            let wanted: HashSet<&Uuid> = others.iter().collect();
            all.retain(|o, _| wanted.contains(o));
            return Ok(all);
        }
    }
    Ok(strongest(probe_edges(node, others)?))
}

/// Every edge of `node` in either direction, the strongest per other node, while they number at
/// most `cap` (None beyond: the caller asks for the edges it needs with [`edges_between`]).
pub fn edges_of(node: Uuid, cap: usize) -> Result<Option<HashMap<Uuid, f64>>, FractalityError> {
    let all: Vec<(Uuid, f64)> = spi::some_rows(
        &EDGES_OF,
        &[node.into(), (cap as i64 + 1).into()],
        true,
        spi::Row::pair,
    )?;
    Ok((all.len() <= cap).then(|| strongest(all)))
}

/// Of several edges between a node and another, the one of greatest |weight| (the positive one
/// on a tie), per other node.
fn strongest(rows: Vec<(Uuid, f64)>) -> HashMap<Uuid, f64> {
    let mut out: HashMap<Uuid, f64> = HashMap::default();
    for (other, w) in rows {
        let e = out.entry(other).or_insert(w);
        if stronger_edge(w, *e) {
            *e = w;
        }
    }
    out
}

/// The edges between `node` and each of `others`, an index probe per other node and direction.
fn probe_edges(node: Uuid, others: &[Uuid]) -> Result<Vec<(Uuid, f64)>, FractalityError> {
    let args = [node.into(), others.to_vec().into()];
    spi::some_rows(&EDGES_BETWEEN, &args, true, spi::Row::pair)
}
