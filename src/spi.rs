//! The one way fractality runs SQL: plans kept for the session, `$n` parameters, rows read in
//! place, failures as [`FractalityError`].
//!
//! Every query is prepared once per backend (by its text) as a generic plan and kept: the
//! functions call the same few queries over and over. PostgreSQL re-plans a kept plan itself when
//! a table, an index or the role changes. The exception is a query of one tenant's rows of
//! `node_embeddings` ([`Query::per_tenant`]): it is parsed with its `$1` bound to the tenant as
//! a constant (a parser hook, as PL/pgSQL resolves its variables: no value is written into the
//! text) and kept per tenant ([`tenant_plans`]). Such a plan reaches the tenant's partition
//! alone, where a generic plan would lock every partition when it runs (PostgreSQL 15 prunes a
//! generic plan's partitions only after it has locked them all), and it can use the tenant's
//! own graph, a partial index whose predicate names the tenant.
//!
//! SQL errors raised while a query runs (a constraint, row-level security, a cancel) are
//! PostgreSQL ERRORs and abort the calling statement as they should; what this module maps into
//! [`FractalityError::Internal`] are the SPI failures that are not (a query that cannot be
//! prepared, a misuse).
//!
//! The caller holds an SPI connection (`pgrx::Spi::connect` or [`connect`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::Uuid;

use crate::errors::FractalityError;
use crate::vector::Vector;

mod tenant_plans;

/// A query: a name for messages, its text (from `sql/queries/*.sql`, or rendered from one of
/// them for a model), and the types of its parameters.
pub struct Query<'a> {
    pub name: &'static str,
    pub text: &'a str,
    pub types: &'a [pg_sys::Oid],
    /// Its `$1` is the tenant (a uuid), and its plan is kept per tenant with `$1` bound as a
    /// constant ([`tenant_plans`]): for queries on `node_embeddings`, whose generic plan would
    /// lock every partition when it runs (PostgreSQL 15 locks a generic plan's partitions
    /// before it prunes them), so that a lock on one partition (a graph built or dropped,
    /// `CLUSTER`) held up every tenant's call. Bound, the plan reaches the tenant's partition
    /// alone.
    pub per_tenant: bool,
}

impl<'a> Query<'a> {
    /// The same query, planned per tenant ([`Query::per_tenant`]).
    pub const fn per_tenant(self) -> Query<'a> {
        Query {
            per_tenant: true,
            ..self
        }
    }
}

/// The [`Query`] of `sql/queries/<file>.sql`, named `<file>` in messages (unless `name = ...`
/// says otherwise), with the types of its parameters (`pg_sys` OIDs):
/// `query!("graph_node_id", [UUIDOID, TEXTOID])`.
macro_rules! query {
    ($file:literal, [$($oid:ident),* $(,)?]) => {
        $crate::spi::query!($file, [$($oid),*], name = $file)
    };
    ($file:literal, [$($oid:ident),* $(,)?], name = $name:literal) => {
        $crate::spi::Query {
            name: $name,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/queries/", $file, ".sql")),
            types: &[$(::pgrx::pg_sys::$oid),*],
            per_tenant: false,
        }
    };
}
pub(crate) use query;

/// Kept plans of one query text, by its parameters' types: a type looked up at run time
/// (pgvector's `vector`) gets a new OID when its extension is made again, and a plan kept with
/// the old one would fail on every run ("cache lookup failed for type") until the session ends.
type PlansOf = Vec<(Vec<pg_sys::Oid>, usize)>;

thread_local! {
    /// Kept plans by query text and parameter types.
    static PLANS: RefCell<HashMap<String, PlansOf>> = RefCell::new(HashMap::new());
}

/// The relation `fractality.<name>` (two syscache lookups, no query), InvalidOid when there is
/// none.
pub fn relation_oid(name: &std::ffi::CStr) -> pg_sys::Oid {
    // SAFETY: plain catalog lookups by name, inside a transaction
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"fractality".as_ptr(), true);
        if ns == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(name.as_ptr(), ns)
    }
}

/// Whether the relation `fractality.<name>` exists: how the library tells a schema older than
/// itself.
pub fn relation_exists(name: &std::ffi::CStr) -> bool {
    relation_oid(name) != pg_sys::InvalidOid
}

/// Runs `f` with an SPI connection open.
pub fn connect<R>(f: impl FnOnce() -> R) -> R {
    Spi::connect_mut(|_| f())
}

/// [`connect`] with the search path pinned to `pg_catalog, pg_temp` while `f` runs
/// ([`crate::search::Pinned::path`]): for functions whose queries use polymorphic functions or
/// operators (ranges, arrays), which one planted in a schema of the caller's path could match
/// better.
pub fn connect_pinned<R>(f: impl FnOnce() -> R) -> R {
    let _path = crate::search::Pinned::path();
    connect(f)
}

/// The kept plan of `q`: a generic plan, one for every run, made on first use.
fn plan(q: &Query<'_>) -> Result<pg_sys::SPIPlanPtr, FractalityError> {
    let found = PLANS.with(|plans| {
        plans
            .borrow()
            .get(q.text)?
            .iter()
            .find(|(types, _)| types.as_slice() == q.types)
            .map(|(_, p)| *p)
    });
    if let Some(p) = found {
        return Ok(p as pg_sys::SPIPlanPtr);
    }
    let text = c_text(q)?;
    let mut types = q.types.to_vec();
    // SAFETY: SPI is connected (module contract); text and types outlive the call
    let plan = keep(q, unsafe {
        pg_sys::SPI_prepare_cursor(
            text.as_ptr(),
            types.len() as i32,
            types.as_mut_ptr(),
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
        )
    })?;
    PLANS.with(|plans| {
        plans
            .borrow_mut()
            .entry(q.text.to_string())
            .or_default()
            .push((q.types.to_vec(), plan as usize))
    });
    Ok(plan)
}

/// The kept plan to run `q` with `args`: bound to the tenant, `args[0]`, for a query planned per
/// tenant (the generic plan when that argument is NULL), otherwise the generic plan.
fn plan_for(
    q: &Query<'_>,
    args: &[DatumWithOid<'_>],
) -> Result<pg_sys::SPIPlanPtr, FractalityError> {
    if q.per_tenant {
        // SAFETY: a uuid datum, by the query's contract ($1 is the tenant)
        let tenant = args
            .first()
            .and_then(|a| a.datum())
            .and_then(|d| unsafe { Uuid::from_datum(d.sans_lifetime(), false) });
        if let Some(tenant) = tenant {
            return tenant_plans::tenant_plan(q, tenant);
        }
    }
    plan(q)
}

/// `q`'s text as SPI takes it.
fn c_text(q: &Query<'_>) -> Result<CString, FractalityError> {
    CString::new(q.text).map_err(|_| FractalityError::Internal {
        query: q.name,
        detail: "query text holds a NUL byte".into(),
    })
}

/// `plan`, which SPI has just prepared for `q` (NULL when it could not), kept for the session.
fn keep(q: &Query<'_>, plan: pg_sys::SPIPlanPtr) -> Result<pg_sys::SPIPlanPtr, FractalityError> {
    if plan.is_null() {
        return Err(spi_failure(q.name, unsafe { pg_sys::SPI_result }));
    }
    // SAFETY: a plan SPI has just prepared
    let code = unsafe { pg_sys::SPI_keepplan(plan) };
    if code != 0 {
        return Err(spi_failure(q.name, code));
    }
    Ok(plan)
}

fn spi_failure(query: &'static str, code: i32) -> FractalityError {
    FractalityError::Internal {
        query,
        detail: format!("SPI code {code}"),
    }
}

/// The arguments as a parameter list of `q`'s types (palloc'd in the current memory context;
/// SPI copies what it keeps): for the runs that take one instead of datum and null arrays.
fn param_list(q: &Query<'_>, args: &[DatumWithOid<'_>]) -> pg_sys::ParamListInfo {
    // SAFETY: a list of args.len() entries, each filled below
    unsafe {
        let params = pg_sys::makeParamList(args.len() as i32);
        let slots = (*params).params.as_mut_slice(args.len());
        for (i, a) in args.iter().enumerate() {
            let (value, isnull) = match a.datum() {
                Some(d) => (d.sans_lifetime(), false),
                None => (pg_sys::Datum::from(0usize), true),
            };
            slots[i] = pg_sys::ParamExternData {
                value,
                isnull,
                pflags: pg_sys::PARAM_FLAG_CONST as u16,
                ptype: q.types.get(i).copied().unwrap_or(pg_sys::InvalidOid),
            };
        }
        params
    }
}

/// One row of a result, read in place: valid while the callback that receives it runs.
pub struct Row {
    source: Source,
}

/// Where a row's values are: a tuple of `SPI_tuptable`, or the executor's slot of a row being
/// streamed ([`stream`]).
enum Source {
    Tuple(pg_sys::HeapTuple, pg_sys::TupleDesc),
    Slot(*mut pg_sys::TupleTableSlot),
}

impl Row {
    /// Column `n` (1-based): its datum, and whether it is NULL.
    fn binval(&self, n: i32) -> (pg_sys::Datum, bool) {
        // SAFETY: the tuple and its descriptor come from the current SPI_tuptable; the slot is
        // the one the executor passed to the receiver, its values deformed up to n on demand
        unsafe {
            match self.source {
                Source::Tuple(tuple, desc) => {
                    let mut isnull = false;
                    let d = pg_sys::SPI_getbinval(tuple, desc, n, &mut isnull);
                    (d, isnull)
                }
                Source::Slot(slot) => {
                    let natts = (*(*slot).tts_tupleDescriptor).natts;
                    if n < 1 || n > natts {
                        return (pg_sys::Datum::from(0usize), true);
                    }
                    if ((*slot).tts_nvalid as i32) < n {
                        pg_sys::slot_getsomeattrs(slot, n);
                    }
                    let i = (n - 1) as usize;
                    (*(*slot).tts_values.add(i), *(*slot).tts_isnull.add(i))
                }
            }
        }
    }

    /// Column `n` (1-based) as `T`; None for NULL.
    pub fn get<T: FromDatum>(&self, n: i32) -> Option<T> {
        let (d, isnull) = self.binval(n);
        // SAFETY: a datum of the row being read, of the column's type
        unsafe { T::from_datum(d, isnull) }
    }

    /// Column `n` (1-based), an array of a fixed-size type (`bigint[]`, `float8[]`, ...), copied
    /// out in one piece (element by element when it holds NULLs, which are skipped); None for
    /// NULL.
    pub fn array<T>(&self, n: i32) -> Option<Vec<T>>
    where
        T: pgrx::array::Scalar + pgrx::datum::UnboxDatum,
        for<'a> pgrx::datum::Array<'a, T>: FromDatum,
        for<'a> T: pgrx::datum::UnboxDatum<As<'a> = T>,
    {
        let (d, isnull) = self.binval(n);
        // SAFETY: as in get; the array is read in place and copied before the callback returns
        let a = unsafe { pgrx::datum::Array::<T>::from_datum(d, isnull) }?;
        Some(match a.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => a.iter().flatten().collect(),
        })
    }

    /// `f` of column `n` (1-based), an array of a fixed-size type without NULLs, read in place;
    /// None for NULL or an array holding NULLs.
    pub fn with_array<T, R>(&self, n: i32, f: impl FnOnce(&[T]) -> R) -> Option<R>
    where
        T: pgrx::array::Scalar + pgrx::datum::UnboxDatum,
        for<'a> pgrx::datum::Array<'a, T>: FromDatum,
    {
        let (d, isnull) = self.binval(n);
        // SAFETY: as in get; the array (detoasted only when stored toasted) outlives f
        let a = unsafe { pgrx::datum::Array::<T>::from_datum(d, isnull) }?;
        a.as_slice().ok().map(f)
    }

    /// `f` of column `n` (1-based), a `bytea`, read in place; None for NULL.
    pub fn with_bytes<R>(&self, n: i32, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (d, isnull) = self.binval(n);
        // SAFETY: as in get; the bytes (detoasted only when stored toasted) outlive f
        let bytes = unsafe { <&[u8]>::from_datum(d, isnull) }?;
        Some(f(bytes))
    }

    /// Columns 1 and 2; None when either is NULL.
    pub fn pair<A: FromDatum, B: FromDatum>(&self) -> Option<(A, B)> {
        self.get(1).zip(self.get(2))
    }

    /// Column `n` (1-based) as a raw datum, for values read in place (vectors); None for NULL.
    pub fn datum(&self, n: i32) -> Option<pg_sys::Datum> {
        let (d, isnull) = self.binval(n);
        (!isnull).then_some(d)
    }

    /// Column `n` (1-based), a `vector`, its values copied out; None for NULL.
    ///
    /// # Safety
    /// Column `n` is of pgvector's `vector` type.
    pub unsafe fn vector(&self, n: i32) -> Result<Option<Vec<f32>>, FractalityError> {
        let Some(d) = self.datum(n) else {
            return Ok(None);
        };
        // SAFETY: a non-null vector datum of the row being read
        // the copy a toasted vector is detoasted into is freed once read
        Ok(Some(unsafe {
            Vector::with_datum(d, |v| v.as_slice().to_vec())
        }?))
    }
}

/// The rows of `SPI_tuptable` mapped by `f`, then freed.
unsafe fn collect<R>(mut f: impl FnMut(&Row) -> R) -> Vec<R> {
    unsafe {
        let table = pg_sys::SPI_tuptable;
        let n = pg_sys::SPI_processed as usize;
        let mut out = Vec::with_capacity(n);
        if !table.is_null() {
            let desc = (*table).tupdesc;
            for i in 0..n {
                out.push(f(&Row {
                    source: Source::Tuple(*(*table).vals.add(i), desc),
                }));
            }
            pg_sys::SPI_freetuptable(table);
        }
        out
    }
}

/// Runs `q` with `args` and maps every row with `f`. `read_only` runs it with the calling
/// statement's snapshot (readers); writers pass false and see their own earlier writes.
pub fn rows<R>(
    q: &Query<'_>,
    args: &[DatumWithOid<'_>],
    read_only: bool,
    f: impl FnMut(&Row) -> R,
) -> Result<Vec<R>, FractalityError> {
    let plan = plan_for(q, args)?;
    // SAFETY: a kept plan, arguments of the prepared types
    unsafe {
        let status =
            pg_sys::SPI_execute_plan_with_paramlist(plan, param_list(q, args), read_only, 0);
        if status < 0 {
            return Err(spi_failure(q.name, status));
        }
        Ok(collect(f))
    }
}

/// Runs `q` as [`rows`] does and collects the rows that `f` maps to `Some` (into a `Vec`, a
/// map, ...): a row without a value `f` needs (a NULL) is left out.
pub fn some_rows<R, C: FromIterator<R>>(
    q: &Query<'_>,
    args: &[DatumWithOid<'_>],
    read_only: bool,
    f: impl FnMut(&Row) -> Option<R>,
) -> Result<C, FractalityError> {
    Ok(rows(q, args, read_only, f)?.into_iter().flatten().collect())
}

/// Runs `q` as [`rows`] does, handing each row to `f` as the executor produces it instead of
/// copying the result into a table first: by-reference values (arrays, byteas) are read where
/// the scan found them, in the shared buffer, and are valid only while `f` runs. For readers of
/// wide rows of which they keep a little. `f` must not run queries. Returns the rows seen.
pub fn stream(
    q: &Query<'_>,
    args: &[DatumWithOid<'_>],
    read_only: bool,
    mut f: impl FnMut(&Row),
) -> Result<u64, FractalityError> {
    let plan = plan_for(q, args)?;
    // what a callback's reads allocate (a toasted value's copy, the TOAST index scan that
    // fetches it) is freed after each row, not kept until the query ends: 38 KB a row for
    // embeddings of 3 000 dimensions, 115 MB for a tenant of 3 000
    // SAFETY: a child of the current (SPI) context, deleted below or with it on an error
    let row_context = unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"fractality stream row".as_ptr(),
            0,
            8 * 1024,
            8 * 1024 * 1024,
        )
    };
    let mut receiver = Receiver {
        base: pg_sys::DestReceiver {
            receiveSlot: Some(receive_slot),
            rStartup: Some(receiver_noop_startup),
            rShutdown: Some(receiver_noop),
            rDestroy: Some(receiver_noop),
            mydest: pg_sys::CommandDest::DestNone,
        },
        f: &mut f,
        seen: 0,
        row_context,
    };
    // SAFETY: a kept plan, arguments of the prepared types; the receiver outlives the run
    unsafe {
        let options = pg_sys::SPIExecuteOptions {
            params: param_list(q, args),
            read_only,
            dest: &mut receiver.base,
            ..Default::default()
        };
        let status = pg_sys::SPI_execute_plan_extended(plan, &options);
        pg_sys::MemoryContextDelete(row_context);
        if status < 0 {
            return Err(spi_failure(q.name, status));
        }
    }
    Ok(receiver.seen)
}

/// The DestReceiver of [`stream`]: PostgreSQL's struct first, then the callback.
#[repr(C)]
struct Receiver<'a> {
    base: pg_sys::DestReceiver,
    f: &'a mut dyn FnMut(&Row),
    seen: u64,
    /// The context the callback runs in, reset after each row.
    row_context: pg_sys::MemoryContext,
}

#[pg_guard]
unsafe extern "C-unwind" fn receive_slot(
    slot: *mut pg_sys::TupleTableSlot,
    receiver: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: the receiver is the base of a Receiver that stream() keeps alive while it runs
    let r = unsafe { &mut *(receiver as *mut Receiver<'_>) };
    r.seen += 1;
    // SAFETY: the row context lives as long as the receiver; what the callback allocates there
    // does not outlive the callback (a Row's values are valid while it runs)
    unsafe {
        let previous = pg_sys::MemoryContextSwitchTo(r.row_context);
        (r.f)(&Row {
            source: Source::Slot(slot),
        });
        pg_sys::MemoryContextSwitchTo(previous);
        pg_sys::MemoryContextReset(r.row_context);
    }
    true
}

#[pg_guard]
unsafe extern "C-unwind" fn receiver_noop_startup(
    _receiver: *mut pg_sys::DestReceiver,
    _operation: i32,
    _desc: pg_sys::TupleDesc,
) {
}

#[pg_guard]
unsafe extern "C-unwind" fn receiver_noop(_receiver: *mut pg_sys::DestReceiver) {}

/// Runs `q` for its effect; returns the number of rows it processed.
pub fn run(q: &Query<'_>, args: &[DatumWithOid<'_>]) -> Result<u64, FractalityError> {
    let plan = plan_for(q, args)?;
    // SAFETY: as in rows
    unsafe {
        let status = pg_sys::SPI_execute_plan_with_paramlist(plan, param_list(q, args), false, 0);
        if status < 0 {
            return Err(spi_failure(q.name, status));
        }
        let n = pg_sys::SPI_processed;
        if !pg_sys::SPI_tuptable.is_null() {
            pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
        }
        Ok(n)
    }
}

/// The first column of the first row, if any.
pub fn one<T: FromDatum>(
    q: &Query<'_>,
    args: &[DatumWithOid<'_>],
    read_only: bool,
) -> Result<Option<T>, FractalityError> {
    Ok(rows(q, args, read_only, |r| r.get::<T>(1))?
        .into_iter()
        .next()
        .flatten())
}

/// The id that `q`, a writer, returns (its first column): XX000 when it returns none.
pub fn returned_id(q: &Query<'_>, args: &[DatumWithOid<'_>]) -> Result<Uuid, FractalityError> {
    one::<Uuid>(q, args, false)?.ok_or_else(|| FractalityError::Internal {
        query: q.name,
        detail: "no id returned".into(),
    })
}

/// A query read in batches, for scans that stop early (distance order until a threshold).
pub struct Cursor {
    portal: pg_sys::Portal,
    name: &'static str,
}

impl Cursor {
    pub fn open(
        q: &Query<'_>,
        args: &[DatumWithOid<'_>],
        read_only: bool,
    ) -> Result<Cursor, FractalityError> {
        let plan = plan_for(q, args)?;
        // SAFETY: a kept plan and a parameter list of its types; SPI copies the list into the
        // portal, which is closed on drop
        let portal = unsafe {
            pg_sys::SPI_cursor_open_with_paramlist(
                std::ptr::null(),
                plan,
                param_list(q, args),
                read_only,
            )
        };
        Cursor::opened(q, portal)
    }

    /// The cursor of `portal`, which SPI has just opened for `q` (NULL when it could not).
    fn opened(q: &Query<'_>, portal: pg_sys::Portal) -> Result<Cursor, FractalityError> {
        if portal.is_null() {
            return Err(spi_failure(q.name, unsafe { pg_sys::SPI_result }));
        }
        Ok(Cursor {
            portal,
            name: q.name,
        })
    }

    /// The next `n` rows mapped by `f` (fewer at the end, none after it).
    pub fn fetch<R>(&mut self, n: i64, f: impl FnMut(&Row) -> R) -> Vec<R> {
        // SAFETY: an open portal of this SPI connection
        unsafe {
            pg_sys::SPI_cursor_fetch(self.portal, true, n as _);
            collect(f)
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        // While unwinding from an error, the abort of the (sub)transaction closes the portal.
        if !std::thread::panicking() {
            // SAFETY: the portal is open
            unsafe { pg_sys::SPI_cursor_close(self.portal) }
        }
    }
}
