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
//! solve for another tenant's vector, however many probe nodes a caller links. The math
//! (centroid, group resonance, rounding) lives in plain functions.

use std::collections::HashSet;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::Uuid;
use serde_json::Value;

use crate::errors::{count_in_range, node_not_found, FractalityError, OrReport};
use crate::models::{model_arg, Model};
use crate::resonance::{self, threshold, NodeRef};
use crate::spi::{self, query, Cursor, Query};
use crate::vector::{normalize, CosineTo, Vector};

/// At most this many nodes (the nearest to the source) make up one consensus: as many as the
/// largest `min_contributors` asks for users.
pub const MAX_MEMBERS: i64 = MAX_CONTRIBUTORS as i64;
/// The largest `min_contributors`.
const MAX_CONTRIBUTORS: i32 = 1000;
const FETCH: i64 = 64;

// ---- pure math ------------------------------------------------------------------------------

/// The unit centroid of unit-normalised vectors; None when they cancel out (their mean is the
/// zero vector, which has no direction: members on opposite sides, with a threshold <= 0).
pub fn centroid(vectors: &[&[f32]]) -> Result<Option<Vec<f32>>, FractalityError> {
    let dims = vectors.first().map_or(0, |v| v.len());
    let mut sum = vec![0.0f64; dims];
    for v in vectors {
        if v.len() != dims {
            return Err(FractalityError::DimensionMismatch(dims, v.len()));
        }
        let unit = normalize(v)?;
        for (s, x) in sum.iter_mut().zip(unit) {
            *s += x as f64;
        }
    }
    let mean: Vec<f32> = sum
        .iter()
        .map(|s| (s / vectors.len() as f64) as f32)
        .collect();
    // the mean of unit vectors has a norm in [0, 1]: below 1e-6 what is left is the sums'
    // rounding, not a direction
    let norm = mean
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm < 1e-6 {
        return Ok(None);
    }
    normalize(&mean).map(Some)
}

/// Mean cosine similarity over all pairs; None with fewer than two vectors (a zero vector, which
/// has no direction, takes part in no pair). For unit vectors u the pairs' dot products sum to
/// (|sum of u|^2 - n) / 2, so this is one pass over the vectors, not n^2 / 2 cosines (1 000
/// members: 1 000 sums, not 499 500 cosines).
pub fn group_resonance(vectors: &[&[f32]]) -> Result<Option<f64>, FractalityError> {
    let dims = vectors.first().map_or(0, |v| v.len());
    let mut sum = vec![0.0f64; dims];
    let mut n = 0u64;
    for v in vectors {
        if v.len() != dims {
            return Err(FractalityError::DimensionMismatch(dims, v.len()));
        }
        let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        for (s, &x) in sum.iter_mut().zip(v.iter()) {
            *s += x as f64 / norm;
        }
        n += 1;
    }
    if n < 2 {
        return Ok(None);
    }
    let squared: f64 = sum.iter().map(|s| s * s).sum();
    let n = n as f64;
    Ok(Some(((squared - n) / (n * (n - 1.0))).clamp(-1.0, 1.0)))
}

/// What a consensus publishes of a score that depends on other tenants' vectors: one decimal.
/// A consensus tells its readers how many users hold ideas near its seed and roughly how close
/// they are, never a number precise enough to solve for one of them (see README: consensus).
pub fn coarse(x: f64) -> f64 {
    ((x * 10.0).round() / 10.0).clamp(-1.0, 1.0)
}

// ---- SQL ------------------------------------------------------------------------------------

const SOURCE: Query<'static> = query!("consensus_source", [UUIDOID, TEXTOID]);
/// A template (rendered per model).
const MEMBERS: &str = include_str!("../sql/queries/consensus_members.sql");
/// With the vector type's OID, known at run time.
const MEMBERS_EXACT: &str = include_str!("../sql/queries/consensus_members_exact.sql");
/// The same for the staged rows, which the indexes do not hold.
const MEMBERS_STAGED: &str = include_str!("../sql/queries/consensus_members_staged.sql");
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
const CENTROID: &str = include_str!("../sql/queries/consensus_centroid.sql");
const UNLINK: Query<'static> = query!("consensus_unlink", [UUIDOID, UUIDARRAYOID, UUIDARRAYOID]);
const LINK: Query<'static> = query!(
    "consensus_link",
    [UUIDOID, UUIDARRAYOID, UUIDARRAYOID, FLOAT8ARRAYOID]
);
/// With the vector type's OID, known at run time.
const CALL: &str = include_str!("../sql/queries/consensus_call.sql");

struct Member {
    id: Uuid,
    user: Uuid,
    embedding: Vec<f32>,
}

/// A candidate row of consensus_members(_exact): (distance, member); None for a NULL column.
fn member(r: &spi::Row) -> Result<Option<(f64, Member)>, FractalityError> {
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

/// Fewest distinct users a consensus may have: with two, one contributor's vector and the
/// aggregate give away the other's.
pub const MIN_CONTRIBUTORS: i32 = 3;

fn check_min_contributors(n: i32) -> Result<usize, FractalityError> {
    const HINT: &str = "A consensus needs from 3 to 1000 distinct users (default 3): fewer would expose one user's node to another.";
    count_in_range(
        "min_contributors",
        n,
        MIN_CONTRIBUTORS,
        MAX_CONTRIBUTORS,
        HINT,
    )
}

/// Forms or updates the consensus around `node` (see README): when the nodes within `threshold`
/// of it (any tenant, the source included; the 1 000 nearest) belong to at least
/// `min_contributors` distinct users. Runs as the caller, who must see `node` (P0002 otherwise): it reads the node's embedding of
/// `model` under row-level security and hands it to `_crystallize_consensus`, the part that sees
/// across tenants. NULL when the node has no embedding of the model or too few users hold
/// similar nodes (nothing written).
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
    })
    .unwrap_or_report()
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
    let source = spi::rows(
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
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .flatten()
    // an id is unique within a tenant only: the node of that id whose embedding the caller
    // presents (another tenant's node of the same id is not the caller's)
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
    let mut members = vec![source];
    let mut admit = |candidates: Vec<Result<Option<(f64, Member)>, FractalityError>>,
                     bound: f64|
     -> Result<bool, FractalityError> {
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
                members.push(m);
            }
        }
        Ok(true)
    };
    let query: DatumWithOid = Vector::from_slice(embedding.as_slice())?.into();
    let voi = query.oid();
    let limit = model.rows_within(crate::gucs::consensus_exact_limit());
    let few = limit > 0 && {
        let n: i64 = spi::one(
            &MODEL_SIZE,
            &[model.name.as_str().into(), (limit + 1).into()],
            false,
        )?
        .unwrap_or(0);
        n <= limit
    };
    // every member within the distance, computed exactly: of the whole model, or of its staged
    // rows (remember_many's, which no index holds)
    let exact = |name: &'static str, text: &'static str| {
        spi::rows(
            &Query {
                name,
                text: &crate::vector::qualify(text),
                types: &[voi, pg_sys::TEXTOID, pg_sys::FLOAT8OID, pg_sys::INT8OID],
            },
            &[
                Vector::from_slice(embedding.as_slice())?.into(),
                model.name.as_str().into(),
                max_distance.into(),
                MAX_MEMBERS.into(),
            ],
            false,
            member,
        )
    };
    if few {
        admit(
            exact("consensus_members_exact", MEMBERS_EXACT)?,
            max_distance,
        )?;
    } else {
        admit(
            exact("consensus_members_staged", MEMBERS_STAGED)?,
            max_distance,
        )?;
        let text = model.render(MEMBERS);
        let mut cursor = Cursor::open(
            &Query {
                name: "consensus_members",
                text: &text,
                types: &[voi, pg_sys::INT8OID],
            },
            &[query, MAX_MEMBERS.into()],
            false,
        )?;
        let bound = max_distance + model.index_margin();
        loop {
            let batch = cursor.fetch(FETCH, member);
            if batch.is_empty() || !admit(batch, bound)? {
                break;
            }
        }
    }

    // one writer of a model's consensus at a time, and what it counts locked against a delete
    // (in the order of their ids, as every writer of several memories locks them): two curators
    // of one group at once would otherwise each make a consensus, and a member forgotten meanwhile
    // would be counted in the consensus and fail its link
    spi::run(&LOCK, &[model.name.as_str().into()])?;
    let kept: HashSet<(Uuid, Uuid)> = spi::some_rows(
        &LOCK_MEMBERS,
        &[
            members.iter().map(|m| m.id).collect::<Vec<_>>().into(),
            members.iter().map(|m| m.user).collect::<Vec<_>>().into(),
        ],
        false,
        |r| Some((r.get::<Uuid>(1)?, r.get::<Uuid>(2)?)),
    )?;
    if !kept.contains(&(node, source_user)) {
        return Ok(None); // the seed itself deleted meanwhile
    }
    members.retain(|m| kept.contains(&(m.id, m.user)));

    let users: HashSet<Uuid> = members.iter().map(|m| m.user).collect();
    if users.len() < min_users || users.len() < MIN_CONTRIBUTORS as usize {
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

    let ids: Vec<Uuid> = members.iter().map(|m| m.id).collect();
    // no label and no metadata: a label or a value shown only when several users share it
    // confirms a guess about another tenant's (a caller may hold several tenants), and the
    // caller's own would reach every tenant
    let label: Option<String> = None;
    let meta = pgrx::JsonB(Value::Object(Default::default()));
    let count = users.len() as i32;

    let member_users: Vec<Uuid> = members.iter().map(|m| m.user).collect();
    let existing: Option<Uuid> = spi::one(
        &EXISTING,
        &[
            ids.clone().into(),
            member_users.clone().into(),
            node.into(),
            source_user.into(),
            model.name.as_str().into(),
        ],
        false,
    )?;
    let (save, key) = match existing {
        Some(id) => (&UPDATE, id),
        None => (&INSERT, node),
    };
    let id = spi::returned_id(
        save,
        &[
            key.into(),
            label.into(),
            meta.into(),
            count.into(),
            group.into(),
            model.name.as_str().into(),
        ],
    )?;
    spi::run(
        &Query {
            name: "consensus_centroid",
            text: &crate::vector::qualify(CENTROID),
            types: &[pg_sys::UUIDOID, pg_sys::FLOAT4ARRAYOID],
        },
        &[id.into(), centre.into()],
    )?;

    spi::run(
        &UNLINK,
        &[id.into(), ids.clone().into(), member_users.clone().into()],
    )?;
    spi::run(
        &LINK,
        &[id.into(), ids.into(), member_users.into(), sims.into()],
    )?;
    Ok(Some(id))
}

pub fn distinct_users<T: Eq + std::hash::Hash + Copy>(users: &[T]) -> usize {
    users.iter().copied().collect::<HashSet<T>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::cosine;
    use approx::assert_relative_eq;

    #[test]
    fn centroid_is_the_normalised_mean_direction() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 3.0];
        let c = centroid(&[&a, &b]).unwrap().unwrap();
        assert_relative_eq!(c[0], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-6);
        assert_relative_eq!(c[1], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-6);
        assert!(centroid(&[&[1.0, 0.0], &[1.0, 0.0, 0.0]]).is_err());
        // opposite directions cancel out: no centroid, not an error
        assert_eq!(centroid(&[&[1.0, 0.0], &[-2.0, 0.0]]).unwrap(), None);
        // nor do they up to rounding
        assert_eq!(
            centroid(&[&[1.0, 0.0, 0.0], &[-1.0, 1e-9, 0.0]]).unwrap(),
            None
        );
    }

    #[test]
    fn group_resonance_is_the_mean_pairwise_cosine() {
        let (a, b, c) = ([1.0f32, 0.0], [0.0f32, 1.0], [1.0f32, 1.0]);
        let g = group_resonance(&[&a, &b, &c]).unwrap().unwrap();
        assert_relative_eq!(
            g,
            (0.0 + 2.0 * std::f64::consts::FRAC_1_SQRT_2) / 3.0,
            epsilon = 1e-9
        );
        assert_eq!(group_resonance(&[&a]).unwrap(), None);
        assert!(group_resonance(&[&a, &[1.0, 0.0, 0.0]]).is_err());
    }

    #[test]
    fn group_resonance_agrees_with_every_pair() {
        // 40 vectors of 16 dimensions (a zero one among them), from a fixed generator
        let mut x = 12345u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        };
        let mut vectors: Vec<Vec<f32>> =
            (0..40).map(|_| (0..16).map(|_| next()).collect()).collect();
        vectors[7] = vec![0.0; 16];
        let refs: Vec<&[f32]> = vectors.iter().map(|v| v.as_slice()).collect();
        let (mut sum, mut pairs) = (0.0, 0);
        for (i, a) in refs.iter().enumerate() {
            for b in &refs[i + 1..] {
                if let Some(c) = cosine(a, b).unwrap() {
                    sum += c;
                    pairs += 1;
                }
            }
        }
        let g = group_resonance(&refs).unwrap().unwrap();
        assert_relative_eq!(g, sum / pairs as f64, epsilon = 1e-12);
    }

    #[test]
    fn published_scores_have_one_decimal() {
        // exact on purpose: k / 10.0 is correctly rounded, so the nearest f64 to the decimal (what
        // prints as one decimal); a tolerance would pass 0.9000000000000001 (k * 0.1)
        assert_eq!(coarse(0.8734), 0.9);
        assert_eq!(coarse(0.7499), 0.7);
        assert_eq!(coarse(-0.04), -0.0);
        assert_eq!(coarse(1.0), 1.0);
        assert_eq!(coarse(1.04), 1.0);
    }

    #[test]
    fn min_contributors_is_checked() {
        assert!(check_min_contributors(1).is_err());
        assert!(check_min_contributors(2).is_err());
        assert!(check_min_contributors(1001).is_err());
        assert_eq!(check_min_contributors(3), Ok(3));
        assert_eq!(distinct_users(&[1, 2, 2, 3]), 3);
    }
}
