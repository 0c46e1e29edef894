//! The graph API: nodes by key (`upsert_node`), edges (`link`, `unlink`), neighbours (`children`,
//! `parents`), breadth-first `traverse`, the cheapest `consciousness_path`, `thaw`/`freeze` of a
//! node with its edges, embedding and stream, and full-text `search_nodes`.
//!
//! The levels: [`input`] checks what callers pass and parses the frozen document, [`walk`] holds
//! the graph algorithms ([`breadth_first`], [`cheapest_path`]) as plain Rust over a `fetch`
//! callback, tested without a server, [`store`] runs the queries (`sql/queries/graph_*.sql`),
//! one level (or one batch) of edges per query, on the covering index `edges_from_type_weight`,
//! and [`reach`] feeds the algorithms from the store. This file is the `#[pg_extern]` layer. Every function runs as the caller, so row-level
//! security holds: a tenant walks, links and finds only its own nodes. A node's energy is read
//! as `fractality.current_atp(atp, atp_at)`, its current (lazily decayed) energy.

pub mod input;
pub mod reach;
pub mod store;
pub mod walk;

use pgrx::prelude::*;
use pgrx::Uuid;

use crate::errors::{finite, node_not_found, pg_float, required, FractalityError, OrReport};
use crate::spi;
use crate::vector::Vector;

pub use input::{
    check_atp, check_depth, check_key, check_key_named, check_relationship, check_weight,
    parse_frozen, Frozen, FrozenEdge, FrozenEdges, FrozenPoint, NodeFields, MAX_DEPTH,
};
pub use store::{write_embedding, UuidArray};
pub use walk::{breadth_first, cheapest_path, edge_cost, path_of, Ahead, Visit};

use input::{frozen_has, parse_uuid};

// ---- nodes -----------------------------------------------------------------------------------

/// Inserts or updates `user`'s node `fields.key`; returns its id.
pub fn upsert(user: Uuid, fields: NodeFields<'_>) -> Result<Uuid, FractalityError> {
    fields.validate()?;
    let NodeFields {
        key,
        label,
        metadata,
        atp,
        embedding,
        model,
        node_type,
    } = fields;
    spi::connect(|| {
        // the model and the dimension before anything is written (a 0.4.0 schema not yet
        // updated takes the default model's 384-d embeddings as it did)
        let current = crate::models::schema_is_current();
        match &embedding {
            Some(v) if current || model != crate::models::DEFAULT => {
                crate::models::Model::lookup(model)?.check(v)?;
            }
            // no embedding: a model named all the same must exist (22023 naming it), as every
            // function taking one checks; the default, always registered, costs no query
            None if model != crate::models::DEFAULT => {
                crate::models::Model::lookup(model)?;
            }
            _ => {}
        }
        let id = store::upsert_node(user, key, label, node_type, metadata, atp, current)?;
        if let Some(v) = embedding {
            if current {
                store::write_embedding(id, user, model, v, false)?;
            } else {
                store::write_embedding_0_4(id, user, v)?;
            }
        }
        Ok(id)
    })
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
    let user = crate::tenant::required().unwrap_or_report();
    upsert_args(
        user, node_key, label, metadata, atp, embedding, r#type, &model,
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
    upsert_args(
        user_id, node_key, label, metadata, atp, embedding, r#type, &model,
    )
}

/// `upsert_node`'s and `upsert_node_for`'s node of `user`, from the functions' arguments.
#[allow(clippy::too_many_arguments)] // the SQL functions' parameters
fn upsert_args(
    user: Uuid,
    key: &str,
    label: Option<&str>,
    metadata: Option<crate::jsonb::JsonValue>,
    atp: Option<f64>,
    embedding: Option<Vector<'_>>,
    node_type: Option<&str>,
    model: &str,
) -> Uuid {
    let fields = NodeFields {
        key,
        label,
        metadata: metadata.map(|j| j.0),
        atp,
        embedding,
        model,
        node_type,
    };
    upsert(user, fields).unwrap_or_report()
}

// ---- edges -----------------------------------------------------------------------------------

/// Links `user`'s nodes `from_key` -> `to_key`; returns the edge id.
pub fn link_keys(
    user: Uuid,
    from_key: &str,
    to_key: &str,
    rel: &str,
    weight: f64,
    metadata: Option<serde_json::Value>,
) -> Result<Uuid, FractalityError> {
    check_key_named("from_key", from_key)?;
    check_key_named("to_key", to_key)?;
    check_relationship(rel)?;
    check_weight(weight)?;
    if from_key == to_key {
        return Err(FractalityError::invalid(
            "link",
            format!("'{from_key}' to itself"),
            "A node cannot be its own child, parent or neighbour: link two different nodes.",
        ));
    }
    spi::connect(|| {
        let (from, to) = store::link_ends(user, from_key, to_key)?;
        store::upsert_edge(user, from, to, rel, weight, metadata)
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
    let user = crate::tenant::required().unwrap_or_report();
    link_keys(user, from_key, to_key, r#type, weight, None).unwrap_or_report()
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
    check_key_named("from_key", from_key).unwrap_or_report();
    check_key_named("to_key", to_key).unwrap_or_report();
    check_relationship(r#type).unwrap_or_report();
    let user = crate::tenant::required().unwrap_or_report();
    spi::connect(|| {
        crate::errors::writer(c"unlink");
        // no lock: an edge of a node deleted meanwhile goes with it
        let (from, to) = (
            store::node_id(user, from_key)?,
            store::node_id(user, to_key)?,
        );
        store::delete_edge(from, to, r#type)
    })
    .unwrap_or_report()
}

/// The neighbours of the session tenant's node `node_key` (see [`store::neighbours`]).
fn neighbours(
    node_key: &str,
    rel: &str,
    outgoing: bool,
) -> Result<Vec<store::Neighbour>, FractalityError> {
    check_key(node_key)?;
    check_relationship(rel)?;
    let user = crate::tenant::required()?;
    let _jit = crate::search::Pinned::no_jit();
    spi::connect(|| store::neighbours(store::node_id(user, node_key)?, rel, outgoing))
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
    TableIterator::new(neighbours(node_key, relationship, true).unwrap_or_report())
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
    TableIterator::new(neighbours(node_key, relationship, false).unwrap_or_report())
}

// ---- traversal and paths ---------------------------------------------------------------------

/// Breadth first from `root` along edges of one relationship type, to `max_depth` (0 to 100):
/// every reachable node once, at its smallest depth, with its strongest path there (the highest
/// product of edge weights, weights of either sign) and that product. One index-only query per
/// level, or one for the levels left while the frontier is small; runs as the caller (row-level
/// security holds). P0002 when the root does not exist or is not visible.
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
    let trim = crate::heap::Trim;
    let depth = check_depth(max_depth).unwrap_or_report();
    check_relationship(relationship).unwrap_or_report();
    let _jit = crate::search::Pinned::no_jit();
    TableIterator::new(
        trim.rows(spi::connect(|| reach::walk_from(root, depth, relationship)).unwrap_or_report()),
    )
}

/// The cheapest directed path from `from` to `to`, an edge between nodes of energy a and b
/// costing 1 / (a * b) (Dijkstra, natively; nodes without energy are impassable). One row per
/// step with the cumulative cost; empty when there is no path (costing at most `max_cost`).
#[pg_extern(stable, parallel_unsafe)]
fn consciousness_path(
    from: Option<Uuid>,
    to: Option<Uuid>,
    max_cost: default!(Option<f64>, "NULL"),
) -> TableIterator<'static, (name!(step, i32), name!(node_id, Uuid), name!(cost, f64))> {
    let _trim = crate::heap::Trim;
    let (from, to) = (required("from", from), required("to", to));
    if let Some(m) = max_cost {
        let m = finite("max_cost", m).unwrap_or_report();
        if m < 0.0 {
            FractalityError::invalid("max_cost", pg_float(m), "max_cost is >= 0 (or NULL).")
                .report();
        }
    }
    let path = spi::connect(|| reach::path_between(from, to, max_cost)).unwrap_or_report();
    let steps = path.unwrap_or_default().into_iter().enumerate();
    TableIterator::new(steps.map(|(i, (n, c))| (i as i32, n, c)))
}

// ---- thaw and freeze -------------------------------------------------------------------------

/// The node `node_key` of the session's tenant as one JSON document: its fields and metadata,
/// its energy, its expiry (`expires_at`), its embedding of `model` (an array, or null) and every
/// model's (`embeddings`, by model), its outgoing and incoming edges, and its latest
/// `stream_points` stream points (newest first). P0002 when there is no such node.
#[pg_extern(
    stable,
    strict,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION fractality."thaw"(
    "node_key" text, "stream_points" integer DEFAULT 100, "model" text DEFAULT 'default'
) RETURNS jsonb STRICT STABLE PARALLEL UNSAFE
SET extra_float_digits = 3
SET array_nulls = on
LANGUAGE c AS 'MODULE_PATHNAME', 'thaw_wrapper';
"#
)]
fn thaw(
    node_key: &str,
    stream_points: i32,
    fcinfo: pg_sys::FunctionCallInfo,
) -> crate::jsonb::JsonbText {
    let model = unsafe { crate::models::model_arg(fcinfo, 2) }.expect("strict");
    let model = model.as_str();
    check_key(node_key).unwrap_or_report();
    crate::models::check_name(model).unwrap_or_report();
    if stream_points < 0 {
        FractalityError::invalid(
            "stream_points",
            stream_points,
            "Ask for 0 or more stream points.",
        )
        .report();
    }
    let user = crate::tenant::required().unwrap_or_report();
    // the model registered (22023 naming it otherwise), as every function taking one checks
    spi::connect(|| {
        crate::models::Model::lookup(model)?;
        store::thaw(user, node_key, stream_points as i64, model)
    })
    .unwrap_or_report()
    .unwrap_or_else(|| node_not_found(format!("'{node_key}'")).report())
}

/// Writes the parsed document `frozen` (with its `stream` as given) for `freeze`.
fn freeze_node(
    frozen: Frozen,
    stream: Option<serde_json::Value>,
    model: &str,
) -> Result<Uuid, FractalityError> {
    let user = match crate::tenant::current()? {
        Some(user) => user,
        None => match frozen.user_id.as_deref() {
            None => return Err(FractalityError::NoTenant),
            Some(u) => Uuid::from_bytes(parse_uuid(u).ok_or_else(|| {
                FractalityError::invalid(
                    "user_id",
                    u,
                    "A frozen node's user_id is a uuid, as thaw gives it (or set fractality.user_id).",
                )
            })?),
        },
    };
    // every embedding by model, `embedding` taking precedence for its model (the document's
    // `model`, as thaw names it, or else the argument: a document thawed for one model and
    // frozen without naming it filed that model's vector as the default's); all checked first
    let embedding_model = match frozen
        .model
        .as_deref()
        .filter(|_| frozen.embedding.is_some())
    {
        None => model.to_string(),
        Some(own) => {
            crate::models::check_name(own)?;
            if model != crate::models::DEFAULT && model != own {
                return Err(FractalityError::invalid(
                    "model",
                    format!("'{model}' for a document whose embedding is of model '{own}'"),
                    "freeze files the document's embedding under the model it names (thaw names it); leave the model argument out, or pass that one.",
                ));
            }
            own.to_string()
        }
    };
    let mut by_model: Vec<(String, Vector<'static>)> = Vec::new();
    if let Some(v) = frozen.embedding {
        by_model.push((embedding_model, Vector::from_vec(v)?));
    }
    // an entry of `embeddings` that `embedding` overrides is checked all the same (not written)
    let mut overridden: Vec<(String, Vector<'static>)> = Vec::new();
    for (m, v) in frozen.embeddings {
        let v = Vector::from_vec(v)?;
        if frozen_has(&by_model, &m) {
            overridden.push((m, v));
        } else {
            by_model.push((m, v));
        }
    }
    for (_, v) in by_model.iter().chain(&overridden) {
        crate::vector::check_direction("embedding", v.as_slice())?;
    }
    spi::connect(|| {
        if model != crate::models::DEFAULT && !frozen_has(&by_model, model) {
            // a model named without an embedding of it: it must exist all the same (with one,
            // it is looked up below)
            crate::models::Model::lookup(model)?;
        }
        by_model
            .iter()
            .chain(&overridden)
            .try_for_each(|(m, v)| crate::models::Model::lookup(m)?.check(v))
    })?;
    let mut rest = by_model.into_iter();
    let (first_model, first) = match rest.next() {
        Some((m, v)) => (Some(m), Some(v)),
        None => (None, None),
    };
    let key = frozen.node_key.as_deref().expect("checked");
    // the document's energy as of its atp_at, decayed over the time it was kept
    let atp = match (frozen.atp, frozen.atp_at.as_deref()) {
        (Some(atp), Some(at)) => Some(spi::connect(|| store::energy_now(atp, at))?),
        (atp, _) => atp,
    };
    let id = upsert(
        user,
        NodeFields {
            key,
            label: frozen.label.as_deref(),
            metadata: frozen.metadata,
            atp,
            embedding: first,
            model: first_model.as_deref().unwrap_or(model),
            node_type: frozen.node_type.as_deref(),
        },
    )?;
    for (m, v) in rest {
        spi::connect(|| store::write_embedding(id, user, &m, v, false))?;
    }
    if let Some(energy) = frozen.energy {
        spi::connect(|| store::set_energy(id, user, energy))?;
    }
    if let Some(at) = frozen.expires_at.as_deref() {
        spi::connect(|| {
            if !crate::models::schema_is_current() {
                return Err(FractalityError::SchemaBehind);
            }
            store::set_expiry(id, user, at)
        })?;
    }
    // a self-loop: the other node is the one thawed (by id, as thaw gives both; by key in a
    // document without ids), so that a copy under another key gets a loop of its own, not a pair
    // of edges with the original
    // (the ids are uuids, checked by parse_frozen: compared by value, whatever their spelling)
    let uuid = |id: Option<&String>| id.and_then(|v| crate::graph::input::parse_uuid(v));
    let thawed = uuid(frozen.id.as_ref());
    let is_loop = |e: &crate::graph::input::FrozenEdge| match (thawed, uuid(e.node.as_ref())) {
        (Some(a), Some(b)) => a == b,
        _ => e.key == key,
    };
    // the edges out of it and into it (a self-loop is among the outgoing ones), written in the
    // order of their (from, to, type) keys: two freezes of nodes linked both ways write the
    // same edges, and each in its own order (its outgoing first) waited for the other's (40P01)
    type Write = (String, String, bool, crate::graph::input::FrozenEdge);
    let mut edges: Vec<Write> = Vec::new();
    for e in frozen.edges.outgoing {
        let looped = is_loop(&e);
        let to = if looped {
            key.to_string()
        } else {
            e.key.clone()
        };
        edges.push((key.to_string(), to, looped, e));
    }
    for e in frozen.edges.incoming.into_iter().filter(|e| !is_loop(e)) {
        edges.push((e.key.clone(), key.to_string(), false, e));
    }
    edges.sort_by(|a, b| (&a.0, &a.1, &a.3.relationship).cmp(&(&b.0, &b.1, &b.3.relationship)));
    for (from, to, looped, e) in edges {
        if looped {
            // `link` makes none, but the table holds one written otherwise (an application's
            // INSERT, older data), and thaw gives it: written back as it was (its type and
            // weight checked by parse_frozen)
            spi::connect(|| {
                store::upsert_edge(user, id, id, &e.relationship, e.weight, e.metadata)
            })?;
        } else {
            link_keys(user, &from, &to, &e.relationship, e.weight, e.metadata)?;
        }
    }
    if !frozen.stream.is_empty() {
        spi::connect(|| store::freeze_stream(id, user, stream.unwrap_or_default()))?;
    }
    Ok(id)
}

/// Writes a node back from the document `thaw` returns (or one an application built): the node
/// (upserted by key; its `energy` object merged into its own; its `expires_at`, when given), its embeddings (`embedding` as
/// the model the document names, or else as `model`'s, and each of `embeddings` as its model's), its outgoing and incoming edges (by the other
/// node's key, their metadata merged; a self-loop, which `link` does not make, as it was) and its buffered stream points, all in the
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
    let _trim = crate::heap::Trim;
    crate::errors::writer(c"freeze");
    let model = unsafe { crate::models::model_arg(fcinfo, 1) }.expect("strict");
    let stream = node.0.get("stream").cloned();
    let frozen = parse_frozen(node.0).unwrap_or_report();
    freeze_node(frozen, stream, &model).unwrap_or_report()
}

// ---- full-text search ------------------------------------------------------------------------

/// The most results `search_nodes` returns, as `recall`'s k.
const MAX_SEARCH_K: i32 = 1000;

/// Full-text search over the nodes' labels and descriptions (`metadata->>'description'`), with
/// web-search syntax ("quoted phrases", or, -not), through the GIN index of `fractality.node_text`
/// (`fractality.node_search(label, metadata)`, kept by triggers); the `k` best by ts_rank_cd. Searches the session's
/// tenant when fractality.user_id is set, otherwise every node the caller may see. Expired
/// memories (remember's `ttl`) are left out, as `recall` leaves them.
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
    if k > MAX_SEARCH_K {
        // the rows are held in the process's own memory until returned (labels whole)
        FractalityError::invalid("k", k, "Ask for at most 1000 results.").report();
    }
    crate::errors::check_words("query", query).unwrap_or_report();
    // the session's tenant, or every node the caller sees: an application role must name one
    crate::tenant::required_where_restricted(c"node_text").unwrap_or_report();
    TableIterator::new(spi::connect(|| store::search(query, k as i64)).unwrap_or_report())
}
