//! remember's work: a memory stored in the caller's tenant, or the memory it duplicates
//! reinforced (the same key, or the nearest within the threshold, found by [`crate::search`]).

use std::collections::HashSet;

use pgrx::Uuid;

use crate::errors::FractalityError;
use crate::models::Model;
use crate::search::TenantScan;
use crate::spi;
use crate::vector::Vector;

use super::input::{check_similarity, Memory};
use super::store;

/// The nearest unexpired memory of `tenant` within `dedup` cosine similarity of `embedding`. The
/// scan goes on past a batch whose near duplicates have all expired: a live one may come later
/// in the distance order.
fn live_duplicate(
    model: &Model,
    tenant: Uuid,
    embedding: &[f32],
    dedup: f64,
) -> Result<Option<Uuid>, FractalityError> {
    let mut scan = TenantScan::open(model, tenant, embedding, false, 4)?;
    loop {
        let batch = scan.next_batch()?;
        let mut near: Vec<(Uuid, f64)> = Vec::new();
        let mut past = batch.is_empty();
        for h in batch {
            if h.order < dedup - scan.margin() {
                past = true;
                break;
            }
            if h.similarity >= dedup {
                near.push((h.node_id, h.similarity));
            }
        }
        if !near.is_empty() {
            let ids: Vec<Uuid> = near.iter().map(|n| n.0).collect();
            let alive: HashSet<Uuid> = store::details(&ids)?.into_keys().collect();
            near.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if let Some((id, _)) = near.into_iter().find(|(id, _)| alive.contains(id)) {
                return Ok(Some(id));
            }
        }
        if past {
            return Ok(None);
        }
    }
}

/// Stores `m` in `tenant`'s memory, or reinforces the memory it duplicates (the same key, or the
/// nearest within `dedup` cosine similarity): (node id, created). The caller holds the tenant's
/// remember lock and has validated `m`.
fn remember_one(
    tenant: Uuid,
    model: &Model,
    m: &Memory,
    dedup: f64,
    energy: f64,
) -> Result<(Uuid, bool), FractalityError> {
    let key = match &m.key {
        Some(k) => k.clone(),
        None => store::derived_key(&m.content)?,
    };
    let reinforce = |id: Uuid| store::reinforce(id, tenant, energy, &m.metadata, m.ttl);
    // the same key
    if let Some((id, has_embedding)) = store::by_key(tenant, &key, &model.name)? {
        reinforce(id)?;
        if !has_embedding {
            crate::graph::write_embedding(
                id,
                tenant,
                &model.name,
                Vector::from_slice(&m.embedding)?,
            )?;
        }
        return Ok((id, false));
    }
    // a near duplicate: the nearest unexpired memory within the threshold
    if let Some(id) = live_duplicate(model, tenant, &m.embedding, dedup)? {
        reinforce(id)?;
        return Ok((id, false));
    }
    // a new memory
    let id = store::insert(tenant, &key, &m.content, &m.metadata, m.ttl)?;
    crate::graph::write_embedding(id, tenant, &model.name, Vector::from_slice(&m.embedding)?)?;
    Ok((id, true))
}

/// Remembers memories in the caller's tenant, one after the other, with the rules of `remember`;
/// every memory is checked before anything is written.
pub fn remember_all(
    memories: &[Memory],
    model: &str,
    dedup: f64,
) -> Result<Vec<(Uuid, bool)>, FractalityError> {
    let dedup = check_similarity("dedup_threshold", dedup)?;
    let energy = crate::gucs::remember_energy();
    spi::connect(|| {
        let tenant = store::tenant()?;
        let model = Model::lookup(model)?;
        for m in memories {
            m.validate(&model)?;
        }
        store::lock(tenant)?;
        memories
            .iter()
            .map(|m| remember_one(tenant, &model, m, dedup, energy))
            .collect()
    })
}
