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
//!
//! The levels: [`input`] checks and parses what callers pass and [`score`] holds the score, both
//! plain functions tested without a server; [`write`] (remember's work) and [`rank`] (recall's)
//! run over [`store`], which runs the queries (`sql/queries/memory_*.sql`); this file is the
//! `#[pg_extern]` layer.

pub mod input;
pub mod pool;
pub mod rank;
pub mod score;
pub mod store;
pub mod write;

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::Uuid;
use serde_json::Value;

use crate::errors::{required, FractalityError, OrReport};
use crate::spi;
use crate::vector::{Vector, VectorArray};

pub use input::{
    memories_from_arrays, parse_memories, parse_memories_jsonb, Memory, DERIVED_KEY_PREFIX, MAX_K,
};
pub use rank::{recall_in, Candidate, RecallArgs, Recalled};
pub use score::{rrf, score, stop_bound, Weights, RRF_K};
pub use write::remember_all;

// ---- remember ----------------------------------------------------------------------------------

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
    let memory = Memory {
        key: node_key.map(str::to_string),
        content: required("content", content).to_string(),
        embedding: required("embedding", embedding).as_slice().to_vec(),
        metadata: metadata.map_or(Value::Object(Default::default()), |j| j.0),
        ttl,
    };
    let model = required("model", model);
    let dedup = required("dedup_threshold", dedup_threshold);
    TableIterator::new(remember_all(&[memory], model, dedup, false).unwrap_or_report())
}

/// The batch form of `remember`, for loaders and agents that flush a buffer: a JSON array of
/// objects `{content, embedding[, node_key, metadata, ttl]}`, each remembered with the rules of
/// `remember` in order (so duplicates within the batch become one memory). Every element is
/// checked before anything is written; one row per element. The new memories' embeddings are
/// staged: written outside the model's HNSW index (searches read them exactly) until
/// `index_staged_embeddings` or `run_maintenance` indexes them.
#[pg_extern(volatile, parallel_unsafe)]
fn remember_many(
    memories: Option<crate::jsonb::JsonbArg<'_>>,
    model: default!(Option<&str>, "'default'"),
    dedup_threshold: default!(Option<f64>, 0.95),
) -> TableIterator<'static, (name!(node_id, Uuid), name!(created, bool))> {
    let trim = crate::heap::Trim;
    crate::errors::writer(c"remember_many");
    let doc = required("memories", memories);
    let model = required("model", model);
    let dedup = required("dedup_threshold", dedup_threshold);
    let parsed = parse_memories_jsonb(&doc).unwrap_or_report();
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
    TableIterator::new(trim.rows(remember_all(&batch, model, dedup, true).unwrap_or_report()))
}

/// The arrays form of `remember_many`, for loaders and clients that send arrays (each vector in
/// pgvector's binary form, no JSON to parse): memory `i` is `contents[i]` with `embeddings[i]`,
/// and, where those arrays are given, `node_keys[i]` (NULL: derived from the content),
/// `metadata[i]` (NULL: `{}`) and `ttls[i]` (NULL: never expires). The rules, the staging of the
/// embeddings and the result are those of the jsonb form; arrays of different lengths or a NULL
/// content or embedding are refused with nothing written.
#[pg_extern(volatile, parallel_unsafe, name = "remember_many")]
#[allow(clippy::too_many_arguments)] // the SQL function's parameters
fn remember_many_arrays(
    node_keys: Option<Array<'_, String>>,
    contents: Option<Array<'_, String>>,
    embeddings: Option<VectorArray<'_>>,
    metadata: default!(Option<crate::jsonb::JsonbArray>, "NULL"),
    model: default!(Option<&str>, "'default'"),
    dedup_threshold: default!(Option<f64>, 0.95),
    ttls: default!(Option<Array<'_, Interval>>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> TableIterator<'static, (name!(node_id, Uuid), name!(created, bool))> {
    let trim = crate::heap::Trim;
    crate::errors::writer(c"remember_many");
    // SAFETY: the call's own arguments, arrays by the signature (embeddings are checked as read)
    unsafe {
        crate::errors::one_dimensional_args(
            fcinfo,
            &[
                (0, "node_keys"),
                (1, "contents"),
                (3, "metadata"),
                (6, "ttls"),
            ],
        )
    };
    // each array counted before any element is copied out (crate::errors::MAX_ELEMENTS)
    let node_keys = node_keys.map(|a| crate::errors::elements("node_keys", &a));
    let contents = crate::errors::elements("contents", &required("contents", contents));
    let ttls = ttls.map(|a| crate::errors::elements("ttls", &a));
    let embeddings = required("embeddings", embeddings)
        .into_items()
        .into_iter()
        .map(|v| v.map(|v| v.as_slice().to_vec()))
        .collect();
    let model = required("model", model);
    let dedup = required("dedup_threshold", dedup_threshold);
    let metadata = metadata.map(|m| m.0);
    let batch =
        memories_from_arrays(node_keys, contents, embeddings, metadata, ttls).unwrap_or_report();
    TableIterator::new(trim.rows(remember_all(&batch, model, dedup, true).unwrap_or_report()))
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
    // a key no memory can have is refused as remember refuses it, not answered "none"
    crate::graph::check_key(node_key).unwrap_or_report();
    spi::connect(|| -> Result<bool, FractalityError> {
        let tenant = crate::tenant::required()?;
        // remember's lock: a remember of this memory running meanwhile stores it anew after
        // this commits, instead of telling again what is gone
        store::lock(tenant)?;
        Ok(store::forget(tenant, node_key)? > 0)
    })
    .unwrap_or_report()
}

// ---- recall ------------------------------------------------------------------------------------

/// `query_text` as recall uses it: text of nothing but white space is no words (as NULL), not a
/// text search that matches nothing and still turns the ranking into a fusion of two; at most
/// [`crate::errors::MAX_WORDS_CHARS`] characters.
fn words(query_text: Option<&str>) -> Option<&str> {
    if let Some(t) = query_text {
        crate::errors::check_words("query_text", t).unwrap_or_report();
    }
    query_text.filter(|t| !t.trim().is_empty())
}

/// The weights of a call: its own where given, else the settings.
fn weights(w_sim: Option<f64>, w_energy: Option<f64>, w_edge: Option<f64>) -> Weights {
    let (sim, energy, edge) = crate::gucs::recall_weights();
    Weights::new(
        w_sim.unwrap_or(sim),
        w_energy.unwrap_or(energy),
        w_edge.unwrap_or(edge),
    )
    .unwrap_or_report()
}

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
        name!(metadata, crate::jsonb::JsonbText),
        name!(similarity, Option<f64>),
        name!(text_rank, Option<f64>),
        name!(atp, f64),
        name!(edge_weight, f64),
        name!(score, f64),
    ),
> {
    let query = required("query", query);
    let args = RecallArgs {
        query: query.as_slice(),
        k: required("k", k),
        query_text: words(query_text),
        context,
        model: required("model", model),
        min_similarity: required("min_similarity", min_similarity),
        reinforce: required("reinforce", reinforce),
        weights: weights(w_sim, w_energy, w_edge),
        score_all: false,
    };
    if args.reinforce > 0.0 {
        // reinforcing writes; without it recall only reads (and runs on a standby)
        crate::errors::writer(c"recall");
    }
    let _settings = crate::search::Pinned::search();
    let r = spi::connect(|| recall_in(&args)).unwrap_or_report();
    TableIterator::new(r.candidates.into_iter().take(r.returned).map(|c| {
        (
            c.node_id,
            c.node_key,
            c.content,
            c.metadata,
            c.similarity,
            c.text_rank,
            c.atp,
            c.edge_weight,
            c.score,
        )
    }))
}

/// Why recall returns what it returns: every memory it looked at, best first, with each part of
/// its score (similarity and its place in the vector ranking, text rank and its place, the
/// relevance used, energy, edge weight to the context, score), whether it is returned, and how
/// the tenant was searched (`exact`: every embedding; `index`: the partition's shared HNSW
/// index, filtered by tenant, in distance order; `tenant_graph`: the tenant's own HNSW index).
/// Writes nothing (no reinforcement).
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
    let query = required("query", query);
    let args = RecallArgs {
        query: query.as_slice(),
        k: required("k", k),
        query_text: words(query_text),
        context,
        model: required("model", model),
        min_similarity: required("min_similarity", min_similarity),
        reinforce: 0.0,
        weights: weights(w_sim, w_energy, w_edge),
        score_all: true,
    };
    let _settings = crate::search::Pinned::search();
    let r = spi::connect(|| recall_in(&args)).unwrap_or_report();
    let path = r.path.name();
    TableIterator::new(r.candidates.into_iter().enumerate().map(move |(i, c)| {
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
            path.to_string(),
        )
    }))
}
