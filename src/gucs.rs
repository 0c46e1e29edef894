//! Settings (`fractality.*` GUCs). Versioned application configuration belongs in
//! `fractality.configuration_store`, not here.

use pgrx::{pg_guard, pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicI64, Ordering};

/// `fractality.user_id`: the tenant of the session, a uuid. Row-level security shows a role that
/// is neither owner nor BYPASSRLS only the rows whose `user_id` equals it; unset, it sees nothing.
/// Applications set it per request or per transaction (`SET LOCAL fractality.user_id = '…'`).
static USER_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `fractality.notify`: whether changes to nodes send `pg_notify('consciousness_update', …)`.
/// Off by default: every session of the database may LISTEN, whatever its role, and a payload
/// names the tenant, the node's key and its energy; row-level security does not reach it. Turn
/// it on (`ALTER DATABASE … SET fractality.notify = on`) where every listener may see every
/// tenant's changes; bulk loads turn it off for their transaction with `SET LOCAL`.
static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `fractality.decay_rate`: the fraction of its energy a node keeps per tick, in (0, 1]; 0.95.
static DECAY_RATE: GucSetting<f64> = GucSetting::<f64>::new(0.95);

/// `fractality.decay_tick`: the time one decay step takes, a positive duration ('1 hour',
/// '30 min', '1h 30min', '01:30:00', '2 days'); '1 hour'. Parsed once when set.
static DECAY_TICK: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"1 hour"));

/// `fractality.atp_floor`: energy never decays below this level, in [0, 1]; 0.1. A value already
/// below it stays as it is.
static ATP_FLOOR: GucSetting<f64> = GucSetting::<f64>::new(0.1);

/// `fractality.exact_scan_limit`: a tenant's search (find_resonant, recall, remember's duplicate
/// check) reads a tenant of at most this many 384-d embeddings exactly (every one of them, a
/// recall of 1) instead of through its partition's HNSW index; for a model of d dimensions the
/// limit is scaled by 384 / d. 0 turns the exact scan off. A tenant with a graph of its own
/// (`build_tenant_graphs`) is searched through it whatever its size. 500: about where reading every
/// embedding (and counting the tenant's entries to know it is small) starts to cost more than one
/// filtered HNSW scan of the partition (docs/BENCHMARKS.md, "Resonance").
static EXACT_SCAN_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(500);

/// `fractality.tenant_graphs`: whether a tenant's search goes through the tenant's own HNSW
/// index where build_tenant_graphs made one (on), or through its partition's shared index (off,
/// for a comparison or a diagnosis); on.
static TENANT_GRAPHS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `fractality.staged_limit`: a tenant's staged embeddings of a model (remember_many's, outside
/// the HNSW index, read exactly by every search) that remember_many leaves staged; past it the
/// call indexes them all itself, as GIN's pending list is flushed past gin_pending_list_limit.
/// 20 000 (384-d rows; scaled by 384 / dimensions): a search then reads at most about 25 ms of
/// staged rows between two run_maintenance. 0 indexes every batch at once.
static STAGED_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(20_000);

/// `fractality.tenant_plan_memory`: how much memory (kB) a backend's plans bound to tenants may
/// hold (spi/tenant_plans.rs), the least recently used freed first: 16 MB keeps a search's and
/// a recall's plans for about 60 tenants.
static TENANT_PLAN_MEMORY: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024);

/// `fractality.consensus_exact_limit`: crystallize_consensus compares its seed with every
/// embedding of the model, across tenants, while the model holds at most this many 384-d
/// embeddings (scaled by 384 / d), instead of reading the partitions' HNSW indexes, whose search
/// may miss a member (an approximate index; seen on pgvector 0.8.0 as a consensus of three users
/// found without one of them). 0 turns the exact path off. 10 000: a few milliseconds of
/// distances for a function a curator runs, not an agent's hot path.
static CONSENSUS_EXACT_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `fractality.embedding_partitions`: how many hash partitions (by tenant) node_embeddings gets
/// when the extension is created, 1 to 1024; 64 (a tenant group per partition: the fewer tenants
/// share a partition, the less its HNSW scan has to skip). Read only by CREATE EXTENSION and the
/// 0.4.0 -> 0.5.0 update (and so by a restore's CREATE EXTENSION): set it before, e.g.
/// `SET fractality.embedding_partitions = 256; CREATE EXTENSION fractality;`.
static EMBEDDING_PARTITIONS: GucSetting<i32> = GucSetting::<i32>::new(64);

/// `fractality.maintenance_lock_wait`: how long a maintenance step that makes, moves or drops
/// partitions (ensure_partitions, archive_old_events, archive_streams, retention in
/// run_maintenance) tries for its table locks without queueing behind a long transaction, in
/// milliseconds; then 55P03 (run_maintenance leaves the step to its next run). 0 waits in
/// PostgreSQL's lock queue as long as it takes. Read by the SQL of sql/archive.sql
/// (`_lock_for_partitions`); defined here so that SHOW and SET check it.
static MAINTENANCE_LOCK_WAIT: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `fractality.replay_fold_after`: priorities written back to a replay buffer since its last fold
/// at which update_priorities folds them into the items and the sum tree; 8192 (32 calls of 256).
/// 0 folds on every call.
static REPLAY_FOLD_AFTER: GucSetting<i32> = GucSetting::<i32>::new(8192);

/// `fractality.remember_energy`: the energy `remember` feeds a memory it already holds (the same
/// key, or one within the duplicate threshold), in [0, 1]; 0.1.
static REMEMBER_ENERGY: GucSetting<f64> = GucSetting::<f64>::new(0.1);

/// `fractality.recall_w_sim`, `recall_w_energy`, `recall_w_edge`: the weights of relevance,
/// current energy and the edge to the context in `recall`'s score, each in [0, 1]; the seed's
/// resonance weights 0.5, 0.3 and 0.2. A call's own weights take precedence.
static RECALL_W_SIM: GucSetting<f64> = GucSetting::<f64>::new(0.5);
static RECALL_W_ENERGY: GucSetting<f64> = GucSetting::<f64>::new(0.3);
static RECALL_W_EDGE: GucSetting<f64> = GucSetting::<f64>::new(0.2);

/// The tenant the session set (`fractality.user_id`), unparsed.
pub fn user_id() -> Option<CString> {
    USER_ID.get()
}

/// `fractality.decay_rate`.
#[inline]
pub fn decay_rate() -> f64 {
    DECAY_RATE.get()
}

/// `fractality.atp_floor`.
#[inline]
pub fn atp_floor() -> f64 {
    ATP_FLOOR.get()
}

/// `fractality.exact_scan_limit` (for 384-d embeddings).
pub fn exact_scan_limit() -> i32 {
    EXACT_SCAN_LIMIT.get()
}

/// `fractality.tenant_plan_memory`, in bytes.
pub fn tenant_plan_memory() -> usize {
    TENANT_PLAN_MEMORY.get().max(0) as usize * 1024
}

/// `fractality.staged_limit` (for 384-d embeddings).
pub fn staged_limit() -> i32 {
    STAGED_LIMIT.get()
}

/// `fractality.consensus_exact_limit` (for 384-d embeddings).
pub fn consensus_exact_limit() -> i32 {
    CONSENSUS_EXACT_LIMIT.get()
}

/// `fractality.replay_fold_after`.
pub fn replay_fold_after() -> usize {
    REPLAY_FOLD_AFTER.get().max(0) as usize
}

/// `fractality.remember_energy`.
pub fn remember_energy() -> f64 {
    REMEMBER_ENERGY.get()
}

/// `fractality.recall_w_sim`, `recall_w_energy` and `recall_w_edge`.
pub fn recall_weights() -> (f64, f64, f64) {
    (
        RECALL_W_SIM.get(),
        RECALL_W_ENERGY.get(),
        RECALL_W_EDGE.get(),
    )
}

/// fractality.decay_tick in microseconds, set by its assign hook.
static DECAY_TICK_US: AtomicI64 = AtomicI64::new(3_600_000_000);

/// The current `fractality.decay_tick` in microseconds.
#[inline]
pub fn decay_tick_us() -> i64 {
    DECAY_TICK_US.load(Ordering::Relaxed)
}

/// Tells the GUC machinery why a value was refused (it raises 22023 with this detail).
unsafe fn refuse(detail: &str) -> bool {
    let c = CString::new(detail).unwrap_or_default();
    unsafe { pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(c.as_ptr()) };
    false
}

#[pg_guard]
unsafe extern "C-unwind" fn check_decay_rate(
    newval: *mut f64,
    _extra: *mut *mut core::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let v = unsafe { *newval };
    if v > 0.0 && v <= 1.0 {
        true
    } else {
        unsafe { refuse("fractality.decay_rate must lie in (0, 1]: the fraction kept per tick.") }
    }
}

/// [`crate::decay::curve::parse_tick`] with a panic taken as a refusal: a GUC hook must answer,
/// not raise (raised while the library loads, it left the library half loaded for the session).
fn parse_tick_caught(text: &str) -> Result<i64, String> {
    std::panic::catch_unwind(|| crate::decay::curve::parse_tick(text))
        .unwrap_or_else(|_| Err(format!("\"{text}\" could not be read")))
}

#[pg_guard]
unsafe extern "C-unwind" fn check_decay_tick(
    newval: *mut *mut core::ffi::c_char,
    _extra: *mut *mut core::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let p = unsafe { *newval };
    if p.is_null() {
        return unsafe { refuse("fractality.decay_tick must be set to a positive duration.") };
    }
    let text = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    match parse_tick_caught(&text) {
        Ok(_) => true,
        Err(why) => unsafe { refuse(&format!("fractality.decay_tick: {why}.")) },
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn assign_decay_tick(
    newval: *const core::ffi::c_char,
    _extra: *mut core::ffi::c_void,
) {
    if newval.is_null() {
        return;
    }
    let text = unsafe { CStr::from_ptr(newval) }.to_string_lossy();
    if let Ok(us) = parse_tick_caught(&text) {
        DECAY_TICK_US.store(us, Ordering::Relaxed);
    }
}

/// Whether `fractality.notify` is on: the WHEN condition of the trigger nodes_notify, read from
/// the setting's variable (no text parsing per row).
#[pgrx::pg_extern(stable, parallel_safe)]
pub fn notify_enabled() -> bool {
    NOTIFY.get()
}

/// `fractality.tenant_graphs`.
pub fn tenant_graphs() -> bool {
    TENANT_GRAPHS.get()
}

pub fn init() {
    GucRegistry::define_string_guc(
        c"fractality.user_id",
        c"The tenant (user_id uuid) of this session.",
        c"Row-level security on fractality's tenant tables shows only the rows whose user_id equals this setting.",
        &USER_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"fractality.tenant_graphs",
        c"Search a tenant through its own HNSW index where build_tenant_graphs made one.",
        c"Off: through the partition's index shared with the other tenants there.",
        &TENANT_GRAPHS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"fractality.notify",
        c"Send consciousness_update notifications for changes to nodes.",
        c"Off by default: any session of the database may LISTEN, whatever its role, and a notification names the tenant, the node's key and its energy. Turn it on only where every listener may see every tenant's changes.",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc_with_hooks(
        c"fractality.decay_rate",
        c"Fraction of its energy (ATP) a node keeps per decay tick, in (0, 1].",
        c"current_atp decays a node's energy as atp * decay_rate ^ (elapsed / decay_tick), never below fractality.atp_floor.",
        &DECAY_RATE,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
        Some(check_decay_rate),
        None,
        None,
    );
    // SAFETY: the hooks are #[pg_guard]ed and only parse the value.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"fractality.decay_tick",
            c"The time one decay step takes: a positive duration such as '1 hour'.",
            c"Units us, ms, s, min, h, d, w (and long forms), [+-]HH:MM[:SS] (after them too: 1 day 02:00:00), a bare number of seconds, or an interval as any IntervalStyle prints it (PT2H, @ 2 hours, 1 2:00:00); months and years are refused.",
            &DECAY_TICK,
            GucContext::Userset,
            GucFlags::default(),
            Some(check_decay_tick),
            Some(assign_decay_tick),
            None,
        );
    }
    GucRegistry::define_float_guc(
        c"fractality.atp_floor",
        c"Energy (ATP) never decays below this level, in [0, 1].",
        c"A value already below the floor stays as it is.",
        &ATP_FLOOR,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"fractality.exact_scan_limit",
        c"A tenant's search reads a tenant of at most this many 384-d embeddings exactly instead of through the HNSW index.",
        c"find_resonant, recall and remember read every embedding of a small tenant (recall 1); above the limit (scaled by 384 / dimensions) the tenant's partition index gives the candidates. 0 turns the exact scan off. A tenant with a graph of its own (build_tenant_graphs) is searched through it whatever its size.",
        &EXACT_SCAN_LIMIT,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"fractality.tenant_plan_memory",
        c"How much memory a backend's query plans bound to a tenant may hold.",
        c"Queries of one tenant's embeddings are planned for their tenant, so that they lock its partition alone, and kept; past this much the least recently used are freed, and planned again when their tenant comes back (0.1-0.2 ms a query).",
        &TENANT_PLAN_MEMORY,
        0,
        1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"fractality.staged_limit",
        c"remember_many leaves at most this many 384-d embeddings of a tenant staged outside the HNSW index.",
        c"Staged embeddings are read exactly by every search until index_staged_embeddings or run_maintenance indexes them; past the limit (scaled by 384 / dimensions) remember_many indexes them itself. 0 indexes every batch at once.",
        &STAGED_LIMIT,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"fractality.consensus_exact_limit",
        c"crystallize_consensus compares its seed with every embedding of the model while the model holds at most this many 384-d embeddings.",
        c"Up to the limit (scaled by 384 / dimensions) a consensus finds every member exactly; above it the partitions' HNSW indexes give the candidates. 0 turns the exact path off.",
        &CONSENSUS_EXACT_LIMIT,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"fractality.embedding_partitions",
        c"Hash partitions (by tenant) of node_embeddings, fixed when the extension is created.",
        c"Read by CREATE EXTENSION and the 0.4.0 -> 0.5.0 update only: set it before either (and before a restore, to the dumped database's count).",
        &EMBEDDING_PARTITIONS,
        1,
        1024,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"fractality.maintenance_lock_wait",
        c"How long a maintenance step that makes, moves or drops partitions tries for its table locks.",
        c"A try takes every table the pass needs or none, waiting 100 ms to 1 s for each lock, so that a long transaction does not make the pass hold up every writer behind it; after this long, 55P03 (run_maintenance names the steps in \"busy\" and goes on). 0 waits in the lock queue as long as it takes.",
        &MAINTENANCE_LOCK_WAIT,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"fractality.replay_fold_after",
        c"Priorities written back to a replay buffer since its last fold at which update_priorities folds them into the items and the sum tree.",
        c"update_priorities appends the priorities it is given (one row of replay_pending) and folds every pending one once this many were written since the last fold (a slot once a call), rewriting each tree block once for all of them; samples see pending priorities either way. 0 folds on every call.",
        &REPLAY_FOLD_AFTER,
        0,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"fractality.remember_energy",
        c"Energy remember feeds a memory the tenant already holds (same key or a near duplicate), in [0, 1].",
        c"The memory is pulsed by this much instead of being stored again.",
        &REMEMBER_ENERGY,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    for (name, short, setting) in [
        (
            c"fractality.recall_w_sim",
            c"Weight of relevance (similarity, or the fused text and vector rank) in recall's score.",
            &RECALL_W_SIM,
        ),
        (
            c"fractality.recall_w_energy",
            c"Weight of a memory's current energy in recall's score.",
            &RECALL_W_ENERGY,
        ),
        (
            c"fractality.recall_w_edge",
            c"Weight of the edge to the context node in recall's score.",
            &RECALL_W_EDGE,
        ),
    ] {
        GucRegistry::define_float_guc(
            name,
            short,
            c"recall's score is w_sim x relevance + w_energy x current energy + w_edge x edge weight to the context; each weight in [0, 1] (defaults 0.5, 0.3, 0.2, the seed's resonance).",
            setting,
            0.0,
            1.0,
            GucContext::Userset,
            GucFlags::default(),
        );
    }
    // Unknown fractality.* settings are typos: refuse them once the library is loaded.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"fractality".as_ptr()) };
}
