//! The graph's queries: the one part of `graph` that knows tables and columns. Each function runs
//! one query of `sql/queries/` (`graph_*.sql`, `thaw.sql`, `upsert_embedding*.sql`) through
//! [`crate::spi`], as the caller (row-level security holds); SPI must be connected
//! ([`crate::spi::connect`]). Readers read with the calling statement's snapshot; writers see
//! their own earlier writes.

use std::collections::HashMap;

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::DatumWithOid;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};

use crate::errors::{node_not_found, FractalityError};
use crate::spi::{self, query, Query};
use crate::vector::Vector;

const NODE_ID: Query<'static> = query!("graph_node_id", [UUIDOID, TEXTOID]);
const LINK_ENDS: Query<'static> = query!("graph_link_ends", [UUIDOID, TEXTOID, TEXTOID]);
/// A template: `{{live}}` is [`LIVE`], or nothing on a schema older than 0.5.0.
const UPSERT_NODE: &str = include_str!("../../sql/queries/graph_upsert_node.sql");
const LIVE: &str = " WHERE n.expires_at IS NULL OR n.expires_at > now()";
const FORGET_EXPIRED: Query<'static> = query!("graph_forget_expired", [UUIDOID, TEXTOID]);
const UPSERT_EMBEDDING: &str = include_str!("../../sql/queries/upsert_embedding.sql");
const UPSERT_EMBEDDING_0_4: &str = include_str!("../../sql/queries/upsert_embedding_0_4.sql");
const UPSERT_EDGE: Query<'static> = query!(
    "graph_upsert_edge",
    [UUIDOID, UUIDOID, UUIDOID, TEXTOID, FLOAT8OID, JSONBOID]
);
const UNLINK: Query<'static> = query!("graph_unlink", [UUIDOID, UUIDOID, TEXTOID]);
const SET_ENERGY: Query<'static> = query!("graph_set_energy", [UUIDOID, UUIDOID, JSONBOID]);
const SET_EXPIRY: Query<'static> = query!("graph_set_expiry", [UUIDOID, UUIDOID, TEXTOID]);
const ENERGY_NOW: Query<'static> = query!("graph_energy_now", [FLOAT8OID, TEXTOID]);
const CHILDREN: Query<'static> = query!("graph_children", [UUIDOID, TEXTOID, INT8OID]);
const PARENTS: Query<'static> = query!("graph_parents", [UUIDOID, TEXTOID, INT8OID]);
const LEVEL_EDGES: Query<'static> = query!("graph_level_edges", [UUIDARRAYOID, TEXTOID, INT8OID]);
const EDGES_AHEAD: Query<'static> = query!(
    "graph_edges_ahead",
    [UUIDARRAYOID, TEXTOID, INT4OID, INT8OID]
);
const NODE_KEYS: Query<'static> = query!("graph_node_keys", [UUIDARRAYOID]);
const PATH_ENDS: Query<'static> = query!("graph_path_ends", [UUIDARRAYOID]);
const PATH_EDGES: Query<'static> = query!("graph_path_edges", [UUIDARRAYOID, INT8OID]);
const THAW: Query<'static> = query!("thaw", [UUIDOID, TEXTOID, INT8OID, TEXTOID]).per_tenant();
const FREEZE_STREAM: Query<'static> = query!("graph_freeze_stream", [UUIDOID, UUIDOID, JSONBOID]);
const SEARCH: Query<'static> = query!("graph_search", [TEXTOID, INT8OID]);

// ---- nodes -----------------------------------------------------------------------------------

/// The id of `key` in `user`'s graph, or P0002, unlocked (the ends of an edge to write:
/// [`link_ends`]).
pub fn node_id(user: Uuid, key: &str) -> Result<Uuid, FractalityError> {
    spi::one::<Uuid>(&NODE_ID, &[user.into(), key.into()], true)?
        .ok_or_else(|| node_not_found(format!("'{key}'")))
}

/// The ids of `from` and `to` (two keys) in `user`'s graph, locked until the transaction ends
/// (FOR KEY SHARE, in id order, which needs UPDATE on nodes): the ends of an edge about to be
/// written. P0002 naming the first key missing.
pub fn link_ends(user: Uuid, from: &str, to: &str) -> Result<(Uuid, Uuid), FractalityError> {
    let found: HashMap<String, Uuid> = spi::some_rows(
        &LINK_ENDS,
        &[user.into(), from.into(), to.into()],
        false,
        |r| Some((r.get::<String>(2)?, r.get::<Uuid>(1)?)),
    )?;
    let id = |key: &str| {
        found
            .get(key)
            .copied()
            .ok_or_else(|| node_not_found(format!("'{key}'")))
    };
    Ok((id(from)?, id(to)?))
}

/// Inserts or updates `user`'s node `key` (`upsert_node`'s fields but the embedding: a `None`
/// keeps what is stored); returns its id. A node that has expired (a memory past its ttl) is
/// deleted, as run_maintenance would delete it, and written anew, under a new id.
pub fn upsert_node(
    user: Uuid,
    key: &str,
    label: Option<&str>,
    node_type: Option<&str>,
    metadata: Option<serde_json::Value>,
    atp: Option<f64>,
    schema_is_current: bool,
) -> Result<Uuid, FractalityError> {
    static CURRENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static OLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = if schema_is_current {
        CURRENT.get_or_init(|| UPSERT_NODE.replace("{{live}}", LIVE))
    } else {
        OLDER.get_or_init(|| UPSERT_NODE.replace("{{live}}", ""))
    };
    use pgrx::pg_sys::{FLOAT8OID, JSONBOID, TEXTOID, UUIDOID};
    let q = Query {
        name: "graph_upsert_node",
        text,
        types: &[UUIDOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, FLOAT8OID],
        per_tenant: false,
    };
    let args = [
        user.into(),
        key.into(),
        label.into(),
        node_type.into(),
        metadata.map(JsonB).into(),
        atp.into(),
    ];
    if let Some(id) = spi::one::<Uuid>(&q, &args, false)? {
        return Ok(id);
    }
    // the node has expired: gone, then written anew
    spi::run(&FORGET_EXPIRED, &[user.into(), key.into()])?;
    spi::returned_id(&q, &args)
}

/// Inserts or replaces node `id`'s embedding of `model` (checked by the caller); a new one
/// `staged` outside the model's HNSW index (remember_many's), or in it.
pub fn write_embedding(
    id: Uuid,
    user: Uuid,
    model: &str,
    v: Vector<'_>,
    staged: bool,
) -> Result<(), FractalityError> {
    let emb: DatumWithOid = v.into();
    spi::run(
        &Query {
            name: "upsert_embedding",
            text: UPSERT_EMBEDDING,
            types: &[
                pg_sys::UUIDOID,
                pg_sys::UUIDOID,
                emb.oid(),
                pg_sys::TEXTOID,
                pg_sys::BOOLOID,
            ],
            per_tenant: false,
        },
        &[id.into(), user.into(), emb, model.into(), staged.into()],
    )?;
    Ok(())
}

/// Node `id`'s embedding as a 0.4.0 schema (one model, no `model` column) stores it.
pub fn write_embedding_0_4(id: Uuid, user: Uuid, v: Vector<'_>) -> Result<(), FractalityError> {
    let emb: DatumWithOid = v.into();
    spi::run(
        &Query {
            name: "upsert_embedding_0_4",
            text: UPSERT_EMBEDDING_0_4,
            types: &[pg_sys::UUIDOID, pg_sys::UUIDOID, emb.oid()],
            per_tenant: false,
        },
        &[id.into(), user.into(), emb],
    )?;
    Ok(())
}

// ---- edges -----------------------------------------------------------------------------------

/// Inserts the edge `from` -> `to` of type `rel`, or gives it the new weight; returns its id.
pub fn upsert_edge(
    user: Uuid,
    from: Uuid,
    to: Uuid,
    rel: &str,
    weight: f64,
    metadata: Option<serde_json::Value>,
) -> Result<Uuid, FractalityError> {
    spi::returned_id(
        &UPSERT_EDGE,
        &[
            user.into(),
            from.into(),
            to.into(),
            rel.into(),
            weight.into(),
            metadata.map(JsonB).into(),
        ],
    )
}

/// `energy` merged into node `id`'s energy object (freeze).
pub fn set_energy(id: Uuid, user: Uuid, energy: serde_json::Value) -> Result<(), FractalityError> {
    spi::run(&SET_ENERGY, &[id.into(), user.into(), JsonB(energy).into()])?;
    Ok(())
}

/// The energy `atp` of a thawed node as of `atp_at` (a time as text), decayed to now (freeze).
pub fn energy_now(atp: f64, atp_at: &str) -> Result<f64, FractalityError> {
    spi::one::<f64>(&ENERGY_NOW, &[atp.into(), atp_at.into()], true)?
        .ok_or_else(|| FractalityError::invalid("atp_at", "NULL", "atp_at is a time."))
}

/// Node `id` expires at `at`, a time as text (freeze): 22007 when it is no time, 22023 when it
/// is not finite.
pub fn set_expiry(id: Uuid, user: Uuid, at: &str) -> Result<(), FractalityError> {
    // the node was just written: no row means the time is not finite
    if spi::run(&SET_EXPIRY, &[id.into(), user.into(), at.into()])? == 0 {
        return Err(FractalityError::invalid(
            "expires_at",
            at,
            "A node expires at a finite time, e.g. \"2027-01-01 00:00:00+00\", or not at all (no expires_at).",
        ));
    }
    Ok(())
}

/// Removes the edge `from` -> `to` of type `rel`; true when there was one.
pub fn delete_edge(from: Uuid, to: Uuid, rel: &str) -> Result<bool, FractalityError> {
    Ok(spi::run(&UNLINK, &[from.into(), to.into(), rel.into()])? > 0)
}

/// A neighbour: id, key, label, edge weight, current energy.
pub type Neighbour = (Uuid, String, Option<String>, f64, f64);

/// A node found: id, key, label, a number (an edge weight, a rank), current energy.
fn node_row(r: &spi::Row) -> Option<(Uuid, String, Option<String>, f64, f64)> {
    Some((
        r.get::<Uuid>(1)?,
        r.get::<String>(2)?,
        r.get::<String>(3),
        r.get::<f64>(4)?,
        r.get::<f64>(5)?,
    ))
}

/// The most rows (1 000 000) and bytes of keys and labels (1 GiB, as `replay_batch`)
/// [`neighbours`] holds: the rows are held whole before they are returned.
const NEIGHBOUR_ROWS: i64 = 1_000_000;
const NEIGHBOUR_BYTES: usize = 1 << 30;

/// The nodes `id` links to (`outgoing`) or that link to it with type `rel`, strongest first;
/// 54000 past [`NEIGHBOUR_ROWS`] (the query reads one more) or [`NEIGHBOUR_BYTES`] (copied no
/// further).
pub fn neighbours(id: Uuid, rel: &str, outgoing: bool) -> Result<Vec<Neighbour>, FractalityError> {
    let q = if outgoing { &CHILDREN } else { &PARENTS };
    let mut held = 0usize;
    let args = [id.into(), rel.into(), (NEIGHBOUR_ROWS + 1).into()];
    let rows: Vec<Neighbour> = spi::some_rows(q, &args, true, |r| {
        if held > NEIGHBOUR_BYTES {
            return None;
        }
        let row = node_row(r)?;
        held += 96 + row.1.len() + row.2.as_ref().map_or(0, String::len);
        Some(row)
    })?;
    if held > NEIGHBOUR_BYTES || rows.len() as i64 > NEIGHBOUR_ROWS {
        return Err(FractalityError::Limit {
            what: format!(
                "the {} of node {id} ({rel}): more than {NEIGHBOUR_ROWS} rows or {NEIGHBOUR_BYTES} bytes of keys and labels",
                if outgoing { "children" } else { "parents" }
            ),
            hint: "Read fractality.edges joined to fractality.nodes in SQL, which streams its rows: children and parents hold theirs whole before they return them.",
        });
    }
    Ok(rows)
}

// ---- traversal and paths ---------------------------------------------------------------------

/// An edge (from, to, weight) or (from, to, energy of to).
fn edge_row(r: &spi::Row) -> Option<(Uuid, Uuid, f64)> {
    Some((r.get::<Uuid>(1)?, r.get::<Uuid>(2)?, r.get::<f64>(3)?))
}

/// The edges of type `rel` leaving `frontier` (sent sorted, in index order), with their weights.
pub fn level_edges(
    frontier: Vec<Uuid>,
    rel: &str,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, f64)>, FractalityError> {
    spi::some_rows(
        &LEVEL_EDGES,
        &[UuidArray(frontier).into(), rel.into(), limit.into()],
        true,
        edge_row,
    )
}

/// The edges of type `rel` within `steps` steps of `frontier`, each with the step it is reached
/// at (1 for the frontier's own), at most `budget` rows: see `graph_edges_ahead.sql`.
pub fn edges_ahead(
    frontier: Vec<Uuid>,
    rel: &str,
    steps: i32,
    budget: i64,
) -> Result<Vec<(Uuid, Uuid, f64, i32)>, FractalityError> {
    let args = [
        UuidArray(frontier).into(),
        rel.into(),
        steps.into(),
        budget.into(),
    ];
    spi::some_rows(&EDGES_AHEAD, &args, true, |r| {
        let (from, to, weight) = edge_row(r)?;
        Some((from, to, weight, r.get::<i32>(4)?))
    })
}

/// The keys of the nodes `ids` the caller can see.
pub fn node_keys(ids: Vec<Uuid>) -> Result<HashMap<Uuid, String>, FractalityError> {
    spi::some_rows(&NODE_KEYS, &[UuidArray(ids).into()], true, spi::Row::pair)
}

/// The current energy of the nodes `ids` the caller can see.
pub fn energies(ids: Vec<Uuid>) -> Result<HashMap<Uuid, f64>, FractalityError> {
    spi::some_rows(&PATH_ENDS, &[ids.into()], true, spi::Row::pair)
}

/// The edges (of any type) leaving `batch`, with the current energy of their targets.
pub fn path_edges(batch: Vec<Uuid>, limit: i64) -> Result<Vec<(Uuid, Uuid, f64)>, FractalityError> {
    spi::some_rows(&PATH_EDGES, &[batch.into(), limit.into()], true, edge_row)
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

// ---- thaw, freeze, search --------------------------------------------------------------------

/// `thaw.sql`: node `key` of `user` as one document, None when there is no such node.
pub fn thaw(
    user: Uuid,
    key: &str,
    stream_points: i64,
    model: &str,
) -> Result<Option<crate::jsonb::JsonbText>, FractalityError> {
    spi::one::<crate::jsonb::JsonbText>(
        &THAW,
        &[user.into(), key.into(), stream_points.into(), model.into()],
        true,
    )
}

/// Appends the stream points `stream` (a thawed node's "stream") to node `id`, but for those at
/// a time it has a point at already. 22023 naming the first point at a time PostgreSQL reads as
/// infinite (parse_frozen knows the plain spellings only).
pub fn freeze_stream(
    id: Uuid,
    user: Uuid,
    stream: serde_json::Value,
) -> Result<(), FractalityError> {
    // planned (and kept) under this setting: see Pinned::no_seqscan
    let _plan = crate::search::Pinned::no_seqscan();
    let infinite: Vec<(i64, String)> = spi::some_rows(
        &FREEZE_STREAM,
        &[id.into(), user.into(), JsonB(stream).into()],
        false,
        |r| Some((r.get::<i64>(1)?, r.get::<String>(2)?)),
    )?;
    match infinite.into_iter().next() {
        Some((i, time)) => Err(crate::graph::input::infinite_point(&time, i as usize)),
        None => Ok(()),
    }
}

/// A match of `search_nodes`: id, key, label, rank, current energy.
pub type SearchRow = (Uuid, String, Option<String>, f64, f64);

/// The `k` best full-text matches of `query`.
pub fn search(query: &str, k: i64) -> Result<Vec<SearchRow>, FractalityError> {
    // node_text came with 0.5.0's schema: before the update, 55000, not a missing relation
    if !crate::models::schema_is_current() {
        return Err(FractalityError::SchemaBehind);
    }
    spi::some_rows(&SEARCH, &[query.into(), k.into()], true, node_row)
}
