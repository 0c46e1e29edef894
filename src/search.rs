//! The nearest embeddings of one tenant and one model to a query vector, best first, read as the
//! caller: what find_resonant, recall and remember's duplicate check start from.
//!
//! Three paths, chosen per call (tenant_path.sql):
//! - a tenant with a graph of its own for the model (build_tenant_graphs) is searched through it:
//!   the same query as the next path, planned for the tenant's value, which the graph's
//!   predicate names, and kept per tenant (`spi::Query::per_tenant`, as every query here); no
//!   filtering, no other tenant's rows on the way;
//! - a small tenant is read whole: every embedding's distance to the query (exact), while its
//!   size (counted from its primary-key entries up to `fractality.exact_scan_limit` + 1) allows;
//! - a larger one through the model's HNSW index in the tenant's partition (one partition: the
//!   plan is made for the tenant), with the tenant as a filter that pgvector's iterative scan
//!   keeps from starving the scan.
//!
//! The index paths read in distance order, in batches, until the caller has what it needs; the
//! tenant's staged rows (remember_many's, not in the index yet) are read exactly at the start
//! and merged into that order. Should the index end before the caller has what it needs and
//! before the tenant's rows are all read (pgvector's iterative scan stops silently after
//! `hnsw.max_scan_tuples` tuples, which a small tenant of a crowded partition can reach; and an
//! HNSW graph can leave a row no search reaches, which near-duplicates make likely, in the
//! tenant's own graph as in the shared one), the rest of the tenant is read exactly and the search
//! goes on with it. Short of that end, the index paths are HNSW's approximation: a row the graph
//! does not reach is not returned (recall@20 1.000 on the benchmark's data, docs/BENCHMARKS.md).
//!
//! Either way the distances are pgvector's, computed in full precision where the rows are (only
//! ids and distances come back, never the vectors), so both paths report the same numbers;
//! `order` is what the rows are ordered by (the index's distance as a similarity, in halfvec
//! above 2 000 dimensions), which callers compare with their bounds, less [`TenantScan::margin`].

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::Uuid;

use crate::errors::FractalityError;
use crate::models::Model;
use crate::spi::{self, query, Cursor, Query};
use crate::vector::Vector;

/// Rows fetched from the index at a time, at most (batches start at what the caller asks for
/// and double).
const FETCH: usize = 256;
/// `hnsw.ef_search` when pgvector has not defined it in this session (its default).
const DEFAULT_EF_SEARCH: usize = 40;
/// The most rows one search reads through the index.
pub const MAX_ROWS: i64 = 10_000;

const TENANT_PATH: Query<'static> =
    query!("tenant_path", [UUIDOID, TEXTOID, INT8OID, BOOLOID]).per_tenant();
/// Every embedding of a model that a tenant holds (also resonance_with's pass over a tenant).
pub(crate) const TENANT_VECTORS: Query<'static> =
    query!("tenant_vectors", [UUIDOID, TEXTOID]).per_tenant();
/// With the vector type's OID, known at run time.
const TENANT_EMBEDDINGS: &str = include_str!("../sql/queries/tenant_embeddings.sql");
/// The same for the staged rows alone; with the vector type's OID.
const TENANT_STAGED: &str = include_str!("../sql/queries/tenant_staged.sql");
/// A template (rendered per model).
const TENANT_NEAREST: &str = include_str!("../sql/queries/tenant_nearest.sql");

/// What the search functions run with, set by the call itself and restored when this is dropped:
/// the search path pinned to `pg_catalog, pg_temp` (the queries name fractality's objects and
/// pgvector's in full, and the kept plans stay valid whatever the caller's path)
/// and, for a search ([`Pinned::search`]), the tenant's HNSW index read in distance order:
/// iteratively (the tenant filter must not starve the scan), in strict order (the stop rules rely
/// on it), with room for crowded neighbourhoods, the index order rather than a sort, no JIT (with
/// enable_sort off a sort's estimated cost is huge, which would compile every plan that sorts).
///
/// These were the functions' `SET` clauses. A set-returning function is called once per row it
/// returns (pgrx's are value-per-call), and PostgreSQL applies and restores a function's `SET`
/// clauses around every one of those calls: 0.57 ms of resonance_with's 5.8 for 1 000 rows.
/// Held here, they are set once, while the call's queries run. On an error they are left to the
/// abort of the (sub)transaction, which restores them, as it does a `SET` clause's.
pub struct Pinned {
    level: std::ffi::c_int,
}

impl Pinned {
    /// The search path `pg_catalog, pg_temp` alone: the queries name fractality's objects and
    /// pgvector's ([`crate::vector::qualify`]) in full, so no other schema, not even one where
    /// pgvector was installed and others may create functions, is on it.
    pub fn path() -> Pinned {
        // SAFETY: a new nesting level of settings, popped by Drop (or by the abort of the
        // transaction on an error)
        let level = unsafe { pg_sys::NewGUCNestLevel() };
        set(c"search_path", c"pg_catalog, pg_temp");
        Pinned { level }
    }

    /// The search path and the HNSW settings of a tenant's search.
    pub fn search() -> Pinned {
        let pinned = Pinned::path();
        set(c"hnsw.iterative_scan", c"strict_order");
        set(c"hnsw.ef_search", c"40");
        set(c"hnsw.max_scan_tuples", c"100000");
        set(c"enable_sort", c"off");
        set(c"jit", c"off");
        pinned
    }

    /// No JIT, for a graph walk's kept plans: generic, their estimates follow the statistics of
    /// every tenant's edges, and one node with 300 000 children anywhere made them cost enough
    /// to be compiled on every call (60-110 ms for a walk of 85 nodes that runs in 2).
    pub fn no_jit() -> Pinned {
        Pinned::one(c"jit", c"off")
    }

    /// Bitmap scans off, for a query that reads many rows scattered over as many heap pages
    /// (a tenant's nodes, written among every other tenant's): [`crate::resonance`]'s pass over
    /// a tenant. A bitmap heap scan looks each page up twice in the shared buffer table (its
    /// prefetch and its read) and builds and sorts a bitmap first; an index scan looks each page
    /// up once.
    pub fn index_scans() -> Pinned {
        Pinned::one(c"enable_bitmapscan", c"off")
    }

    /// Sequential scans off, for a kept plan that must probe an index per row whatever the
    /// statistics said when it was made: `freeze`'s stream points, checked against the node's
    /// points, planned when the partition looked empty (relpages 0) took a sequential scan per
    /// point, quadratic once the partition filled (300 000 points: beyond 30 s against 3).
    pub fn no_seqscan() -> Pinned {
        Pinned::one(c"enable_seqscan", c"off")
    }

    /// One setting alone, at a nesting level of its own.
    fn one(name: &std::ffi::CStr, value: &std::ffi::CStr) -> Pinned {
        // SAFETY: as in `path`
        let level = unsafe { pg_sys::NewGUCNestLevel() };
        set(name, value);
        Pinned { level }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // unwinding from an error: the (sub)transaction's abort restores the settings
        if !std::thread::panicking() {
            // SAFETY: the level this guard opened; the settings made since are restored
            unsafe { pg_sys::AtEOXact_GUC(true, self.level) };
        }
    }
}

/// Sets `name` to `value` for the current nesting level of settings, as a `SET` clause does.
fn set(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    // SAFETY: NUL-terminated strings; an invalid value raises an ERROR (none here is)
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// One embedding found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    pub node_id: Uuid,
    /// Cosine similarity of the stored vector to the query, computed natively.
    pub similarity: f64,
    /// The similarity the rows are ordered by (1 - the index's distance on the index path).
    pub order: f64,
}

/// How a tenant was searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Every embedding of the tenant read.
    Exact,
    /// The partition's HNSW index, shared with the other tenants there, filtered by tenant.
    Index,
    /// The tenant's own HNSW index (build_tenant_graphs).
    TenantGraph,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Exact => "exact",
            Path::Index => "index",
            Path::TenantGraph => "tenant_graph",
        }
    }
}

/// A search in progress.
pub struct TenantScan {
    path: Path,
    margin: f64,
    /// The exact path's hits, or the staged rows' on the index path, best first.
    exact: std::iter::Peekable<std::vec::IntoIter<Hit>>,
    cursor: Option<Cursor>,
    /// The size of the next batch.
    batch: usize,
    /// On the shared index's path, what the rest of the tenant is read with should the index end
    /// before it ([`TenantScan::ended_early`]).
    rest: Option<Rest>,
}

/// A search through an HNSW index (the partition's or the tenant's own), for reading the rest of
/// the tenant exactly when the index ends early: pgvector's iterative scan ends silently once it
/// has visited `hnsw.max_scan_tuples` tuples (or used its memory), which a tenant with a small
/// share of a crowded partition can reach before its own rows are all read, and a graph may
/// leave rows that no search reaches.
struct Rest {
    model: Model,
    tenant: Uuid,
    query: Vec<f32>,
    read_only: bool,
    /// The nodes returned so far (index and staged rows).
    returned: std::collections::HashSet<Uuid>,
    /// Rows read: the cursor's and the staged ones, zero vectors included.
    read: usize,
    /// Rows the cursor gave in all.
    fetched: usize,
}

impl TenantScan {
    /// Starts the search of `tenant`'s embeddings of `model` nearest to `query` (of the model's
    /// dimension, checked by the caller). SPI must be connected; the calling function runs with
    /// hnsw.iterative_scan = strict_order and enable_sort = off. `read_only` reads with the
    /// calling statement's snapshot (stable functions); writers pass false to see their own
    /// writes.
    pub fn open(
        model: &Model,
        tenant: Uuid,
        query: &[f32],
        read_only: bool,
        first: usize,
    ) -> Result<TenantScan, FractalityError> {
        // the exact path while rows x dimensions stay within the limit's 384-d rows
        let limit = model.rows_within(crate::gucs::exact_scan_limit());
        // a tenant with a graph of its own is searched through it, whatever its size
        let shape = tenant_path(
            model,
            tenant,
            limit + 1,
            read_only,
            crate::gucs::tenant_graphs(),
        )?;
        let own_graph = shape.own_graph;
        let small = !own_graph && limit > 0 && shape.size.unwrap_or(0) <= limit;
        let arg: DatumWithOid = Vector::from_slice(query)?.into();
        let voi = arg.oid();
        let batch = first.clamp(1, FETCH);
        if small {
            let q = Query {
                name: "tenant_embeddings",
                text: &crate::vector::qualify(TENANT_EMBEDDINGS),
                types: &[pg_sys::UUIDOID, pg_sys::TEXTOID, voi],
                per_tenant: true,
            };
            return Ok(TenantScan {
                path: Path::Exact,
                margin: 0.0,
                exact: exact_hits(&q, tenant, model, arg, read_only)?,
                cursor: None,
                batch,
                rest: None,
            });
        }
        let staged = Query {
            name: "tenant_staged",
            text: &crate::vector::qualify(TENANT_STAGED),
            types: &[pg_sys::UUIDOID, pg_sys::TEXTOID, voi],
            per_tenant: true,
        };
        let (staged, staged_rows) = if shape.staged {
            exact_rows(
                &staged,
                tenant,
                model,
                Vector::from_slice(query)?.into(),
                read_only,
            )?
        } else {
            (Vec::new(), 0)
        };
        let staged = staged.into_iter().peekable();
        let text = crate::vector::qualify(&nearest_sql(model));
        let q = Query {
            name: "tenant_nearest",
            text: &text,
            types: &[pg_sys::UUIDOID, voi, pg_sys::INT8OID],
            per_tenant: true,
        };
        let args = [tenant.into(), arg, MAX_ROWS.into()];
        // planned for the tenant: a graph of its own is used so (its predicate names the tenant),
        // and either graph is reached in the tenant's partition alone
        let cursor = Cursor::open(&q, &args, read_only)?;
        Ok(TenantScan {
            path: if own_graph {
                Path::TenantGraph
            } else {
                Path::Index
            },
            margin: model.index_margin(),
            exact: staged,
            cursor: Some(cursor),
            batch: batch.max(ef_search()),
            rest: Some(Rest {
                model: model.clone(),
                tenant,
                query: query.to_vec(),
                read_only,
                returned: Default::default(),
                read: staged_rows,
                fetched: 0,
            }),
        })
    }

    pub fn path(&self) -> Path {
        self.path
    }

    /// What `order` may fall short of the true similarity by (index distances in reduced
    /// precision): a caller stops once `order < bound - margin`.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The next hits in order, none at the end: as many as the caller asked for at first (on
    /// the index path at least [`ef_search`]), then twice as many each time (up to 256).
    pub fn next_batch(&mut self) -> Result<Vec<Hit>, FractalityError> {
        let n = self.batch;
        self.batch = (self.batch * 2).min(FETCH);
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(self.exact.by_ref().take(n).collect());
        };
        let rows = cursor.fetch(n as i64, |r| {
            (r.get::<Uuid>(1), r.get::<f64>(2), r.get::<f64>(3))
        });
        let fetched = rows.len();
        let ended = fetched < n;
        if let Some(rest) = self.rest.as_mut() {
            rest.fetched += fetched;
            rest.read += fetched;
        }
        let mut hits: Vec<Hit> = rows
            .into_iter()
            .filter_map(|(id, exact, order)| hit(id, exact, Some(order)))
            .collect();
        if ended && self.ended_early()? {
            // pgvector stopped before the tenant's end: this batch and every row of the tenant
            // not returned yet (the staged ones among them), read exactly, go on in order
            let rest = self.rest.take().expect("ended_early needs it");
            let in_batch: std::collections::HashSet<Uuid> =
                hits.iter().map(|h| h.node_id).collect();
            hits.extend(
                rest.exact_remainder()?
                    .into_iter()
                    .filter(|h| !in_batch.contains(&h.node_id)),
            );
            hits.sort_by(best_first);
            self.cursor = None;
            self.exact = hits.into_iter().peekable();
            return Ok(self.exact.by_ref().take(n).collect());
        }
        if !ended && hits.is_empty() {
            // only zero vectors in this batch: go on with the next one
            return self.next_batch();
        }
        // the staged rows as near as the batch's last (every one left once the index has no
        // more), in order among the batch's
        let floor = match hits.last() {
            Some(last) if !ended => last.order,
            _ => f64::NEG_INFINITY,
        };
        let before = hits.len();
        while let Some(h) = self.exact.next_if(|h| h.order >= floor) {
            hits.push(h);
        }
        if hits.len() > before {
            hits.sort_by(best_first);
        }
        if let Some(rest) = self.rest.as_mut() {
            rest.returned.extend(hits.iter().map(|h| h.node_id));
        }
        Ok(hits)
    }

    /// Whether the index's cursor, which has just ended, ended before the tenant's rows did: not
    /// at [`MAX_ROWS`], and the tenant holds more rows than were read (index and staged). A zero
    /// vector, which the index does not hold, counts as not read: a search that drains a
    /// tenant holding one reads it exactly once more, to the same result.
    fn ended_early(&self) -> Result<bool, FractalityError> {
        let Some(rest) = self.rest.as_ref() else {
            return Ok(false);
        };
        let read = rest.read as i64;
        Ok((rest.fetched as i64) < MAX_ROWS
            && tenant_size(&rest.model, rest.tenant, read + 1, rest.read_only)? > read)
    }
}

impl Rest {
    /// The tenant's rows not returned yet, read exactly, best first.
    fn exact_remainder(&self) -> Result<Vec<Hit>, FractalityError> {
        let arg: DatumWithOid = Vector::from_slice(&self.query)?.into();
        let q = Query {
            name: "tenant_embeddings",
            text: &crate::vector::qualify(TENANT_EMBEDDINGS),
            types: &[pg_sys::UUIDOID, pg_sys::TEXTOID, arg.oid()],
            per_tenant: true,
        };
        let (hits, _) = exact_rows(&q, self.tenant, &self.model, arg, self.read_only)?;
        Ok(hits
            .into_iter()
            .filter(|h| !self.returned.contains(&h.node_id))
            .collect())
    }
}

/// What a search of one tenant and model needs to know before it starts (tenant_path.sql).
struct Shape {
    /// The tenant has a graph of its own (and `graphs` allowed it).
    own_graph: bool,
    /// Without one, its embeddings counted up to the cap.
    size: Option<i64>,
    /// It holds staged embeddings.
    staged: bool,
}

/// The [`Shape`] of `tenant`'s embeddings of `model`, its size counted up to `cap`; a graph of
/// its own counts only with `graphs` (SPI connected).
fn tenant_path(
    model: &Model,
    tenant: Uuid,
    cap: i64,
    read_only: bool,
    graphs: bool,
) -> Result<Shape, FractalityError> {
    let rows = spi::rows(
        &TENANT_PATH,
        &[
            tenant.into(),
            model.name.as_str().into(),
            cap.into(),
            graphs.into(),
        ],
        read_only,
        |r| Shape {
            own_graph: r.get::<bool>(1).unwrap_or(false),
            size: r.get::<i64>(2),
            staged: r.get::<bool>(3).unwrap_or(false),
        },
    )?;
    Ok(rows.into_iter().next().unwrap_or(Shape {
        own_graph: false,
        size: Some(0),
        staged: false,
    }))
}

/// How many embeddings of `model` `tenant` holds, counted up to `cap` (SPI connected).
pub fn tenant_size(
    model: &Model,
    tenant: Uuid,
    cap: i64,
    read_only: bool,
) -> Result<i64, FractalityError> {
    Ok(tenant_path(model, tenant, cap, read_only, false)?
        .size
        .unwrap_or(0))
}

/// Every embedding of `model` that `tenant` holds, staged or indexed, given to `f` as (node id,
/// vector), seeing the transaction's own writes (SPI connected).
pub fn tenant_vectors(
    model: &Model,
    tenant: Uuid,
    mut f: impl FnMut(Uuid, &[f32]),
) -> Result<(), FractalityError> {
    spi::rows(
        &TENANT_VECTORS,
        &[tenant.into(), model.name.as_str().into()],
        false,
        |r| -> Result<(), FractalityError> {
            // SAFETY: column 2 is the embedding, a vector
            if let (Some(id), Some(v)) = (r.get::<Uuid>(1), unsafe { r.vector(2) }?) {
                f(id, &v);
            }
            Ok(())
        },
    )?
    .into_iter()
    .collect()
}

/// Higher `order` first, then the node id (a stable order for ties).
fn best_first(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.order
        .total_cmp(&a.order)
        .then_with(|| a.node_id.cmp(&b.node_id))
}

/// The hits of an exact query (tenant_embeddings or tenant_staged: $1 tenant, $2 model, $3 the
/// query vector), best first.
fn exact_hits(
    q: &Query<'_>,
    tenant: Uuid,
    model: &Model,
    query: DatumWithOid,
    read_only: bool,
) -> Result<std::iter::Peekable<std::vec::IntoIter<Hit>>, FractalityError> {
    Ok(exact_rows(q, tenant, model, query, read_only)?
        .0
        .into_iter()
        .peekable())
}

/// [`exact_hits`] as a vector, with the number of rows read (zero vectors included).
fn exact_rows(
    q: &Query<'_>,
    tenant: Uuid,
    model: &Model,
    query: DatumWithOid,
    read_only: bool,
) -> Result<(Vec<Hit>, usize), FractalityError> {
    let rows: Vec<Option<Hit>> = spi::rows(
        q,
        &[tenant.into(), model.name.as_str().into(), query],
        read_only,
        |r| hit(r.get::<Uuid>(1), r.get::<f64>(2), None),
    )?;
    let read = rows.len();
    let mut hits: Vec<Hit> = rows.into_iter().flatten().collect();
    hits.sort_by(best_first);
    Ok((hits, read))
}

/// The tenant_nearest query for `model`: its template rendered, `{{exact}}` (the full-precision
/// distance) the order distance itself for a `vector` index (the same computation: the row's
/// embedding is fetched and compared once, not twice) and one in full precision for `halfvec`.
/// pgvector's schema (`{{vector}}`) is left to the caller ([`crate::vector::qualify`]).
fn nearest_sql(model: &Model) -> String {
    let exact = if model.index_type() == "vector" {
        "s.order_distance"
    } else {
        "s.embedding OPERATOR({{vector}}.<=>) $2"
    };
    crate::models::render(
        &TENANT_NEAREST.replace("{{exact}}", exact),
        &model.name,
        model.dims,
    )
}

/// The `hnsw.ef_search` in effect (the search functions set it, [`Pinned::search`]), at most a
/// batch: the index's first search finds that many candidates for the price of one
/// row, and a row past them makes it search on (measured at 1536 dimensions in a partition of one
/// tenant: 21 rows 1.1 ms, 40 rows 1.7 ms, 41 rows 3.4 ms). So the first batch of the index path
/// is at least this many: a caller that needs one row more than it asked for (find_resonant
/// proving it has every neighbour within the threshold) does not pay for a second search.
fn ef_search() -> usize {
    // SAFETY: a setting read by name inside a transaction; NULL when it is not defined
    let v = unsafe { pg_sys::GetConfigOption(c"hnsw.ef_search".as_ptr(), true, false) };
    if v.is_null() {
        return DEFAULT_EF_SEARCH;
    }
    // SAFETY: a NUL-terminated string owned by the setting, read at once
    unsafe { std::ffi::CStr::from_ptr(v) }
        .to_str()
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(DEFAULT_EF_SEARCH)
        .min(FETCH)
}

/// A hit from a row: the similarity from the full-precision distance, the order from the
/// index's distance (the same on the exact path). A zero vector has no direction: pgvector's
/// distance is NaN, and there is no hit.
fn hit(id: Option<Uuid>, exact: Option<f64>, order: Option<Option<f64>>) -> Option<Hit> {
    let exact = exact.filter(|d| !d.is_nan())?;
    let order = match order {
        None => exact,
        // an order pgvector's single-precision sums overflowed on: the exact distance
        Some(o) => o.filter(|d| !d.is_nan()).unwrap_or(exact),
    };
    Some(Hit {
        node_id: id?,
        similarity: (1.0 - exact).clamp(-1.0, 1.0),
        order: 1.0 - order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_query_compares_a_vector_once_and_a_halfvec_in_full_precision() {
        for (dims, exact, order) in [
            (
                1536,
                "s.order_distance",
                "(e.embedding::\"my schema\".vector(1536)) OPERATOR(\"my schema\".<=>) ($2::\"my schema\".vector(1536))",
            ),
            (
                3072,
                "s.embedding OPERATOR(\"my schema\".<=>) $2",
                "(e.embedding::\"my schema\".halfvec(3072)) OPERATOR(\"my schema\".<=>) ($2::\"my schema\".halfvec(3072))",
            ),
        ] {
            let q = nearest_sql(&Model {
                name: "m".into(),
                dims,
            })
            .replace("{{vector}}", "\"my schema\"");
            assert!(!q.contains("{{"), "{q}");
            assert!(
                q.contains(&format!("coalesce(nullif({exact}, 'NaN')")),
                "{q}"
            );
            assert!(q.contains(order), "{q}");
        }
    }
}
