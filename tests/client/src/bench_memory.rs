//! Benchmark scenario `memory`: the agent memory API on the loaded graph (every node with an
//! embedding is a memory; its label the content).
//! - recall k = 10 without words: median latency against a bare pgvector kNN (k = 10) over the
//!   unpartitioned copy of every tenant's embeddings (bench_flat) at the lowest ef_search whose
//!   recall@10 reaches 0.95, and recall@10 against the same score computed over the whole tenant;
//! - recall with words (a word of the source's label): latency against the same bare kNN;
//! - remember one at a time against the plain SQL a user would write instead (a kNN duplicate
//!   check and INSERT ... ON CONFLICT of the node and its embedding, one statement);
//! - remember_many of 10 000 memories into a tenant against remember one at a time.
//!
//! The memories written are removed at the end, so that the data stays what it was loaded as.

use std::collections::HashSet;

use postgres::Client;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::bench::{thousands, timed, Ctx, Figure, Row, Unit};
use crate::bench_resonance::{
    close_session, exact_mode, flat_copy, open_session, sources, Scale, Source, Space, SPACE_384,
};
use crate::datagen::Error;

const K: i64 = 10;
const SOURCES: usize = 100;
/// Sources whose exact kNN tunes the bare query's ef_search (each one a full scan).
const TUNING_SOURCES: usize = 30;
const RECALL_TARGET: f64 = 0.95;
const BARE_EF_SEARCH: [i32; 9] = [40, 60, 80, 100, 150, 200, 300, 400, 800];
const REMEMBER_CALLS: usize = 300;
const MANY: usize = 10_000;
/// Rounds of remember_many, each form once a round.
const MANY_ROUNDS: usize = 3;

/// The batch's memories removed, their dead rows vacuumed.
fn forget_batch(c: &mut Client) -> Result<(), Error> {
    c.batch_execute("DELETE FROM fractality.nodes WHERE node_key LIKE 'bench-mem-m-%'")?;
    c.batch_execute("VACUUM fractality.nodes, fractality.node_text, fractality.node_embeddings")?;
    Ok(())
}

fn ms(secs: f64) -> f64 {
    secs * 1e3
}

/// recall's score over every memory of the tenant (same weights, current energy, no context).
fn exact_sql(s: &Space) -> String {
    format!(
        "SELECT n.node_id
           FROM fractality.node_embeddings e
           JOIN fractality.node_energy n ON n.node_id = e.node_id AND n.user_id = e.user_id
          WHERE e.user_id = $1 AND e.model = $3
            AND (n.expires_at IS NULL OR n.expires_at > now())
          ORDER BY 0.5 * (1 - (e.embedding::vector({d}) <=> $2)) + 0.3 * n.atp DESC, n.node_id
          LIMIT {K}",
        d = s.dims
    )
}

fn ids(rows: &[postgres::Row]) -> Vec<Uuid> {
    rows.iter().map(|r| r.get(0)).collect()
}

fn hits(got: &[Uuid], want: &[Uuid]) -> usize {
    let w: HashSet<&Uuid> = want.iter().collect();
    got.iter().filter(|g| w.contains(g)).count()
}

/// The lowest ef_search of the list at which the bare kNN's recall@10 (against its own exact
/// answer over every tenant) reaches the target.
fn tune_bare(c: &mut Client, s: &Space, srcs: &[Source]) -> Result<(i32, f64), Error> {
    let bare = format!(
        "SELECT node_id FROM {} ORDER BY embedding <=> $1 LIMIT {K}",
        s.flat
    );
    exact_mode(c, true)?;
    let mut exact = Vec::new();
    for src in srcs.iter().take(TUNING_SOURCES) {
        exact.push(ids(&c.query(&bare, &[&src.query])?));
    }
    exact_mode(c, false)?;
    let stmt = c.prepare(&bare)?;
    let mut chosen = (0, 0.0);
    for ef in BARE_EF_SEARCH {
        c.batch_execute(&format!("SET hnsw.ef_search = {ef}"))?;
        let (mut h, mut w) = (0, 0);
        for (src, want) in srcs.iter().zip(&exact) {
            h += hits(&ids(&c.query(&stmt, &[&src.query])?), want);
            w += want.len();
        }
        let r = h as f64 / w.max(1) as f64;
        eprintln!("  memory: bare kNN recall@10 {r:.3} at ef_search {ef}");
        chosen = (ef, r);
        if r >= RECALL_TARGET {
            break;
        }
    }
    Ok(chosen)
}

/// A word of the source's label to search for (its topic).
fn label_word(c: &mut Client, node: Uuid) -> Result<String, Error> {
    let label: Option<String> = c
        .query_one("SELECT label FROM fractality.nodes WHERE id = $1", &[&node])?
        .get(0);
    Ok(label
        .unwrap_or_default()
        .split_whitespace()
        .find(|w| w.len() > 3 && w.chars().all(char::is_alphabetic))
        .unwrap_or("memory")
        .to_lowercase())
}

/// recall k = 10 of the model of `s` from `srcs` (their embeddings as queries) against the bare
/// kNN over the model's flat copy at the lowest ef_search reaching recall@10 0.95, and its
/// recall@10 against the same score computed over the whole tenant; with `words`, also recall
/// with a word of each source's label. Leaves hnsw.ef_search set.
pub(crate) fn recall_rows(
    c: &mut Client,
    s: &Space,
    srcs: &[Source],
    reps: usize,
    words: bool,
) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    let (ef, bare_recall) = tune_bare(c, s, srcs)?;
    c.batch_execute(&format!("SET hnsw.ef_search = {ef}"))?;
    let bare = c.prepare(&format!(
        "SELECT node_id FROM {} ORDER BY embedding <=> $1 LIMIT {K}",
        s.flat
    ))?;
    let recall_stmt = c.prepare("SELECT node_id FROM fractality.recall($1, 10, model => $2)")?;
    let recall_words =
        c.prepare("SELECT node_id FROM fractality.recall($1, 10, $2, model => $3)")?;
    // exact answers first (untimed)
    exact_mode(c, true)?;
    let exact_stmt = c.prepare(&exact_sql(s))?;
    let mut exact = Vec::new();
    for src in srcs {
        exact.push(ids(
            &c.query(&exact_stmt, &[&src.tenant, &src.query, &s.model])?
        ));
    }
    exact_mode(c, false)?;
    let labels: Vec<String> = if words {
        srcs.iter()
            .map(|src| label_word(c, src.node))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let (mut native, mut with_words, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    // recall through the partition's shared graph (tenant graphs off), in the same turns
    let mut shared = Vec::new();
    let (mut h, mut w) = (0usize, 0usize);
    // each turn runs the measures in a rotated order: the first to read a tenant's pages after
    // the others' turns pays for bringing them in (on a stock server's 128 MB of shared buffers,
    // most of the cost), so each measure goes first as often as the others
    let measures = if words { 4 } else { 3 };
    for rep in 0..reps {
        for (i, src) in srcs.iter().enumerate() {
            c.execute(
                "SELECT set_config('fractality.user_id', $1, false)",
                &[&src.tenant.to_string()],
            )?;
            for m in 0..measures {
                match (m + rep + i) % measures {
                    0 => {
                        let (got, t) =
                            timed(|| Ok(ids(&c.query(&recall_stmt, &[&src.query, &s.model])?)))?;
                        native.push(ms(t));
                        if rep == 0 {
                            h += hits(&got, &exact[i]);
                            w += exact[i].len();
                        }
                    }
                    1 => {
                        let (_, t) = timed(|| Ok(c.query(&bare, &[&src.query])?))?;
                        baseline.push(ms(t));
                    }
                    2 => {
                        c.batch_execute("SET fractality.tenant_graphs = off")?;
                        let (_, t) = timed(|| Ok(c.query(&recall_stmt, &[&src.query, &s.model])?))?;
                        shared.push(ms(t));
                        c.batch_execute("RESET fractality.tenant_graphs")?;
                    }
                    _ => {
                        let (_, t) = timed(|| {
                            Ok(c.query(&recall_words, &[&src.query, &labels[i], &s.model])?)
                        })?;
                        with_words.push(ms(t));
                    }
                }
            }
        }
    }
    c.batch_execute("RESET fractality.user_id")?;
    let recall = h as f64 / w.max(1) as f64;
    rows.push(
        Row::new(
            format!(
                "recall k=10, no words, {} sources, {}; recall@10 {recall:.3} against the score over the whole tenant; bare kNN at ef_search {ef} (recall@10 {bare_recall:.3})",
                srcs.len(),
                Scale::of(c, s)?.describe(s)
            ),
            Some(Figure::from_samples(&native, Unit::Millis)),
            Some(Figure::from_samples(&baseline, Unit::Millis)),
        )
        .target("<= 1.5x the bare kNN; recall@10 >= 0.95"),
    );
    rows.push(
        Row::new(
            "- the same through the partition's shared graph (SET fractality.tenant_graphs = off), in the same turns",
            Some(Figure::from_samples(&shared, Unit::Millis)),
            Some(Figure::from_samples(&baseline, Unit::Millis)),
        )
        .target("informational"),
    );
    if words {
        rows.push(
            Row::new(
                "recall k=10 with words (a word of the source's label), fused by reciprocal rank",
                Some(Figure::from_samples(&with_words, Unit::Millis)),
                Some(Figure::from_samples(&baseline, Unit::Millis)),
            )
            .target("<= 2x the bare kNN"),
        );
    }

    Ok(rows)
}

pub fn memory(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(3);
    let c = &mut *ctx.client;
    open_session(c)?;
    let s = &SPACE_384;
    let flat = flat_copy(c, s)?;
    let srcs = sources(c, s, SOURCES)?;
    let mut rows = Vec::new();

    // ---- recall against the bare kNN ---------------------------------------------------------
    rows.extend(recall_rows(c, s, &srcs, reps, true)?);

    // ---- remember one at a time against plain SQL ---------------------------------------------
    let tenant = srcs[0].tenant;
    c.execute(
        "SELECT set_config('fractality.user_id', $1, false)",
        &[&tenant.to_string()],
    )?;
    c.batch_execute("SET fractality.notify = off; SET hnsw.iterative_scan = relaxed_order")?;
    let plain = c.prepare(&format!(
        "WITH dup AS (
             SELECT e.node_id, 1 - (e.embedding::vector({d}) <=> $2) AS sim
               FROM fractality.node_embeddings e
              WHERE e.user_id = $1 AND e.model = 'default'
              ORDER BY e.embedding::vector({d}) <=> $2 LIMIT 1),
         n AS (
             INSERT INTO fractality.nodes AS x (user_id, node_key, label, type)
             SELECT $1, $3, $4, 'memory' WHERE NOT EXISTS (SELECT 1 FROM dup WHERE sim >= 0.95)
             ON CONFLICT (user_id, node_key) DO UPDATE SET label = EXCLUDED.label
             RETURNING x.id)
         INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding)
         SELECT $1, n.id, 'default', $2 FROM n
         ON CONFLICT (user_id, node_id, model) DO UPDATE SET embedding = EXCLUDED.embedding",
        d = s.dims
    ))?;
    let native_remember = c.prepare("SELECT created FROM fractality.remember($1, $2, $3)")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.params.seed ^ 0x5eed);
    // new memories near the tenant's own (a source's vector with noise: a new fact nearby)
    let base: Vec<Vec<f32>> = srcs
        .iter()
        .filter(|x| x.tenant == tenant)
        .map(|x| x.query.to_vec())
        .chain(std::iter::once(srcs[0].query.to_vec()))
        .collect();
    let fresh = |rng: &mut rand::rngs::StdRng| -> pgvector::Vector {
        let b = &base[rng.random_range(0..base.len())];
        let mut v: Vec<f32> = b
            .iter()
            .map(|x| x + rng.random_range(-0.08..0.08f32))
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        pgvector::Vector::from(v)
    };
    let (mut nat, mut base_t) = (Vec::new(), Vec::new());
    for i in 0..REMEMBER_CALLS {
        let v1 = fresh(&mut rng);
        let v2 = fresh(&mut rng);
        let (k1, k2) = (format!("bench-mem-n-{i}"), format!("bench-mem-p-{i}"));
        let (_, t) =
            timed(
                || Ok(c.query_one(&native_remember, &[&k1, &format!("bench memory {i}"), &v1])?),
            )?;
        nat.push(ms(t));
        let (_, t) = timed(|| {
            Ok(c.execute(
                &plain,
                &[&tenant, &v2, &k2, &format!("bench memory plain {i}")],
            )?)
        })?;
        base_t.push(ms(t));
    }
    rows.push(
        Row::new(
            format!(
                "remember one at a time, {REMEMBER_CALLS} new memories into a tenant of ~{} (ms per call)",
                thousands(flat.rows as u64 / 100)
            ),
            Some(Figure::from_samples(&nat, Unit::Millis)),
            Some(Figure::from_samples(&base_t, Unit::Millis)),
        )
        .target("<= 1.5x the plain SQL"),
    );

    // ---- remember_many against remember one at a time ------------------------------------------
    // the same 10 000 memories through each form, alternating, three rounds; each batch's
    // memories removed (and vacuumed) before the next runs, so that every batch meets the tenant
    // as it was. One batch is one sample: the median of three is what is quoted.
    let vectors: Vec<pgvector::Vector> = (0..MANY).map(|_| fresh(&mut rng)).collect();
    let contents: Vec<String> = (0..MANY)
        .map(|i| format!("bench batch memory {i}"))
        .collect();
    let keys: Vec<String> = (0..MANY).map(|i| format!("bench-mem-m-{i}")).collect();
    let batch = serde_json::Value::Array(
        (0..MANY)
            .map(|i| {
                serde_json::json!({"node_key": keys[i], "content": contents[i], "embedding": vectors[i].to_vec()})
            })
            .collect(),
    );
    let (mut json_rates, mut array_rates) = (Vec::new(), Vec::new());
    for _ in 0..MANY_ROUNDS {
        let (_, t) = timed(|| {
            Ok(c.query(
                "SELECT * FROM fractality.remember_many($1::jsonb)",
                &[&batch],
            )?)
        })?;
        json_rates.push(MANY as f64 / t);
        forget_batch(c)?;
        let (_, t) = timed(|| {
            Ok(c.query(
                "SELECT * FROM fractality.remember_many($1::text[], $2::text[], $3)",
                &[&keys, &contents, &vectors],
            )?)
        })?;
        array_rates.push(MANY as f64 / t);
        forget_batch(c)?;
    }
    let one_rate = 1e3 / Figure::from_samples(&nat, Unit::Millis).median;
    for (form, rates) in [
        ("a jsonb array of objects", &json_rates),
        ("arrays: text[], text[], vector[]", &array_rates),
    ] {
        rows.push(
            Row::new(
                format!(
                    "remember_many of {} memories into that tenant ({form}; memories a second, median of {MANY_ROUNDS} alternating rounds), against remember one at a time",
                    thousands(MANY as u64)
                ),
                Some(Figure::from_samples(rates, Unit::RowsPerSec)),
                Some(Figure::single(one_rate, Unit::RowsPerSec)),
            )
            .target(">= 5x the throughput"),
        );
    }

    // the memories written go again
    c.batch_execute(
        "RESET fractality.user_id; RESET hnsw.iterative_scan; RESET fractality.notify;
         DELETE FROM fractality.nodes WHERE node_key LIKE 'bench-mem-%' OR label LIKE 'bench memory%'
             OR label LIKE 'bench batch memory%';",
    )?;
    // their rows and index entries are dead now: vacuumed, so that later scenarios (and a run
    // again with --reuse) search a clean graph and insert the same keys without passing the
    // dead versions of every earlier run's
    c.batch_execute("VACUUM fractality.nodes, fractality.node_text, fractality.node_embeddings")?;
    close_session(c)?;
    Ok(rows)
}
