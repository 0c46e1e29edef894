//! The memory API's queries: the one part of `memory` that knows tables and columns. Each
//! function runs one query of `sql/queries/memory_*.sql` through [`crate::spi`], as the caller
//! (row-level security holds); SPI must be connected ([`crate::spi::connect`]). Every query sees
//! the transaction's own earlier writes (remember reads what it has just written).

use std::collections::HashMap;

use pgrx::datum::{DatumWithOid, Interval};
use pgrx::{pg_sys, JsonB, Uuid};
use serde_json::Value;

use crate::errors::FractalityError;
use crate::jsonb::JsonbText;
use crate::spi::{self, query, Query};
use crate::vector::Vector;

const KEYS: Query<'static> = query!("memory_keys", [TEXTARRAYOID]);
const LOCK: Query<'static> = query!("memory_lock", [UUIDOID]);
const UNLOCK: Query<'static> = query!("memory_unlock", [UUIDOID]);
const BY_KEYS: Query<'static> =
    query!("memory_by_keys", [UUIDOID, TEXTARRAYOID, TEXTOID]).per_tenant();
const INSERT_MANY: Query<'static> = query!(
    "memory_insert_many",
    [
        UUIDOID,
        TEXTARRAYOID,
        TEXTARRAYOID,
        JSONBARRAYOID,
        INTERVALARRAYOID
    ]
);
const REINFORCE: Query<'static> = query!(
    "memory_reinforce",
    [
        UUIDOID,
        FLOAT8OID,
        JSONBOID,
        INTERVALOID,
        UUIDOID,
        BOOLOID,
        TEXTOID
    ]
);
const LOCK_RECALLED: Query<'static> = query!("memory_lock_recalled", [UUIDARRAYOID, UUIDOID]);
const PULSE: Query<'static> = query!("memory_pulse", [UUIDARRAYOID, FLOAT8OID, UUIDOID]);
const FORGET: Query<'static> = query!("memory_forget", [UUIDOID, TEXTOID]);
const LOCK_NODES: Query<'static> =
    query!("memory_lock_nodes", [UUIDOID, UUIDARRAYOID, UUIDARRAYOID]);
const FORGET_IDS: Query<'static> = query!("memory_forget_ids", [UUIDOID, UUIDARRAYOID]);
const DETAILS: Query<'static> = query!("memory_details", [UUIDARRAYOID]);
const TEXT: Query<'static> =
    query!("memory_text", [UUIDOID, TEXTOID, INT8OID, TEXTOID]).per_tenant();
const CONTEXT: Query<'static> = query!("memory_context", [UUIDOID, TEXTOID]);
/// Its types are set per call (the OID of `vector[]` is the database's).
const EMBED_MANY: Query<'static> = query!("memory_embed_many", []);
const STAGED_COUNT: Query<'static> =
    query!("memory_staged_count", [UUIDOID, TEXTOID, INT8OID]).per_tenant();
const LOCK_STAGED: Query<'static> = query!("memory_lock_staged", [UUIDOID, TEXTOID]).per_tenant();
const INDEX_STAGED: Query<'static> =
    query!("memory_index_staged", [UUIDOID, TEXTOID, UUIDARRAYOID]).per_tenant();

/// A memory's key, content, metadata and current energy.
pub type Detail = (String, Option<String>, JsonbText, f64);

// ---- locks -------------------------------------------------------------------------------------

/// The ids a locking query `q` returns: the rows a writer then writes in a statement of its own
/// (memory_lock_recalled.sql says why).
fn locked_ids(q: &Query<'_>, args: &[DatumWithOid<'_>]) -> Result<Vec<Uuid>, FractalityError> {
    spi::some_rows(q, args, false, |r| r.get::<Uuid>(1))
}

/// One writer of `tenant`'s memories at a time, until the transaction ends: the tenant's key in
/// fractality.locks inserted and deleted again (memory_lock.sql says how that holds). Once per
/// transaction: each insert of the key checks every entry the transaction's earlier ones left in
/// the index (none is dead to it before it ends), so a lock taken at every call made 20 000
/// memories told in one transaction take 3 ms each for the lock alone. A lock taken in a
/// subtransaction that is still open holds; one whose subtransaction ended (rolled back, or
/// released into its parent) is taken again.
pub fn lock(tenant: Uuid) -> Result<(), FractalityError> {
    thread_local! {
        /// The transaction (the backend's local id), subtransaction and tenant of the last lock.
        static HELD: std::cell::Cell<Option<(u32, u32, Uuid)>> = const { std::cell::Cell::new(None) };
    }
    // SAFETY: the backend's own PGPROC and transaction state, inside a transaction
    let (lxid, subid) = unsafe { ((*pg_sys::MyProc).lxid, pg_sys::GetCurrentSubTransactionId()) };
    let held = HELD.with(|h| h.get());
    if let Some((x, sub, t)) = held {
        // SAFETY: a lookup in the current transaction's stack of subtransactions
        if x == lxid && t == tenant && unsafe { pg_sys::SubTransactionIsActive(sub) } {
            return Ok(());
        }
    }
    spi::run(&LOCK, &[tenant.into()])?;
    spi::run(&UNLOCK, &[tenant.into()])?;
    HELD.with(|h| h.set(Some((lxid, subid, tenant))));
    Ok(())
}

// ---- remember and forget -----------------------------------------------------------------------

/// The keys of memories of `contents` remembered without one, in order.
pub fn derived_keys(contents: Vec<&str>) -> Result<Vec<String>, FractalityError> {
    if contents.is_empty() {
        return Ok(Vec::new());
    }
    let keys = spi::rows(&KEYS, &[contents.into()], false, |r| r.get::<String>(1))?;
    Ok(keys.into_iter().map(Option::unwrap_or_default).collect())
}

/// Memories by key: (id, whether it has an embedding of the model asked for).
pub type ByKey = HashMap<String, (Uuid, bool)>;

/// `tenant`'s memories with the keys `keys`: each live key's (id, whether it has an embedding
/// of `model`), and the ids of those that have expired.
pub fn by_keys(
    tenant: Uuid,
    keys: Vec<&str>,
    model: &str,
) -> Result<(ByKey, Vec<Uuid>), FractalityError> {
    let args = [tenant.into(), keys.into(), model.into()];
    let found = spi::rows(&BY_KEYS, &args, false, |r| {
        Some((
            r.get::<String>(1)?,
            (r.get::<Uuid>(2)?, r.get::<bool>(3)?),
            r.get::<bool>(4)?,
        ))
    })?;
    let (mut live, mut expired) = (HashMap::new(), Vec::new());
    for (key, memory, gone) in found.into_iter().flatten() {
        if gone {
            expired.push(memory.0);
        } else {
            live.insert(key, memory);
        }
    }
    Ok((live, expired))
}

/// Memory `id` of `tenant` told again: fed by `energy`, `metadata` merged, its expiry set by
/// `ttl` when given and told `by_key`; a similar fact's `ttl` only moves an expiry later; `content`
/// its text when it had none (a graph node).
pub fn reinforce(
    id: Uuid,
    tenant: Uuid,
    energy: f64,
    (content, metadata): (&str, &Value),
    (ttl, by_key): (Option<Interval>, bool),
) -> Result<bool, FractalityError> {
    Ok(spi::run(
        &REINFORCE,
        &[
            id.into(),
            energy.into(),
            JsonB(metadata.clone()).into(),
            ttl.into(),
            tenant.into(),
            by_key.into(),
            content.into(),
        ],
    )? > 0)
}

/// New memories of `tenant` (key, content, metadata, ttl), in one statement; each key's id (a
/// key another session stored meanwhile is left out: the caller's to report).
pub fn insert_many(
    tenant: Uuid,
    memories: &[(&str, &str, &Value, Option<Interval>)],
) -> Result<HashMap<String, Uuid>, FractalityError> {
    if memories.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<&str> = memories.iter().map(|m| m.0).collect();
    let contents: Vec<&str> = memories.iter().map(|m| m.1).collect();
    let metadata: Vec<JsonB> = memories.iter().map(|m| JsonB(m.2.clone())).collect();
    let ttls: Vec<Option<Interval>> = memories.iter().map(|m| m.3).collect();
    let rows = spi::rows(
        &INSERT_MANY,
        &[
            tenant.into(),
            keys.into(),
            contents.into(),
            metadata.into(),
            ttls.into(),
        ],
        false,
        |r| Some((r.get::<String>(1)?, r.get::<Uuid>(2)?)),
    )?;
    Ok(rows.into_iter().flatten().collect())
}

/// The embeddings of `tenant`'s new memories `ids` (none has one of `model` yet), in one
/// statement; staged beside the model's HNSW index with `staged`.
pub fn insert_embeddings(
    tenant: Uuid,
    ids: Vec<Uuid>,
    embeddings: Vec<Vector<'_>>,
    model: &str,
    staged: bool,
) -> Result<u64, FractalityError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let embeddings: DatumWithOid = embeddings.into();
    let types = [
        pg_sys::UUIDOID,
        pg_sys::UUIDARRAYOID,
        embeddings.oid(),
        pg_sys::TEXTOID,
        pg_sys::BOOLOID,
    ];
    let q = Query {
        types: &types,
        ..EMBED_MANY
    };
    spi::run(
        &q,
        &[
            tenant.into(),
            ids.into(),
            embeddings,
            model.into(),
            staged.into(),
        ],
    )
}

/// How many embeddings of `model` `tenant` holds staged, counted up to `cap`.
pub fn staged_count(tenant: Uuid, model: &str, cap: i64) -> Result<i64, FractalityError> {
    Ok(spi::one(
        &STAGED_COUNT,
        &[tenant.into(), model.into(), cap.into()],
        false,
    )?
    .unwrap_or(0))
}

/// `tenant`'s staged embeddings of `model` moved into the model's HNSW index (locked first, in
/// the order of their keys, then written: memory_lock_staged.sql); how many.
pub fn index_staged(tenant: Uuid, model: &str) -> Result<u64, FractalityError> {
    let locked = locked_ids(&LOCK_STAGED, &[tenant.into(), model.into()])?;
    if locked.is_empty() {
        return Ok(0);
    }
    spi::run(&INDEX_STAGED, &[tenant.into(), model.into(), locked.into()])
}

/// Deletes `tenant`'s memory `key`; the rows deleted.
pub fn forget(tenant: Uuid, key: &str) -> Result<u64, FractalityError> {
    spi::run(&FORGET, &[tenant.into(), key.into()])
}

/// `tenant`'s nodes `ids` deleted, as [`forget`] deletes one (none: no query).
pub fn forget_ids(tenant: Uuid, ids: Vec<Uuid>) -> Result<(), FractalityError> {
    if ids.is_empty() {
        return Ok(());
    }
    let deleted: std::collections::HashSet<Uuid> = spi::some_rows(
        &FORGET_IDS,
        &[tenant.into(), ids.clone().into()],
        false,
        |r| r.get::<Uuid>(1),
    )?;
    // one left: another session wrote it again (live, or a later expiry) since it was read
    match ids.into_iter().find(|id| !deleted.contains(id)) {
        Some(kept) => Err(FractalityError::ConcurrentChange(format!("node {kept}"))),
        None => Ok(()),
    }
}

/// `tenant`'s nodes `deleted` (locked for update) and `reinforced` (for no key update), in one
/// pass in the order of their ids (none: no query).
pub fn lock_nodes(
    tenant: Uuid,
    deleted: Vec<Uuid>,
    reinforced: Vec<Uuid>,
) -> Result<(), FractalityError> {
    if deleted.is_empty() && reinforced.is_empty() {
        return Ok(());
    }
    spi::run(
        &LOCK_NODES,
        &[tenant.into(), deleted.into(), reinforced.into()],
    )?;
    Ok(())
}

// ---- recall ------------------------------------------------------------------------------------

/// Key, content, metadata and energy of unexpired memories.
pub fn details(ids: &[Uuid]) -> Result<HashMap<Uuid, Detail>, FractalityError> {
    spi::some_rows(&DETAILS, &[ids.to_vec().into()], false, |r| {
        Some((r.get::<Uuid>(1)?, detail_at(r, 2)?))
    })
}

/// A memory's details from the columns `at` (key), `at + 1` (content), `at + 2` (metadata) and
/// `at + 3` (current energy); None when the key or the energy is NULL.
fn detail_at(r: &spi::Row, at: i32) -> Option<Detail> {
    Some((
        r.get::<String>(at)?,
        r.get::<String>(at + 1),
        r.get::<JsonbText>(at + 2)
            .unwrap_or_else(|| JsonbText("null".into())),
        r.get::<f64>(at + 3)?,
    ))
}

/// A node of recall's context: its id and the weight of its edge to the context node (NULL for
/// the context node itself).
pub type ContextRow = (Option<Uuid>, Option<f64>);

/// `tenant`'s node `ctx` and its neighbours (either direction); empty when there is no such node.
pub fn context(tenant: Uuid, ctx: &str) -> Result<Vec<ContextRow>, FractalityError> {
    spi::rows(&CONTEXT, &[tenant.into(), ctx.into()], false, |r| {
        (r.get::<Uuid>(1), r.get::<f64>(2))
    })
}

/// A text candidate of recall: its id, text rank, details and embedding of the model (None
/// without one).
pub struct TextHit {
    pub id: Uuid,
    pub rank: f64,
    pub detail: Detail,
    pub embedding: Option<Vec<f32>>,
}

/// `tenant`'s unexpired memories matching the words `q`, best first, at most `limit`, with their
/// details and embeddings of `model`.
pub fn text(
    tenant: Uuid,
    q: &str,
    limit: i64,
    model: &str,
) -> Result<Vec<TextHit>, FractalityError> {
    let args = [tenant.into(), q.into(), limit.into(), model.into()];
    let rows = spi::rows(&TEXT, &args, false, |r| -> Result<_, FractalityError> {
        let (Some(id), Some(rank), Some(detail)) =
            (r.get::<Uuid>(1), r.get::<f64>(2), detail_at(r, 3))
        else {
            return Ok(None);
        };
        // SAFETY: column 7 is the embedding, a vector
        let embedding = unsafe { r.vector(7) }?;
        Ok(Some(TextHit {
            id,
            rank,
            detail,
            embedding,
        }))
    })?;
    rows.into_iter().filter_map(Result::transpose).collect()
}

/// The recalled memories `ids` of `tenant` fed by `energy` each: locked first, in id order, then
/// written (memory_lock_recalled.sql says why in two statements).
pub fn pulse(ids: Vec<Uuid>, energy: f64, tenant: Uuid) -> Result<(), FractalityError> {
    let locked = locked_ids(&LOCK_RECALLED, &[ids.into(), tenant.into()])?;
    if locked.is_empty() {
        return Ok(());
    }
    spi::run(&PULSE, &[locked.into(), energy.into(), tenant.into()])?;
    Ok(())
}
