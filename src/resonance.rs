//! Resonance: how strongly two nodes of a mind resonate.
//!
//! `resonance = w_sim * cosine similarity + w_energy * atp_a * atp_b + w_edge * edge weight`,
//! with the seed's weights 0.5, 0.3 and 0.2. [`score`] is the pure math;
//! `calculate_resonance` reads both nodes, both embeddings (in place, through
//! [`crate::vector::Vector`]) and the edge between them in one SPI query with a plan kept for the
//! session; `find_resonant` takes candidates from the HNSW index and re-ranks them natively.
//!
//! Every function here runs as the caller: row-level security decides what it sees. One step
//! runs as the owner of `node_embeddings` ([`AsOwner`]): find_resonant's distance-ordered scan
//! over every tenant, from which only ids of the source's tenant are kept (the caller must see
//! the source first); the rows returned are then read as the caller, under row-level security.

use std::cell::OnceCell;

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;

use crate::errors::{finite, node_not_found, FractalityError, OrReport};
use crate::vector::{cosine, Vector};

/// The energy of node alias `$n` in the SQL below. THE one place where fractality's resonance
/// code reads a node's energy: the current (lazily decayed) energy.
macro_rules! atp_of {
    ($n:literal) => {
        concat!("fractality.current_atp(", $n, ".atp, ", $n, ".atp_at)")
    };
}

pub const W_SIM: f64 = 0.5;
pub const W_ENERGY: f64 = 0.3;
pub const W_EDGE: f64 = 0.2;

/// Largest `k` find_resonant accepts.
pub const MAX_K: i32 = 1000;
/// At most this many candidates within the threshold are re-ranked (the nearest ones).
pub const MAX_CANDIDATES: i64 = 2000;
/// Rows fetched from the index scan at a time.
const FETCH: i64 = 64;

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

// ---- SQL: calculate_resonance ------------------------------------------------------------------

/// Both nodes (a row even when one is missing), their energy, their embeddings, and the edge
/// between them in either direction: where several join the pair, the one of greatest |weight|.
const PAIR_SQL: &str = concat!(
    "SELECT a.id IS NOT NULL, b.id IS NOT NULL, ",
    atp_of!("a"),
    ", ",
    atp_of!("b"),
    ", ea.embedding, eb.embedding,
            (SELECT e.weight FROM fractality.edges e
              WHERE (e.from_node = $1 AND e.to_node = $2) OR (e.from_node = $2 AND e.to_node = $1)
              ORDER BY abs(e.weight) DESC, e.weight DESC LIMIT 1)
       FROM (SELECT) AS one
       LEFT JOIN fractality.nodes a ON a.id = $1
       LEFT JOIN fractality.nodes b ON b.id = $2
       LEFT JOIN fractality.node_embeddings ea ON ea.node_id = a.id
       LEFT JOIN fractality.node_embeddings eb ON eb.node_id = b.id"
);

thread_local! {
    /// The plans of the queries below, prepared once per session (PostgreSQL re-plans them when
    /// the schema, the role or row-security settings change).
    static PAIR_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
    static SOURCE_BY_ID_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
    static SOURCE_BY_KEY_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
    static NEAREST_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
    static CANDIDATES_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
    static EXACT_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
    static TENANT_SIZE_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
    static DETAILS_PLAN: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
}

const UUID: PgOid = PgOid::BuiltIn(pg_sys::PgBuiltInOids::UUIDOID);
const UUID_ARRAY: PgOid = PgOid::BuiltIn(pg_sys::PgBuiltInOids::UUIDARRAYOID);
const TEXT: PgOid = PgOid::BuiltIn(pg_sys::PgBuiltInOids::TEXTOID);
const INT8: PgOid = PgOid::BuiltIn(pg_sys::PgBuiltInOids::INT8OID);
const FLOAT8: PgOid = PgOid::BuiltIn(pg_sys::PgBuiltInOids::FLOAT8OID);

fn with_plan<R>(
    cell: &'static std::thread::LocalKey<OnceCell<OwnedPreparedStatement>>,
    client: &SpiClient<'_>,
    sql: &'static str,
    types: &[PgOid],
    f: impl FnOnce(&OwnedPreparedStatement) -> R,
) -> R {
    cell.with(|c| {
        if c.get().is_none() {
            let plan = client
                .prepare(sql, types)
                .unwrap_or_else(|e| panic!("preparing a resonance query: {e}"))
                .keep();
            let _ = c.set(plan);
        }
        f(c.get().expect("plan prepared"))
    })
}

/// The seed's resonance of two nodes: 0.5 x cosine similarity + 0.3 x energy product + 0.2 x
/// edge weight (0 without an edge). NULL where either node has no embedding (or a zero one).
/// P0002 for a node that does not exist or that the caller may not see.
#[pg_extern(stable, strict)]
fn calculate_resonance(
    node_a: pgrx::Uuid,
    node_b: pgrx::Uuid,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<f64> {
    // SAFETY: called by the executor with its fcinfo; every relation and scan opened is closed
    if let Some(r) = unsafe { direct::pair(fcinfo, node_a, node_b) } {
        return r.unwrap_or_report();
    }
    spi_pair(node_a, node_b)
}

/// calculate_resonance through SPI: PostgreSQL plans and checks the query (the fallback of the
/// direct path below, and the reference it is tested against).
pub(crate) fn spi_pair(node_a: pgrx::Uuid, node_b: pgrx::Uuid) -> Option<f64> {
    Spi::connect(|client| {
        with_plan(&PAIR_PLAN, client, PAIR_SQL, &[UUID, UUID], |plan| {
            let table = client
                .select(plan, Some(1), &[node_a.into(), node_b.into()])
                .unwrap_or_else(|e| panic!("calculate_resonance: {e}"));
            let row = table.first();
            let flag = |i| row.get::<bool>(i).ok().flatten().unwrap_or(false);
            if !flag(1) {
                node_not_found(node_a).report();
            }
            if !flag(2) {
                node_not_found(node_b).report();
            }
            let atp_a = row.get::<f64>(3).ok().flatten().unwrap_or(0.0);
            let atp_b = row.get::<f64>(4).ok().flatten().unwrap_or(0.0);
            let (Some(da), Some(db)) = (
                row.get_datum_by_ordinal(5).ok().flatten(),
                row.get_datum_by_ordinal(6).ok().flatten(),
            ) else {
                return None;
            };
            // SAFETY: both are non-null `vector` datums of a tuple that lives as long as `table`.
            let (va, vb) = unsafe {
                (
                    Vector::from_datum_ref(da).unwrap_or_report(),
                    Vector::from_datum_ref(db).unwrap_or_report(),
                )
            };
            let sim = cosine(va.as_slice(), vb.as_slice()).unwrap_or_report()?;
            let edge = row.get::<f64>(7).ok().flatten().unwrap_or(0.0);
            Some(score(sim, atp_a, atp_b, edge, SEED_WEIGHTS).unwrap_or_report())
        })
    })
}

/// calculate_resonance without the executor, row-level security included.
///
/// Six B-tree lookups through the access methods with the active snapshot: both nodes (energy),
/// both embeddings, and the edges between them in either direction. Per query (per call site,
/// in `fn_extra`) the relations, their indexes and columns are resolved once, SELECT privilege
/// is checked, and `check_enable_rls` decides whether row-level security applies to the caller;
/// where it does, the relation's policies are applied to every fetched row exactly as the
/// rewriter would for a SELECT: the SELECT and ALL policies whose roles include the user (or
/// PUBLIC), permissive ones OR-ed, restrictive ones AND-ed, and nothing visible when no
/// permissive policy applies; compiled once with ExecInitCheck over the scan tuple.
///
/// The compiled state is keyed by (local transaction, subtransaction, command id, user, security
/// context, row_security): any DDL (a new policy, say) advances the command id, and a
/// subtransaction that undid one is left behind, so it is never used stale. Anything unusual returns None and the caller takes the SPI path, where PostgreSQL
/// itself plans the same query: a missing privilege (SPI raises the error), a policy with a
/// sub-query, row-security hooks of another extension, row_security = off where policies apply
/// (SPI raises the error), inheritance children, a changed schema or energy definition, values
/// the SQL function would refuse.
mod direct {
    use super::{score, SEED_WEIGHTS};
    use crate::errors::{node_not_found, FractalityError};
    use crate::vector::{cosine, Vector};
    use pgrx::pg_sys::{self, AttrNumber, Datum, Oid};
    use pgrx::IntoDatum;
    use std::ffi::CStr;

    /// What row-level security makes of a relation for this caller.
    #[derive(Clone, Copy)]
    enum Rls {
        /// No policy applies (RLS off, owner, superuser, BYPASSRLS).
        Off,
        /// RLS applies and no permissive policy does: no row is visible.
        Deny,
        /// Rows pass when this check (`(quals) IS TRUE`) holds.
        Check(*mut pg_sys::ExprState),
    }

    #[derive(Clone, Copy)]
    struct Table {
        heap: Oid,
        index: Oid,
        /// Leading index columns compared for equality with uuids.
        nkeys: usize,
        /// Columns read from each row.
        cols: [AttrNumber; 2],
        rls: Rls,
    }

    #[derive(Clone, Copy, PartialEq)]
    struct Key {
        lxid: u32,
        /// A (sub)transaction aborted since the build (a policy change undone) is another one.
        subxid: u32,
        cid: u32,
        user: Oid,
        sec: i32,
        row_security: bool,
    }

    #[derive(Clone, Copy)]
    struct Plan {
        nodes: Table,
        embeddings: Table,
        edges: Table,
        econtext: *mut pg_sys::ExprContext,
    }

    /// Lives in `fn_extra`, allocated in `fn_mcxt`; `cx` holds the compiled state of `plan`.
    struct Cache {
        key: Key,
        /// None: the direct path does not apply under this key (take SPI).
        plan: Option<Plan>,
        cx: pg_sys::MemoryContext,
    }

    /// The energy expression this path computes natively; it stands aside (SPI) as soon as
    /// `atp_of!` reads energy any other way.
    const ENERGY: &str = "fractality.current_atp(n.atp, n.atp_at)";

    unsafe fn current_key() -> Key {
        unsafe {
            let (mut user, mut sec) = (Oid::INVALID, 0);
            pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
            Key {
                lxid: (*pg_sys::MyProc).lxid,
                subxid: pg_sys::GetCurrentSubTransactionId(),
                cid: pg_sys::GetCurrentCommandId(false),
                user,
                sec,
                row_security: pg_sys::row_security,
            }
        }
    }

    /// Elements of a `List` of pointers.
    unsafe fn list_ptrs<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
        unsafe {
            if list.is_null() {
                return Vec::new();
            }
            std::slice::from_raw_parts((*list).elements, (*list).length as usize)
                .iter()
                .map(|c| c.ptr_value as *mut T)
                .collect()
        }
    }

    /// rowsecurity.c's check_role_for_policy: PUBLIC, or a role whose privileges the user has.
    unsafe fn policy_applies_to(roles: *mut pg_sys::ArrayType, user: Oid) -> bool {
        unsafe {
            if roles.is_null() || (*roles).ndim != 1 {
                return false;
            }
            let base = roles as *const u8;
            let n = *(base.add(std::mem::size_of::<pg_sys::ArrayType>()) as *const i32);
            let offset = if (*roles).dataoffset != 0 {
                (*roles).dataoffset as usize
            } else {
                // ARR_OVERHEAD_NONULLS(1): MAXALIGN(header + dims + lbounds)
                (std::mem::size_of::<pg_sys::ArrayType>() + 8 + 7) & !7
            };
            let oids = std::slice::from_raw_parts(base.add(offset) as *const Oid, n as usize);
            if oids.first().map(|o| o.to_u32()) == Some(pg_sys::ACL_ID_PUBLIC) {
                return true;
            }
            oids.iter().any(|&r| pg_sys::has_privs_of_role(user, r))
        }
    }

    /// The SELECT policies of `rel` for `user`, as the rewriter applies them (rowsecurity.c:
    /// get_policies_for_relation + add_security_quals). None when a policy needs a sub-query.
    unsafe fn compile_policies(rel: pg_sys::Relation, user: Oid) -> Option<Rls> {
        unsafe {
            let desc = (*rel).rd_rsdesc;
            let policies = if desc.is_null() {
                Vec::new()
            } else {
                list_ptrs::<pg_sys::RowSecurityPolicy>((*desc).policies)
            };
            let (mut permissive, mut restrictive) = (Vec::new(), Vec::new());
            for p in policies {
                let cmd = (*p).polcmd as u8;
                if !(cmd == b'*' || cmd == pg_sys::ACL_SELECT_CHR)
                    || !policy_applies_to((*p).roles, user)
                {
                    continue;
                }
                if (*p).qual.is_null() {
                    continue; // a policy without USING adds no qual (as add_security_quals)
                }
                if (*p).hassublinks {
                    return None;
                }
                let qual = pg_sys::copyObjectImpl((*p).qual.cast()) as *mut pg_sys::Expr;
                if (*p).permissive {
                    permissive.push(qual);
                } else {
                    restrictive.push(qual);
                }
            }
            if permissive.is_empty() {
                return Some(Rls::Deny);
            }
            let mut ors: *mut pg_sys::List = std::ptr::null_mut();
            for q in &permissive {
                ors = pg_sys::lappend(ors, (*q).cast());
            }
            let any = if permissive.len() == 1 {
                permissive[0]
            } else {
                pg_sys::makeBoolExpr(pg_sys::BoolExprType::OR_EXPR, ors, -1)
            };
            let mut ands: *mut pg_sys::List = std::ptr::null_mut();
            for q in restrictive.iter().chain(std::iter::once(&any)) {
                ands = pg_sys::lappend(ands, (*q).cast());
            }
            let all = pg_sys::make_ands_explicit(ands);
            // a row passes when the quals are true (false or null hide it)
            let test = pg_sys::palloc0(std::mem::size_of::<pg_sys::BooleanTest>())
                as *mut pg_sys::BooleanTest;
            (*test).xpr.type_ = pg_sys::NodeTag::T_BooleanTest;
            (*test).arg = all;
            (*test).booltesttype = pg_sys::BoolTestType::IS_TRUE;
            (*test).location = -1;
            let planned = pg_sys::expression_planner(test.cast());
            let list = pg_sys::lappend(std::ptr::null_mut(), planned.cast());
            Some(Rls::Check(pg_sys::ExecInitCheck(
                list,
                std::ptr::null_mut(),
            )))
        }
    }

    /// Whether `irel` is a B-tree index of the plain table `rel` whose leading columns are the
    /// uuid columns `keys`, in that order.
    unsafe fn uuid_btree(rel: pg_sys::Relation, irel: pg_sys::Relation, keys: &[&CStr]) -> bool {
        unsafe {
            let heap = (*rel).rd_id;
            let mut ok = (*(*rel).rd_rel).relkind as u8 == pg_sys::RELKIND_RELATION
                && !(*(*rel).rd_rel).relhassubclass
                && (*(*irel).rd_rel).relam == pg_sys::BTREE_AM_OID
                && !(*irel).rd_index.is_null()
                && (*(*irel).rd_index).indrelid == heap
                && (*(*irel).rd_index).indnkeyatts as usize >= keys.len();
            if ok {
                let indkey = (*(*irel).rd_index).indkey.values.as_slice(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    let att = pg_sys::get_attnum(heap, k.as_ptr());
                    ok &= att > 0
                        && indkey[i] == att
                        && pg_sys::get_atttype(heap, att) == pg_sys::UUIDOID;
                }
            }
            ok
        }
    }

    /// A relation of schema `ns` with its B-tree index whose leading columns are `keys` (uuids),
    /// the columns `values` to read, privileges and row-level security resolved for `user`.
    unsafe fn table(
        ns: Oid,
        name: &CStr,
        index_name: &CStr,
        keys: &[&CStr],
        values: &[&CStr],
        user: Oid,
    ) -> Option<Table> {
        unsafe {
            let heap = pg_sys::get_relname_relid(name.as_ptr(), ns);
            let index = pg_sys::get_relname_relid(index_name.as_ptr(), ns);
            if heap == Oid::INVALID || index == Oid::INVALID {
                return None;
            }
            if pg_sys::pg_class_aclcheck(heap, user, pg_sys::ACL_SELECT as pg_sys::AclMode)
                != pg_sys::AclResult::ACLCHECK_OK
            {
                return None;
            }
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let rel = pg_sys::table_open(heap, lock);
            let irel = pg_sys::index_open(index, lock);
            let mut ok = uuid_btree(rel, irel, keys);
            let mut cols = [0 as AttrNumber; 2];
            for (c, v) in cols.iter_mut().zip(values) {
                *c = pg_sys::get_attnum(heap, v.as_ptr());
                ok &= *c > 0;
            }
            let rls = if !ok {
                None
            } else {
                match pg_sys::check_enable_rls(heap, Oid::INVALID, true) as u32 {
                    pg_sys::CheckEnableRlsResult::RLS_ENABLED => {
                        if pg_sys::row_security {
                            compile_policies(rel, user)
                        } else {
                            None // the query would fail; SPI raises the error
                        }
                    }
                    _ => Some(Rls::Off),
                }
            };
            pg_sys::index_close(irel, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            Some(Table {
                heap,
                index,
                nkeys: keys.len(),
                cols,
                rls: rls?,
            })
        }
    }

    unsafe fn build(user: Oid) -> Option<Plan> {
        unsafe {
            if atp_of!("n") != ENERGY
                || { pg_sys::row_security_policy_hook_permissive }.is_some()
                || { pg_sys::row_security_policy_hook_restrictive }.is_some()
            {
                return None;
            }
            let ns = pg_sys::get_namespace_oid(c"fractality".as_ptr(), true);
            if ns == Oid::INVALID {
                return None;
            }
            let nodes = table(
                ns,
                c"nodes",
                c"nodes_pkey",
                &[c"id"],
                &[c"atp", c"atp_at"],
                user,
            )?;
            let embeddings = table(
                ns,
                c"node_embeddings",
                c"node_embeddings_pkey",
                &[c"node_id"],
                &[c"embedding"],
                user,
            )?;
            let edges = table(
                ns,
                c"edges",
                c"edges_unique",
                &[c"from_node", c"to_node"],
                &[c"weight"],
                user,
            )?;
            let types_ok = pg_sys::get_atttype(nodes.heap, nodes.cols[0]) == pg_sys::FLOAT8OID
                && pg_sys::get_atttype(nodes.heap, nodes.cols[1]) == pg_sys::TIMESTAMPTZOID
                && pg_sys::get_atttype(edges.heap, edges.cols[0]) == pg_sys::FLOAT8OID;
            if !types_ok {
                return None;
            }
            Some(Plan {
                nodes,
                embeddings,
                edges,
                econtext: pg_sys::CreateStandaloneExprContext(),
            })
        }
    }

    /// The plan for this call site, built or rebuilt when the key changed.
    unsafe fn plan(fcinfo: pg_sys::FunctionCallInfo) -> Option<Plan> {
        unsafe {
            let flinfo = (*fcinfo).flinfo;
            if flinfo.is_null() || !pg_sys::ActiveSnapshotSet() {
                return None;
            }
            let key = current_key();
            let mut cache = (*flinfo).fn_extra as *mut Cache;
            if cache.is_null() {
                cache =
                    pg_sys::MemoryContextAllocZero((*flinfo).fn_mcxt, std::mem::size_of::<Cache>())
                        as *mut Cache;
                cache.write(Cache {
                    key,
                    plan: None,
                    cx: pg_sys::AllocSetContextCreateExtended(
                        (*flinfo).fn_mcxt,
                        c"fractality calculate_resonance".as_ptr(),
                        pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                        pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                        pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
                    ),
                });
                (*flinfo).fn_extra = cache.cast();
            } else if (*cache).key == key {
                return (*cache).plan;
            }
            let c = &mut *cache;
            // forget the old plan first: if building fails with an error, nothing stale remains
            c.plan = None;
            c.key = Key { lxid: 0, ..key };
            pg_sys::MemoryContextReset(c.cx);
            let old = pg_sys::CurrentMemoryContext;
            pg_sys::CurrentMemoryContext = c.cx;
            let plan = build(key.user);
            pg_sys::CurrentMemoryContext = old;
            c.plan = plan;
            c.key = key;
            plan
        }
    }

    /// Whether the row in `slot` passes the table's row-level security.
    unsafe fn visible(
        t: &Table,
        econtext: *mut pg_sys::ExprContext,
        slot: *mut pg_sys::TupleTableSlot,
    ) -> bool {
        unsafe {
            match t.rls {
                Rls::Off => true,
                Rls::Deny => false,
                Rls::Check(state) => {
                    (*econtext).ecxt_scantuple = slot;
                    let pass = pg_sys::ExecCheck(state, econtext);
                    pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
                    pass
                }
            }
        }
    }

    /// An open relation with its index and a scan over it.
    struct Scan {
        heap: pg_sys::Relation,
        index: pg_sys::Relation,
        desc: pg_sys::IndexScanDesc,
        keys: [pg_sys::ScanKeyData; 2],
        nkeys: usize,
    }

    impl Scan {
        unsafe fn open(t: &Table, snapshot: pg_sys::Snapshot) -> Scan {
            unsafe {
                let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
                let heap = pg_sys::table_open(t.heap, lock);
                let index = pg_sys::index_open(t.index, lock);
                let desc = pg_sys::index_beginscan(heap, index, snapshot, t.nkeys as i32, 0);
                Scan {
                    heap,
                    index,
                    desc,
                    keys: std::mem::zeroed(),
                    nkeys: t.nkeys,
                }
            }
        }

        /// Visits each visible row (under the snapshot and the table's policies) whose leading
        /// index columns equal `keys`, stored in `slot`.
        unsafe fn each(
            &mut self,
            t: &Table,
            econtext: *mut pg_sys::ExprContext,
            keys: &[Datum],
            slot: *mut pg_sys::TupleTableSlot,
            mut f: impl FnMut(*mut pg_sys::TupleTableSlot),
        ) {
            unsafe {
                for (i, k) in keys.iter().enumerate().take(self.nkeys) {
                    pg_sys::ScanKeyInit(
                        &mut self.keys[i],
                        (i + 1) as AttrNumber,
                        pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                        Oid::from(pg_sys::F_UUID_EQ),
                        *k,
                    );
                }
                pg_sys::index_rescan(
                    self.desc,
                    self.keys.as_mut_ptr(),
                    self.nkeys as i32,
                    std::ptr::null_mut(),
                    0,
                );
                while pg_sys::index_getnext_slot(
                    self.desc,
                    pg_sys::ScanDirection::ForwardScanDirection,
                    slot,
                ) {
                    if visible(t, econtext, slot) {
                        f(slot);
                    }
                }
            }
        }

        unsafe fn close(self) {
            unsafe {
                pg_sys::index_endscan(self.desc);
                pg_sys::index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
                pg_sys::table_close(self.heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            }
        }
    }

    unsafe fn attr(slot: *mut pg_sys::TupleTableSlot, att: AttrNumber) -> Option<Datum> {
        unsafe {
            let mut isnull = false;
            let d = pg_sys::slot_getattr(slot, att as i32, &mut isnull);
            (!isnull).then_some(d)
        }
    }

    fn f64_of(d: Datum) -> f64 {
        f64::from_bits(d.value() as u64)
    }

    /// How many entries the B-tree index node_embeddings_user holds for `tenant`, counted up to
    /// `cap`, from the index alone (no heap page is read, so entries of rows deleted but not yet
    /// vacuumed count too): the size estimate by which find_resonant picks its path. Nothing of
    /// it reaches the caller but that choice. None where the index is not the expected one.
    pub(super) unsafe fn tenant_entries(tenant: pgrx::Uuid, cap: i64) -> Option<i64> {
        unsafe {
            if !pg_sys::ActiveSnapshotSet() {
                return None;
            }
            let ns = pg_sys::get_namespace_oid(c"fractality".as_ptr(), true);
            if ns == Oid::INVALID {
                return None;
            }
            let heap = pg_sys::get_relname_relid(c"node_embeddings".as_ptr(), ns);
            let index = pg_sys::get_relname_relid(c"node_embeddings_user".as_ptr(), ns);
            if heap == Oid::INVALID || index == Oid::INVALID {
                return None;
            }
            let key_datum = tenant.into_datum()?;
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let rel = pg_sys::table_open(heap, lock);
            let irel = pg_sys::index_open(index, lock);
            let ok = uuid_btree(rel, irel, &[c"user_id"]);
            let mut n = 0i64;
            if ok {
                let desc = pg_sys::index_beginscan(rel, irel, pg_sys::GetActiveSnapshot(), 1, 0);
                let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
                pg_sys::ScanKeyInit(
                    &mut key,
                    1,
                    pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                    Oid::from(pg_sys::F_UUID_EQ),
                    key_datum,
                );
                pg_sys::index_rescan(desc, &mut key, 1, std::ptr::null_mut(), 0);
                while n < cap
                    && !pg_sys::index_getnext_tid(desc, pg_sys::ScanDirection::ForwardScanDirection)
                        .is_null()
                {
                    n += 1;
                }
                pg_sys::index_endscan(desc);
            }
            pg_sys::index_close(irel, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            ok.then_some(n)
        }
    }

    /// The resonance of a and b, or None: take the SPI path.
    pub(super) unsafe fn pair(
        fcinfo: pg_sys::FunctionCallInfo,
        a: pgrx::Uuid,
        b: pgrx::Uuid,
    ) -> Option<Result<Option<f64>, FractalityError>> {
        unsafe {
            let p = plan(fcinfo)?;
            let snapshot = pg_sys::GetActiveSnapshot();
            let now = pg_sys::GetCurrentTransactionStartTimestamp();
            let (da, db) = (a.into_datum()?, b.into_datum()?);

            // energy: (atp, atp_at) of each node; Some(None) where the row holds values the SQL
            // function would refuse (out of range, infinite time): SPI raises its error
            let mut nodes = Scan::open(&p.nodes, snapshot);
            let slot = pg_sys::table_slot_create(nodes.heap, std::ptr::null_mut());
            let energy = |key: Datum, scan: &mut Scan| {
                let mut found: Option<Option<f64>> = None;
                scan.each(&p.nodes, p.econtext, &[key], slot, |s| {
                    found = Some(match (attr(s, p.nodes.cols[0]), attr(s, p.nodes.cols[1])) {
                        (Some(atp), Some(at)) => {
                            let (atp, at) = (f64_of(atp), at.value() as i64);
                            ((0.0..=1.0).contains(&atp) && at != i64::MIN && at != i64::MAX)
                                .then(|| crate::decay::current(atp, at, now))
                        }
                        _ => None,
                    });
                });
                found
            };
            let ea = energy(da, &mut nodes);
            let eb = energy(db, &mut nodes);
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            nodes.close();
            let atp_a = match ea {
                None => return Some(Err(node_not_found(a))),
                Some(None) => return None,
                Some(Some(x)) => x,
            };
            let atp_b = match eb {
                None => return Some(Err(node_not_found(b))),
                Some(None) => return None,
                Some(Some(x)) => x,
            };

            // embeddings, each in its own slot so that both stay readable in place
            let mut emb = Scan::open(&p.embeddings, snapshot);
            let slot_a = pg_sys::table_slot_create(emb.heap, std::ptr::null_mut());
            let slot_b = pg_sys::table_slot_create(emb.heap, std::ptr::null_mut());
            let (mut va, mut vb) = (None, None);
            emb.each(&p.embeddings, p.econtext, &[da], slot_a, |s| {
                va = attr(s, p.embeddings.cols[0])
            });
            emb.each(&p.embeddings, p.econtext, &[db], slot_b, |s| {
                vb = attr(s, p.embeddings.cols[0])
            });
            let sim = match (va, vb) {
                (Some(x), Some(y)) => {
                    match (Vector::from_datum_ref(x), Vector::from_datum_ref(y)) {
                        (Ok(x), Ok(y)) => cosine(x.as_slice(), y.as_slice()),
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    }
                }
                _ => Ok(None),
            };
            pg_sys::ExecDropSingleTupleTableSlot(slot_a);
            pg_sys::ExecDropSingleTupleTableSlot(slot_b);
            emb.close();
            let sim = match sim {
                Ok(Some(s)) => s,
                Ok(None) => return Some(Ok(None)),
                Err(e) => return Some(Err(e)),
            };

            // the edge of greatest |weight| (then greatest weight) in either direction
            let mut edges = Scan::open(&p.edges, snapshot);
            let slot = pg_sys::table_slot_create(edges.heap, std::ptr::null_mut());
            let mut edge: Option<f64> = None;
            for keys in [[da, db], [db, da]] {
                edges.each(&p.edges, p.econtext, &keys, slot, |s| {
                    if let Some(x) = attr(s, p.edges.cols[0]) {
                        let w = f64_of(x);
                        let better = match edge {
                            None => true,
                            Some(e) => w.abs() > e.abs() || (w.abs() == e.abs() && w > e),
                        };
                        if better {
                            edge = Some(w);
                        }
                    }
                });
            }
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            edges.close();
            Some(score(sim, atp_a, atp_b, edge.unwrap_or(0.0), SEED_WEIGHTS).map(Some))
        }
    }
}

// ---- SQL: find_resonant ------------------------------------------------------------------------

/// The source by id: its tenant, energy and whether it has an embedding.
const SOURCE_BY_ID_SQL: &str = concat!(
    "SELECT n.id, n.user_id, ",
    atp_of!("n"),
    ", e.node_id IS NOT NULL
       FROM fractality.nodes n LEFT JOIN fractality.node_embeddings e ON e.node_id = n.id
      WHERE n.id = $1"
);

/// The source by key, in the caller's tenant.
const SOURCE_BY_KEY_SQL: &str = concat!(
    "SELECT n.id, n.user_id, ",
    atp_of!("n"),
    ", e.node_id IS NOT NULL
       FROM fractality.nodes n LEFT JOIN fractality.node_embeddings e ON e.node_id = n.id
      WHERE n.user_id = fractality.current_user_id() AND n.node_key = $1"
);

/// Candidates of every tenant in order of distance, from the HNSW index, read as the owner of
/// `node_embeddings` (see [`AsOwner`]); the caller keeps the source's tenant and stops reading once
/// the distance passes the threshold. No tenant filter: nothing starves the scan, and it stops
/// after the nodes within the threshold (of any tenant) plus one. The LIMIT only bounds it.
const NEAREST_SQL: &str = "
    SELECT e.node_id, e.user_id,
           e.embedding <=> (SELECT s.embedding FROM fractality.node_embeddings s WHERE s.node_id = $1)
      FROM fractality.node_embeddings e
     WHERE e.node_id <> $1
     ORDER BY e.embedding <=> (SELECT s.embedding FROM fractality.node_embeddings s WHERE s.node_id = $1)
     LIMIT 2000"; // = NEAREST_ROWS

/// The source's tenant's embeddings within distance `$3`, each distance computed once, read as
/// the caller from every embedding of the tenant (no ORDER BY: the `user_id` index, never the
/// HNSW one): the exact scan of small tenants.
const EXACT_SQL: &str = "
    SELECT node_id, user_id, d FROM (
        SELECT e.node_id, e.user_id,
               e.embedding <=> (SELECT s.embedding FROM fractality.node_embeddings s WHERE s.node_id = $1) AS d
          FROM fractality.node_embeddings e
         WHERE e.user_id = $2 AND e.node_id <> $1
        OFFSET 0) t
     WHERE d <= $3";

/// How many embeddings the tenant holds, up to `$2`: where [`direct::tenant_entries`] cannot
/// count the index entries (another index, say).
const TENANT_SIZE_SQL: &str = "
    SELECT count(*) FROM (SELECT FROM fractality.node_embeddings e WHERE e.user_id = $1 LIMIT $2) x";

/// Rows of the unfiltered scan read at most; when they are all within the threshold (a crowded
/// neighbourhood), the tenant's own scan below takes over.
const NEAREST_ROWS: usize = 2000;

/// Candidates of the source's tenant in order of distance, from the HNSW index, read as the
/// caller (the function runs with hnsw.iterative_scan = strict_order, so that the tenant filter
/// does not starve the scan and rows come in distance order). The caller stops reading once the
/// distance passes the threshold; the LIMIT only bounds the scan.
const CANDIDATES_SQL: &str = "
    SELECT e.node_id, e.user_id,
           e.embedding <=> (SELECT s.embedding FROM fractality.node_embeddings s WHERE s.node_id = $1)
      FROM fractality.node_embeddings e
     WHERE e.user_id = $2 AND e.node_id <> $1
     ORDER BY e.embedding <=> (SELECT s.embedding FROM fractality.node_embeddings s WHERE s.node_id = $1)
     LIMIT 2000"; // = MAX_CANDIDATES

/// Details of the chosen candidates, read as the caller: key, label, energy, and the edge to the
/// source (of greatest |weight|, in either direction: two index probes, not one OR that the
/// planner answers with a bitmap per row); a candidate whose node or embedding the caller may not
/// see is left out.
const DETAILS_SQL: &str = concat!(
    "SELECT n.id, n.node_key, n.label, ",
    atp_of!("n"),
    ",
            (SELECT x.w FROM (SELECT e.weight AS w FROM fractality.edges e
                               WHERE e.from_node = $1 AND e.to_node = n.id
                              UNION ALL
                              SELECT e.weight FROM fractality.edges e
                               WHERE e.from_node = n.id AND e.to_node = $1) x
              ORDER BY abs(x.w) DESC, x.w DESC LIMIT 1)
       FROM fractality.nodes n JOIN fractality.node_embeddings v ON v.node_id = n.id
      WHERE n.id = ANY($2)"
);

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

fn resonant(
    key: DatumArg,
    threshold_: f64,
    k: i32,
) -> Vec<(pgrx::Uuid, String, Option<String>, f64, f64, f64)> {
    let threshold_ = threshold(threshold_).unwrap_or_report();
    let k = check_k(k).unwrap_or_report();
    let max_distance = 1.0 - threshold_;
    Spi::connect(|client| {
        let source = {
            let (arg, shown) = match &key {
                DatumArg::Id(id) => (pgrx::datum::DatumWithOid::from(*id), id.to_string()),
                DatumArg::Key(s) => (pgrx::datum::DatumWithOid::from(s.as_str()), s.clone()),
            };
            let (cell, sql, ty) = match &key {
                DatumArg::Id(_) => (&SOURCE_BY_ID_PLAN, SOURCE_BY_ID_SQL, UUID),
                DatumArg::Key(_) => (&SOURCE_BY_KEY_PLAN, SOURCE_BY_KEY_SQL, TEXT),
            };
            let t = with_plan(cell, client, sql, &[ty], |plan| {
                client.select(plan, Some(1), &[arg])
            })
            .unwrap_or_else(|e| panic!("find_resonant: {e}"));
            if t.is_empty() {
                node_not_found(shown).report();
            }
            let row = t.first();
            (
                row.get::<pgrx::Uuid>(1).unwrap().expect("id"),
                row.get::<pgrx::Uuid>(2).unwrap().expect("user_id"),
                row.get::<f64>(3).unwrap().unwrap_or(0.0),
                row.get::<bool>(4).unwrap().unwrap_or(false),
            )
        };
        let (source_id, tenant, source_atp, has_embedding) = source;
        if !has_embedding {
            return Vec::new();
        }

        // candidates within the threshold, nearest first
        let mut found: Vec<(pgrx::Uuid, f64)> = Vec::new();
        let limit = crate::gucs::EXACT_SCAN_LIMIT.get();
        let small = limit > 0 && {
            let cap = limit as i64 + 1;
            // SAFETY: reads index entries only, under the active snapshot; opens and closes
            // the relations it reads
            let n = unsafe { direct::tenant_entries(tenant, cap) }.unwrap_or_else(|| {
                with_plan(
                    &TENANT_SIZE_PLAN,
                    client,
                    TENANT_SIZE_SQL,
                    &[UUID, INT8],
                    |plan| client.select(plan, Some(1), &[tenant.into(), cap.into()]),
                )
                .unwrap_or_else(|e| panic!("find_resonant: {e}"))
                .first()
                .get::<i64>(1)
                .unwrap()
                .unwrap_or(0)
            });
            n <= limit as i64
        };
        if small {
            // a small tenant: every embedding of it, as the caller; exact
            let rows = with_plan(
                &EXACT_PLAN,
                client,
                EXACT_SQL,
                &[UUID, UUID, FLOAT8],
                |plan| {
                    client.select(
                        plan,
                        None,
                        &[source_id.into(), tenant.into(), max_distance.into()],
                    )
                },
            )
            .unwrap_or_else(|e| panic!("find_resonant: {e}"));
            found.extend(rows.map(|row| {
                (
                    row.get::<pgrx::Uuid>(1).unwrap().expect("node_id"),
                    row.get::<f64>(3).unwrap().unwrap_or(f64::INFINITY),
                )
            }));
            found.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            found.truncate(MAX_CANDIDATES as usize);
        } else {
            // the HNSW index in distance order until the distance passes the threshold: first
            // the scan over every tenant (as the table's owner; only the source's tenant is
            // kept, and the details below are read as the caller, under row-level security),
            // then, when that scan ends inside the threshold, the tenant's own scan
            let fetch = |cursor: &mut pgrx::spi::SpiCursor<'_>| {
                cursor
                    .fetch(FETCH)
                    .unwrap_or_else(|e| panic!("find_resonant: {e}"))
                    .map(|row| {
                        (
                            row.get::<pgrx::Uuid>(1).unwrap().expect("node_id"),
                            row.get::<pgrx::Uuid>(2).unwrap().expect("user_id"),
                            row.get::<f64>(3).unwrap().unwrap_or(f64::INFINITY),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            let read = |rows: &mut dyn FnMut() -> Vec<(pgrx::Uuid, pgrx::Uuid, f64)>,
                        found: &mut Vec<(pgrx::Uuid, f64)>|
             -> (usize, bool) {
                let mut seen = 0;
                loop {
                    let batch = rows();
                    if batch.is_empty() {
                        return (seen, false);
                    }
                    for (id, user, distance) in batch {
                        seen += 1;
                        if distance > max_distance {
                            return (seen, true);
                        }
                        if user == tenant && found.len() < MAX_CANDIDATES as usize {
                            found.push((id, distance));
                        }
                    }
                }
            };
            let (seen, passed) = {
                let _owner = AsOwner::enter();
                let mut cursor = with_plan(&NEAREST_PLAN, client, NEAREST_SQL, &[UUID], |plan| {
                    client.open_cursor(plan, &[source_id.into()])
                });
                read(&mut || fetch(&mut cursor), &mut found)
            };
            if !passed && seen >= NEAREST_ROWS {
                found.clear();
                let mut cursor = with_plan(
                    &CANDIDATES_PLAN,
                    client,
                    CANDIDATES_SQL,
                    &[UUID, UUID],
                    |plan| client.open_cursor(plan, &[source_id.into(), tenant.into()]),
                );
                read(&mut || fetch(&mut cursor), &mut found);
            }
        }
        let ids: Vec<pgrx::Uuid> = found.iter().map(|f| f.0).collect();
        let sims: Vec<f64> = found.iter().map(|f| (1.0 - f.1).clamp(-1.0, 1.0)).collect();
        if ids.is_empty() {
            return Vec::new();
        }

        // energy, key, label and the edge to the source; then the native re-ranking
        let details = with_plan(
            &DETAILS_PLAN,
            client,
            DETAILS_SQL,
            &[UUID, UUID_ARRAY],
            |plan| client.select(plan, None, &[source_id.into(), ids.clone().into()]),
        )
        .unwrap_or_else(|e| panic!("find_resonant: {e}"));
        let position: std::collections::HashMap<pgrx::Uuid, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut info: Vec<Option<Detail>> = vec![None; ids.len()];
        for row in details {
            let id = row.get::<pgrx::Uuid>(1).unwrap().expect("id");
            if let Some(&i) = position.get(&id) {
                info[i] = Some((
                    row.get::<String>(2).unwrap().unwrap_or_default(),
                    row.get::<String>(3).unwrap(),
                    row.get::<f64>(4).unwrap().unwrap_or(0.0),
                    row.get::<f64>(5).unwrap().unwrap_or(0.0),
                ));
            }
        }
        let ranked: Vec<Ranked> = info
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let (_, _, atp, edge) = d.as_ref()?;
                Some(Ranked {
                    index: i,
                    similarity: sims[i],
                    resonance: raw_score(sims[i], source_atp, *atp, *edge, SEED_WEIGHTS),
                })
            })
            .collect();
        rerank(ranked, k)
            .into_iter()
            .map(|r| {
                let (key, label, atp, _) = info[r.index].clone().expect("detail");
                (ids[r.index], key, label, r.similarity, atp, r.resonance)
            })
            .collect()
    })
}

/// A candidate's key, label, energy and edge weight to the source.
type Detail = (String, Option<String>, f64, f64);

/// While alive, the current user is the owner of `fractality.node_embeddings`, as inside a
/// SECURITY DEFINER function (a local user id change, restricted operation): find_resonant's scan
/// over every tenant runs so, and only ids of the source's tenant leave it, whose details are then
/// read as the caller. The caller's identity comes back on drop (and, after an error, with the
/// (sub)transaction's abort).
struct AsOwner {
    user: pg_sys::Oid,
    sec: i32,
}

impl AsOwner {
    fn enter() -> AsOwner {
        // SAFETY: catalog lookups and the user id switch of fmgr_security_definer, undone in drop
        unsafe {
            let (mut user, mut sec) = (pg_sys::Oid::INVALID, 0);
            pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
            let ns = pg_sys::get_namespace_oid(c"fractality".as_ptr(), false);
            let oid = pg_sys::get_relname_relid(c"node_embeddings".as_ptr(), ns);
            if oid == pg_sys::Oid::INVALID {
                pgrx::error!("find_resonant: relation fractality.node_embeddings does not exist");
            }
            let rel = pg_sys::table_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let owner = (*(*rel).rd_rel).relowner;
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::SetUserIdAndSecContext(
                owner,
                sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
            AsOwner { user, sec }
        }
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        // SAFETY: restores what enter() saved
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.sec) }
    }
}

enum DatumArg {
    Id(pgrx::Uuid),
    Key(String),
}

/// The nodes of the source's tenant that resonate with it: similarity at least `threshold`,
/// ordered by resonance (highest first), at most `k`. A tenant of at most
/// `fractality.exact_scan_limit` embeddings is read exactly (every embedding, as the caller).
/// Above that, candidates come from the HNSW index in
/// distance order, read until the distance passes the threshold: first a scan over every tenant
/// (as the table's owner, the source's tenant kept), which stops after the neighbourhood within
/// the threshold; when 2 000 rows of it are all within (a crowded neighbourhood), the tenant's
/// own scan (iterative, strict order) as the caller. The details of the candidates are read as
/// the caller: what row-level security hides is left out. The source is never in its own
/// result. Empty when the source has no embedding.
#[pg_extern(stable, strict, name = "find_resonant")]
fn find_resonant(
    node: pgrx::Uuid,
    threshold: default!(f64, 0.7),
    k: default!(i32, 20),
) -> TableIterator<
    'static,
    (
        name!(node_id, pgrx::Uuid),
        name!(node_key, String),
        name!(label, Option<String>),
        name!(similarity, f64),
        name!(atp, f64),
        name!(resonance, f64),
    ),
> {
    TableIterator::new(resonant(DatumArg::Id(node), threshold, k))
}

/// As `find_resonant(uuid, ...)`, the source named by its key in the caller's tenant
/// (`fractality.user_id`).
#[pg_extern(stable, strict, name = "find_resonant")]
fn find_resonant_by_key(
    node_key: &str,
    threshold: default!(f64, 0.7),
    k: default!(i32, 20),
) -> TableIterator<
    'static,
    (
        name!(node_id, pgrx::Uuid),
        name!(node_key, String),
        name!(label, Option<String>),
        name!(similarity, f64),
        name!(atp, f64),
        name!(resonance, f64),
    ),
> {
    TableIterator::new(resonant(DatumArg::Key(node_key.to_string()), threshold, k))
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
