//! The graph API: nodes by key (`upsert_node`), edges (`link`, `unlink`), neighbours (`children`,
//! `parents`), breadth-first `traverse`, the cheapest `consciousness_path`, `thaw`/`freeze` of a
//! node with its edges, embedding and stream, and full-text `search_nodes`.
//!
//! Every function runs as the caller through SPI with `$n` parameters, so row-level security
//! holds: a tenant walks, links and finds only its own nodes. The graph algorithms themselves
//! ([`breadth_first`], [`cheapest_path`]) are plain Rust over a `fetch` callback, tested without a
//! server; the SQL layer only fetches one level (or one batch) of edges per query, on the
//! covering index `edges_from_type_weight`.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::Hash;

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::DatumWithOid;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, Uuid};
use serde::Deserialize;

use crate::errors::{finite, pg_float, FractalityError, OrReport};
use crate::vector::{vector_type_oid, Vector};

/// THE one place where the graph reads a node's energy, as an SQL expression over the nodes row
/// aliased `$alias`: the current (lazily decayed) energy, `fractality.current_atp(atp, atp_at)`.
/// `consciousness_path`, `children`, `parents`, `thaw` and `search_nodes` all use it.
macro_rules! energy {
    ($alias:literal) => {
        concat!(
            "fractality.current_atp(",
            $alias,
            ".atp, ",
            $alias,
            ".atp_at)"
        )
    };
}

/// Deepest `traverse` accepted.
pub const MAX_DEPTH: i32 = 100;
/// How many frontier nodes `consciousness_path` expands per query.
const PATH_BATCH: usize = 128;

// ---- validation ------------------------------------------------------------------------------

pub fn check_depth(depth: i32) -> Result<usize, FractalityError> {
    if (0..=MAX_DEPTH).contains(&depth) {
        Ok(depth as usize)
    } else {
        Err(FractalityError::invalid(
            "max_depth",
            depth,
            "max_depth must be between 0 and 100.",
        ))
    }
}

pub fn check_weight(weight: f64) -> Result<f64, FractalityError> {
    let w = finite("weight", weight)?;
    if (-1.0..=1.0).contains(&w) {
        Ok(w)
    } else {
        Err(FractalityError::invalid(
            "weight",
            pg_float(w),
            "An edge weight lies in [-1, 1].",
        ))
    }
}

pub fn check_atp(atp: f64) -> Result<f64, FractalityError> {
    let a = finite("atp", atp)?;
    if (0.0..=1.0).contains(&a) {
        Ok(a)
    } else {
        Err(FractalityError::invalid(
            "atp",
            pg_float(a),
            "Energy (atp) lies in [0, 1].",
        ))
    }
}

pub fn check_relationship(rel: &str) -> Result<&str, FractalityError> {
    let n = rel.chars().count();
    if (1..=50).contains(&n) {
        Ok(rel)
    } else {
        Err(FractalityError::invalid(
            "relationship type",
            format!("'{rel}'"),
            "A relationship type has 1 to 50 characters.",
        ))
    }
}

pub fn check_key(key: &str) -> Result<&str, FractalityError> {
    let n = key.chars().count();
    if (1..=255).contains(&n) {
        Ok(key)
    } else {
        Err(FractalityError::invalid(
            "node_key",
            format!("'{key}'"),
            "A node key has 1 to 255 characters.",
        ))
    }
}

// ---- breadth-first traversal -----------------------------------------------------------------

/// One node reached by [`breadth_first`]: its depth, the index of the node it was reached from,
/// and the product of the edge weights along that path.
#[derive(Clone, Debug, PartialEq)]
pub struct Visit<N> {
    pub node: N,
    pub depth: usize,
    pub parent: Option<usize>,
    pub weight: f64,
}

/// Breadth first from `root` to `max_depth`: every reachable node once, at its smallest depth
/// (so cycles are cut), reached through the parent that gives the highest accumulated weight
/// (ties: the smaller parent id). With weights in [0, 1] that is the strongest shortest path.
/// `fetch(frontier)` returns the edges (from, to, weight) leaving the frontier, in any order.
/// The result is ordered by depth, then accumulated weight (highest first), then id.
pub fn breadth_first<N, F>(root: N, max_depth: usize, mut fetch: F) -> Vec<Visit<N>>
where
    N: Copy + Eq + Hash + Ord,
    F: FnMut(&[N]) -> Vec<(N, N, f64)>,
{
    let mut visits = vec![Visit {
        node: root,
        depth: 0,
        parent: None,
        weight: 1.0,
    }];
    let mut index: HashMap<N, usize> = HashMap::from([(root, 0)]);
    let mut frontier: Vec<usize> = vec![0];
    for depth in 1..=max_depth {
        if frontier.is_empty() {
            break;
        }
        let ids: Vec<N> = frontier.iter().map(|&i| visits[i].node).collect();
        let mut next: Vec<usize> = Vec::new();
        for (from, to, w) in fetch(&ids) {
            let Some(&fi) = index.get(&from) else {
                continue;
            };
            if visits[fi].depth + 1 != depth {
                continue;
            }
            let acc = visits[fi].weight * w;
            match index.get(&to) {
                None => {
                    index.insert(to, visits.len());
                    next.push(visits.len());
                    visits.push(Visit {
                        node: to,
                        depth,
                        parent: Some(fi),
                        weight: acc,
                    });
                }
                Some(&ti) if visits[ti].depth == depth => {
                    let cur = &visits[ti];
                    let cur_parent = visits[cur.parent.expect("not the root")].node;
                    let better = acc > cur.weight || (acc == cur.weight && from < cur_parent);
                    if better {
                        visits[ti].parent = Some(fi);
                        visits[ti].weight = acc;
                    }
                }
                Some(_) => {} // reached earlier: a cycle or a longer way round
            }
        }
        frontier = next;
    }
    let mut order: Vec<usize> = (0..visits.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&visits[a], &visits[b]);
        x.depth
            .cmp(&y.depth)
            .then(y.weight.total_cmp(&x.weight))
            .then(x.node.cmp(&y.node))
    });
    // re-index parents into the new order
    let mut position = vec![0usize; visits.len()];
    for (new, &old) in order.iter().enumerate() {
        position[old] = new;
    }
    order
        .iter()
        .map(|&old| {
            let v = &visits[old];
            Visit {
                node: v.node,
                depth: v.depth,
                parent: v.parent.map(|p| position[p]),
                weight: v.weight,
            }
        })
        .collect()
}

/// The path from the root to `visits[i]`, root first.
pub fn path_of<N: Copy>(visits: &[Visit<N>], i: usize) -> Vec<N> {
    let mut path = Vec::with_capacity(visits[i].depth + 1);
    let mut at = Some(i);
    while let Some(j) = at {
        path.push(visits[j].node);
        at = visits[j].parent;
    }
    path.reverse();
    path
}

// ---- cheapest path ---------------------------------------------------------------------------

/// The cost of an edge between nodes of energy `a` and `b`: 1 / (a * b); `None` (impassable) when
/// either has no energy.
pub fn edge_cost(a: f64, b: f64) -> Option<f64> {
    let p = a * b;
    (p > 0.0 && p.is_finite()).then(|| 1.0 / p)
}

#[derive(PartialEq)]
struct Entry<N>(f64, N);
impl<N: Ord> Eq for Entry<N> {}
impl<N: Ord> PartialOrd for Entry<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<N: Ord> Ord for Entry<N> {
    /// Reversed: BinaryHeap pops the cheapest (then the smallest id) first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}

/// Dijkstra from `from` (energy `from_atp`) to `to` over directed edges of cost
/// [`edge_cost`]; paths costing more than `max_cost` are not followed. `fetch(nodes)` returns the
/// edges (from, to, energy of to) leaving those nodes; it is called with up to `batch` nodes at
/// a time: the node being settled and the cheapest other unexpanded nodes of the frontier, so
/// that a path costs a few queries, not one per node. Returns the path with the cumulative cost
/// at each step, or `None` when `to` cannot be reached.
pub fn cheapest_path<N, F>(
    from: N,
    from_atp: f64,
    to: N,
    max_cost: Option<f64>,
    batch: usize,
    mut fetch: F,
) -> Option<Vec<(N, f64)>>
where
    N: Copy + Eq + Hash + Ord,
    F: FnMut(&[N]) -> Vec<(N, N, f64)>,
{
    // node -> (cost so far, previous node, energy)
    let mut best: HashMap<N, (f64, Option<N>, f64)> =
        HashMap::from([(from, (0.0, None, from_atp))]);
    let mut settled: HashSet<N> = HashSet::new();
    let mut adjacency: HashMap<N, Vec<(N, f64)>> = HashMap::new();
    let mut heap = BinaryHeap::from([Entry(0.0, from)]);
    while let Some(Entry(cost, u)) = heap.pop() {
        if settled.contains(&u) || cost > best[&u].0 {
            continue;
        }
        if u == to {
            let mut path = vec![(u, cost)];
            let mut at = best[&u].1;
            while let Some(p) = at {
                path.push((p, best[&p].0));
                at = best[&p].1;
            }
            path.reverse();
            return Some(path);
        }
        if !adjacency.contains_key(&u) {
            let mut others: Vec<(f64, N)> = best
                .iter()
                .filter(|(n, _)| **n != u && !settled.contains(*n) && !adjacency.contains_key(*n))
                .map(|(n, b)| (b.0, *n))
                .collect();
            if others.len() >= batch {
                others.select_nth_unstable_by(batch.saturating_sub(2), |a, b| {
                    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                });
                others.truncate(batch.saturating_sub(1));
            }
            let mut ids: Vec<N> = vec![u];
            ids.extend(others.into_iter().map(|(_, n)| n));
            for n in &ids {
                adjacency.insert(*n, Vec::new());
            }
            for (a, b, atp_b) in fetch(&ids) {
                if let Some(list) = adjacency.get_mut(&a) {
                    list.push((b, atp_b));
                }
            }
        }
        settled.insert(u);
        let atp_u = best[&u].2;
        for &(v, atp_v) in &adjacency[&u] {
            if settled.contains(&v) {
                continue;
            }
            let Some(c) = edge_cost(atp_u, atp_v) else {
                continue;
            };
            let next = cost + c;
            if max_cost.is_some_and(|m| next > m) {
                continue;
            }
            if best.get(&v).is_none_or(|b| next < b.0) {
                best.insert(v, (next, Some(u), atp_v));
                heap.push(Entry(next, v));
            }
        }
    }
    None
}

// ---- SPI helpers -----------------------------------------------------------------------------

thread_local! {
    /// Plans kept for the life of the backend, by query text, prepared as generic plans: the
    /// traversal's queries (`= ANY($1)` on an index) plan in about as long as they run, and the
    /// plan cache would otherwise re-plan them on every call. PostgreSQL still re-plans them
    /// itself when the tables or the role change.
    static PLANS: RefCell<HashMap<&'static str, usize>> = RefCell::new(HashMap::new());
}

/// A row of an SPI result, read in place.
pub struct RawRow {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl RawRow {
    /// Column `n` (1-based).
    fn get<T: FromDatum>(&self, n: i32) -> Option<T> {
        unsafe {
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut isnull);
            T::from_datum(d, isnull)
        }
    }
}

/// Runs a `query` with a kept generic plan (SPI must be connected: call it inside
/// `Spi::connect`); `row` maps each result row. `read_only` reads with the calling statement's
/// snapshot (the readers); writers pass false so that they see their own earlier writes.
fn select_kept<R>(
    read_only: bool,
    query: &'static str,
    types: &[pg_sys::Oid],
    args: &[DatumWithOid<'_>],
    mut row: impl FnMut(&RawRow) -> R,
) -> Vec<R> {
    let plan = PLANS.with(|plans| {
        if let Some(p) = plans.borrow().get(query) {
            return *p as pg_sys::SPIPlanPtr;
        }
        let text = std::ffi::CString::new(query).expect("no NUL in query text");
        let mut argtypes = types.to_vec();
        let plan = unsafe {
            pg_sys::SPI_prepare_cursor(
                text.as_ptr(),
                argtypes.len() as i32,
                argtypes.as_mut_ptr(),
                pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
            )
        };
        if plan.is_null() {
            pgrx::error!("fractality: could not prepare {query}");
        }
        unsafe { pg_sys::SPI_keepplan(plan) };
        plans.borrow_mut().insert(query, plan as usize);
        plan
    });
    let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(args.len());
    let mut nulls: Vec<std::os::raw::c_char> = Vec::with_capacity(args.len());
    for a in args {
        match a.datum() {
            Some(d) => {
                values.push(d.sans_lifetime());
                nulls.push(b' ' as std::os::raw::c_char);
            }
            None => {
                values.push(pg_sys::Datum::from(0usize));
                nulls.push(b'n' as std::os::raw::c_char);
            }
        }
    }
    unsafe {
        let status =
            pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), read_only, 0);
        if status < 0 {
            pgrx::error!("fractality: SPI_execute_plan returned {status} for {query}");
        }
        let table = pg_sys::SPI_tuptable;
        let n = pg_sys::SPI_processed as usize;
        let mut out = Vec::with_capacity(n);
        if !table.is_null() {
            let desc = (*table).tupdesc;
            for i in 0..n {
                out.push(row(&RawRow {
                    tuple: *(*table).vals.add(i),
                    desc,
                }));
            }
            pg_sys::SPI_freetuptable(table);
        }
        out
    }
}

fn spi_error(e: pgrx::spi::SpiError) -> ! {
    pgrx::error!("fractality: SPI: {e}")
}

fn not_found(what: &'static str, key: impl ToString) -> FractalityError {
    FractalityError::NotFound {
        what,
        key: key.to_string(),
    }
}

/// The tenant of the session (`fractality.user_id`), or NULL when it is unset; read from the
/// setting directly (a malformed value is left to `fractality.current_user_id()` to reject).
fn session_tenant_opt() -> Option<Uuid> {
    let setting = crate::gucs::USER_ID.get();
    match setting.as_ref().map(|c| c.to_string_lossy()) {
        None => None,
        Some(text) if text.is_empty() => None,
        Some(text) => match parse_uuid(&text) {
            Some(bytes) => Some(Uuid::from_bytes(bytes)),
            // read only (a standby has no transaction id to give)
            None => Spi::connect(|c| {
                c.select("SELECT fractality.current_user_id()", Some(1), &[])?
                    .first()
                    .get_one::<Uuid>()
            })
            .unwrap_or_else(|e| spi_error(e)),
        },
    }
}

/// An argument of a function that is not strict (it has other arguments where NULL means
/// something) that must not be NULL: 22004 otherwise.
fn required<T>(name: &'static str, value: Option<T>) -> T {
    value.unwrap_or_else(|| FractalityError::NullNotAllowed(name).report())
}

/// The tenant of the session, or an error when it is unset.
fn session_tenant() -> Uuid {
    session_tenant_opt().unwrap_or_else(|| FractalityError::NoTenant.report())
}

/// The id of `key` in `user`'s graph, or P0002.
fn node_id(_client: &SpiClient<'_>, user: Uuid, key: &str) -> Uuid {
    select_kept(
        false,
        "SELECT n.id FROM fractality.nodes n WHERE n.user_id = $1 AND n.node_key = $2",
        &[pg_sys::UUIDOID, pg_sys::TEXTOID],
        &[user.into(), key.into()],
        |r| r.get::<Uuid>(1),
    )
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_else(|| not_found("node", format!("'{key}'")).report())
}

// ---- nodes -----------------------------------------------------------------------------------

/// What `upsert_node` writes; `None` keeps what is stored (or the column default on insert).
pub struct NodeFields<'a> {
    pub key: &'a str,
    pub label: Option<&'a str>,
    pub metadata: Option<serde_json::Value>,
    pub atp: Option<f64>,
    pub embedding: Option<Vector<'a>>,
    /// The model of `embedding`.
    pub model: &'a str,
    pub node_type: Option<&'a str>,
}

impl NodeFields<'_> {
    fn validate(&self) -> Result<(), FractalityError> {
        check_key(self.key)?;
        if let Some(a) = self.atp {
            check_atp(a)?;
        }
        if let Some(m) = &self.metadata {
            if !m.is_object() {
                return Err(FractalityError::invalid(
                    "metadata",
                    m.to_string(),
                    "metadata is a JSON object.",
                ));
            }
        }
        if let Some(t) = self.node_type {
            if t.chars().count() > 50 {
                return Err(FractalityError::invalid(
                    "type",
                    format!("'{t}'"),
                    "A node type has at most 50 characters.",
                ));
            }
        }
        crate::models::check_name(self.model)?;
        Ok(())
    }
}

const UPSERT_NODE: &str = "
INSERT INTO fractality.nodes AS n (user_id, node_key, label, type, metadata, atp, atp_at)
VALUES ($1, $2, $3, $4, coalesce($5, '{}'::jsonb), coalesce($6, 1.0), now())
ON CONFLICT (user_id, node_key) DO UPDATE
   SET label    = coalesce($3, n.label),
       type     = coalesce($4, n.type),
       metadata = n.metadata || coalesce($5, '{}'::jsonb),
       atp      = coalesce($6, n.atp),
       atp_at   = CASE WHEN $6 IS NULL THEN n.atp_at ELSE now() END,
       updated_at = now()
RETURNING n.id";

const UPSERT_EMBEDDING: &str = include_str!("../sql/queries/upsert_embedding.sql");
const UPSERT_EMBEDDING_0_4: &str = include_str!("../sql/queries/upsert_embedding_0_4.sql");

/// Inserts or updates `user`'s node `fields.key`; returns its id.
pub fn upsert(user: Uuid, fields: NodeFields<'_>) -> Uuid {
    fields.validate().unwrap_or_report();
    Spi::connect_mut(|client| {
        let metadata = fields.metadata.map(JsonB);
        let args: Vec<DatumWithOid> = vec![
            user.into(),
            fields.key.into(),
            fields.label.into(),
            fields.node_type.into(),
            metadata.into(),
            fields.atp.into(),
        ];
        // the model and the dimension before anything is written (a 0.4.0 schema not yet
        // updated takes the default model's 384-d embeddings as it did)
        let current = crate::models::schema_is_current();
        if let Some(v) = &fields.embedding {
            if current || fields.model != crate::models::DEFAULT {
                let model = crate::models::Model::lookup(fields.model).unwrap_or_report();
                model.check(v).unwrap_or_report();
            }
        }
        let id = select_kept(
            false,
            UPSERT_NODE,
            &[
                pg_sys::UUIDOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::JSONBOID,
                pg_sys::FLOAT8OID,
            ],
            &args,
            |r| r.get::<Uuid>(1),
        )
        .into_iter()
        .flatten()
        .next()
        .expect("INSERT ... RETURNING id returns the id");
        if let Some(v) = fields.embedding {
            if current {
                write_embedding(id, user, fields.model, v);
            } else {
                let voi = vector_type_oid();
                crate::spi::run(
                    &crate::spi::Query {
                        name: "upsert_embedding_0_4",
                        text: UPSERT_EMBEDDING_0_4,
                        types: &[pg_sys::UUIDOID, pg_sys::UUIDOID, voi],
                    },
                    // SAFETY: a vector datum with the vector type's OID
                    &[id.into(), user.into(), unsafe { DatumWithOid::new(v, voi) }],
                )
                .unwrap_or_report();
            }
        }
        let _ = client;
        id
    })
}

/// Inserts or replaces node `id`'s embedding of `model` (checked by the caller); SPI connected.
pub(crate) fn write_embedding(id: Uuid, user: Uuid, model: &str, v: Vector<'_>) {
    let voi = vector_type_oid();
    // SAFETY: a vector datum with the vector type's OID
    let emb = unsafe { DatumWithOid::new(v, voi) };
    crate::spi::run(
        &crate::spi::Query {
            name: "upsert_embedding",
            text: UPSERT_EMBEDDING,
            types: &[pg_sys::UUIDOID, pg_sys::UUIDOID, voi, pg_sys::TEXTOID],
        },
        &[id.into(), user.into(), emb, model.into()],
    )
    .unwrap_or_report();
}

fn frozen_has(by_model: &[(String, Vector<'static>)], model: &str) -> bool {
    by_model.iter().any(|(m, _)| m == model)
}

/// Inserts or updates the node `node_key` of the session's tenant (`fractality.user_id`): a NULL
/// label, type or atp keeps the stored value (1.0 for a new node), metadata is merged into the
/// stored object, an embedding (of `model`'s dimension) is upserted into node_embeddings as the
/// node's embedding of that model. Returns its id.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION fractality."upsert_node"(
    "node_key" text, "label" text DEFAULT NULL, "metadata" jsonb DEFAULT '{}',
    "atp" double precision DEFAULT NULL, "embedding" vector DEFAULT NULL, "type" text DEFAULT NULL,
    "model" text DEFAULT 'default'
) RETURNS uuid VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'upsert_node_wrapper';
"#
)]
fn upsert_node(
    node_key: Option<&str>,
    label: default!(Option<&str>, "NULL"),
    metadata: default!(Option<crate::jsonb::JsonValue>, "'{}'"),
    atp: default!(Option<f64>, "NULL"),
    embedding: default!(Option<Vector<'_>>, "NULL"),
    r#type: default!(Option<&str>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> Uuid {
    crate::errors::writer(c"upsert_node");
    let node_key = required("node_key", node_key);
    let model = required("model", unsafe { crate::models::model_arg(fcinfo, 6) });
    let model = model.as_str();
    let user = session_tenant();
    upsert(
        user,
        NodeFields {
            key: node_key,
            label,
            metadata: metadata.map(|j| j.0),
            atp,
            embedding,
            model,
            node_type: r#type,
        },
    )
}

/// `upsert_node` for an explicit tenant, for the owner role and loaders (row-level security still
/// applies to other roles). A name of its own rather than an overload of `upsert_node`: with
/// `user_id uuid` first, a call like `upsert_node('k', 'label', '{}')` of untyped literals
/// would be ambiguous between the two.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION fractality."upsert_node_for"(
    "user_id" uuid, "node_key" text, "label" text DEFAULT NULL, "metadata" jsonb DEFAULT '{}',
    "atp" double precision DEFAULT NULL, "embedding" vector DEFAULT NULL, "type" text DEFAULT NULL,
    "model" text DEFAULT 'default'
) RETURNS uuid VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'upsert_node_for_wrapper';
"#
)]
#[allow(clippy::too_many_arguments)] // the SQL function's parameters
fn upsert_node_for(
    user_id: Option<Uuid>,
    node_key: Option<&str>,
    label: default!(Option<&str>, "NULL"),
    metadata: default!(Option<crate::jsonb::JsonValue>, "'{}'"),
    atp: default!(Option<f64>, "NULL"),
    embedding: default!(Option<Vector<'_>>, "NULL"),
    r#type: default!(Option<&str>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> Uuid {
    crate::errors::writer(c"upsert_node_for");
    let user_id = required("user_id", user_id);
    let node_key = required("node_key", node_key);
    let model = required("model", unsafe { crate::models::model_arg(fcinfo, 7) });
    let model = model.as_str();
    upsert(
        user_id,
        NodeFields {
            key: node_key,
            label,
            metadata: metadata.map(|j| j.0),
            atp,
            embedding,
            model,
            node_type: r#type,
        },
    )
}

// ---- edges -----------------------------------------------------------------------------------

const UPSERT_EDGE: &str = "
INSERT INTO fractality.edges AS e (user_id, from_node, to_node, relationship_type, weight)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT ON CONSTRAINT edges_unique DO UPDATE SET weight = EXCLUDED.weight
RETURNING e.id";

/// Links `user`'s nodes `from_key` -> `to_key`; returns the edge id.
pub fn link_keys(user: Uuid, from_key: &str, to_key: &str, rel: &str, weight: f64) -> Uuid {
    check_relationship(rel).unwrap_or_report();
    check_weight(weight).unwrap_or_report();
    if from_key == to_key {
        FractalityError::invalid(
            "link",
            format!("'{from_key}' to itself"),
            "A node cannot be its own child, parent or neighbour: link two different nodes.",
        )
        .report();
    }
    Spi::connect_mut(|client| {
        let from = node_id(client, user, from_key);
        let to = node_id(client, user, to_key);
        select_kept(
            false,
            UPSERT_EDGE,
            &[
                pg_sys::UUIDOID,
                pg_sys::UUIDOID,
                pg_sys::UUIDOID,
                pg_sys::TEXTOID,
                pg_sys::FLOAT8OID,
            ],
            &[
                user.into(),
                from.into(),
                to.into(),
                rel.into(),
                weight.into(),
            ],
            |r| r.get::<Uuid>(1),
        )
        .into_iter()
        .flatten()
        .next()
        .expect("RETURNING id")
    })
}

/// Links the session tenant's node `from_key` to `to_key` with a relationship type and a weight
/// in [-1, 1]; an existing edge of that type between them gets the new weight. Returns its id.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION fractality."link"(
    "from_key" text, "to_key" text, "type" text DEFAULT 'child', "weight" double precision DEFAULT 1.0
) RETURNS uuid STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'link_wrapper';
"#
)]
fn link(
    from_key: &str,
    to_key: &str,
    r#type: default!(&str, "'child'"),
    weight: default!(f64, "1.0"),
) -> Uuid {
    crate::errors::writer(c"link");
    link_keys(session_tenant(), from_key, to_key, r#type, weight)
}

/// Removes the edge `from_key` -> `to_key` of that type; true when there was one.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION fractality."unlink"("from_key" text, "to_key" text, "type" text DEFAULT 'child')
RETURNS bool STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'unlink_wrapper';
"#
)]
fn unlink(from_key: &str, to_key: &str, r#type: default!(&str, "'child'")) -> bool {
    let user = session_tenant();
    Spi::connect_mut(|client| {
        crate::errors::writer(c"unlink");
        let from = node_id(client, user, from_key);
        let to = node_id(client, user, to_key);
        let deleted = client
            .update(
                "DELETE FROM fractality.edges
                  WHERE from_node = $1 AND to_node = $2 AND relationship_type = $3",
                None,
                &[from.into(), to.into(), r#type.into()],
            )
            .unwrap_or_else(|e| spi_error(e));
        !deleted.is_empty()
    })
}

type Neighbour = (Uuid, String, Option<String>, f64, f64);

fn neighbours(node_key: &str, rel: &str, outgoing: bool) -> Vec<Neighbour> {
    let user = session_tenant();
    const OUT: &str = concat!(
        "SELECT n.id, n.node_key, n.label, e.weight, ",
        energy!("n"),
        " FROM fractality.edges e JOIN fractality.nodes n ON n.id = e.to_node
          WHERE e.from_node = $1 AND e.relationship_type = $2
          ORDER BY e.weight DESC, n.node_key"
    );
    const IN: &str = concat!(
        "SELECT n.id, n.node_key, n.label, e.weight, ",
        energy!("n"),
        " FROM fractality.edges e JOIN fractality.nodes n ON n.id = e.from_node
          WHERE e.to_node = $1 AND e.relationship_type = $2
          ORDER BY e.weight DESC, n.node_key"
    );
    Spi::connect(|client| {
        let id = node_id(client, user, node_key);
        let table = client
            .select(
                if outgoing { OUT } else { IN },
                None,
                &[id.into(), rel.into()],
            )
            .unwrap_or_else(|e| spi_error(e));
        table
            .map(|r| {
                (
                    r.get::<Uuid>(1).unwrap().unwrap(),
                    r.get::<String>(2).unwrap().unwrap(),
                    r.get::<String>(3).unwrap(),
                    r.get::<f64>(4).unwrap().unwrap(),
                    r.get::<f64>(5).unwrap().unwrap(),
                )
            })
            .collect()
    })
}

/// The nodes `node_key` links to with that relationship, strongest edge first.
#[pg_extern(stable, parallel_unsafe)]
fn children(
    node_key: &str,
    relationship: default!(&str, "'child'"),
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(label, Option<String>),
        name!(weight, f64),
        name!(atp, f64),
    ),
> {
    TableIterator::new(neighbours(node_key, relationship, true))
}

/// The nodes that link to `node_key` with that relationship, strongest edge first.
#[pg_extern(stable, parallel_unsafe)]
fn parents(
    node_key: &str,
    relationship: default!(&str, "'child'"),
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(label, Option<String>),
        name!(weight, f64),
        name!(atp, f64),
    ),
> {
    TableIterator::new(neighbours(node_key, relationship, false))
}

// ---- traversal -------------------------------------------------------------------------------

const LEVEL_EDGES: &str = "SELECT e.from_node, e.to_node, e.weight FROM fractality.edges e
                            WHERE e.from_node = ANY($1) AND e.relationship_type = $2";
/// The keys of the nodes reached, one index lookup per id (a nested loop: `= ANY` planned as a
/// bitmap scan here, which sorts and prefetches pages already in shared buffers).
const NODE_KEYS: &str = "SELECT n.id, n.node_key FROM unnest($1::uuid[]) AS k(id)
                          JOIN fractality.nodes n ON n.id = k.id";

fn edge_row(r: &RawRow) -> (Uuid, Uuid, f64) {
    (
        r.get::<Uuid>(1).expect("from_node"),
        r.get::<Uuid>(2).expect("to_node"),
        r.get::<f64>(3).expect("weight or energy"),
    )
}

/// A `uuid[]` built in one piece with `construct_array`: pgrx's `Vec<Uuid>` goes through
/// `accumArrayResult`, a palloc and a type lookup per element, which cost `traverse` more than
/// its index lookups at depth 3 (a path per row, a frontier per level).
pub struct UuidArray(pub Vec<Uuid>);

impl IntoDatum for UuidArray {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let mut elems: Vec<pg_sys::Datum> = self
            .0
            .iter()
            .map(|u| pg_sys::Datum::from(u.as_ptr() as usize))
            .collect();
        // SAFETY: every element points at 16 bytes that outlive the call; construct_array
        // copies them into a new array in the current memory context
        let array = unsafe {
            pg_sys::construct_array(
                elems.as_mut_ptr(),
                elems.len() as i32,
                pg_sys::UUIDOID,
                16,
                false,
                pg_sys::TYPALIGN_CHAR as std::os::raw::c_char,
            )
        };
        Some(pg_sys::Datum::from(array as usize))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::UUIDARRAYOID
    }
}

unsafe impl BoxRet for UuidArray {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        match self.into_datum() {
            Some(d) => unsafe { fcinfo.return_raw_datum(d) },
            None => fcinfo.return_null(),
        }
    }
}

unsafe impl SqlTranslatable for UuidArray {
    const TYPE_IDENT: &'static str = <Vec<Uuid> as SqlTranslatable>::TYPE_IDENT;
    const TYPE_ORIGIN: TypeOrigin = <Vec<Uuid> as SqlTranslatable>::TYPE_ORIGIN;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        <Vec<Uuid> as SqlTranslatable>::ARGUMENT_SQL;
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = <Vec<Uuid> as SqlTranslatable>::RETURN_SQL;
}

type TraverseRow = (Uuid, String, i32, UuidArray, f64);

/// Breadth first from `root` along edges of one relationship type, to `max_depth` (0 to 100):
/// every reachable node once, at its smallest depth, with the path to it and the product of the
/// edge weights along it. One index-only query per level; runs as the caller (row-level security
/// holds). P0002 when the root does not exist or is not visible.
#[pg_extern(stable, strict, parallel_unsafe)]
fn traverse(
    root: Uuid,
    max_depth: default!(i32, 5),
    relationship: default!(&str, "'child'"),
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(depth, i32),
        name!(path, UuidArray),
        name!(accumulated_weight, f64),
    ),
> {
    let depth = check_depth(max_depth).unwrap_or_report();
    let rows = Spi::connect(|_client| {
        // ids are sent in index order: the scan's own sort of the array finds it sorted, and
        // consecutive descents share the upper pages of the index
        let visits = breadth_first(root, depth, |frontier| {
            let mut ids = frontier.to_vec();
            ids.sort_unstable();
            select_kept(
                true,
                LEVEL_EDGES,
                &[pg_sys::UUIDARRAYOID, pg_sys::TEXTOID],
                &[UuidArray(ids).into(), relationship.into()],
                edge_row,
            )
        });
        let mut ids: Vec<Uuid> = visits.iter().map(|v| v.node).collect();
        ids.sort_unstable();
        let mut keys: HashMap<Uuid, String> = select_kept(
            true,
            NODE_KEYS,
            &[pg_sys::UUIDARRAYOID],
            &[UuidArray(ids).into()],
            |r| {
                (
                    r.get::<Uuid>(1).expect("id"),
                    r.get::<String>(2).expect("node_key"),
                )
            },
        )
        .into_iter()
        .collect();
        // the root's key is fetched with the others: a root the caller cannot see has no key
        // (and, row-level security hiding its edges too, nothing was walked from it)
        if !keys.contains_key(&root) {
            not_found("node", root).report();
        }
        (0..visits.len())
            .filter_map(|i| {
                let v = &visits[i];
                // an edge can only point at a node of its own tenant (composite foreign key), so
                // every node is visible; skip rather than fail should a policy say otherwise
                let key = keys.remove(&v.node)?;
                Some((
                    v.node,
                    key,
                    v.depth as i32,
                    UuidArray(path_of(&visits, i)),
                    v.weight,
                ))
            })
            .collect::<Vec<TraverseRow>>()
    });
    TableIterator::new(rows)
}

// ---- cheapest path ---------------------------------------------------------------------------

const PATH_EDGES: &str = concat!(
    "SELECT e.from_node, e.to_node, ",
    energy!("n"),
    " FROM fractality.edges e JOIN fractality.nodes n ON n.id = e.to_node
      WHERE e.from_node = ANY($1)"
);
const PATH_ENDS: &str = concat!(
    "SELECT n.id, ",
    energy!("n"),
    " FROM fractality.nodes n WHERE n.id = ANY($1)"
);

type PathRow = (i32, Uuid, f64);

/// The cheapest directed path from `from` to `to`, an edge between nodes of energy a and b
/// costing 1 / (a * b) (Dijkstra, natively; nodes without energy are impassable). One row per
/// step with the cumulative cost; empty when there is no path (costing at most `max_cost`).
#[pg_extern(stable, parallel_unsafe)]
fn consciousness_path(
    from: Option<Uuid>,
    to: Option<Uuid>,
    max_cost: default!(Option<f64>, "NULL"),
) -> TableIterator<'static, (name!(step, i32), name!(node_id, Uuid), name!(cost, f64))> {
    let (from, to) = (required("from", from), required("to", to));
    if let Some(m) = max_cost {
        let m = finite("max_cost", m).unwrap_or_report();
        if m < 0.0 {
            FractalityError::invalid("max_cost", pg_float(m), "max_cost is >= 0 (or NULL).")
                .report();
        }
    }
    let path = Spi::connect(|_client| {
        let ends: HashMap<Uuid, f64> = select_kept(
            true,
            PATH_ENDS,
            &[pg_sys::UUIDARRAYOID],
            &[vec![from, to].into()],
            |r| {
                (
                    r.get::<Uuid>(1).expect("id"),
                    r.get::<f64>(2).expect("energy"),
                )
            },
        )
        .into_iter()
        .collect();
        for n in [from, to] {
            if !ends.contains_key(&n) {
                not_found("node", n).report();
            }
        }
        cheapest_path(from, ends[&from], to, max_cost, PATH_BATCH, |batch| {
            select_kept(
                true,
                PATH_EDGES,
                &[pg_sys::UUIDARRAYOID],
                &[batch.to_vec().into()],
                edge_row,
            )
        })
    });
    let rows: Vec<PathRow> = path
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, (n, c))| (i as i32, n, c))
        .collect();
    TableIterator::new(rows)
}

// ---- thaw and freeze -------------------------------------------------------------------------

const THAW: &str = include_str!("../sql/queries/thaw.sql");

/// The node `node_key` of the session's tenant as one JSON document: its fields and metadata,
/// its energy, its embedding (an array, or null), its outgoing and incoming edges, and its
/// latest `stream_points` stream points (newest first). P0002 when there is no such node.
#[pg_extern(
    stable,
    strict,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION fractality."thaw"(
    "node_key" text, "stream_points" integer DEFAULT 100, "model" text DEFAULT 'default'
) RETURNS jsonb STRICT STABLE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'thaw_wrapper';
"#
)]
fn thaw(node_key: &str, stream_points: i32, fcinfo: pg_sys::FunctionCallInfo) -> JsonB {
    let model = unsafe { crate::models::model_arg(fcinfo, 2) }.expect("strict");
    let model = model.as_str();
    crate::models::check_name(model).unwrap_or_report();
    if !crate::models::schema_is_current() {
        FractalityError::SchemaBehind.report();
    }
    if stream_points < 0 {
        FractalityError::invalid(
            "stream_points",
            stream_points,
            "Ask for 0 or more stream points.",
        )
        .report();
    }
    let user = session_tenant();
    Spi::connect(|client| {
        let table = client
            .select(
                THAW,
                None,
                &[
                    user.into(),
                    node_key.into(),
                    (stream_points as i64).into(),
                    model.into(),
                ],
            )
            .unwrap_or_else(|e| spi_error(e));
        if table.is_empty() {
            return None;
        }
        table
            .first()
            .get_one::<JsonB>()
            .unwrap_or_else(|e| spi_error(e))
    })
    .unwrap_or_else(|| not_found("node", format!("'{node_key}'")).report())
}

/// What `freeze` reads: the shape `thaw` writes (unknown fields are ignored).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Frozen {
    pub user_id: Option<String>,
    pub node_key: Option<String>,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub node_type: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub atp: Option<f64>,
    pub embedding: Option<Vec<f32>>,
    /// Embeddings by model (thaw writes every model's here).
    pub embeddings: std::collections::BTreeMap<String, Vec<f32>>,
    pub edges: FrozenEdges,
    pub stream: Vec<FrozenPoint>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct FrozenEdges {
    pub outgoing: Vec<FrozenEdge>,
}

#[derive(Deserialize, Debug)]
pub struct FrozenEdge {
    pub to_key: String,
    #[serde(rename = "type", default = "child")]
    pub relationship: String,
    #[serde(default = "one")]
    pub weight: f64,
}

fn child() -> String {
    "child".into()
}
fn one() -> f64 {
    1.0
}

#[derive(Deserialize, Debug)]
pub struct FrozenPoint {
    pub time: String,
    pub atp_level: f64,
    #[serde(default)]
    pub attention_score: Option<f64>,
    #[serde(default)]
    pub resonance_vector: Option<Vec<f32>>,
}

pub fn parse_frozen(doc: serde_json::Value) -> Result<Frozen, FractalityError> {
    let frozen: Frozen = serde_json::from_value(doc).map_err(|e| {
        FractalityError::invalid(
            "frozen node",
            e.to_string(),
            "Pass the shape thaw() returns: node_key, label, type, metadata, atp, embedding, edges.outgoing, stream.",
        )
    })?;
    if frozen.node_key.is_none() {
        return Err(FractalityError::invalid(
            "frozen node",
            "no node_key",
            "A frozen node names its node_key.",
        ));
    }
    for p in &frozen.stream {
        check_atp(p.atp_level).map_err(|_| {
            FractalityError::invalid(
                "stream point atp_level",
                pg_float(p.atp_level),
                "A stream point's atp_level lies in [0, 1].",
            )
        })?;
    }
    for e in &frozen.edges.outgoing {
        check_weight(e.weight)?;
        check_relationship(&e.relationship)?;
    }
    Ok(frozen)
}

const FREEZE_STREAM: &str = "
INSERT INTO fractality.consciousness_streams
       (time, node_id, user_id, atp_level, attention_score, resonance_vector)
SELECT p.time, $1, $2, p.atp_level, p.attention_score, p.resonance_vector
  FROM jsonb_to_recordset($3) AS p(time timestamptz, atp_level float8, attention_score float8,
                                   resonance_vector real[])
 WHERE NOT EXISTS (SELECT 1 FROM fractality.consciousness_streams s
                    WHERE s.node_id = $1 AND s.time = p.time)";

/// Writes a node back from the document `thaw` returns (or one an application built): the node
/// (upserted by key), its embeddings (`embedding` as `model`'s, and each of `embeddings` as its
/// model's), its outgoing edges (by target key) and its buffered stream points, all in the
/// caller's transaction: an error anywhere writes nothing. Stream points the node already has at
/// the same time are skipped, so freezing a thawed node twice adds nothing. The tenant is the
/// session's (`fractality.user_id`), or the document's `user_id` when unset.
#[pg_extern(
    volatile,
    strict,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION fractality."freeze"("node" jsonb, "model" text DEFAULT 'default')
RETURNS uuid STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'freeze_wrapper';
"#
)]
fn freeze(node: crate::jsonb::JsonValue, fcinfo: pg_sys::FunctionCallInfo) -> Uuid {
    crate::errors::writer(c"freeze");
    let model = unsafe { crate::models::model_arg(fcinfo, 1) }.expect("strict");
    let model = model.as_str();
    let stream_json = node.0.get("stream").cloned();
    let frozen = parse_frozen(node.0).unwrap_or_report();
    let user = session_tenant_opt()
        .or_else(|| {
            frozen
                .user_id
                .as_deref()
                .and_then(|u| Uuid::from_slice(&parse_uuid(u)?).ok())
        })
        .unwrap_or_else(|| FractalityError::NoTenant.report());
    // every embedding by model, `embedding` taking precedence for `model`; all checked first
    let mut by_model: Vec<(String, Vector<'static>)> = Vec::new();
    if let Some(v) = frozen.embedding {
        by_model.push((model.to_string(), Vector::from_vec(v).unwrap_or_report()));
    }
    for (m, v) in frozen.embeddings {
        if frozen_has(&by_model, &m) {
            continue;
        }
        by_model.push((m, Vector::from_vec(v).unwrap_or_report()));
    }
    Spi::connect(|_| {
        for (m, v) in &by_model {
            crate::models::Model::lookup(m)
                .and_then(|model| model.check(v))
                .unwrap_or_report();
        }
    });
    let mut rest = by_model.into_iter();
    let (first_model, first) = match rest.next() {
        Some((m, v)) => (Some(m), Some(v)),
        None => (None, None),
    };
    let key = frozen.node_key.as_deref().expect("checked");
    let id = upsert(
        user,
        NodeFields {
            key,
            label: frozen.label.as_deref(),
            metadata: frozen.metadata,
            atp: frozen.atp,
            embedding: first,
            model: first_model.as_deref().unwrap_or(model),
            node_type: frozen.node_type.as_deref(),
        },
    );
    for (m, v) in rest {
        Spi::connect_mut(|_| write_embedding(id, user, &m, v));
    }
    for e in &frozen.edges.outgoing {
        link_keys(user, key, &e.to_key, &e.relationship, e.weight);
    }
    if !frozen.stream.is_empty() {
        Spi::connect_mut(|client| {
            client
                .update(
                    FREEZE_STREAM,
                    None,
                    &[
                        id.into(),
                        user.into(),
                        JsonB(stream_json.unwrap_or_default()).into(),
                    ],
                )
                .unwrap_or_else(|e| spi_error(e));
        });
    }
    id
}

/// The 16 bytes of a textual uuid.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

// ---- full-text search ------------------------------------------------------------------------

const SEARCH: &str = concat!(
    "SELECT n.id, n.node_key, n.label,
            ts_rank_cd(fractality.node_search(n.label, n.metadata), q)::float8 AS rank, ",
    energy!("n"),
    " FROM fractality.nodes n, websearch_to_tsquery('english', $1) q
      WHERE fractality.node_search(n.label, n.metadata) @@ q
        AND (fractality.current_user_id() IS NULL OR n.user_id = fractality.current_user_id())
      ORDER BY rank DESC, n.node_key, n.id
      LIMIT $2"
);

type SearchRow = (Uuid, String, Option<String>, f64, f64);

/// Full-text search over the nodes' labels and descriptions (`metadata->>'description'`), with
/// web-search syntax ("quoted phrases", or, -not), through the GIN index on
/// `fractality.node_search(label, metadata)`; the `k` best by ts_rank_cd. Searches the session's
/// tenant when fractality.user_id is set, otherwise every node the caller may see.
#[pg_extern(stable, strict, parallel_unsafe)]
fn search_nodes(
    query: &str,
    k: default!(i32, 20),
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(label, Option<String>),
        name!(rank, f64),
        name!(atp, f64),
    ),
> {
    if k < 1 {
        FractalityError::invalid("k", k, "Ask for at least 1 result.").report();
    }
    let rows: Vec<SearchRow> = Spi::connect(|client| {
        client
            .select(SEARCH, None, &[query.into(), (k as i64).into()])
            .unwrap_or_else(|e| spi_error(e))
            .map(|r| {
                (
                    r.get::<Uuid>(1).unwrap().unwrap(),
                    r.get::<String>(2).unwrap().unwrap(),
                    r.get::<String>(3).unwrap(),
                    r.get::<f64>(4).unwrap().unwrap(),
                    r.get::<f64>(5).unwrap().unwrap(),
                )
            })
            .collect()
    });
    TableIterator::new(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn graph(edges: &[(u32, u32, f64)]) -> impl FnMut(&[u32]) -> Vec<(u32, u32, f64)> + '_ {
        move |frontier: &[u32]| {
            edges
                .iter()
                .filter(|e| frontier.contains(&e.0))
                .copied()
                .collect()
        }
    }

    #[test]
    fn bfs_visits_each_node_once_at_its_smallest_depth() {
        // 1 -> 2 -> 3 -> 1 (cycle), 1 -> 3 directly, 3 -> 4
        let edges = [
            (1, 2, 0.5),
            (2, 3, 1.0),
            (3, 1, 1.0),
            (1, 3, 0.25),
            (3, 4, 0.5),
        ];
        let v = breadth_first(1u32, 5, graph(&edges));
        let got: Vec<(u32, usize)> = v.iter().map(|x| (x.node, x.depth)).collect();
        assert_eq!(got, vec![(1, 0), (2, 1), (3, 1), (4, 2)]);
        assert_relative_eq!(v[2].weight, 0.25);
        assert_eq!(path_of(&v, 3), vec![1, 3, 4]);
        assert_relative_eq!(v[3].weight, 0.125);
    }

    #[test]
    fn bfs_prefers_the_strongest_shortest_path_and_stops_at_the_depth() {
        // two ways to 4 at depth 2: via 2 (0.9 * 0.9) and via 3 (0.5 * 1.0)
        let edges = [
            (1, 3, 0.5),
            (1, 2, 0.9),
            (3, 4, 1.0),
            (2, 4, 0.9),
            (4, 5, 1.0),
        ];
        let v = breadth_first(1u32, 2, graph(&edges));
        let four = v.iter().position(|x| x.node == 4).unwrap();
        assert_eq!(path_of(&v, four), vec![1, 2, 4]);
        assert_relative_eq!(v[four].weight, 0.81, epsilon = 1e-12);
        assert!(
            v.iter().all(|x| x.node != 5),
            "depth 3 is beyond max_depth 2"
        );
        assert_eq!(breadth_first(1u32, 0, graph(&edges)).len(), 1);
        // within a depth: strongest first
        assert_eq!(v[1].node, 2);
    }

    #[test]
    fn bfs_same_result_whatever_order_edges_come_in() {
        let edges = [(1, 2, 0.5), (1, 3, 0.5), (2, 4, 0.5), (3, 4, 0.5)];
        let mut reversed = edges;
        reversed.reverse();
        let a = breadth_first(1u32, 3, graph(&edges));
        let b = breadth_first(1u32, 3, graph(&reversed));
        assert_eq!(a, b);
        let four = a.iter().position(|x| x.node == 4).unwrap();
        assert_eq!(
            path_of(&a, four),
            vec![1, 2, 4],
            "ties go to the smaller parent"
        );
    }

    #[test]
    fn edge_cost_is_the_inverse_energy_product() {
        assert_relative_eq!(edge_cost(0.5, 0.5).unwrap(), 4.0);
        assert_relative_eq!(edge_cost(1.0, 1.0).unwrap(), 1.0);
        assert_eq!(edge_cost(0.0, 1.0), None);
    }

    fn energy_graph<'a>(
        edges: &'a [(u32, u32)],
        atp: &'a HashMap<u32, f64>,
        calls: &'a RefCell<usize>,
    ) -> impl FnMut(&[u32]) -> Vec<(u32, u32, f64)> + 'a {
        move |batch: &[u32]| {
            *calls.borrow_mut() += 1;
            edges
                .iter()
                .filter(|e| batch.contains(&e.0))
                .map(|&(a, b)| (a, b, atp[&b]))
                .collect()
        }
    }

    #[test]
    fn dijkstra_takes_the_energetic_detour() {
        // 1 -> 2 -> 4 through a weak node (0.1), or 1 -> 3 -> 5 -> 4 through strong ones
        let atp = HashMap::from([(1, 1.0), (2, 0.1), (3, 1.0), (4, 1.0), (5, 1.0)]);
        let edges = [(1, 2), (2, 4), (1, 3), (3, 5), (5, 4)];
        let calls = RefCell::new(0);
        let p = cheapest_path(1u32, 1.0, 4, None, 128, energy_graph(&edges, &atp, &calls)).unwrap();
        let nodes: Vec<u32> = p.iter().map(|x| x.0).collect();
        assert_eq!(nodes, vec![1, 3, 5, 4]);
        assert_relative_eq!(p[3].1, 3.0);
        // the direct way costs 10 + 10 = 20
        let p2 = cheapest_path(1u32, 1.0, 2, None, 1, energy_graph(&edges, &atp, &calls)).unwrap();
        assert_relative_eq!(p2[1].1, 10.0);
        // a budget below 3 finds nothing
        assert!(cheapest_path(
            1u32,
            1.0,
            4,
            Some(2.5),
            8,
            energy_graph(&edges, &atp, &calls)
        )
        .is_none());
        // unreachable (edges are directed)
        assert!(cheapest_path(4u32, 1.0, 1, None, 8, energy_graph(&edges, &atp, &calls)).is_none());
        // from == to: one step of cost 0
        assert_eq!(
            cheapest_path(3u32, 1.0, 3, None, 8, energy_graph(&edges, &atp, &calls)).unwrap(),
            vec![(3, 0.0)]
        );
    }

    #[test]
    fn dijkstra_matches_exhaustive_search_and_batches_its_fetches() {
        // a deterministic pseudo-random graph of 200 nodes, 4 edges each
        let n = 200u32;
        let mut s = 12345u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let atp: HashMap<u32, f64> = (0..n)
            .map(|i| (i, 0.05 + (next() % 95) as f64 / 100.0))
            .collect();
        let edges: Vec<(u32, u32)> = (0..n)
            .flat_map(|i| (0..4).map(move |k| (i, k)))
            .map(|(i, _)| (i, next() % n))
            .filter(|(a, b)| a != b)
            .collect();
        // Bellman-Ford as the reference
        let mut dist = vec![f64::INFINITY; n as usize];
        dist[0] = 0.0;
        for _ in 0..n {
            for &(a, b) in &edges {
                let c = dist[a as usize] + edge_cost(atp[&a], atp[&b]).unwrap();
                if c < dist[b as usize] {
                    dist[b as usize] = c;
                }
            }
        }
        let calls = RefCell::new(0);
        for target in [1u32, 57, 133, 199] {
            let got = cheapest_path(
                0u32,
                atp[&0],
                target,
                None,
                64,
                energy_graph(&edges, &atp, &calls),
            );
            match got {
                Some(p) => {
                    assert_relative_eq!(p.last().unwrap().1, dist[target as usize], epsilon = 1e-9);
                    // costs along the path add up edge by edge
                    for w in p.windows(2) {
                        let c = edge_cost(atp[&w[0].0], atp[&w[1].0]).unwrap();
                        assert_relative_eq!(w[1].1 - w[0].1, c, epsilon = 1e-9);
                    }
                }
                None => assert!(dist[target as usize].is_infinite()),
            }
        }
        assert!(
            *calls.borrow() < 4 * 20,
            "{} fetches for 4 searches",
            calls.borrow()
        );
    }

    #[test]
    fn validation_names_the_bad_value() {
        assert_eq!(
            check_weight(1.5).unwrap_err().to_string(),
            "invalid value for weight: 1.5"
        );
        assert_eq!(
            check_weight(f64::NAN).unwrap_err().to_string(),
            "invalid value for weight: NaN"
        );
        assert!(check_weight(-1.0).is_ok());
        assert_eq!(
            check_depth(-1).unwrap_err().to_string(),
            "invalid value for max_depth: -1"
        );
        assert!(check_depth(101).is_err());
        assert_eq!(check_depth(5), Ok(5));
        assert!(check_atp(1.01).is_err());
        assert!(check_relationship("").is_err());
        assert!(check_key(&"x".repeat(256)).is_err());
    }

    #[test]
    fn frozen_documents_parse_and_bad_ones_are_refused() {
        let f = parse_frozen(serde_json::json!({
            "node_key": "a", "atp": 0.5, "embedding": [1.0, 2.0],
            "edges": {"outgoing": [{"to_key": "b", "type": "child", "weight": 0.5}], "incoming": []},
            "stream": [{"time": "2026-01-01T00:00:00Z", "atp_level": 0.3}]
        }))
        .unwrap();
        assert_eq!(f.node_key.as_deref(), Some("a"));
        assert_eq!(f.edges.outgoing[0].to_key, "b");
        assert_eq!(f.stream.len(), 1);
        assert!(parse_frozen(serde_json::json!({"label": "no key"})).is_err());
        assert!(parse_frozen(serde_json::json!({
            "node_key": "a", "stream": [{"time": "2026-01-01", "atp_level": 2.0}]
        }))
        .is_err());
        assert!(parse_frozen(serde_json::json!({
            "node_key": "a", "edges": {"outgoing": [{"to_key": "b", "weight": -3}]}
        }))
        .is_err());
        assert_eq!(
            parse_uuid("a11ce000-0000-4000-8000-000000000001").unwrap()[0],
            0xa1
        );
        assert!(parse_uuid("nope").is_none());
    }
}
