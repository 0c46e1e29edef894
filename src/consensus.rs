//! Consensus: a collective node crystallises when nodes of several users resonate.
//!
//! `crystallize_consensus` runs SECURITY DEFINER with a pinned search_path (set in
//! sql/resonance.sql, where pgvector's schema is looked up at install time): it must see across
//! tenants, so it returns and stores only aggregates (centroid, counts, group resonance, a label
//! and metadata shared by a majority) and the links, which each tenant sees only for its own
//! nodes. The math (centroid, group resonance, merging) lives in plain functions below.

use std::collections::{BTreeMap, HashSet};

use pgrx::prelude::*;
use serde_json::Value;

use crate::errors::{node_not_found, FractalityError, OrReport};
use crate::resonance::threshold;
use crate::vector::{cosine, normalize, Vector};

/// At most this many nodes (the nearest to the source) make up one consensus.
pub const MAX_MEMBERS: i64 = 500;
const FETCH: i64 = 64;

// ---- pure math ------------------------------------------------------------------------------

/// The unit centroid of unit-normalised vectors.
pub fn centroid(vectors: &[&[f32]]) -> Result<Vec<f32>, FractalityError> {
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
    normalize(&mean)
}

/// Mean cosine similarity over all pairs; None with fewer than two vectors.
pub fn group_resonance(vectors: &[&[f32]]) -> Result<Option<f64>, FractalityError> {
    let (mut sum, mut n) = (0.0, 0u64);
    for (i, a) in vectors.iter().enumerate() {
        for b in &vectors[i + 1..] {
            if let Some(c) = cosine(a, b)? {
                sum += c;
                n += 1;
            }
        }
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// The label a strict majority of the contributing nodes carry and a strict majority of the
/// contributing users hold (a user counts once, however many of its nodes carry it); else the words all labels start with (e.g. "Quantum
/// consciousness" from "Quantum consciousness #1" and "... #2"); else none. Never the label of
/// a minority of the users: a consensus exposes only what the users share.
pub fn merge_labels<U: Eq + std::hash::Hash + Ord + Copy>(
    labels: &[(U, Option<String>)],
) -> Option<String> {
    let users: HashSet<U> = labels.iter().map(|(u, _)| *u).collect();
    let present: Vec<(U, &str)> = labels
        .iter()
        .filter_map(|(u, l)| l.as_deref().map(|l| (*u, l.trim())))
        .collect();
    if present.is_empty() {
        return None;
    }
    let mut holders: BTreeMap<&str, (usize, HashSet<U>)> = BTreeMap::new();
    for (u, l) in &present {
        let h = holders.entry(l).or_default();
        h.0 += 1;
        h.1.insert(*u);
    }
    if let Some((top, _)) = holders
        .iter()
        .filter(|(_, (n, us))| 2 * n > present.len() && 2 * us.len() > users.len())
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
    {
        return Some(top.to_string());
    }
    let words: Vec<Vec<&str>> = present
        .iter()
        .map(|(_, l)| l.split_whitespace().collect())
        .collect();
    let mut common: Vec<&str> = Vec::new();
    for (i, w) in words[0].iter().enumerate() {
        if words.iter().all(|ws| ws.get(i) == Some(w)) {
            common.push(w);
        } else {
            break;
        }
    }
    let prefix = common
        .join(" ")
        .trim_end_matches(|c: char| !c.is_alphanumeric())
        .to_string();
    (!prefix.is_empty()).then_some(prefix)
}

/// The top-level keys whose value a strict majority of the contributing nodes carry and a strict
/// majority of the contributing users hold (a user counts once per value).
pub fn merge_metadata<U: Eq + std::hash::Hash + Copy>(all: &[(U, Value)]) -> Value {
    let users: HashSet<U> = all.iter().map(|(u, _)| *u).collect();
    // per key: each value with the nodes and the users that hold it
    type Holders<'v, U> = Vec<(&'v Value, usize, HashSet<U>)>;
    let mut holders: BTreeMap<&str, Holders<'_, U>> = BTreeMap::new();
    for (u, m) in all {
        if let Value::Object(map) = m {
            for (k, v) in map {
                let slot = holders.entry(k.as_str()).or_default();
                match slot.iter_mut().find(|(x, _, _)| *x == v) {
                    Some((_, n, us)) => {
                        *n += 1;
                        us.insert(*u);
                    }
                    None => slot.push((v, 1, HashSet::from([*u]))),
                }
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (k, values) in holders {
        if let Some((v, _, _)) = values
            .iter()
            .find(|(_, n, us)| 2 * n > all.len() && 2 * us.len() > users.len())
        {
            out.insert(k.to_string(), (*v).clone());
        }
    }
    Value::Object(out)
}

// ---- SQL ------------------------------------------------------------------------------------

/// May the caller see this tenant's node? Its own tenant (fractality.user_id), or any when the
/// calling role (the one SET ROLE chose, else the session user: inside SECURITY DEFINER
/// current_user is the owner) is a superuser or bypasses row-level security.
const CALLER_MAY_SEE_SQL: &str = "
    SELECT $1 = fractality.current_user_id()
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                    WHERE r.rolname = CASE pg_catalog.current_setting('role')
                                           WHEN 'none' THEN session_user
                                           ELSE pg_catalog.current_setting('role') END
                      AND (r.rolsuper OR r.rolbypassrls))";

const SOURCE_SQL: &str = "
    SELECT n.user_id, e.node_id IS NOT NULL
      FROM fractality.nodes n LEFT JOIN fractality.node_embeddings e ON e.node_id = n.id
     WHERE n.id = $1";

/// Nodes of every tenant nearest to the source (itself included), from the HNSW index; the
/// caller stops reading once the distance passes the threshold.
const MEMBERS_SQL: &str = "
    SELECT e.node_id, e.user_id, e.embedding,
           e.embedding <=> (SELECT s.embedding FROM fractality.node_embeddings s WHERE s.node_id = $1)
      FROM fractality.node_embeddings e
     ORDER BY e.embedding <=> (SELECT s.embedding FROM fractality.node_embeddings s WHERE s.node_id = $1)
     LIMIT $2";

const SOURCE_EMBEDDING_SQL: &str = "
    SELECT e.node_id, e.user_id, e.embedding FROM fractality.node_embeddings e WHERE e.node_id = $1";

const MEMBER_INFO_SQL: &str = "
    SELECT n.user_id, n.label, n.metadata FROM fractality.nodes n WHERE n.id = ANY($1) ORDER BY n.id";

/// The consensus node most of these nodes are already linked to.
const EXISTING_SQL: &str = "
    SELECT l.consensus_id FROM fractality.consensus_links l
     WHERE l.node_id = ANY($1)
     GROUP BY l.consensus_id
     ORDER BY count(*) DESC, bool_or(l.node_id = $2) DESC, l.consensus_id
     LIMIT 1";

const INSERT_SQL: &str = "
    INSERT INTO fractality.consensus_nodes
        (node_key, label, metadata, centroid, contributor_count, resonance_score, last_calculated)
    VALUES ('consensus-' || $1::text, $2, $3, $4::real[]::vector, $5, $6, now())
    ON CONFLICT (node_key) DO UPDATE
       SET label = EXCLUDED.label, metadata = EXCLUDED.metadata, centroid = EXCLUDED.centroid,
           contributor_count = EXCLUDED.contributor_count,
           resonance_score = EXCLUDED.resonance_score, last_calculated = now()
    RETURNING id";

const UPDATE_SQL: &str = "
    UPDATE fractality.consensus_nodes
       SET label = $2, metadata = $3, centroid = $4::real[]::vector, contributor_count = $5,
           resonance_score = $6, last_calculated = now()
     WHERE id = $1
    RETURNING id";

const UNLINK_SQL: &str = "
    DELETE FROM fractality.consensus_links WHERE consensus_id = $1 AND NOT (node_id = ANY($2))";

const LINK_SQL: &str = "
    INSERT INTO fractality.consensus_links (consensus_id, node_id, user_id, similarity)
    SELECT $1, m.node_id, m.user_id, m.similarity
      FROM unnest($2::uuid[], $3::uuid[], $4::float8[]) AS m (node_id, user_id, similarity)
    ON CONFLICT (consensus_id, node_id) DO UPDATE SET similarity = EXCLUDED.similarity";

struct Member {
    id: pgrx::Uuid,
    user: pgrx::Uuid,
    embedding: Vec<f32>,
}

fn check_min_contributors(n: i32) -> Result<usize, FractalityError> {
    if !(2..=1000).contains(&n) {
        return Err(FractalityError::invalid(
            "min_contributors",
            n,
            "A consensus needs from 2 to 1000 distinct users (default 3).",
        ));
    }
    Ok(n as usize)
}

fn spi<T>(r: Result<T, pgrx::spi::SpiError>) -> T {
    r.unwrap_or_else(|e| panic!("crystallize_consensus: {e}"))
}

/// Forms or updates the consensus node of the nodes that lie within `threshold` (cosine
/// similarity) of `node`, when they belong to at least `min_contributors` distinct users (the
/// source's owner included): centroid, contributor count, group resonance (mean pairwise
/// similarity), a label and metadata shared by the contributors, and a link per contributing
/// node. Returns its id; NULL when there are too few users (nothing is written then).
/// Idempotent. SECURITY DEFINER (see sql/resonance.sql).
#[pg_extern(volatile, strict)]
fn crystallize_consensus(
    node: pgrx::Uuid,
    threshold: default!(f64, 0.7),
    min_contributors: default!(i32, 3),
) -> Option<pgrx::Uuid> {
    let max_distance = 1.0 - self::threshold(threshold).unwrap_or_report();
    let min_users = check_min_contributors(min_contributors).unwrap_or_report();
    Spi::connect_mut(|client| {
        let t = spi(client.select(SOURCE_SQL, Some(1), &[node.into()]));
        if t.is_empty() {
            node_not_found(node).report();
        }
        let row = t.first();
        let owner: pgrx::Uuid = spi(row.get(1)).expect("user_id");
        let has_embedding: bool = spi(row.get(2)).unwrap_or(false);
        let visible: bool = spi(client
            .select(CALLER_MAY_SEE_SQL, Some(1), &[owner.into()])
            .and_then(|t| t.first().get::<bool>(1)))
        .unwrap_or(false);
        if !visible {
            node_not_found(node).report();
        }
        if !has_embedding {
            return None;
        }

        // the source first, then its neighbours across tenants until the threshold
        let mut members: Vec<Member> = Vec::new();
        let mut seen: HashSet<pgrx::Uuid> = HashSet::new();
        // the table positioned on a row: (node_id, user_id, embedding read in place, ...)
        let read = |t: &pgrx::spi::SpiTupleTable<'_>| -> Member {
            let datum = spi(t.get_datum_by_ordinal(3)).expect("embedding");
            // SAFETY: a non-null vector datum of a tuple alive for this SPI session
            let v = unsafe { Vector::from_datum_ref(datum) }.unwrap_or_report();
            Member {
                id: spi(t.get(1)).expect("node_id"),
                user: spi(t.get(2)).expect("user_id"),
                embedding: v.as_slice().to_vec(),
            }
        };
        let mut t = spi(client.select(SOURCE_EMBEDDING_SQL, Some(1), &[node.into()]));
        while t.next().is_some() {
            let m = read(&t);
            seen.insert(m.id);
            members.push(m);
        }
        let mut cursor = client.open_cursor(MEMBERS_SQL, &[node.into(), MAX_MEMBERS.into()]);
        'scan: loop {
            let mut batch = spi(cursor.fetch(FETCH));
            if batch.is_empty() {
                break;
            }
            while batch.next().is_some() {
                let distance: f64 = spi(batch.get(4)).unwrap_or(f64::INFINITY);
                if distance > max_distance {
                    break 'scan;
                }
                let m = read(&batch);
                if seen.insert(m.id) {
                    members.push(m);
                }
            }
        }
        drop(cursor);

        let users: HashSet<pgrx::Uuid> = members.iter().map(|m| m.user).collect();
        if users.len() < min_users {
            return None;
        }
        let vectors: Vec<&[f32]> = members.iter().map(|m| m.embedding.as_slice()).collect();
        let centre = centroid(&vectors).unwrap_or_report();
        let group = group_resonance(&vectors)
            .unwrap_or_report()
            .unwrap_or(1.0)
            .clamp(-1.0, 1.0);
        let sims: Vec<f64> = vectors
            .iter()
            .map(|v| cosine(v, &centre).unwrap_or_report().unwrap_or(0.0))
            .collect();

        let ids: Vec<pgrx::Uuid> = members.iter().map(|m| m.id).collect();
        let mut labels = Vec::new();
        let mut metadata = Vec::new();
        for row in spi(client.select(MEMBER_INFO_SQL, None, &[ids.clone().into()])) {
            let user: pgrx::Uuid = spi(row.get(1)).expect("user_id");
            let user = *user.as_bytes();
            labels.push((user, spi(row.get::<String>(2))));
            metadata.push((
                user,
                spi(row.get::<pgrx::JsonB>(3))
                    .map(|j| j.0)
                    .unwrap_or(Value::Null),
            ));
        }
        let label = merge_labels(&labels);
        let meta = pgrx::JsonB(merge_metadata(&metadata));
        let count = users.len() as i32;

        let existing: Option<pgrx::Uuid> = spi(client
            .select(EXISTING_SQL, Some(1), &[ids.clone().into(), node.into()])
            .and_then(|t| {
                if t.is_empty() {
                    Ok(None)
                } else {
                    t.first().get(1)
                }
            }));
        let centre_arg: Vec<f32> = centre;
        // an existing consensus is updated by its id, a new one inserted for the source node
        let (sql, key): (&str, pgrx::datum::DatumWithOid) = match existing {
            Some(id) => (UPDATE_SQL, id.into()),
            None => (INSERT_SQL, node.to_string().into()),
        };
        let id: pgrx::Uuid = spi(client
            .update(
                sql,
                Some(1),
                &[
                    key,
                    label.into(),
                    meta.into(),
                    centre_arg.into(),
                    count.into(),
                    group.into(),
                ],
            )
            .and_then(|t| t.first().get(1)))
        .expect("consensus id");

        let member_users: Vec<pgrx::Uuid> = members.iter().map(|m| m.user).collect();
        spi(client.update(UNLINK_SQL, None, &[id.into(), ids.clone().into()]));
        spi(client.update(
            LINK_SQL,
            None,
            &[id.into(), ids.into(), member_users.into(), sims.into()],
        ));
        Some(id)
    })
}

/// Distinct users among (node, user) pairs; exposed for tests.
pub fn distinct_users<T: Eq + std::hash::Hash + Copy>(users: &[T]) -> usize {
    users.iter().copied().collect::<HashSet<T>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use serde_json::json;

    #[test]
    fn centroid_is_the_normalised_mean_direction() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 3.0];
        let c = centroid(&[&a, &b]).unwrap();
        assert_relative_eq!(c[0], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-6);
        assert_relative_eq!(c[1], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-6);
        assert!(centroid(&[&[1.0, 0.0], &[1.0, 0.0, 0.0]]).is_err());
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
    }

    #[test]
    fn labels_merge_by_majority_of_users_then_common_words() {
        // one label per user: users 0, 1, 2, ...
        let l = |v: &[&str]| {
            v.iter()
                .enumerate()
                .map(|(u, s)| (u, Some(s.to_string())))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            merge_labels(&l(&["Dreams", "Dreams", "Sleep"])).as_deref(),
            Some("Dreams")
        );
        assert_eq!(
            merge_labels(&l(&[
                "Quantum mind #1",
                "Quantum mind #2",
                "Quantum mind #3"
            ]))
            .as_deref(),
            Some("Quantum mind")
        );
        // no majority, nothing in common: no single user's label is exposed
        assert_eq!(merge_labels(&l(&["b", "a"])), None);
        assert_eq!(merge_labels::<usize>(&[(0, None), (1, None)]), None);
        // a label on most nodes, all of one user, is no majority of the users
        let many = [
            (0, Some("secret plan".to_string())),
            (0, Some("secret plan".to_string())),
            (0, Some("secret plan".to_string())),
            (1, Some("alpha".to_string())),
            (2, Some("gamma".to_string())),
        ];
        assert_eq!(merge_labels(&many), None);
        // a label every user holds on a few of its nodes is no majority of the nodes
        let facets: Vec<(usize, Option<String>)> = (0..3)
            .flat_map(|u| (1..=3).map(move |f| (u, Some(format!("Dreams #{f}")))))
            .collect();
        assert_eq!(merge_labels(&facets).as_deref(), Some("Dreams"));
    }

    #[test]
    fn metadata_keeps_what_a_majority_of_users_shares() {
        let m = merge_metadata(&[
            (1, json!({"theme": "dreams", "facet": 1, "secret": "x"})),
            (2, json!({"theme": "dreams", "facet": 2})),
            (3, json!({"theme": "dreams", "facet": 1})),
        ]);
        assert_eq!(m, json!({"theme": "dreams", "facet": 1}));
        assert_eq!(
            merge_metadata(&[(1, json!({"a": 1})), (2, json!({"a": 2}))]),
            json!({})
        );
        // three nodes of one user against two users: the user's secret is no majority
        let m = merge_metadata(&[
            (1, json!({"secret": "x", "theme": "t"})),
            (1, json!({"secret": "x", "theme": "t"})),
            (1, json!({"secret": "x", "theme": "t"})),
            (2, json!({"theme": "t"})),
            (3, json!({"theme": "t"})),
        ]);
        assert_eq!(m, json!({"theme": "t"}));
    }

    #[test]
    fn min_contributors_is_checked() {
        assert!(check_min_contributors(1).is_err());
        assert!(check_min_contributors(1001).is_err());
        assert_eq!(check_min_contributors(3), Ok(3));
        assert_eq!(distinct_users(&[1, 2, 2, 3]), 3);
    }
}
