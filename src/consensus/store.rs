//! The consensus queries (`sql/queries/consensus_*.sql`) through [`crate::spi`]: the source as
//! stored, the members within the distance (exactly, or through the partitions' HNSW indexes),
//! the locks, and the consensus, its centroid and its links written. SPI connected.

use std::collections::HashSet;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::Uuid;
use serde_json::Value;

use super::math::MAX_CONTRIBUTORS;
use crate::errors::FractalityError;
use crate::models::Model;
use crate::spi::{self, query, Cursor, Query};
use crate::vector::Vector;

/// At most this many nodes (the nearest to the source) make up one consensus: as many as the
/// largest `min_contributors` asks for users.
pub const MAX_MEMBERS: i64 = MAX_CONTRIBUTORS as i64;
/// Candidates read from an index at a time.
const FETCH: i64 = 64;

const SOURCE: Query<'static> = query!("consensus_source", [UUIDOID, TEXTOID]);
/// A template (rendered per model).
const MEMBERS: &str = include_str!("../../sql/queries/consensus_members.sql");
/// With the vector type's OID, known at run time.
const MEMBERS_EXACT: &str = include_str!("../../sql/queries/consensus_members_exact.sql");
/// The same for the staged rows, which the indexes do not hold.
const MEMBERS_STAGED: &str = include_str!("../../sql/queries/consensus_members_staged.sql");
const MODEL_SIZE: Query<'static> = query!("consensus_model_size", [TEXTOID, INT8OID]);
const LOCK: Query<'static> = query!("consensus_lock", [TEXTOID]);
const LOCK_MEMBERS: Query<'static> = query!("consensus_lock_members", [UUIDARRAYOID, UUIDARRAYOID]);
const EXISTING: Query<'static> = query!(
    "consensus_existing",
    [UUIDARRAYOID, UUIDARRAYOID, UUIDOID, UUIDOID, TEXTOID]
);
/// consensus_insert and consensus_update: one of them, with the same parameters (the key or
/// the id first); then the centroid.
const INSERT: Query<'static> = query!(
    "consensus_insert",
    [UUIDOID, TEXTOID, JSONBOID, INT4OID, FLOAT8OID, TEXTOID]
);
const UPDATE: Query<'static> = query!(
    "consensus_update",
    [UUIDOID, TEXTOID, JSONBOID, INT4OID, FLOAT8OID, TEXTOID]
);
/// With pgvector's schema, known at run time.
const CENTROID: &str = include_str!("../../sql/queries/consensus_centroid.sql");
const REMOVE: Query<'static> = query!("consensus_remove", [UUIDOID]);
const OF_SEED: Query<'static> = query!("consensus_of_seed", [UUIDOID, TEXTOID, UUIDOID]);
const UNLINK: Query<'static> = query!("consensus_unlink", [UUIDOID, UUIDARRAYOID, UUIDARRAYOID]);
const LINK: Query<'static> = query!(
    "consensus_link",
    [UUIDOID, UUIDARRAYOID, UUIDARRAYOID, FLOAT8ARRAYOID]
);
/// With the vector type's OID, known at run time.
const CALL: &str = include_str!("../../sql/queries/consensus_call.sql");

/// A node of a consensus: its id, its tenant and its embedding of the model.
pub struct Member {
    pub id: Uuid,
    pub user: Uuid,
    pub embedding: Vec<f32>,
}

/// A candidate: its distance to the seed and the member; None for a NULL column.
pub type Candidate = Result<Option<(f64, Member)>, FractalityError>;

/// A candidate row of consensus_members(_exact, _staged): (distance, member).
fn member(r: &spi::Row) -> Candidate {
    let (Some(id), Some(user), Some(distance)) =
        (r.get::<Uuid>(1), r.get::<Uuid>(2), r.get::<f64>(4))
    else {
        return Ok(None);
    };
    // SAFETY: column 3 is the embedding, a vector
    let embedding = unsafe { r.vector(3) }?;
    Ok(embedding.map(|embedding| {
        (
            distance,
            Member {
                id,
                user,
                embedding,
            },
        )
    }))
}

/// The nodes of id `node` with an embedding of `model`, in every tenant (an id is unique within
/// a tenant only), as stored.
pub fn sources(node: Uuid, model: &Model) -> Result<Vec<Member>, FractalityError> {
    spi::rows(
        &SOURCE,
        &[node.into(), model.name.as_str().into()],
        false,
        |r| -> Result<Option<Member>, FractalityError> {
            let Some(user) = r.get::<Uuid>(1) else {
                return Ok(None);
            };
            // SAFETY: column 2 is the embedding, a vector
            let embedding = unsafe { r.vector(2) }?;
            Ok(embedding.map(|embedding| Member {
                id: node,
                user,
                embedding,
            }))
        },
    )?
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map(|v| v.into_iter().flatten().collect())
}

/// Whether `model` holds at most `limit` embeddings.
pub fn model_holds_at_most(model: &Model, limit: i64) -> Result<bool, FractalityError> {
    let n: i64 = spi::one(
        &MODEL_SIZE,
        &[model.name.as_str().into(), (limit + 1).into()],
        false,
    )?
    .unwrap_or(0);
    Ok(n <= limit)
}

/// Every embedding of `model` within `max_distance` of `seed`, computed exactly, nearest first:
/// of the whole model, or (`staged_only`) of its staged rows, which no index holds.
pub fn members_exact(
    seed: &[f32],
    model: &Model,
    max_distance: f64,
    staged_only: bool,
) -> Result<Vec<Candidate>, FractalityError> {
    let (name, text) = if staged_only {
        ("consensus_members_staged", MEMBERS_STAGED)
    } else {
        ("consensus_members_exact", MEMBERS_EXACT)
    };
    let v: DatumWithOid = Vector::from_slice(seed)?.into();
    spi::rows(
        &Query {
            name,
            text: &crate::vector::qualify(text),
            types: &[v.oid(), pg_sys::TEXTOID, pg_sys::FLOAT8OID, pg_sys::INT8OID],
            per_tenant: false,
        },
        &[
            v,
            model.name.as_str().into(),
            max_distance.into(),
            MAX_MEMBERS.into(),
        ],
        false,
        member,
    )
}

/// The embeddings of `model` nearest to `seed` through the partitions' HNSW indexes, in batches
/// of distance order, given to `admit` until it returns false or they run out.
pub fn members_indexed(
    seed: &[f32],
    model: &Model,
    mut admit: impl FnMut(Vec<Candidate>) -> Result<bool, FractalityError>,
) -> Result<(), FractalityError> {
    let v: DatumWithOid = Vector::from_slice(seed)?.into();
    let text = model.render(MEMBERS);
    let mut cursor = Cursor::open(
        &Query {
            name: "consensus_members",
            text: &text,
            types: &[v.oid(), pg_sys::INT8OID],
            per_tenant: false,
        },
        &[v, MAX_MEMBERS.into()],
        false,
    )?;
    loop {
        let batch = cursor.fetch(FETCH, member);
        if batch.is_empty() || !admit(batch)? {
            return Ok(());
        }
    }
}

/// One writer of `model`'s consensus at a time; then the members, in the order of their ids,
/// locked against a delete: those still there, as (id, tenant).
pub fn lock(model: &Model, members: &[Member]) -> Result<HashSet<(Uuid, Uuid)>, FractalityError> {
    spi::run(&LOCK, &[model.name.as_str().into()])?;
    spi::some_rows(
        &LOCK_MEMBERS,
        &[
            members.iter().map(|m| m.id).collect::<Vec<_>>().into(),
            members.iter().map(|m| m.user).collect::<Vec<_>>().into(),
        ],
        false,
        |r| Some((r.get::<Uuid>(1)?, r.get::<Uuid>(2)?)),
    )
}

/// What a consensus stores and publishes.
pub struct Consensus<'a> {
    /// The seed node and its tenant.
    pub seed: (Uuid, Uuid),
    pub model: &'a Model,
    pub members: &'a [Member],
    /// Distinct users among the members.
    pub count: i32,
    /// The group resonance, coarse.
    pub group: f64,
    /// The unit centroid, which only the owner reads.
    pub centre: Vec<f32>,
    /// Each member's similarity to the seed, coarse.
    pub sims: Vec<f64>,
}

/// The consensus of `model` whose links are mostly to `members` (see consensus_existing.sql).
fn existing(
    model: &Model,
    members: &[Member],
    seed: (Uuid, Uuid),
) -> Result<Option<Uuid>, FractalityError> {
    spi::one(
        &EXISTING,
        &[
            members.iter().map(|m| m.id).collect::<Vec<_>>().into(),
            members.iter().map(|m| m.user).collect::<Vec<_>>().into(),
            seed.0.into(),
            seed.1.into(),
            model.name.as_str().into(),
        ],
        false,
    )
}

/// The consensus of `model` that `members`, the group of `seed` that no longer holds enough
/// users, hold most of, or else the one kept under the seed's key while the seed is linked to it,
/// removed: a consensus does not outlive its group (a member forgotten, or moved away with its
/// link left). Whether there was one.
pub fn remove(
    model: &Model,
    members: &[Member],
    seed: (Uuid, Uuid),
) -> Result<bool, FractalityError> {
    let id = match existing(model, members, seed)? {
        Some(id) => Some(id),
        None => spi::one(
            &OF_SEED,
            &[seed.0.into(), model.name.as_str().into(), seed.1.into()],
            false,
        )?,
    };
    let Some(id) = id else {
        return Ok(false);
    };
    spi::run(&REMOVE, &[id.into()])?;
    Ok(true)
}

/// Writes `c`: the consensus its members hold most of updated, or a new one; its centroid; its
/// links replaced by the members'. Its id.
pub fn save(c: Consensus<'_>) -> Result<Uuid, FractalityError> {
    let ids: Vec<Uuid> = c.members.iter().map(|m| m.id).collect();
    let users: Vec<Uuid> = c.members.iter().map(|m| m.user).collect();
    let existing = existing(c.model, c.members, c.seed)?;
    let (save, key) = match existing {
        Some(id) => (&UPDATE, id),
        None => (&INSERT, c.seed.0),
    };
    // no label and no metadata: a label or a value shown only when several users share it
    // confirms a guess about another tenant's (a caller may hold several tenants), and the
    // caller's own would reach every tenant
    let label: Option<String> = None;
    let meta = pgrx::JsonB(Value::Object(Default::default()));
    let args = [
        key.into(),
        label.into(),
        meta.into(),
        c.count.into(),
        c.group.into(),
        c.model.name.as_str().into(),
    ];
    let id = match existing {
        // the consensus found may be deleted by another session before its row is locked here:
        // the UPDATE then finds nothing
        Some(id) => {
            spi::one::<Uuid>(save, &args, false)?.ok_or(FractalityError::ConsensusGone(id))?
        }
        None => spi::returned_id(save, &args)?,
    };
    spi::run(
        &Query {
            name: "consensus_centroid",
            text: &crate::vector::qualify(CENTROID),
            types: &[pg_sys::UUIDOID, pg_sys::FLOAT4ARRAYOID],
            per_tenant: false,
        },
        &[id.into(), c.centre.into()],
    )?;
    spi::run(
        &UNLINK,
        &[id.into(), ids.clone().into(), users.clone().into()],
    )?;
    spi::run(&LINK, &[id.into(), ids.into(), users.into(), c.sims.into()])?;
    Ok(id)
}

/// `_crystallize_consensus(node, embedding, threshold, min_contributors, model)`, called as the
/// caller (who may execute it only where granted).
pub fn call(
    node: Uuid,
    embedding: Vec<f32>,
    threshold: f64,
    min_contributors: i32,
    model: &Model,
) -> Result<Option<Uuid>, FractalityError> {
    let v: DatumWithOid = Vector::from_vec(embedding)?.into();
    spi::one::<Uuid>(
        &Query {
            name: "consensus_call",
            text: CALL,
            types: &[
                pg_sys::UUIDOID,
                v.oid(),
                pg_sys::FLOAT8OID,
                pg_sys::INT4OID,
                pg_sys::TEXTOID,
            ],
            per_tenant: false,
        },
        &[
            node.into(),
            v,
            threshold.into(),
            min_contributors.into(),
            model.name.as_str().into(),
        ],
        false,
    )
}
