//! The agent memory API: `remember` (deduplicating, reinforcing), `remember_many`, `recall` by a
//! query vector and words (energy-weighted, reinforced on use), `recall_explain`, `forget`.
//!
//! Everything happens in the caller's tenant (`fractality.user_id`) and as the caller: the
//! searches are [`crate::search`]'s and the writes plain SQL under row-level security.
//!
//! recall's score is `w_sim * relevance + w_energy * energy + w_edge * edge weight to the
//! context` ([`score`]). Relevance is the cosine similarity; with words it is the reciprocal-rank
//! fusion of the vector and the full-text ranking ([`rrf`]). Without words the tenant is read in
//! distance order only until no unread memory can beat the k-th best: its relevance is at most
//! the last similarity read, its energy at most 1, and its edge to the context 0 (the context's
//! neighbours are scored up front), so the scan stops at [`stop_bound`] below the k-th score.

use std::collections::{HashMap, HashSet};

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use serde_json::Value;

use crate::errors::{finite, FractalityError, OrReport};
use crate::models::Model;
use crate::search::{Path, TenantScan};
use crate::spi::{self, Query};
use crate::vector::{cosine, Vector};

/// Largest `k` recall accepts.
pub const MAX_K: i32 = 1000;
/// The constant of reciprocal-rank fusion (Cormack et al. 2009).
pub const RRF_K: f64 = 60.0;

// ---- pure logic --------------------------------------------------------------------------------

/// The weights of recall's score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub sim: f64,
    pub energy: f64,
    pub edge: f64,
}

fn unit(name: &'static str, v: f64) -> Result<f64, FractalityError> {
    let v = finite(name, v)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(FractalityError::invalid(
            name,
            v,
            "A weight lies in [0, 1] (the defaults are 0.5, 0.3 and 0.2).",
        ));
    }
    Ok(v)
}

impl Weights {
    pub fn new(sim: f64, energy: f64, edge: f64) -> Result<Self, FractalityError> {
        Ok(Weights {
            sim: unit("w_sim", sim)?,
            energy: unit("w_energy", energy)?,
            edge: unit("w_edge", edge)?,
        })
    }
}

/// recall's score of one memory.
pub fn score(relevance: f64, energy: f64, edge: f64, w: Weights) -> f64 {
    w.sim * relevance + w.energy * energy + w.edge * edge
}

/// The most a memory not yet read can score: its relevance is at most `similarity` (what the
/// scan in distance order has reached), its energy at most 1, and its edge to the context 0 (the
/// context's neighbours are scored before the scan).
pub fn stop_bound(similarity: f64, w: Weights) -> f64 {
    w.sim * similarity + w.energy
}

/// Reciprocal-rank fusion of a vector rank and a text rank (1-based, None where the memory is
/// not in that list), scaled to [0, 1]: 1 for the first of both lists.
pub fn rrf(vector_rank: Option<usize>, text_rank: Option<usize>) -> f64 {
    let part = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / (RRF_K + r as f64));
    (part(vector_rank) + part(text_rank)) / (2.0 / (RRF_K + 1.0))
}

/// A memory's key, content, metadata and current energy.
type Detail = (String, Option<String>, Value, f64);

/// The key of a memory remembered without one: derived from its content, so that the same fact
/// told twice finds the same key. (The digest itself is computed in SQL: `md5`.)
pub const DERIVED_KEY_PREFIX: &str = "memory-";

fn check_k(k: i32) -> Result<usize, FractalityError> {
    if !(1..=MAX_K).contains(&k) {
        return Err(FractalityError::invalid(
            "k",
            k,
            "k is the number of memories wanted, from 1 to 1000.",
        ));
    }
    Ok(k as usize)
}

fn check_similarity(name: &'static str, v: f64) -> Result<f64, FractalityError> {
    let v = finite(name, v)?;
    if !(-1.0..=1.0).contains(&v) {
        return Err(FractalityError::invalid(
            name,
            v,
            "A similarity threshold is a cosine similarity in [-1, 1].",
        ));
    }
    Ok(v)
}

fn check_energy(name: &'static str, v: f64) -> Result<f64, FractalityError> {
    let v = finite(name, v)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(FractalityError::invalid(
            name,
            v,
            "Energy lies in [0, 1]; 0 reinforces nothing.",
        ));
    }
    Ok(v)
}

/// A direction: a query or a memory needs one for similarity (22023 for a zero vector).
fn check_direction(name: &'static str, v: &[f32]) -> Result<(), FractalityError> {
    if v.iter().all(|x| *x == 0.0) {
        return Err(FractalityError::invalid(
            name,
            "a zero vector",
            "A zero vector has no direction: no similarity can be computed with it.",
        ));
    }
    Ok(())
}

/// An interval as PostgreSQL's default style prints it (e.g. `-1 days`, `1 mon 02:00:00`),
/// computed here (no call into the server).
fn interval_text(t: &Interval) -> String {
    let mut parts = Vec::new();
    let plural =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if t.months() != 0 {
        let (y, m) = (t.months() / 12, t.months() % 12);
        if y != 0 {
            parts.push(plural(y as i64, "year", "years"));
        }
        if m != 0 {
            parts.push(plural(m as i64, "mon", "mons"));
        }
    }
    if t.days() != 0 {
        parts.push(plural(t.days() as i64, "day", "days"));
    }
    let us = t.micros();
    if us != 0 || parts.is_empty() {
        let sign = if us < 0 { "-" } else { "" };
        let a = us.unsigned_abs();
        let (h, m, s, f) = (
            a / 3_600_000_000,
            a / 60_000_000 % 60,
            a / 1_000_000 % 60,
            a % 1_000_000,
        );
        let frac = if f == 0 {
            String::new()
        } else {
            format!(".{f:06}").trim_end_matches('0').to_string()
        };
        parts.push(format!("{sign}{h:02}:{m:02}:{s:02}{frac}"));
    }
    parts.join(" ")
}

fn check_ttl(ttl: Option<Interval>) -> Result<Option<Interval>, FractalityError> {
    match ttl {
        Some(t) if t.as_micros() <= 0 || t.months() < 0 || t.days() < 0 || t.micros() < 0 => {
            Err(FractalityError::invalid(
                "ttl",
                format!("'{}'", interval_text(&t)),
                "ttl is a positive interval (e.g. '7 days'), or NULL for a memory that never expires.",
            ))
        }
        t => Ok(t),
    }
}

fn check_metadata(m: &Value) -> Result<(), FractalityError> {
    if m.is_object() {
        Ok(())
    } else {
        Err(FractalityError::invalid(
            "metadata",
            m.to_string(),
            "metadata is a JSON object.",
        ))
    }
}

// ---- the session's tenant ----------------------------------------------------------------------

fn tenant() -> Result<Uuid, FractalityError> {
    spi::one::<Uuid>(
        &Query {
            name: "current_user_id",
            text: "SELECT fractality.current_user_id()",
            types: &[],
        },
        &[],
        false,
    )?
    .ok_or(FractalityError::NoTenant)
}

// ---- remember ----------------------------------------------------------------------------------

const LOCK: &str = include_str!("../sql/queries/memory_lock.sql");
const BY_KEY: &str = include_str!("../sql/queries/memory_by_key.sql");
const INSERT: &str = include_str!("../sql/queries/memory_insert.sql");
const REINFORCE: &str = include_str!("../sql/queries/memory_reinforce.sql");
const PULSE: &str = include_str!("../sql/queries/memory_pulse.sql");
const FORGET: &str = include_str!("../sql/queries/memory_forget.sql");
const DETAILS: &str = include_str!("../sql/queries/memory_details.sql");
const TEXT: &str = include_str!("../sql/queries/memory_text.sql");
const CONTEXT: &str = include_str!("../sql/queries/memory_context.sql");

/// One memory to remember.
#[derive(Debug)]
pub struct Memory {
    pub key: Option<String>,
    pub content: String,
    pub embedding: Vec<f32>,
    pub metadata: Value,
    pub ttl: Option<Interval>,
}

impl Memory {
    fn validate(&self, model: &Model) -> Result<(), FractalityError> {
        if let Some(k) = &self.key {
            crate::graph::check_key(k)?;
        }
        check_metadata(&self.metadata)?;
        check_ttl(self.ttl)?;
        let v = Vector::from_slice(&self.embedding)?;
        model.check(&v)?;
        check_direction("embedding", &self.embedding)
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
        None => spi::one::<String>(
            &Query {
                name: "memory_key",
                text: "SELECT 'memory-' || md5($1)",
                types: &[pg_sys::TEXTOID],
            },
            &[m.content.as_str().into()],
            false,
        )?
        .unwrap_or_default(),
    };
    let meta = JsonB(m.metadata.clone());
    let reinforce = |id: Uuid| -> Result<(), FractalityError> {
        spi::run(
            &Query {
                name: "memory_reinforce",
                text: REINFORCE,
                types: &[
                    pg_sys::UUIDOID,
                    pg_sys::FLOAT8OID,
                    pg_sys::JSONBOID,
                    pg_sys::INTERVALOID,
                    pg_sys::UUIDOID,
                ],
            },
            &[
                id.into(),
                energy.into(),
                JsonB(m.metadata.clone()).into(),
                m.ttl.into(),
                tenant.into(),
            ],
        )?;
        Ok(())
    };
    // the same key
    let by_key = spi::rows(
        &Query {
            name: "memory_by_key",
            text: BY_KEY,
            types: &[pg_sys::UUIDOID, pg_sys::TEXTOID, pg_sys::TEXTOID],
        },
        &[
            tenant.into(),
            key.as_str().into(),
            model.name.as_str().into(),
        ],
        false,
        |r| r.get::<Uuid>(1).zip(r.get::<bool>(2)),
    )?;
    if let Some((id, has_embedding)) = by_key.into_iter().flatten().next() {
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
    let mut scan = TenantScan::open(model, tenant, &m.embedding, false, 4)?;
    let mut near: Vec<(Uuid, f64)> = Vec::new();
    'scan: loop {
        let batch = scan.next_batch()?;
        if batch.is_empty() {
            break;
        }
        for h in batch {
            if h.order < dedup - scan.margin() {
                break 'scan;
            }
            if h.similarity >= dedup {
                near.push((h.node_id, h.similarity));
            }
        }
        if !near.is_empty() {
            break;
        }
    }
    drop(scan);
    if !near.is_empty() {
        let ids: Vec<Uuid> = near.iter().map(|n| n.0).collect();
        let alive: HashSet<Uuid> = details(&ids)?.into_keys().collect();
        near.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if let Some((id, _)) = near.into_iter().find(|(id, _)| alive.contains(id)) {
            reinforce(id)?;
            return Ok((id, false));
        }
    }
    // a new memory
    let id = spi::one::<Uuid>(
        &Query {
            name: "memory_insert",
            text: INSERT,
            types: &[
                pg_sys::UUIDOID,
                pg_sys::TEXTOID,
                pg_sys::TEXTOID,
                pg_sys::JSONBOID,
                pg_sys::INTERVALOID,
            ],
        },
        &[
            tenant.into(),
            key.as_str().into(),
            m.content.as_str().into(),
            meta.into(),
            m.ttl.into(),
        ],
        false,
    )?
    .ok_or(FractalityError::Internal {
        query: "memory_insert",
        detail: "no id returned".into(),
    })?;
    crate::graph::write_embedding(id, tenant, &model.name, Vector::from_slice(&m.embedding)?)?;
    Ok((id, true))
}

fn lock(tenant: Uuid) -> Result<(), FractalityError> {
    spi::run(
        &Query {
            name: "memory_lock",
            text: LOCK,
            types: &[pg_sys::UUIDOID],
        },
        &[tenant.into()],
    )?;
    Ok(())
}

/// Remembers memories in the caller's tenant, one after the other, with the rules of `remember`;
/// every memory is checked before anything is written.
pub fn remember_all(
    memories: &[Memory],
    model: &str,
    dedup: f64,
) -> Result<Vec<(Uuid, bool)>, FractalityError> {
    let dedup = check_similarity("dedup_threshold", dedup)?;
    let energy = crate::gucs::REMEMBER_ENERGY.get();
    spi::connect(|| {
        let tenant = tenant()?;
        let model = Model::lookup(model)?;
        for m in memories {
            m.validate(&model)?;
        }
        lock(tenant)?;
        memories
            .iter()
            .map(|m| remember_one(tenant, &model, m, dedup, energy))
            .collect()
    })
}

/// Stores a memory in the caller's tenant (`fractality.user_id`): `content` as the node's label
/// and full text, `metadata` merged, `embedding` as its embedding of `model`, an expiry after
/// `ttl` apart from decay. A NULL key is derived from the content. When the tenant already holds
/// a memory of the same key, or one of the same model within `dedup_threshold` cosine
/// similarity, that one is reinforced instead (a pulse of `fractality.remember_energy`, metadata
/// merged, its expiry moved when `ttl` is given): `created` is false.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)] // the SQL function's parameters
fn remember(
    node_key: Option<&str>,
    content: Option<&str>,
    embedding: Option<Vector<'_>>,
    metadata: default!(Option<crate::jsonb::JsonValue>, "'{}'"),
    model: default!(Option<&str>, "'default'"),
    dedup_threshold: default!(Option<f64>, 0.95),
    ttl: default!(Option<Interval>, "NULL"),
) -> TableIterator<'static, (name!(node_id, Uuid), name!(created, bool))> {
    crate::errors::writer(c"remember");
    let required = |name: &'static str| FractalityError::NullNotAllowed(name);
    let memory = Memory {
        key: node_key.map(str::to_string),
        content: content
            .ok_or(required("content"))
            .unwrap_or_report()
            .to_string(),
        embedding: embedding
            .ok_or(required("embedding"))
            .unwrap_or_report()
            .as_slice()
            .to_vec(),
        metadata: metadata.map_or(Value::Object(Default::default()), |j| j.0),
        ttl,
    };
    let model = model.ok_or(required("model")).unwrap_or_report();
    let dedup = dedup_threshold
        .ok_or(required("dedup_threshold"))
        .unwrap_or_report();
    TableIterator::new(remember_all(&[memory], model, dedup).unwrap_or_report())
}

/// The memories of a `remember_many` batch: a JSON array of objects with `content` and
/// `embedding` (an array of numbers), and optionally `node_key`, `metadata` and `ttl` (an
/// interval as text).
pub fn parse_memories(doc: &Value) -> Result<Vec<(Memory, Option<String>)>, FractalityError> {
    let Value::Array(items) = doc else {
        return Err(FractalityError::invalid(
            "memories",
            "not a JSON array",
            "Pass a JSON array of objects {content, embedding[, node_key, metadata, ttl]}.",
        ));
    };
    let bad = |i: usize, field: &str, problem: &str| FractalityError::BadMemory {
        element: i + 1,
        field: field.to_string(),
        problem: problem.to_string(),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(bad(i, "(element)", "not a JSON object"));
        };
        for k in o.keys() {
            if !matches!(
                k.as_str(),
                "content" | "embedding" | "node_key" | "metadata" | "ttl"
            ) {
                return Err(bad(i, k, "unknown field"));
            }
        }
        let content = match o.get("content") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad(i, "content", "missing or not a string")),
        };
        let embedding = match o.get("embedding") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .filter(|v| v.is_finite() && v.abs() <= f32::MAX as f64)
                        .map(|v| v as f32)
                })
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| bad(i, "embedding", "not an array of finite numbers"))?,
            _ => return Err(bad(i, "embedding", "missing or not an array")),
        };
        let key = match o.get("node_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            _ => return Err(bad(i, "node_key", "not a string")),
        };
        let metadata = match o.get("metadata") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(m @ Value::Object(_)) => m.clone(),
            _ => return Err(bad(i, "metadata", "not a JSON object")),
        };
        let ttl = match o.get("ttl") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            _ => return Err(bad(i, "ttl", "not an interval as text (e.g. \"7 days\")")),
        };
        out.push((
            Memory {
                key,
                content,
                embedding,
                metadata,
                ttl: None,
            },
            ttl,
        ));
    }
    Ok(out)
}

/// The batch form of `remember`, for loaders and agents that flush a buffer: a JSON array of
/// objects `{content, embedding[, node_key, metadata, ttl]}`, each remembered with the rules of
/// `remember` in order (so duplicates within the batch become one memory). Every element is
/// checked before anything is written; one row per element.
#[pg_extern(volatile, parallel_unsafe)]
fn remember_many(
    memories: Option<crate::jsonb::JsonValue>,
    model: default!(Option<&str>, "'default'"),
    dedup_threshold: default!(Option<f64>, 0.95),
) -> TableIterator<'static, (name!(node_id, Uuid), name!(created, bool))> {
    crate::errors::writer(c"remember_many");
    let doc = memories
        .ok_or(FractalityError::NullNotAllowed("memories"))
        .unwrap_or_report();
    let model = model
        .ok_or(FractalityError::NullNotAllowed("model"))
        .unwrap_or_report();
    let dedup = dedup_threshold
        .ok_or(FractalityError::NullNotAllowed("dedup_threshold"))
        .unwrap_or_report();
    let parsed = parse_memories(&doc.0).unwrap_or_report();
    let mut batch = Vec::with_capacity(parsed.len());
    for (i, (mut m, ttl)) in parsed.into_iter().enumerate() {
        if let Some(t) = ttl {
            m.ttl = Some(parse_interval(&t).map_err(|e| FractalityError::BadMemory {
                element: i + 1,
                field: "ttl".into(),
                problem: e,
            }))
            .transpose()
            .unwrap_or_report();
        }
        batch.push(m);
    }
    TableIterator::new(remember_all(&batch, model, dedup).unwrap_or_report())
}

/// An interval from its text, as PostgreSQL's `interval_in` reads it (pgrx catches its syntax
/// and field errors, so the caller can say which memory held the text).
fn parse_interval(text: &str) -> Result<Interval, String> {
    text.parse::<Interval>()
        .map_err(|_| format!("'{text}' is not an interval such as '7 days'"))
}

/// Forgets the memory `node_key` of the caller's tenant: the node goes, and with it its
/// embeddings, edges, stream points and consensus links. False when there was none.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn forget(node_key: &str) -> bool {
    crate::errors::writer(c"forget");
    spi::connect(|| -> Result<bool, FractalityError> {
        let tenant = tenant()?;
        Ok(spi::run(
            &Query {
                name: "memory_forget",
                text: FORGET,
                types: &[pg_sys::UUIDOID, pg_sys::TEXTOID],
            },
            &[tenant.into(), node_key.into()],
        )? > 0)
    })
    .unwrap_or_report()
}

// ---- recall ------------------------------------------------------------------------------------

/// A memory recall looked at.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node_id: Uuid,
    pub node_key: String,
    pub content: Option<String>,
    pub metadata: Value,
    pub similarity: Option<f64>,
    pub vector_rank: Option<usize>,
    pub text_rank: Option<f64>,
    pub text_position: Option<usize>,
    pub relevance: f64,
    pub atp: f64,
    pub edge_weight: f64,
    pub score: f64,
}

/// What recall found, and how.
pub struct Recalled {
    /// Every candidate looked at, best first; the first `returned` are the answer.
    pub candidates: Vec<Candidate>,
    pub returned: usize,
    pub path: Path,
}

/// Key, content, metadata and energy of unexpired memories.
fn details(ids: &[Uuid]) -> Result<HashMap<Uuid, Detail>, FractalityError> {
    Ok(spi::rows(
        &Query {
            name: "memory_details",
            text: DETAILS,
            types: &[pg_sys::UUIDARRAYOID],
        },
        &[ids.to_vec().into()],
        false,
        |r| {
            Some((
                r.get::<Uuid>(1)?,
                (
                    r.get::<String>(2)?,
                    r.get::<String>(3),
                    r.get::<JsonB>(4).map_or(Value::Null, |j| j.0),
                    r.get::<f64>(5)?,
                ),
            ))
        },
    )?
    .into_iter()
    .flatten()
    .collect())
}

/// The arguments of recall.
pub struct RecallArgs<'a> {
    pub query: &'a [f32],
    pub k: i32,
    pub query_text: Option<&'a str>,
    pub context: Option<&'a str>,
    pub model: &'a str,
    pub min_similarity: f64,
    pub reinforce: f64,
    pub weights: Weights,
}

/// recall's work (SPI connected).
pub fn recall_in(a: &RecallArgs<'_>) -> Result<Recalled, FractalityError> {
    let k = check_k(a.k)?;
    let min_sim = check_similarity("min_similarity", a.min_similarity)?;
    let reinforce = check_energy("reinforce", a.reinforce)?;
    let w = a.weights;
    let model = Model::lookup(a.model)?;
    model.check(&Vector::from_slice(a.query)?)?;
    check_direction("query", a.query)?;
    let tenant = tenant()?;

    // the context and its neighbours (with their edge weights), scored before the scan
    let mut edge_of: HashMap<Uuid, f64> = HashMap::new();
    if let Some(ctx) = a.context {
        let rows = spi::rows(
            &Query {
                name: "memory_context",
                text: CONTEXT,
                types: &[pg_sys::UUIDOID, pg_sys::TEXTOID],
            },
            &[tenant.into(), ctx.into()],
            false,
            |r| (r.get::<Uuid>(1), r.get::<f64>(2)),
        )?;
        if rows.is_empty() {
            return Err(crate::errors::node_not_found(format!("'{ctx}'")));
        }
        for (id, w) in rows {
            if let (Some(id), Some(w)) = (id, w) {
                let e = edge_of.entry(id).or_insert(w);
                if crate::resonance::stronger_edge(w, *e) {
                    *e = w;
                }
            }
        }
    }

    let mut sims: HashMap<Uuid, f64> = HashMap::new();
    let mut vector_order: Vec<Uuid> = Vec::new();
    let pool = (4 * k).max(40);
    let first = if a.query_text.is_some() { pool } else { k + 1 };
    let mut scan = TenantScan::open(&model, tenant, a.query, false, first)?;
    let path = scan.path();
    let mut info: HashMap<Uuid, Detail> = HashMap::new();
    let score_of = |relevance: f64, atp: f64, edge: f64| score(relevance, atp, edge, w);

    // the context's neighbours: their similarity from their embeddings
    if !edge_of.is_empty() {
        let ids: Vec<Uuid> = edge_of.keys().copied().collect();
        for (id, v) in crate::resonance::embeddings_of(tenant, &ids, &model)? {
            if let Some(s) = cosine(a.query, &v)? {
                sims.insert(id, s);
            }
        }
        info.extend(details(&ids)?);
    }

    // vector candidates: without words, until nothing unread can beat the k-th best score;
    // with words, the nearest `pool` (then fused with the text ranking)
    let mut best: Vec<f64> = Vec::new(); // scores of the candidates so far, for the k-th best
    for (id, s) in &sims {
        if let Some((_, _, _, atp)) = info.get(id) {
            best.push(score_of(*s, *atp, edge_of.get(id).copied().unwrap_or(0.0)));
        }
    }
    'scan: loop {
        let batch = scan.next_batch()?;
        if batch.is_empty() {
            break;
        }
        let mut fresh = Vec::with_capacity(batch.len());
        let mut last_order = None;
        for h in &batch {
            if h.order < min_sim - scan.margin() {
                last_order = Some(h.order);
                break;
            }
            if !sims.contains_key(&h.node_id) {
                fresh.push(h.node_id);
            }
            sims.insert(h.node_id, h.similarity);
            vector_order.push(h.node_id);
            last_order = Some(h.order);
        }
        info.extend(details(&fresh)?);
        for id in &fresh {
            if let (Some((_, _, _, atp)), Some(s)) = (info.get(id), sims.get(id)) {
                if *s >= min_sim {
                    best.push(score_of(*s, *atp, edge_of.get(id).copied().unwrap_or(0.0)));
                }
            }
        }
        let Some(reached) = last_order else { break };
        if reached < min_sim - scan.margin() {
            break;
        }
        if a.query_text.is_some() {
            if vector_order.len() >= pool {
                break 'scan;
            }
        } else if best.len() >= k {
            best.sort_by(|x, y| y.total_cmp(x));
            best.truncate(k);
            if stop_bound(reached + scan.margin(), w) < best[k - 1] {
                break 'scan;
            }
        }
    }
    drop(scan);

    // text candidates
    let mut text_rank: HashMap<Uuid, (usize, f64)> = HashMap::new();
    if let Some(q) = a.query_text {
        let rows = spi::rows(
            &Query {
                name: "memory_text",
                text: TEXT,
                types: &[pg_sys::UUIDOID, pg_sys::TEXTOID, pg_sys::INT8OID],
            },
            &[tenant.into(), q.into(), (pool as i64).into()],
            false,
            |r| r.get::<Uuid>(1).zip(r.get::<f64>(2)),
        )?;
        let mut missing = Vec::new();
        for (i, (id, rank)) in rows.into_iter().flatten().enumerate() {
            text_rank.insert(id, (i + 1, rank));
            if !info.contains_key(&id) {
                missing.push(id);
            }
        }
        if !missing.is_empty() {
            info.extend(details(&missing)?);
            for (id, v) in crate::resonance::embeddings_of(tenant, &missing, &model)? {
                if let Some(s) = cosine(a.query, &v)? {
                    sims.insert(id, s);
                }
            }
        }
    }

    let vector_rank: HashMap<Uuid, usize> = vector_order
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i + 1))
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut ids: Vec<Uuid> = info.keys().copied().collect();
    ids.sort();
    for id in ids {
        let (key, content, metadata, atp) = info[&id].clone();
        let similarity = sims.get(&id).copied();
        if similarity.unwrap_or(-1.0) < min_sim && !text_rank.contains_key(&id) {
            continue;
        }
        if a.query_text.is_none() && similarity.is_none() {
            continue;
        }
        let relevance = if a.query_text.is_some() {
            rrf(
                vector_rank.get(&id).copied(),
                text_rank.get(&id).map(|t| t.0),
            )
        } else {
            similarity.unwrap_or(0.0)
        };
        let edge = edge_of.get(&id).copied().unwrap_or(0.0);
        candidates.push(Candidate {
            node_id: id,
            node_key: key,
            content,
            metadata,
            similarity,
            vector_rank: vector_rank.get(&id).copied(),
            text_rank: text_rank.get(&id).map(|t| t.1),
            text_position: text_rank.get(&id).map(|t| t.0),
            relevance,
            atp,
            edge_weight: edge,
            score: score_of(relevance, atp, edge),
        });
    }
    candidates.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(
                y.similarity
                    .unwrap_or(-2.0)
                    .total_cmp(&x.similarity.unwrap_or(-2.0)),
            )
            .then(x.node_id.cmp(&y.node_id))
    });
    let returned = candidates.len().min(k);

    if reinforce > 0.0 && returned > 0 {
        let ids: Vec<Uuid> = candidates[..returned].iter().map(|c| c.node_id).collect();
        spi::run(
            &Query {
                name: "memory_pulse",
                text: PULSE,
                types: &[pg_sys::UUIDARRAYOID, pg_sys::FLOAT8OID, pg_sys::UUIDOID],
            },
            &[ids.into(), reinforce.into(), tenant.into()],
        )?;
    }
    Ok(Recalled {
        candidates,
        returned,
        path,
    })
}

/// The weights of a call: its own where given, else the settings.
fn weights(w_sim: Option<f64>, w_energy: Option<f64>, w_edge: Option<f64>) -> Weights {
    Weights::new(
        w_sim.unwrap_or_else(|| crate::gucs::RECALL_W_SIM.get()),
        w_energy.unwrap_or_else(|| crate::gucs::RECALL_W_ENERGY.get()),
        w_edge.unwrap_or_else(|| crate::gucs::RECALL_W_EDGE.get()),
    )
    .unwrap_or_report()
}

type RecallRow = (
    Uuid,
    String,
    Option<String>,
    JsonB,
    Option<f64>,
    Option<f64>,
    f64,
    f64,
    f64,
);

/// The caller's memories most worth bringing back for `query` (and `query_text`), best first,
/// at most `k`: scored `w_sim * relevance + w_energy * current energy + w_edge * edge weight to
/// the `context` node`. Relevance is the cosine similarity; with `query_text`, the
/// reciprocal-rank fusion of the vector ranking and the full-text ranking. Expired memories are
/// left out, and so are those below `min_similarity` unless `query_text` matches their words (a
/// memory found by its words is kept whatever its similarity). With `reinforce > 0` each returned memory is
/// pulsed by that energy (recorded in its stream); with 0 the call writes nothing.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)] // the SQL function's signature
fn recall(
    query: Option<Vector<'_>>,
    k: default!(Option<i32>, 10),
    query_text: default!(Option<&str>, "NULL"),
    context: default!(Option<&str>, "NULL"),
    model: default!(Option<&str>, "'default'"),
    min_similarity: default!(Option<f64>, 0),
    reinforce: default!(Option<f64>, 0),
    w_sim: default!(Option<f64>, "NULL"),
    w_energy: default!(Option<f64>, "NULL"),
    w_edge: default!(Option<f64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(content, Option<String>),
        name!(metadata, JsonB),
        name!(similarity, Option<f64>),
        name!(text_rank, Option<f64>),
        name!(atp, f64),
        name!(edge_weight, f64),
        name!(score, f64),
    ),
> {
    let need = |name: &'static str| FractalityError::NullNotAllowed(name);
    let query = query.ok_or(need("query")).unwrap_or_report();
    let args = RecallArgs {
        query: query.as_slice(),
        k: k.ok_or(need("k")).unwrap_or_report(),
        query_text,
        context,
        model: model.ok_or(need("model")).unwrap_or_report(),
        min_similarity: min_similarity
            .ok_or(need("min_similarity"))
            .unwrap_or_report(),
        reinforce: reinforce.ok_or(need("reinforce")).unwrap_or_report(),
        weights: weights(w_sim, w_energy, w_edge),
    };
    if args.reinforce > 0.0 {
        // reinforcing writes; without it recall only reads (and runs on a standby)
        crate::errors::writer(c"recall");
    }
    let r = spi::connect(|| recall_in(&args)).unwrap_or_report();
    let rows: Vec<RecallRow> = r
        .candidates
        .into_iter()
        .take(r.returned)
        .map(|c| {
            (
                c.node_id,
                c.node_key,
                c.content,
                JsonB(c.metadata),
                c.similarity,
                c.text_rank,
                c.atp,
                c.edge_weight,
                c.score,
            )
        })
        .collect();
    TableIterator::new(rows)
}

type ExplainRow = (
    i32,
    Uuid,
    String,
    Option<f64>,
    Option<i32>,
    Option<f64>,
    Option<i32>,
    f64,
    f64,
    f64,
    f64,
    bool,
    String,
);

/// Why recall returns what it returns: every memory it looked at, best first, with each part of
/// its score (similarity and its place in the vector ranking, text rank and its place, the
/// relevance used, energy, edge weight to the context, score), whether it is returned, and how
/// the tenant was searched (`exact`: every embedding; `index`: the tenant's HNSW index in
/// distance order). Writes nothing (no reinforcement).
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)] // the SQL function's signature
fn recall_explain(
    query: Option<Vector<'_>>,
    k: default!(Option<i32>, 10),
    query_text: default!(Option<&str>, "NULL"),
    context: default!(Option<&str>, "NULL"),
    model: default!(Option<&str>, "'default'"),
    min_similarity: default!(Option<f64>, 0),
    w_sim: default!(Option<f64>, "NULL"),
    w_energy: default!(Option<f64>, "NULL"),
    w_edge: default!(Option<f64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(position, i32),
        name!(node_id, Uuid),
        name!(node_key, String),
        name!(similarity, Option<f64>),
        name!(vector_rank, Option<i32>),
        name!(text_rank, Option<f64>),
        name!(text_position, Option<i32>),
        name!(relevance, f64),
        name!(atp, f64),
        name!(edge_weight, f64),
        name!(score, f64),
        name!(returned, bool),
        name!(path, String),
    ),
> {
    let need = |name: &'static str| FractalityError::NullNotAllowed(name);
    let query = query.ok_or(need("query")).unwrap_or_report();
    let args = RecallArgs {
        query: query.as_slice(),
        k: k.ok_or(need("k")).unwrap_or_report(),
        query_text,
        context,
        model: model.ok_or(need("model")).unwrap_or_report(),
        min_similarity: min_similarity
            .ok_or(need("min_similarity"))
            .unwrap_or_report(),
        reinforce: 0.0,
        weights: weights(w_sim, w_energy, w_edge),
    };
    let r = spi::connect(|| recall_in(&args)).unwrap_or_report();
    let path = r.path.name().to_string();
    let rows: Vec<ExplainRow> = r
        .candidates
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            (
                i as i32 + 1,
                c.node_id,
                c.node_key,
                c.similarity,
                c.vector_rank.map(|v| v as i32),
                c.text_rank,
                c.text_position.map(|v| v as i32),
                c.relevance,
                c.atp,
                c.edge_weight,
                c.score,
                i < r.returned,
                path.clone(),
            )
        })
        .collect();
    TableIterator::new(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn score_weighs_relevance_energy_and_edge() {
        let w = Weights::new(0.5, 0.3, 0.2).unwrap();
        assert_relative_eq!(score(0.8, 0.5, 1.0, w), 0.4 + 0.15 + 0.2);
        assert_relative_eq!(score(0.8, 0.5, -1.0, w), 0.4 + 0.15 - 0.2);
        assert!(Weights::new(0.5, f64::NAN, 0.2).is_err());
        assert!(Weights::new(1.5, 0.3, 0.2).is_err());
        assert!(Weights::new(0.5, 0.3, -0.1).is_err());
    }

    #[test]
    fn nothing_unread_beats_the_stop_bound() {
        let w = Weights::new(0.5, 0.3, 0.2).unwrap();
        // whatever its energy (<= 1) and edge (0: not a neighbour of the context)
        for s in [0.9, 0.5, 0.1, -0.3] {
            for atp in [0.0, 0.4, 1.0] {
                assert!(score(s, atp, 0.0, w) <= stop_bound(s, w) + 1e-12);
            }
        }
        assert_relative_eq!(stop_bound(0.6, w), 0.6);
    }

    #[test]
    fn reciprocal_rank_fusion_is_scaled_to_one() {
        assert_relative_eq!(rrf(Some(1), Some(1)), 1.0);
        assert_relative_eq!(rrf(Some(1), None), 0.5);
        assert_relative_eq!(rrf(None, Some(1)), 0.5);
        assert_eq!(rrf(None, None), 0.0);
        assert!(rrf(Some(1), Some(10)) > rrf(Some(2), Some(10)));
        assert!(rrf(Some(3), Some(3)) > rrf(Some(1), None));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(
            check_k(0).unwrap_err().to_string(),
            "invalid value for k: 0"
        );
        assert!(check_k(1001).is_err());
        assert_eq!(check_k(10), Ok(10));
        assert!(check_similarity("min_similarity", 1.5).is_err());
        assert!(check_similarity("min_similarity", f64::NAN).is_err());
        assert!(check_energy("reinforce", -0.1).is_err());
        assert!(check_direction("query", &[0.0, 0.0]).is_err());
        assert!(check_direction("query", &[0.0, 1.0]).is_ok());
    }

    #[test]
    fn batches_parse_and_name_the_bad_element() {
        let ok = serde_json::json!([
            {"content": "a", "embedding": [1, 0]},
            {"content": "b", "embedding": [0, 1], "node_key": "k", "metadata": {"x": 1}, "ttl": "1 day"}
        ]);
        let parsed = parse_memories(&ok).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0.key.as_deref(), Some("k"));
        assert_eq!(parsed[1].1.as_deref(), Some("1 day"));
        let e = parse_memories(
            &serde_json::json!([{"content": "a", "embedding": [1, 0]}, {"content": "b"}]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "memory 2, field \"embedding\": missing or not an array"
        );
        assert!(parse_memories(&serde_json::json!({"content": "a"})).is_err());
        assert!(parse_memories(
            &serde_json::json!([{"content": "a", "embedding": [1], "extra": 1}])
        )
        .is_err());
        assert!(
            parse_memories(&serde_json::json!([{"content": "a", "embedding": ["x"]}])).is_err()
        );
    }
}
