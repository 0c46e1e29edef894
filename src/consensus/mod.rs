//! Consensus: a collective node crystallises when nodes of several users resonate.
//!
//! `crystallize_consensus` runs as the caller: it reads the source node and its embedding under
//! row-level security, then hands them to `_crystallize_consensus`, which runs SECURITY DEFINER
//! with a pinned search_path (set in sql/resonance.sql) because it must see across tenants. That
//! part acts only for a caller presenting the node's stored embedding, and publishes only what
//! gives no tenant's data away: the number of users, the group resonance to one decimal, and the
//! links, which each tenant sees only for its own nodes, with their similarity to the seed to
//! one decimal; no label, no metadata; the centroid is kept where only the owner reads it.
//! Nothing published is computed from any tenant's label, and no number is precise enough to
//! solve for another tenant's vector, however many probe nodes a caller links.
//!
//! [`math`] is the math (centroid, group resonance, rounding), [`store`] the queries, this file
//! the `#[pg_extern]` layer and the steps of a crystallisation.

use std::collections::HashSet;

use pgrx::prelude::*;
use pgrx::Uuid;

pub mod math;
pub mod store;

use crate::errors::{node_not_found, FractalityError, OrReport};
use crate::models::{model_arg, Model};
use crate::resonance::{self, threshold, NodeRef};
use crate::spi;
use crate::vector::{CosineTo, Vector};
pub use math::*;
use store::{Candidate, Consensus};

/// Forms or updates the consensus around `node` (see docs/API.md): when the nodes within `threshold`
/// of it (any tenant, the source included; the 1 000 nearest) belong to at least
/// `min_contributors` distinct users (an expired memory, the seed included, counts for none). Runs as the caller, who must see `node` (P0002 otherwise): it reads the node's embedding of
/// `model` under row-level security and hands it to `_crystallize_consensus`, the part that sees
/// across tenants. NULL when the node has no embedding of the model (nothing written) or too few
/// users hold similar nodes: then the consensus whose links are mostly to those nodes, if any,
/// is removed (its group no longer holds the idea at this threshold), whoever crystallised it.
#[pg_extern(
    volatile,
    strict,
    sql = r#"
CREATE FUNCTION fractality."crystallize_consensus"(
    "node" uuid, "threshold" double precision DEFAULT 0.7, "min_contributors" integer DEFAULT 3,
    "model" text DEFAULT 'default'
) RETURNS uuid STRICT VOLATILE
LANGUAGE c AS 'MODULE_PATHNAME', 'crystallize_consensus_wrapper';
"#
)]
fn crystallize_consensus(
    node: Uuid,
    threshold: f64,
    min_contributors: i32,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Uuid> {
    crate::errors::writer(c"crystallize_consensus");
    let model = unsafe { model_arg(fcinfo, 3) }.expect("strict");
    self::threshold(threshold).unwrap_or_report();
    check_min_contributors(min_contributors).unwrap_or_report();
    spi::connect(|| -> Result<Option<Uuid>, FractalityError> {
        let model = Model::lookup(&model)?;
        let src = resonance::node(&NodeRef::Id(node))?;
        let Some(embedding) = resonance::embeddings_of(src.tenant, &[node], &model)?.remove(&node)
        else {
            return Ok(None);
        };
        store::call(node, embedding, threshold, min_contributors, &model)
    })
    .unwrap_or_report()
}

/// The `n` nearest of `others` (by distance, then id and tenant), nearest first.
fn nearest(mut others: Vec<(f64, store::Member)>, n: usize) -> Vec<store::Member> {
    others.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| (a.1.id, a.1.user).cmp(&(b.1.id, b.1.user)))
    });
    others.truncate(n);
    others.into_iter().map(|(_, m)| m).collect()
}

/// The part of crystallize_consensus that sees across tenants: SECURITY DEFINER (sql/resonance.sql)
/// with a pinned search_path. It acts only for a caller that presents `node`'s stored embedding
/// of `model` exactly, which only a role that may read the node has (P0002 otherwise), and
/// returns nothing but the consensus id: counts and group resonance (coarse) are what the
/// consensus stores for every tenant to read, no label and no metadata; the centroid is the
/// owner's alone.
#[pg_extern(volatile, strict)]
fn _crystallize_consensus(
    node: Uuid,
    embedding: Vector<'_>,
    threshold: f64,
    min_contributors: i32,
    model: &str,
) -> Option<Uuid> {
    crate::errors::writer(c"_crystallize_consensus");
    let max_distance = 1.0 - self::threshold(threshold).unwrap_or_report();
    let min_users = check_min_contributors(min_contributors).unwrap_or_report();
    spi::connect(|| consensus(node, &embedding, max_distance, min_users, model)).unwrap_or_report()
}

fn consensus(
    node: Uuid,
    embedding: &Vector<'_>,
    max_distance: f64,
    min_users: usize,
    model: &str,
) -> Result<Option<Uuid>, FractalityError> {
    let model = Model::lookup(model)?;
    // the source, as stored: the caller's embedding must be exactly it
    // an id is unique within a tenant only: the node of that id whose embedding the caller
    // presents (another tenant's node of the same id is not the caller's)
    let source = store::sources(node, &model)?
        .into_iter()
        .find(|m| m.embedding.as_slice() == embedding.as_slice());
    let Some(source) = source else {
        return Err(node_not_found(node));
    };

    // its neighbours across tenants until the threshold, nearest first: every distance while
    // the model holds few embeddings, else the partitions' HNSW indexes
    let to_seed = CosineTo::new(embedding.as_slice());
    // members by (id, tenant): an id is unique within a tenant only
    let source_user = source.user;
    let mut seen: HashSet<(Uuid, Uuid)> = HashSet::from([(node, source_user)]);
    // the others with their distances in full precision (1 - the similarity: an index of a model
    // above 2 000 dimensions orders in halfvec, the staged rows exactly): the staged rows and the
    // indexes' each come nearest first, and the nearest of both together are kept below
    let mut others: Vec<(f64, store::Member)> = Vec::new();
    let mut admit = |candidates: Vec<Candidate>, bound: f64| -> Result<bool, FractalityError> {
        for r in candidates {
            let Some((distance, m)) = r? else { continue };
            if distance.is_nan() {
                continue; // a zero vector
            }
            if distance > bound {
                return Ok(false);
            }
            let sim = to_seed.of(&m.embedding)?.unwrap_or(-1.0);
            if sim >= 1.0 - max_distance && seen.insert((m.id, m.user)) {
                others.push((1.0 - sim, m));
            }
        }
        Ok(true)
    };
    let limit = model.rows_within(crate::gucs::consensus_exact_limit());
    if limit > 0 && store::model_holds_at_most(&model, limit)? {
        admit(
            store::members_exact(embedding.as_slice(), &model, max_distance, false)?,
            max_distance,
        )?;
    } else {
        admit(
            store::members_exact(embedding.as_slice(), &model, max_distance, true)?,
            max_distance,
        )?;
        let bound = max_distance + model.index_margin();
        store::members_indexed(embedding.as_slice(), &model, |batch| admit(batch, bound))?;
    }
    let mut members = vec![source];
    members.extend(nearest(others, store::MAX_MEMBERS as usize - 1));

    // one writer of a model's consensus at a time, and what it counts locked against a delete
    // (in the order of their ids, as every writer of several memories locks them): two curators
    // of one group at once would otherwise each make a consensus, and a member forgotten meanwhile
    // would be counted in the consensus and fail its link
    let kept = store::lock(&model, &members)?;
    if !kept.contains(&(node, source_user)) {
        return Ok(None); // the seed itself deleted meanwhile
    }
    members.retain(|m| kept.contains(&(m.id, m.user)));

    let users: HashSet<Uuid> = members.iter().map(|m| m.user).collect();
    if users.len() < min_users || users.len() < MIN_CONTRIBUTORS as usize {
        // too few users hold the idea now: the consensus they held goes
        store::remove(&model, &members, (node, source_user))?;
        return Ok(None);
    }
    let vectors: Vec<&[f32]> = members.iter().map(|m| m.embedding.as_slice()).collect();
    // members that cancel out share no direction: no consensus (nothing written)
    let Some(centre) = centroid(&vectors)? else {
        return Ok(None);
    };
    let group = coarse(group_resonance(&vectors)?.unwrap_or(1.0));
    // each member's similarity to the seed (the caller's node), to one decimal
    let sims: Vec<f64> = vectors
        .iter()
        .map(|v| Ok(coarse(to_seed.of(v)?.unwrap_or(0.0))))
        .collect::<Result<_, FractalityError>>()?;

    let id = store::save(Consensus {
        seed: (node, source_user),
        model: &model,
        members: &members,
        count: users.len() as i32,
        group,
        centre,
        sims,
    })?;
    Ok(Some(id))
}
