//! remember's work: a memory stored in the caller's tenant, or the memory it duplicates
//! reinforced (the same key, or the nearest within the threshold: found by [`Pool`] among those
//! the call created, and among those stored before the call by [`crate::search`] or, for a
//! batch into a small enough tenant, by [`Pool`] too, the tenant read once).
//! The new memories are inserted at the end of the call, in one statement, and their embeddings
//! after them: into the model's HNSW index (`remember`), or staged beside it (`remember_many`: a
//! batch does not pay an index insert per memory; `index_staged_embeddings` and
//! `run_maintenance` index them later).

use std::collections::{HashMap, HashSet};

use pgrx::datum::Interval;
use pgrx::Uuid;
use serde_json::Value;

use crate::errors::FractalityError;
use crate::models::Model;
use crate::search::TenantScan;
use crate::spi;
use crate::vector::Vector;

use super::input::{check_similarity, Memory};
use super::pool::{best_first, Near, Pool};
use super::store;

/// The nearest unexpired memory of `tenant` within `dedup` cosine similarity of `embedding`, with
/// its similarity. The scan goes on past a batch whose near duplicates have all expired: a live
/// one may come later in the distance order.
fn live_duplicate(
    model: &Model,
    tenant: Uuid,
    embedding: &[f32],
    dedup: f64,
) -> Result<Option<(Ref, f64)>, FractalityError> {
    let mut scan = TenantScan::open(model, tenant, embedding, false, 4)?;
    loop {
        let batch = scan.next_batch()?;
        let mut near: Vec<Near<Ref>> = Vec::new();
        let mut past = batch.is_empty();
        for h in batch {
            if h.order < dedup - scan.margin() {
                past = true;
                break;
            }
            if h.similarity >= dedup - crate::memory::pool::SAME {
                near.push(Near {
                    id: Ref::Stored(h.node_id),
                    similarity: h.similarity,
                    created: false,
                });
            }
        }
        best_first(&mut near);
        if let Some(found) = first_alive(&near)? {
            return Ok(Some(found));
        }
        if past {
            return Ok(None);
        }
    }
}

/// A memory a batch refers to: stored before the call, or the batch's `n`th new one (inserted
/// at the end of the call, with every new memory in one statement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ref {
    Stored(Uuid),
    New(usize),
}

/// What a batch writes at its end.
#[derive(Default)]
struct Pending {
    /// The key and the index in the batch of each new memory, in order.
    new: Vec<(String, usize)>,
    /// The reinforcements: (the memory told again, the index of the memory telling it), in
    /// order; applied at the end in the order of the memories' ids (as recall's pulse locks
    /// them: two writers of several memories never wait for each other).
    /// With whether it was told by its key (its ttl then sets the expiry; a similar fact's ttl
    /// only ever moves an expiry later, and leaves a memory that does not expire so).
    reinforce: Vec<(Ref, usize, bool)>,
    /// Stored memories without an embedding of the model, told again with one: (the memory,
    /// the index of the memory giving it); written once the memories are locked and reinforced
    /// (a memory deleted meanwhile is then a concurrent change, 40001, not a foreign key).
    embed: Vec<(Uuid, usize)>,
}

/// What every memory of a call shares: the tenant, the model, the duplicate threshold, and
/// whether the pool holds the whole tenant.
#[derive(Clone, Copy)]
struct Call<'a> {
    tenant: Uuid,
    model: &'a Model,
    dedup: f64,
    whole: bool,
}

/// The first memory of `near` that has not expired (those created by the call have not).
fn first_alive(near: &[Near<Ref>]) -> Result<Option<(Ref, f64)>, FractalityError> {
    let stored: Vec<Uuid> = near
        .iter()
        .take_while(|n| !n.created)
        .filter_map(|n| match n.id {
            Ref::Stored(id) => Some(id),
            Ref::New(_) => None,
        })
        .collect();
    let alive: HashSet<Uuid> = if stored.is_empty() {
        HashSet::new()
    } else {
        store::details(&stored)?.into_keys().collect()
    };
    Ok(near
        .iter()
        .find(|n| match n.id {
            Ref::New(_) => true,
            Ref::Stored(id) => alive.contains(&id),
        })
        .map(|n| (n.id, n.similarity)))
}

/// Memory `i` of a batch (`m`, its key `key`) stored in `tenant`'s memory, or the memory it
/// duplicates reinforced (the same key: one of `stored`, the tenant's memories with the batch's
/// keys, or of the batch's new ones; or the nearest within `dedup` cosine similarity): (the
/// memory, created). A new memory joins `pool` and `pending`, and so does a reinforcement: the
/// caller writes them at the end. With `whole`, `pool` holds every memory the tenant stored
/// before the call, and the tenant is not searched. The caller holds the tenant's remember lock
/// and has validated `m`.
fn remember_one(
    call: &Call<'_>,
    (i, (m, key)): (usize, (&Memory, String)),
    stored: &mut HashMap<String, (Uuid, bool)>,
    (mut near, from): (Vec<Near<Ref>>, usize),
    pool: &mut Pool<Ref>,
    pending: &mut Pending,
) -> Result<(Ref, bool), FractalityError> {
    let Call {
        tenant,
        model,
        dedup,
        whole,
    } = *call;
    // the same key: a memory this call created, or one stored before
    if let Some(r) = pool.by_key(&key) {
        pending.reinforce.push((r, i, true));
        return Ok((r, false));
    }
    if let Some((id, has_embedding)) = stored.get_mut(&key) {
        let id = *id;
        pending.reinforce.push((Ref::Stored(id), i, true));
        if !*has_embedding {
            *has_embedding = true;
            pending.embed.push((id, i));
            pool.know(Ref::Stored(id), &m.embedding);
        }
        return Ok((Ref::Stored(id), false));
    }
    // a near duplicate: the nearest unexpired memory within the threshold, in the pool and
    // (unless the pool holds the whole tenant) found by the tenant's search; of equals, the
    // first
    near.extend(pool.near_since(&m.embedding, dedup, from));
    best_first(&mut near);
    let pooled = first_alive(&near)?;
    let searched = if whole {
        None
    } else {
        live_duplicate(model, tenant, &m.embedding, dedup)?
    };
    let nearest = match (searched, pooled) {
        (Some(a), Some(b)) if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) => Some(b),
        (a, b) => a.or(b),
    };
    if let Some((r, _)) = nearest {
        pending.reinforce.push((r, i, false));
        return Ok((r, false));
    }
    // a new memory
    let r = Ref::New(pending.new.len());
    pending.new.push((key.clone(), i));
    pool.push(r, key, m.embedding.clone());
    Ok((r, true))
}

/// Memories compared with the pool in one pass over it (each of its rows read once for all of
/// them: the comparison's speed is the memory's).
const BLOCK: usize = 16;

/// A batch reads its tenant whole (once, then checks every memory in memory) while the tenant
/// holds at most this many 384-d embeddings (scaled by 384 / dimensions; about 40 MB held
/// at most) ...
const WHOLE_TENANT_ROWS: i32 = 20_000;
/// ... and at most this many per memory of the batch: reading a row costs about a thousandth
/// of one search of the tenant's index (a few ms), comparing it in memory far less.
const WHOLE_ROWS_PER_MEMORY: i64 = 1_500;

/// Remembers memories in the caller's tenant, one after the other, with the rules of `remember`;
/// every memory is checked before anything is written. The new memories are inserted at the
/// end, in one statement; their embeddings go into the model's index, or with `stage` are
/// staged beside it.
pub fn remember_all(
    memories: &[Memory],
    model: &str,
    dedup: f64,
    stage: bool,
) -> Result<Vec<(Uuid, bool)>, FractalityError> {
    let dedup = check_similarity("dedup_threshold", dedup)?;
    let energy = crate::gucs::remember_energy();
    let _settings = crate::search::Pinned::search();
    spi::connect(|| {
        let tenant = crate::tenant::required()?;
        let model = Model::lookup(model)?;
        for (i, m) in memories.iter().enumerate() {
            // which memory of a batch, as the batch's parse errors say it
            // (remember_many stages its embeddings; remember, one memory, does not)
            m.validate(&model).map_err(|e| match stage {
                false => e,
                true => FractalityError::InMemory {
                    element: i + 1,
                    inner: Box::new(e),
                },
            })?;
        }
        store::lock(tenant)?;
        let mut pool = Pool::default();
        // a batch and a tenant small enough: the tenant read whole, once
        let cap = model
            .rows_within(WHOLE_TENANT_ROWS)
            .min(WHOLE_ROWS_PER_MEMORY * memories.len() as i64);
        let whole = memories.len() > 1
            && crate::search::tenant_size(&model, tenant, cap + 1, false)? <= cap;
        if whole {
            crate::search::tenant_vectors(&model, tenant, |id, v| pool.know(Ref::Stored(id), v))?;
        }
        let call = Call {
            tenant,
            model: &model,
            dedup,
            whole,
        };
        // every memory's key (given, or derived from its content), and those the tenant holds
        let mut derived = store::derived_keys(
            memories
                .iter()
                .filter(|m| m.key.is_none())
                .map(|m| m.content.as_str())
                .collect(),
        )?
        .into_iter();
        let keys: Vec<String> = memories
            .iter()
            .map(|m| m.key.clone().or_else(|| derived.next()).unwrap_or_default())
            .collect();
        let (mut stored, expired) = store::by_keys(
            tenant,
            keys.iter().map(String::as_str).collect(),
            &model.name,
        )?;
        let mut pending = Pending::default();
        // a block of memories at a time, each compared with the pool as it was when the block
        // began in one pass over it, then with what the block added since
        let mut keys = keys.into_iter();
        let mut told = Vec::with_capacity(memories.len());
        for (b, block) in memories.chunks(BLOCK).enumerate() {
            // a block may make no query (a tenant read whole): a cancel is seen here
            pgrx::check_for_interrupts!();
            let from = pool.len();
            let embeddings: Vec<&[f32]> = block.iter().map(|m| m.embedding.as_slice()).collect();
            let early = pool.near_many(&embeddings, dedup, 0);
            for ((k, m), near) in block.iter().enumerate().zip(early) {
                let key = keys.next().unwrap_or_default();
                let i = b * BLOCK + k;
                told.push(remember_one(
                    &call,
                    (i, (m, key)),
                    &mut stored,
                    (near, from),
                    &mut pool,
                    &mut pending,
                )?);
            }
        }
        // the stored memories the call deletes (expired, told again) and reinforces, locked in
        // one pass in the order of their ids, as every writer of several memories locks them
        // (run_maintenance, a decay tick, recall's reinforcement): two such writers never wait
        // for each other in a circle
        let reinforced: Vec<Uuid> = pending
            .reinforce
            .iter()
            .filter_map(|(r, _, _)| match r {
                Ref::Stored(id) => Some(*id),
                Ref::New(_) => None,
            })
            .collect();
        store::lock_nodes(tenant, expired.clone(), reinforced)?;
        // an expired memory told again is a new one: the old goes first, as run_maintenance
        // would take it (with its embeddings, edges and stream points); reinforcing it would
        // keep it expired, never recalled
        store::forget_ids(tenant, expired)?;
        // the new memories, then what told them again, then their embeddings
        let rows: Vec<(&str, &str, &Value, Option<Interval>)> = pending
            .new
            .iter()
            .map(|(key, i)| {
                let m = &memories[*i];
                (key.as_str(), m.content.as_str(), &m.metadata, m.ttl)
            })
            .collect();
        let by_key = store::insert_many(tenant, &rows)?;
        let ids: Vec<Uuid> = pending
            .new
            .iter()
            .map(|(key, _)| {
                by_key
                    .get(key)
                    .copied()
                    .ok_or_else(|| FractalityError::ConcurrentChange(format!("'{key}'")))
            })
            .collect::<Result<_, _>>()?;
        let id = |r: Ref| match r {
            Ref::Stored(id) => id,
            Ref::New(n) => ids[n],
        };
        let mut told_again: Vec<(Uuid, usize, bool)> = pending
            .reinforce
            .iter()
            .map(|&(r, i, by_key)| (id(r), i, by_key))
            .collect();
        told_again.sort();
        for (node, i, by_key) in told_again {
            let m = &memories[i];
            // a memory deleted since it was read (run_maintenance's expiry, a DELETE): forget
            // takes the lock above, these do not
            if !store::reinforce(
                node,
                tenant,
                energy,
                (m.content.as_str(), &m.metadata),
                (m.ttl, by_key),
            )? {
                return Err(FractalityError::ConcurrentChange(format!("node {node}")));
            }
        }
        for &(node, i) in &pending.embed {
            let embedding = Vector::from_slice(&memories[i].embedding)?;
            crate::graph::write_embedding(node, tenant, &model.name, embedding, false)?;
        }
        let created = pending.new.len();
        let (new_ids, embeddings): (Vec<Uuid>, Vec<Vec<f32>>) =
            pool.into_created().map(|(r, e)| (id(r), e)).unzip();
        let embeddings = embeddings
            .into_iter()
            .map(Vector::from_vec)
            .collect::<Result<Vec<_>, _>>()?;
        store::insert_embeddings(tenant, new_ids, embeddings, &model.name, stage)?;
        // past the staged limit, the tenant's staged embeddings go into the index now
        if stage && created > 0 {
            let limit = model.rows_within(crate::gucs::staged_limit());
            if store::staged_count(tenant, &model.name, limit + 1)? > limit {
                store::index_staged(tenant, &model.name)?;
            }
        }
        Ok(told.into_iter().map(|(r, c)| (id(r), c)).collect())
    })
}
