//! Benchmark scenarios `resonance` and `resonance_1536`.
//!
//! `resonance` (model 'default', 384 dimensions, the loaded graph):
//! - find_resonant k = 20 against a bare pgvector kNN (`ORDER BY embedding <=> q LIMIT 20`) over
//!   `bench_flat`, an unpartitioned copy of every tenant's embeddings with one HNSW index, run at
//!   the lowest hnsw.ef_search of [`BARE_EF_SEARCH`] whose recall@20 reaches 0.95: recall@20 of
//!   each against its exact answer and latency, source by source in turns; with default
//!   settings, the index path forced, the exact path forced, and as an application role under
//!   row-level security; then the same on crowded neighbourhoods (sources whose partition holds
//!   other tenants' embeddings nearer than the source's own 20th neighbour);
//! - resonance_with, one source against 1 000 nodes of its tenant, per pair, against the seed's
//!   PL/pgSQL calculate_resonance and against the same formula as one plain SQL query;
//! - calculate_resonance per pair against the seed's (informational) and resonance_score per row
//!   against the same SQL expression;
//! - the HNSW builds: the model's index on every partition (at load) against one index over the
//!   unpartitioned copy.
//!
//! `resonance_1536` loads a second model (openai_1536, 1536 dimensions) for 20 tenants of their
//! own (`--nodes` embeddings in all), then measures find_resonant as above.
//!
//! The exact answers: for the bare kNN, the top 20 of a sequential scan of the copy; for
//! find_resonant, brute force over the source's tenant (every embedding of the model with
//! similarity >= the threshold, ranked by the seed's formula, top 20), in SQL.

use std::collections::HashSet;
use std::time::Instant;

use pgvector::Vector;
use postgres::{Client, Statement};
use uuid::Uuid;

use crate::bench::{alternate, percentile, thousands, timed, Ctx, Figure, Row, Unit};
use crate::datagen::{self, Error, IndexBuild, Params};

/// The seed's schema for resonance (seeds/000): embedding on the node, ATP in jsonb, and its
/// PL/pgSQL calculate_resonance verbatim (three queries per call), schema-qualified.
const SEED_DDL: &str = "
    DROP SCHEMA IF EXISTS bench_seed_resonance CASCADE;
    CREATE SCHEMA bench_seed_resonance;
    CREATE TABLE bench_seed_resonance.nodes AS
        SELECT n.id, n.user_id, n.node_key, n.label, jsonb_build_object('ATP', n.atp) AS energy,
               e.embedding::vector(384) AS embedding
          FROM fractality.nodes n
          LEFT JOIN fractality.node_embeddings e
                 ON e.user_id = n.user_id AND e.node_id = n.id AND e.model = 'default';
    ALTER TABLE bench_seed_resonance.nodes ADD PRIMARY KEY (id);
    CREATE TABLE bench_seed_resonance.edges AS
        SELECT id, user_id, from_node, to_node, relationship_type, weight FROM fractality.edges;
    CREATE INDEX ON bench_seed_resonance.edges (from_node, to_node);
    CREATE INDEX ON bench_seed_resonance.edges (to_node);
    ANALYZE bench_seed_resonance.nodes, bench_seed_resonance.edges;
    CREATE FUNCTION bench_seed_resonance.calculate_resonance(node1_id UUID, node2_id UUID)
    RETURNS FLOAT AS $$
    DECLARE
        similarity FLOAT;
        energy_product FLOAT;
        edge_weight FLOAT;
    BEGIN
        SELECT 1 - (n1.embedding <=> n2.embedding) INTO similarity
          FROM bench_seed_resonance.nodes n1, bench_seed_resonance.nodes n2
         WHERE n1.id = node1_id AND n2.id = node2_id;
        SELECT (n1.energy->>'ATP')::float * (n2.energy->>'ATP')::float INTO energy_product
          FROM bench_seed_resonance.nodes n1, bench_seed_resonance.nodes n2
         WHERE n1.id = node1_id AND n2.id = node2_id;
        SELECT COALESCE(weight, 0) INTO edge_weight
          FROM bench_seed_resonance.edges
         WHERE (from_node = node1_id AND to_node = node2_id)
            OR (from_node = node2_id AND to_node = node1_id)
         LIMIT 1;
        RETURN (similarity * 0.5) + (energy_product * 0.3) + (edge_weight * 0.2);
    END;
    $$ LANGUAGE plpgsql;";

const PAIRS: i64 = 5_000;
const SCORE_ROWS: i64 = 1_000_000;
/// Sources of the find_resonant measurements.
const SOURCES: usize = 100;
/// Sources of the crowded-neighbourhood measurements (fewer when fewer are crowded).
const CROWDED_SOURCES: usize = 50;
/// find_resonant's threshold and k, as the seeds call it.
const THRESHOLD: f64 = 0.7;
const K: usize = 20;
/// The bare kNN query is compared at this recall@20 (find_resonant's target).
const RECALL_TARGET: f64 = 0.95;
/// hnsw.ef_search values tried for the bare query, lowest first.
const BARE_EF_SEARCH: [i32; 9] = [40, 60, 80, 100, 150, 200, 300, 400, 800];
/// resonance_with: other nodes per call, and sources (one per tenant, the largest tenants).
const WITH_OTHERS: i64 = 1_000;
const WITH_SOURCES: i64 = 10;

/// The second model of `resonance_1536`.
pub const MODEL_1536: &str = "openai_1536";
pub const DIMS_1536: usize = 1536;
pub const TENANTS_1536: usize = 20;
/// Sources of `resonance_1536`'s recall rows.
const MEMORY_SOURCES: usize = 100;
/// Where `resonance_1536` records the data it loaded (seed, size, tenants).
const DATASET_1536: &str = "public.fractality_bench_dataset_1536";

/// The embeddings of one model as the scenarios measure them.
pub(crate) struct Space {
    pub(crate) model: &'static str,
    pub(crate) dims: usize,
    /// The unpartitioned copy of the model's embeddings with one HNSW index: the bare kNN's table.
    pub(crate) flat: &'static str,
    /// find_resonant's latency target, as a multiple of the bare kNN's.
    pub(crate) max_ratio: f64,
}

pub(crate) const SPACE_384: Space = Space {
    model: datagen::MODEL,
    dims: datagen::DIM,
    flat: "public.bench_flat",
    max_ratio: 1.0,
};

pub(crate) const SPACE_1536: Space = Space {
    model: MODEL_1536,
    dims: DIMS_1536,
    flat: "public.bench_flat_1536",
    max_ratio: 1.5,
};

fn ms(secs: f64) -> f64 {
    secs * 1e3
}

/// Processes for the untimed exact answers: the leader plus a worker per other core.
pub(crate) fn exact_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1))
}

/// The session of the measurements: pgvector's schema on the path (the seed's function and the
/// bare queries), no parallel query, and decay off: fractality reads current (decayed) energy,
/// the seed's copy the stored one; with a rate of 1 the two are the same, so every side computes
/// the same numbers.
pub(crate) fn open_session(c: &mut Client) -> Result<(), Error> {
    let vs: String = c
        .query_one(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'vector'",
            &[],
        )?
        .get(0);
    c.batch_execute(&format!(
        "SET search_path = public, \"{vs}\"; SET max_parallel_workers_per_gather = 0;
         SET fractality.decay_rate = 1"
    ))?;
    Ok(())
}

pub(crate) fn close_session(c: &mut Client) -> Result<(), Error> {
    c.batch_execute(
        "RESET ROLE; RESET fractality.user_id; RESET fractality.exact_scan_limit;
         RESET hnsw.ef_search; RESET enable_indexscan; RESET search_path;
         RESET max_parallel_workers_per_gather; RESET fractality.decay_rate",
    )?;
    Ok(())
}

/// The role of the application-role measurements: neither owner nor BYPASSRLS, with what the
/// README grants an application (here SELECT only), and the bare kNN's table.
pub(crate) fn tenant_role(c: &mut Client, flat: &str) -> Result<(), Error> {
    c.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE bench_tenant NOLOGIN NOSUPERUSER NOBYPASSRLS;
               EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT USAGE ON SCHEMA fractality TO bench_tenant;
         GRANT SELECT ON ALL TABLES IN SCHEMA fractality TO bench_tenant;
         GRANT SELECT ON {flat} TO bench_tenant;"
    ))?;
    Ok(())
}

// ---- scale -----------------------------------------------------------------------------------

/// What a model's embeddings amount to, for the rows' text.
pub(crate) struct Scale {
    rows: i64,
    tenants: i64,
    median_tenant: i64,
    partitions: i64,
    used: i64,
}

impl Scale {
    pub(crate) fn of(c: &mut Client, s: &Space) -> Result<Scale, Error> {
        // a tenant's rows are in one partition (hash of user_id)
        let r = c.query_one(
            "SELECT coalesce(sum(n), 0)::bigint, count(DISTINCT user_id),
                    coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY n), 0),
                    (SELECT count(*) FROM pg_inherits
                      WHERE inhparent = 'fractality.node_embeddings'::regclass),
                    count(DISTINCT tableoid)
               FROM (SELECT user_id, tableoid, count(*) AS n
                       FROM fractality.node_embeddings WHERE model = $1 GROUP BY 1, 2) t",
            &[&s.model],
        )?;
        Ok(Scale {
            rows: r.get(0),
            tenants: r.get(1),
            median_tenant: r.get(2),
            partitions: r.get(3),
            used: r.get(4),
        })
    }

    pub(crate) fn describe(&self, s: &Space) -> String {
        format!(
            "{} x {} ('{}'), {} tenants (median {} embeddings), {} partitions ({} holding them)",
            thousands(self.rows as u64),
            s.dims,
            s.model,
            self.tenants,
            thousands(self.median_tenant as u64),
            self.partitions,
            self.used
        )
    }
}

// ---- the unpartitioned copy ------------------------------------------------------------------

/// Where the copies' keys are kept: rebuilt only when the model's embeddings changed.
const FLAT_KEYS: &str = "public.bench_flat_keys";

pub(crate) struct Flat {
    pub(crate) rows: i64,
    build_secs: f64,
    /// Built by an earlier run (the same embeddings).
    reused: bool,
}

/// The copy of the model's embeddings in one plain table with one HNSW index (cosine), built
/// with the settings of the partitions' builds, unless an earlier run built it from the same
/// embeddings (same row count and checksum of ids and vectors).
pub(crate) fn flat_copy(c: &mut Client, s: &Space) -> Result<Flat, Error> {
    let ones = Vector::from(vec![1.0f32; s.dims]);
    // a checksum of every row: its ids and its vector's sum of elements
    let key = c.query_one(
        "SELECT count(*), coalesce(sum(hashtextextended(
                    node_id::text || user_id::text || ((embedding <#> $2)::real)::text, 0)), 0)::text
           FROM fractality.node_embeddings WHERE model = $1",
        &[&s.model, &ones],
    )?;
    let (rows, checksum): (i64, String) = (key.get(0), key.get(1));
    c.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {FLAT_KEYS} (flat text PRIMARY KEY, rows bigint, checksum text,
             build_secs float8, built_at timestamptz DEFAULT now())"
    ))?;
    let index = format!("{}_hnsw", s.flat);
    let kept = c.query_opt(
        &format!(
            "SELECT k.build_secs FROM {FLAT_KEYS} k
              WHERE k.flat = $1 AND k.rows = $2 AND k.checksum = $3
                AND to_regclass($1) IS NOT NULL AND to_regclass($4) IS NOT NULL"
        ),
        &[&s.flat, &rows, &checksum, &index],
    )?;
    if let Some(r) = kept {
        eprintln!("  {}: {rows} rows, reused (same embeddings)", s.flat);
        return Ok(Flat {
            rows,
            build_secs: r.get(0),
            reused: true,
        });
    }
    eprintln!(
        "  {}: copying {rows} embeddings of '{}' and building its HNSW index",
        s.flat, s.model
    );
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {flat};
         CREATE TABLE {flat} AS
             SELECT node_id, user_id, embedding::vector({dims}) AS embedding
               FROM fractality.node_embeddings WHERE model = '{model}';",
        flat = s.flat,
        dims = s.dims,
        model = s.model
    ))?;
    let workers = exact_workers();
    c.batch_execute(&format!(
        "SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = {workers}"
    ))?;
    let index_name = index.rsplit('.').next().unwrap_or(&index).to_string();
    let ((), build_secs) = timed(|| {
        Ok(c.batch_execute(&format!(
            "CREATE INDEX {index_name} ON {} USING hnsw (embedding vector_cosine_ops)",
            s.flat
        ))?)
    })?;
    c.batch_execute(&format!(
        "RESET maintenance_work_mem; RESET max_parallel_maintenance_workers; ANALYZE {}",
        s.flat
    ))?;
    c.execute(
        &format!(
            "INSERT INTO {FLAT_KEYS} (flat, rows, checksum, build_secs) VALUES ($1, $2, $3, $4)
             ON CONFLICT (flat) DO UPDATE SET rows = excluded.rows, checksum = excluded.checksum,
                 build_secs = excluded.build_secs, built_at = now()"
        ),
        &[&s.flat, &rows, &checksum, &build_secs],
    )?;
    eprintln!("  {}: index built in {build_secs:.1} s", s.flat);
    Ok(Flat {
        rows,
        build_secs,
        reused: false,
    })
}

/// The HNSW builds: the model's index on every partition (recorded at load) against the copy's
/// one index; then the spread of the partitions' builds.
fn build_rows(s: &Space, scale: &Scale, build: Option<&IndexBuild>, flat: &Flat) -> Vec<Row> {
    let flat_note = if flat.reused {
        "built by an earlier run on the same embeddings"
    } else {
        "built now"
    };
    let mut rows = vec![Row::new(
        format!(
            "HNSW index builds over {}: build_model_index on every partition, in all{} vs one index over the unpartitioned copy {} ({} rows, {flat_note}); time",
            scale.describe(s),
            build.map_or(" (no build recorded: data loaded by an older harness)".to_string(), |b| format!(", {}", b.settings)),
            s.flat,
            thousands(flat.rows as u64),
        ),
        build.map(|b| Figure::single(b.wall_secs, Unit::Seconds)),
        Some(Figure::single(flat.build_secs, Unit::Seconds)),
    )];
    if let Some(b) = build {
        if let Some([lo, mid, hi]) = b.spread() {
            rows.push(Row::new(
                format!(
                    "- one partition's build, median of the {} holding rows (fastest {:.2} s for {} rows in {}, slowest {:.2} s for {} rows in {})",
                    b.used(),
                    lo.secs,
                    thousands(lo.rows as u64),
                    lo.partition,
                    hi.secs,
                    thousands(hi.rows as u64),
                    hi.partition
                ),
                Some(Figure::single(mid.secs, Unit::Seconds)),
                None,
            ));
        }
    }
    rows
}

// ---- sources and exact answers ---------------------------------------------------------------

/// A source node: its tenant, its partition and its embedding (the query vector).
pub(crate) struct Source {
    pub(crate) node: Uuid,
    pub(crate) tenant: Uuid,
    pub(crate) partition: String,
    pub(crate) query: Vector,
}

fn source_rows(rows: &[postgres::Row]) -> Vec<Source> {
    rows.iter()
        .map(|r| Source {
            node: r.get(0),
            tenant: r.get(1),
            partition: r.get(2),
            query: r.get(3),
        })
        .collect()
}

/// `n` sources spread over the model's embeddings (in an order fixed by their ids).
pub(crate) fn sources(c: &mut Client, s: &Space, n: usize) -> Result<Vec<Source>, Error> {
    let rows = c.query(
        &format!(
            "SELECT e.node_id, e.user_id, e.tableoid::regclass::text, e.embedding::vector({})
               FROM fractality.node_embeddings e
              WHERE e.model = $1
              ORDER BY hashtext(e.node_id::text), e.node_id LIMIT $2",
            s.dims
        ),
        &[&s.model, &(n as i64)],
    )?;
    Ok(source_rows(&rows))
}

/// The untimed exact computations: no index scan (so no HNSW), parallel sequential scans.
pub(crate) fn exact_mode(c: &mut Client, on: bool) -> Result<(), Error> {
    if on {
        c.batch_execute(&format!(
            "SET enable_indexscan = off; SET max_parallel_workers_per_gather = {}",
            exact_workers()
        ))?;
    } else {
        c.batch_execute("RESET enable_indexscan; SET max_parallel_workers_per_gather = 0")?;
    }
    Ok(())
}

fn bare_sql(s: &Space) -> String {
    format!(
        "SELECT node_id FROM {} ORDER BY embedding <=> $1 LIMIT {K}",
        s.flat
    )
}

const NATIVE_SQL: &str =
    "SELECT node_id FROM fractality.find_resonant($1::uuid, $2::float8, 20, $3::text)";

/// find_resonant's exact answer by brute force: every embedding of the model in the source's
/// tenant with similarity >= the threshold, ranked by the seed's formula (0.5 similarity + 0.3
/// energy product + 0.2 the strongest edge between the two, 0 without one), top 20.
fn brute_force_sql(s: &Space) -> String {
    format!(
        "WITH src AS (
             SELECT e.embedding::vector({d}) AS v, n.atp
               FROM fractality.node_embeddings e
               JOIN fractality.node_energy n ON n.node_id = e.node_id AND n.user_id = e.user_id
              WHERE e.user_id = $2 AND e.node_id = $1 AND e.model = $3),
         cand AS (
             SELECT e.node_id, 1 - (e.embedding::vector({d}) <=> src.v) AS sim, src.atp AS src_atp
               FROM fractality.node_embeddings e, src
              WHERE e.user_id = $2 AND e.model = $3 AND e.node_id <> $1)
         SELECT c.node_id
           FROM cand c
           JOIN fractality.node_energy n ON n.node_id = c.node_id AND n.user_id = $2
           LEFT JOIN LATERAL (
                 SELECT x.w FROM (SELECT weight AS w FROM fractality.edges
                                   WHERE from_node = $1 AND to_node = c.node_id
                                  UNION ALL
                                  SELECT weight FROM fractality.edges
                                   WHERE from_node = c.node_id AND to_node = $1) x
                  ORDER BY abs(x.w) DESC, x.w DESC LIMIT 1) ed ON true
          WHERE c.sim >= $4
          ORDER BY 0.5 * c.sim + 0.3 * c.src_atp * n.atp + 0.2 * coalesce(ed.w, 0) DESC,
                   c.sim DESC, c.node_id
          LIMIT {K}",
        d = s.dims
    )
}

fn ids(rows: &[postgres::Row]) -> Vec<Uuid> {
    rows.iter().map(|r| r.get(0)).collect()
}

/// The exact answers of each source, in the sources' order.
struct Exact {
    /// find_resonant's (brute force over the tenant).
    native: Vec<Vec<Uuid>>,
    /// The bare kNN's (sequential scan of the copy).
    bare: Vec<Vec<Uuid>>,
}

fn exact_answers(c: &mut Client, s: &Space, sources: &[Source]) -> Result<Exact, Error> {
    exact_mode(c, true)?;
    let (brute, bare) = (brute_force_sql(s), bare_sql(s));
    let mut native = Vec::with_capacity(sources.len());
    let mut knn = Vec::with_capacity(sources.len());
    for src in sources {
        native.push(ids(
            &c.query(&brute, &[&src.node, &src.tenant, &s.model, &THRESHOLD])?
        ));
        knn.push(ids(&c.query(&bare, &[&src.query])?));
    }
    exact_mode(c, false)?;
    Ok(Exact { native, bare: knn })
}

/// Hits among the exact answers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Recall {
    hits: usize,
    wanted: usize,
}

impl Recall {
    fn add(&mut self, got: &[Uuid], want: &[Uuid]) {
        let g: HashSet<&Uuid> = got.iter().collect();
        self.hits += want.iter().filter(|w| g.contains(w)).count();
        self.wanted += want.len();
    }

    fn value(&self) -> f64 {
        if self.wanted == 0 {
            return f64::NAN;
        }
        self.hits as f64 / self.wanted as f64
    }

    fn describe(&self) -> String {
        format!(
            "recall@20 {:.3} ({}/{} of the exact answers)",
            self.value(),
            thousands(self.hits as u64),
            thousands(self.wanted as u64)
        )
    }
}

/// The bare query at the same recall: the lowest ef_search of [`BARE_EF_SEARCH`] whose recall@20
/// over the sources reaches the target (the highest when none does); left set in the session.
fn tune_bare(
    c: &mut Client,
    s: &Space,
    sources: &[Source],
    exact: &[Vec<Uuid>],
) -> Result<(i32, Recall), Error> {
    let bare = c.prepare(&bare_sql(s))?;
    let mut chosen = (0, Recall::default());
    for ef in BARE_EF_SEARCH {
        c.batch_execute(&format!("SET hnsw.ef_search = {ef}"))?;
        let mut r = Recall::default();
        for (src, want) in sources.iter().zip(exact) {
            r.add(&ids(&c.query(&bare, &[&src.query])?), want);
        }
        eprintln!(
            "  {}: bare kNN recall@20 {:.3} at ef_search {ef}",
            s.model,
            r.value()
        );
        chosen = (ef, r);
        if r.value() >= RECALL_TARGET {
            break;
        }
    }
    Ok(chosen)
}

// ---- crowded neighbourhoods ------------------------------------------------------------------

/// Up to `want` sources in crowded neighbourhoods: another tenant of the source's partition has
/// embeddings nearer to the source than the source's own 20th nearest neighbour. Candidates are
/// nodes whose (partition, cluster) holds several tenants (the generator's cluster, in nodes'
/// metadata); each is checked exactly on its partition. Returns the sources and, for each, how
/// many other tenants' embeddings are nearer than its own 20th neighbour.
fn crowded_sources(
    c: &mut Client,
    s: &Space,
    want: usize,
) -> Result<(Vec<Source>, Vec<i64>, usize), Error> {
    let candidates = source_rows(&c.query(
        &format!(
            "WITH ne AS (
                 SELECT e.node_id, e.user_id, e.tableoid, n.metadata->>'cluster' AS cluster
                   FROM fractality.node_embeddings e
                   JOIN fractality.nodes n ON n.id = e.node_id AND n.user_id = e.user_id
                  WHERE e.model = $1),
             shared AS (SELECT tableoid, cluster FROM ne GROUP BY 1, 2
                         HAVING count(DISTINCT user_id) > 1),
             picked AS (SELECT ne.node_id, ne.user_id FROM ne JOIN shared USING (tableoid, cluster)
                         ORDER BY hashtext(ne.node_id::text), ne.node_id LIMIT $2)
             SELECT e.node_id, e.user_id, e.tableoid::regclass::text, e.embedding::vector({})
               FROM picked p JOIN fractality.node_embeddings e
                 ON e.user_id = p.user_id AND e.node_id = p.node_id AND e.model = $1
              ORDER BY hashtext(e.node_id::text), e.node_id",
            s.dims
        ),
        &[&s.model, &(4 * want as i64)],
    )?);
    exact_mode(c, true)?;
    let (mut out, mut nearer) = (Vec::new(), Vec::new());
    let mut checked = 0;
    for src in candidates {
        if out.len() >= want {
            break;
        }
        checked += 1;
        // the partition's name from the catalog (regclass output), never a caller's value
        if !src
            .partition
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
        {
            return Err(format!("unexpected partition name {}", src.partition).into());
        }
        let r = c.query_one(
            &format!(
                "WITH own AS (
                     SELECT e.embedding::vector({d}) <=> $2 AS d FROM {part} e
                      WHERE e.user_id = $3 AND e.model = $4 AND e.node_id <> $1
                      ORDER BY 1 LIMIT {K}),
                 d20 AS (SELECT max(d) AS d FROM own)
                 SELECT count(*) FROM {part} e, d20
                  WHERE e.user_id <> $3 AND e.model = $4
                    AND (e.embedding::vector({d}) <=> $2) < d20.d",
                d = s.dims,
                part = src.partition
            ),
            &[&src.node, &src.query, &src.tenant, &s.model],
        )?;
        let n: i64 = r.get(0);
        if n > 0 {
            nearer.push(n);
            out.push(src);
        }
    }
    exact_mode(c, false)?;
    Ok((out, nearer, checked))
}

// ---- find_resonant against the bare kNN, source by source ------------------------------------

/// How find_resonant runs in a pass.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Default,
    Index,
    Shared,
    Exact,
    AppRole,
}

impl Mode {
    /// What the pass measures; `limit` is the server's fractality.exact_scan_limit.
    fn describe(self, limit: &str) -> String {
        match self {
            Mode::Default => format!("default settings (a tenant's own graph where build_tenant_graphs made one, else the exact path for a tenant of at most fractality.exact_scan_limit = {limit} embeddings, else the partition's shared graph)"),
            Mode::Index => "the index path forced (SET fractality.exact_scan_limit = 0; the tenant's own graph where it has one)".to_string(),
            Mode::Shared => "the partition's shared graph forced (SET fractality.exact_scan_limit = 0, fractality.tenant_graphs = off)".to_string(),
            Mode::Exact => "the exact path forced (SET fractality.exact_scan_limit = 1000000000)".to_string(),
            Mode::AppRole => format!("as an application role (bench_tenant: not the owner, NOBYPASSRLS, SELECT granted, fractality.user_id set to the source's tenant), default settings (exact_scan_limit {limit})"),
        }
    }

    fn enter(self, c: &mut Client) -> Result<(), Error> {
        match self {
            Mode::Default => {}
            Mode::Index => c.batch_execute("SET fractality.exact_scan_limit = 0")?,
            Mode::Shared => c.batch_execute(
                "SET fractality.exact_scan_limit = 0; SET fractality.tenant_graphs = off",
            )?,
            Mode::Exact => c.batch_execute("SET fractality.exact_scan_limit = 1000000000")?,
            Mode::AppRole => c.batch_execute("SET ROLE bench_tenant")?,
        }
        Ok(())
    }

    fn leave(self, c: &mut Client) -> Result<(), Error> {
        c.batch_execute(
            "RESET ROLE; RESET fractality.user_id; RESET fractality.exact_scan_limit;
             RESET fractality.tenant_graphs",
        )?;
        Ok(())
    }
}

/// The times (ms) of find_resonant and of the bare query, in turns, and their recall.
struct Pass {
    native: Vec<f64>,
    bare: Vec<f64>,
    native_recall: Recall,
    bare_recall: Recall,
}

fn timed_ids(
    c: &mut Client,
    st: &Statement,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<(Vec<Uuid>, f64), Error> {
    let started = Instant::now();
    let rows = c.query(st, params)?;
    let t = ms(started.elapsed().as_secs_f64());
    Ok((ids(&rows), t))
}

/// find_resonant and the bare query source by source, in turns (after a warm-up of both from
/// every source), as prepared statements.
fn pass(
    c: &mut Client,
    s: &Space,
    mode: Mode,
    sources: &[Source],
    exact: &Exact,
) -> Result<Pass, Error> {
    mode.enter(c)?;
    let result = (|| -> Result<Pass, Error> {
        let native = c.prepare(NATIVE_SQL)?;
        let bare = c.prepare(&bare_sql(s))?;
        let model = s.model.to_string();
        let run = |c: &mut Client, src: &Source| -> Result<[(Vec<Uuid>, f64); 2], Error> {
            if mode == Mode::AppRole {
                c.batch_execute(&format!("SET fractality.user_id = '{}'", src.tenant))?;
            }
            let a = timed_ids(c, &native, &[&src.node, &THRESHOLD, &model])?;
            let b = timed_ids(c, &bare, &[&src.query])?;
            Ok([a, b])
        };
        // every source once, untimed: the pages either side reads are in the cache before
        // either is timed (a server started cold otherwise times its first pass from disk)
        for src in sources {
            run(c, src)?;
        }
        let mut p = Pass {
            native: Vec::with_capacity(sources.len()),
            bare: Vec::with_capacity(sources.len()),
            native_recall: Recall::default(),
            bare_recall: Recall::default(),
        };
        for (i, src) in sources.iter().enumerate() {
            let [(got, t), (got_bare, t_bare)] = run(c, src)?;
            p.native.push(t);
            p.native_recall.add(&got, &exact.native[i]);
            p.bare.push(t_bare);
            p.bare_recall.add(&got_bare, &exact.bare[i]);
        }
        Ok(p)
    })();
    mode.leave(c)?;
    result
}

/// find_resonant against the bare kNN on one model's embeddings: the copy, the sources, their
/// exact answers, the bare query's ef_search, then a pass per mode, on the sources and on
/// crowded sources.
fn find_resonant_rows(
    c: &mut Client,
    s: &Space,
    modes: &[Mode],
    crowded_modes: &[Mode],
) -> Result<(Vec<Row>, Flat, Scale), Error> {
    // the steady state of an insert-only table: autovacuum sets the visibility map, which the
    // tenant's size count (an index-only count) relies on
    eprintln!(
        "  {}: VACUUM (ANALYZE) of node_embeddings, nodes, edges",
        s.model
    );
    c.batch_execute(
        "VACUUM (ANALYZE) fractality.node_embeddings, fractality.nodes, fractality.edges",
    )?;
    let scale = Scale::of(c, s)?;
    // the library defines its settings when it loads: call it first
    let limit: String = c
        .query_one(
            "SELECT fractality.resonance_score(0, 0, 0, 0) IS NOT NULL,
                    current_setting('fractality.exact_scan_limit')",
            &[],
        )?
        .get(1);
    if scale.rows == 0 {
        return Err(format!("no embeddings of model '{}'", s.model).into());
    }
    let flat = flat_copy(c, s)?;
    tenant_role(c, s.flat)?;
    let srcs = sources(c, s, SOURCES)?;
    eprintln!(
        "  {}: exact answers of {} sources (brute force over each tenant; sequential scan of {})",
        s.model,
        srcs.len(),
        s.flat
    );
    let exact = exact_answers(c, s, &srcs)?;
    let (ef, tuned) = tune_bare(c, s, &srcs, &exact.bare)?;
    let tenants = srcs.iter().map(|x| x.tenant).collect::<HashSet<_>>().len();
    let target = format!(
        "recall >= 0.95; <= {:.1}x the bare kNN (gain >= {:.2})",
        s.max_ratio,
        1.0 / s.max_ratio
    );
    let mut first = true;
    let mut bare_note = |r: &Recall| {
        let note = if first {
            format!(
                "bare kNN over {} ({} rows, one HNSW index) at ef_search {ef}, the lowest of {BARE_EF_SEARCH:?} reaching recall@20 {RECALL_TARGET} ({:.3} when chosen, {:.3} in this pass); both after VACUUM (ANALYZE) of node_embeddings",
                s.flat,
                thousands(flat.rows as u64),
                tuned.value(),
                r.value()
            )
        } else {
            format!(
                "bare kNN over {} at ef_search {ef} (recall@20 {:.3} in this pass)",
                s.flat,
                r.value()
            )
        };
        first = false;
        note
    };
    let mut rows = Vec::new();
    for &mode in modes {
        eprintln!(
            "  {}: find_resonant vs bare kNN, {}",
            s.model,
            mode.describe(&limit)
        );
        let p = pass(c, s, mode, &srcs, &exact)?;
        rows.push(
            Row::new(
                format!(
                    "find_resonant k=20 threshold {THRESHOLD}, {}: {} sources of {tenants} tenants, {}; {}; vs the {}",
                    mode.describe(&limit),
                    srcs.len(),
                    scale.describe(s),
                    p.native_recall.describe(),
                    bare_note(&p.bare_recall)
                ),
                Some(Figure::from_samples(&p.native, Unit::Millis)),
                Some(Figure::from_samples(&p.bare, Unit::Millis)),
            )
            .target(target.clone()),
        );
    }

    eprintln!("  {}: looking for crowded neighbourhoods", s.model);
    let (crowded, nearer, checked) = crowded_sources(c, s, CROWDED_SOURCES)?;
    if crowded.is_empty() {
        rows.push(Row::new(
            format!(
                "find_resonant, crowded neighbourhoods: none among {checked} candidates (no partition where another tenant's embeddings are nearer than a source's own 20th neighbour)"
            ),
            None,
            None,
        ));
        return Ok((rows, flat, scale));
    }
    let exact = exact_answers(c, s, &crowded)?;
    let nearer_f: Vec<f64> = nearer.iter().map(|&n| n as f64).collect();
    let crowded_tenants = crowded
        .iter()
        .map(|x| x.tenant)
        .collect::<HashSet<_>>()
        .len();
    for &mode in crowded_modes {
        eprintln!(
            "  {}: crowded neighbourhoods, {} sources, {}",
            s.model,
            crowded.len(),
            mode.describe(&limit)
        );
        let p = pass(c, s, mode, &crowded, &exact)?;
        rows.push(
            Row::new(
                format!(
                    "find_resonant k=20, crowded neighbourhoods, {}: {} sources of {crowded_tenants} tenants (of {checked} candidates whose partition and cluster hold several tenants) whose partition holds other tenants' embeddings nearer than the source's own 20th neighbour (median {} of them, max {}), {}; {}; vs the {}",
                    mode.describe(&limit),
                    crowded.len(),
                    percentile(&nearer_f, 0.5),
                    nearer.iter().max().copied().unwrap_or(0),
                    scale.describe(s),
                    p.native_recall.describe(),
                    bare_note(&p.bare_recall)
                ),
                Some(Figure::from_samples(&p.native, Unit::Millis)),
                Some(Figure::from_samples(&p.bare, Unit::Millis)),
            )
            .target(target.clone()),
        );
    }
    Ok((rows, flat, scale))
}

// ---- resonance_with --------------------------------------------------------------------------

const WITH_NATIVE: &str =
    "SELECT node_id, resonance FROM fractality.resonance_with($1, $2::uuid[], 'default')";

/// The same formula as one plain SQL query, as a user would write it: the nodes' current energy
/// (node_energy), their embeddings by (user_id, node_id, model), the strongest edge between the
/// two in either direction (0 without one).
const WITH_SQL: &str = "
    SELECT o.id AS node_id,
           0.5 * (1 - (eo.embedding <=> es.embedding)) + 0.3 * ns.atp * no.atp
             + 0.2 * coalesce(ed.weight, 0) AS resonance
      FROM fractality.node_energy ns
      JOIN fractality.node_embeddings es
        ON es.user_id = ns.user_id AND es.node_id = ns.node_id AND es.model = 'default'
     CROSS JOIN unnest($2::uuid[]) WITH ORDINALITY AS o(id, ord)
      JOIN fractality.node_energy no ON no.node_id = o.id
      JOIN fractality.node_embeddings eo
        ON eo.user_id = no.user_id AND eo.node_id = no.node_id AND eo.model = 'default'
      LEFT JOIN LATERAL (
            SELECT e.weight FROM fractality.edges e
             WHERE (e.from_node = $1 AND e.to_node = o.id) OR (e.from_node = o.id AND e.to_node = $1)
             ORDER BY abs(e.weight) DESC, e.weight DESC LIMIT 1) ed ON true
     WHERE ns.node_id = $1
     ORDER BY o.ord";

const WITH_SEED: &str = "
    SELECT o, bench_seed_resonance.calculate_resonance($1, o) FROM unnest($2::uuid[]) AS o";

/// The rows alone: the same arguments sent, one (uuid, float8) row per other node returned, no
/// work. What any function answering the question costs this client at least.
const WITH_ROWS: &str =
    "SELECT o, 0.5::float8 FROM unnest($2::uuid[]) AS o WHERE $1::uuid IS NOT NULL";

/// One node of each of the largest tenants (with an embedding).
const WITH_SOURCES_SQL: &str = "
    SELECT DISTINCT ON (n.user_id) n.id
      FROM fractality.nodes n
      JOIN (SELECT user_id FROM fractality.node_embeddings WHERE model = 'default'
             GROUP BY 1 ORDER BY count(*) DESC, user_id LIMIT $1) t USING (user_id)
      JOIN fractality.node_embeddings e
        ON e.user_id = n.user_id AND e.node_id = n.id AND e.model = 'default'
     ORDER BY n.user_id, hashtext(n.id::text), n.id";

/// The others of a source ($1, of tenant $3, in cluster $4): the targets of its edges (either
/// direction), then nodes of its cluster in its tenant, then any nodes of its tenant, up to $2,
/// each with an embedding (nodes other scenarios added may have none); with the kind of each (1
/// edge, 2 cluster, 3 random). The tenant is a parameter, not a join: the planner then prunes
/// node_embeddings to the tenant's partition and knows the pool's size (with the tenant from a
/// join, at 1M it looped over every one of the tenant's embeddings for each row of the pool).
const WITH_OTHERS_SQL: &str = "
    WITH pool AS MATERIALIZED (
        SELECT CASE WHEN e.from_node = $1 THEN e.to_node ELSE e.from_node END AS id, 1 AS kind
          FROM fractality.edges e WHERE e.from_node = $1 OR e.to_node = $1
        UNION ALL
        SELECT n.id, 2 FROM fractality.nodes n
         WHERE n.user_id = $3 AND n.metadata->>'cluster' = $4
        UNION ALL
        SELECT n.id, 3 FROM fractality.nodes n WHERE n.user_id = $3)
    SELECT p.id, min(p.kind) FROM pool p
     WHERE p.id <> $1
       AND EXISTS (SELECT 1 FROM fractality.node_embeddings e
                    WHERE e.user_id = $3 AND e.node_id = p.id AND e.model = 'default')
     GROUP BY p.id ORDER BY min(p.kind), hashtext(p.id::text), p.id LIMIT $2";

/// A source's tenant and cluster.
const WITH_SOURCE_SQL: &str =
    "SELECT user_id, metadata->>'cluster' FROM fractality.nodes WHERE id = $1";

fn resonance_with_rows(c: &mut Client, reps: usize, scale: &Scale) -> Result<Vec<Row>, Error> {
    let sources: Vec<Uuid> = ids(&c.query(WITH_SOURCES_SQL, &[&WITH_SOURCES])?);
    let mut sets: Vec<(Uuid, Vec<Uuid>)> = Vec::new();
    let mut kinds = [0usize; 3];
    for src in &sources {
        let at = c.query_one(WITH_SOURCE_SQL, &[src])?;
        let (tenant, cluster): (Uuid, Option<String>) = (at.get(0), at.get(1));
        let rows = c.query(WITH_OTHERS_SQL, &[src, &WITH_OTHERS, &tenant, &cluster])?;
        for r in &rows {
            let k: i32 = r.get(1);
            kinds[(k as usize).clamp(1, 3) - 1] += 1;
        }
        sets.push((*src, ids(&rows)));
    }
    let pairs: usize = sets.iter().map(|(_, o)| o.len()).sum();
    if pairs == 0 {
        return Err("resonance_with: no sources".into());
    }
    // the three sides agree before they are timed (the seed: where at most one edge joins the
    // two, as its LIMIT 1 takes any; and where it is not NULL: without an edge it returns NULL)
    let native = c.prepare(WITH_NATIVE)?;
    let sql = c.prepare(WITH_SQL)?;
    let seed = c.prepare(WITH_SEED)?;
    let bare_rows = c.prepare(WITH_ROWS)?;
    for (src, others) in &sets {
        let a = c.query(&native, &[src, others])?;
        let b = c.query(&sql, &[src, others])?;
        if a.len() != others.len() || b.len() != others.len() {
            return Err(format!(
                "resonance_with: {} rows, the SQL {}, for {} others",
                a.len(),
                b.len(),
                others.len()
            )
            .into());
        }
        for (x, y) in a.iter().zip(&b) {
            let (ra, rb): (Option<f64>, Option<f64>) = (x.get(1), y.get(1));
            let (ida, idb): (Uuid, Uuid) = (x.get(0), y.get(0));
            let same = match (ra, rb) {
                (Some(p), Some(q)) => (p - q).abs() <= 1e-6,
                (None, None) => true,
                _ => false,
            };
            if ida != idb || !same {
                return Err(format!(
                    "resonance_with and the SQL disagree for {src} / {ida}: {ra:?} vs {rb:?}"
                )
                .into());
            }
        }
        let off: Option<f64> = c
            .query_one(
                "SELECT max(abs(r.resonance - bench_seed_resonance.calculate_resonance($1, r.node_id)))
                   FROM fractality.resonance_with($1, $2::uuid[]) r
                  WHERE (SELECT count(*) FROM fractality.edges e
                          WHERE (e.from_node, e.to_node) IN (($1, r.node_id), (r.node_id, $1))) <= 1",
                &[src, others],
            )?
            .get(0);
        if off.is_some_and(|d| d > 1e-6) {
            return Err(
                format!("resonance_with differs from the seed's by {off:?} ({src})").into(),
            );
        }
    }
    eprintln!(
        "  resonance: resonance_with, {} sources x {} others x {reps}, vs plain SQL and the seed's function",
        sets.len(),
        pairs / sets.len()
    );
    let (mut t_native, mut t_sql, mut t_seed, mut t_rows) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let per_pair = |c: &mut Client, st: &Statement, src: &Uuid, others: &Vec<Uuid>| {
        let started = Instant::now();
        let n = c.query(st, &[src, others])?.len();
        let us = started.elapsed().as_secs_f64() * 1e6 / others.len().max(1) as f64;
        if n != others.len() {
            return Err(Error::from(format!("{n} rows for {} others", others.len())));
        }
        Ok::<f64, Error>(us)
    };
    for (src, others) in sets.iter().take(2) {
        per_pair(c, &native, src, others)?;
        per_pair(c, &sql, src, others)?;
        per_pair(c, &seed, src, others)?;
    }
    for _ in 0..reps {
        for (src, others) in &sets {
            t_native.push(per_pair(c, &native, src, others)?);
            t_sql.push(per_pair(c, &sql, src, others)?);
            t_seed.push(per_pair(c, &seed, src, others)?);
            t_rows.push(per_pair(c, &bare_rows, src, others)?);
        }
    }
    let per_source = |k: usize| k as f64 / sets.len() as f64;
    let fewer = if pairs < WITH_OTHERS as usize * sets.len() {
        format!(" (fewer than {WITH_OTHERS}: the whole tenant)")
    } else {
        String::new()
    };
    let what = format!(
        "resonance_with, one source against {:.0} others of its tenant on average{fewer} (per source {:.1} targets of its edges, {:.1} nodes of its cluster, {:.1} other nodes), {} sources, one in each of the {} largest of {} tenants, {}, x {reps}; time per pair",
        per_source(pairs),
        per_source(kinds[0]),
        per_source(kinds[1]),
        per_source(kinds[2]),
        sets.len(),
        sets.len(),
        scale.tenants,
        scale.describe(&SPACE_384)
    );
    Ok(vec![
        Row::new(
            format!("{what}, vs the seed's PL/pgSQL calculate_resonance called per pair"),
            Some(Figure::from_samples(&t_native, Unit::Micros)),
            Some(Figure::from_samples(&t_seed, Unit::Micros)),
        )
        .target(">= 10x faster per pair"),
        Row::new(
            "- the same, vs the formula as one plain SQL query joining node_energy, node_embeddings (user_id, node_id, model) and edges for the others",
            Some(Figure::from_samples(&t_native, Unit::Micros)),
            Some(Figure::from_samples(&t_sql, Unit::Micros)),
        )
        .target("no slower per pair (gain >= 1.0)"),
        Row::new(
            "- the rows alone (informational): the same arguments, one (uuid, float8) row per other node, no work; what any function answering costs this client at least, in both columns above",
            Some(Figure::from_samples(&t_rows, Unit::Micros)),
            None,
        ),
    ])
}

// ---- calculate_resonance and resonance_score -------------------------------------------------

fn calculate_rows(c: &mut Client, reps: usize) -> Result<Vec<Row>, Error> {
    // calculate_resonance per pair: half joined by an edge, half pairs of nodes in id order
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS bench_pairs;
         CREATE TABLE bench_pairs AS
           (SELECT from_node AS a, to_node AS b FROM fractality.edges ORDER BY id LIMIT {half})
           UNION ALL
           (SELECT a.node_id, b.node_id FROM
              (SELECT node_id, row_number() OVER (ORDER BY node_id) r
                 FROM fractality.node_embeddings WHERE model = 'default') a
              JOIN (SELECT node_id, row_number() OVER (ORDER BY node_id DESC) r
                      FROM fractality.node_embeddings WHERE model = 'default') b
                ON a.r = b.r
             LIMIT {half});
         ANALYZE bench_pairs;",
        half = PAIRS / 2
    ))?;
    let check: Option<f64> = c
        .query_one(
            "SELECT max(abs(fractality.calculate_resonance(a, b)
                           - bench_seed_resonance.calculate_resonance(a, b)))
               FROM bench_pairs p
              WHERE NOT EXISTS (SELECT 1 FROM fractality.edges e
                                 WHERE (e.from_node, e.to_node) IN ((p.a, p.b), (p.b, p.a))
                                 GROUP BY 1 HAVING count(*) > 1)",
            &[],
        )?
        .get(0);
    if check.is_some_and(|d| d > 1e-6) {
        return Err(format!("calculate_resonance differs from the seed's by {check:?}").into());
    }
    let run = |sql: &'static str| {
        move |c: &mut Client| -> Result<f64, Error> {
            let (_, s) = timed(|| Ok(c.query_one(sql, &[])?))?;
            Ok(ms(s))
        }
    };
    eprintln!("  resonance: calculate_resonance over {PAIRS} pairs x {reps}");
    let (n, b) = alternate(
        c,
        reps,
        run("SELECT sum(fractality.calculate_resonance(a, b)) FROM bench_pairs"),
        run("SELECT sum(bench_seed_resonance.calculate_resonance(a, b)) FROM bench_pairs"),
    )?;
    let per_pair = |v: &[f64], pairs: i64| {
        Figure::single(
            Figure::from_samples(v, Unit::Millis).median * 1e3 / pairs as f64,
            Unit::Micros,
        )
    };
    let mut rows = vec![Row::new(
        format!(
            "calculate_resonance per pair (informational: resonance_with is the set form), {} pairs (half joined by an edge), x {reps}, vs the seed's PL/pgSQL function",
            thousands(PAIRS as u64)
        ),
        Some(per_pair(&n, PAIRS)),
        Some(per_pair(&b, PAIRS)),
    )];

    // the same as an application role under row-level security: pairs of one tenant (its
    // edges, then pairs of its nodes), read by a role that is neither owner nor BYPASSRLS
    c.batch_execute(
        "DROP TABLE IF EXISTS bench_tenant_pairs;
         CREATE TABLE bench_tenant_pairs AS
           WITH t AS (SELECT user_id FROM fractality.node_embeddings WHERE model = 'default'
                       GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1),
                n AS (SELECT id, row_number() OVER (ORDER BY id) r, count(*) OVER () c
                        FROM fractality.nodes WHERE user_id = (SELECT user_id FROM t))
           (SELECT e.from_node AS a, e.to_node AS b FROM fractality.edges e
             WHERE e.user_id = (SELECT user_id FROM t) ORDER BY e.id LIMIT 2500)
           UNION ALL
           (SELECT x.id, y.id FROM n x JOIN n y ON y.r = (x.r * 7919) % x.c + 1 LIMIT 2500);
         ANALYZE bench_tenant_pairs;
         GRANT SELECT ON bench_tenant_pairs TO bench_tenant;",
    )?;
    let (tenant_pairs, tenant): (i64, String) = {
        let r = c.query_one(
            "SELECT count(*), min(n.user_id::text) FROM bench_tenant_pairs p
               JOIN fractality.nodes n ON n.id = p.a",
            &[],
        )?;
        (r.get(0), r.get(1))
    };
    eprintln!(
        "  resonance: calculate_resonance as a tenant under RLS, {tenant_pairs} pairs x {reps}"
    );
    let as_tenant = format!(
        "SET ROLE bench_tenant; SET fractality.user_id = '{tenant}';
         SELECT sum(fractality.calculate_resonance(a, b)) FROM bench_tenant_pairs;
         RESET ROLE; RESET fractality.user_id;"
    );
    let (n, b) = alternate(
        c,
        reps,
        |c: &mut Client| -> Result<f64, Error> {
            let ((), s) = timed(|| Ok(c.batch_execute(&as_tenant)?))?;
            Ok(ms(s))
        },
        run("SELECT sum(bench_seed_resonance.calculate_resonance(a, b)) FROM bench_tenant_pairs"),
    )?;
    rows.push(Row::new(
        format!(
            "- the same as an application role under row-level security, {} pairs of one tenant (informational); the seed without RLS",
            thousands(tenant_pairs as u64)
        ),
        Some(per_pair(&n, tenant_pairs)),
        Some(per_pair(&b, tenant_pairs)),
    ));

    // resonance_score per row
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS bench_scores;
         CREATE TABLE bench_scores AS
           SELECT (random() * 2 - 1) AS s, random() AS a, random() AS b, (random() * 2 - 1) AS w
             FROM generate_series(1, {SCORE_ROWS});"
    ))?;
    c.batch_execute("VACUUM ANALYZE bench_scores")?;
    eprintln!("  resonance: resonance_score over {SCORE_ROWS} rows x {reps}");
    let (n, b) = alternate(
        c,
        reps,
        run("SELECT sum(fractality.resonance_score(s, a, b, w)) FROM bench_scores"),
        run("SELECT sum(0.5 * s + 0.3 * a * b + 0.2 * w) FROM bench_scores"),
    )?;
    rows.push(
        Row::new(
            format!("resonance_score, {} rows", thousands(SCORE_ROWS as u64)),
            Some(Figure::from_samples(&n, Unit::Millis)),
            Some(Figure::from_samples(&b, Unit::Millis)),
        )
        .target("<= 1.5x the SQL expression"),
    );
    Ok(rows)
}

// ---- scenario: resonance ---------------------------------------------------------------------

pub fn resonance(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(5);
    let c = &mut *ctx.client;
    open_session(c)?;
    let result = (|| -> Result<Vec<Row>, Error> {
        let s = &SPACE_384;
        let (mut rows, flat, scale) = find_resonant_rows(
            c,
            s,
            &[
                Mode::Default,
                Mode::Index,
                Mode::Shared,
                Mode::Exact,
                Mode::AppRole,
            ],
            &[Mode::Default, Mode::Index, Mode::Shared],
        )?;
        eprintln!("  resonance: seed schema copy");
        c.batch_execute(SEED_DDL)?;
        rows.extend(resonance_with_rows(c, reps, &scale)?);
        rows.extend(calculate_rows(c, reps)?);
        let build = datagen::recorded_build(c, s.model)?;
        rows.extend(build_rows(s, &scale, build.as_ref(), &flat));
        Ok(rows)
    })();
    close_session(c)?;
    result
}

// ---- scenario: resonance_1536 ----------------------------------------------------------------

/// The tenants and nodes of the second model: 20 tenants of their own, `nodes` nodes in
/// clusters of about 100 (each cluster shared by several of the tenants), drawn from streams of
/// their own: the same for a seed.
pub fn graph_1536(seed: u64, nodes: usize) -> datagen::Graph {
    datagen::build_graph(
        &mut datagen::rng(seed, "graph_1536"),
        TENANTS_1536,
        nodes,
        (nodes / 100).max(10),
        DIMS_1536,
    )
}

/// Removes the nodes (and with them the embeddings and edges) of the tenants `resonance_1536`
/// loaded, so that the other scenarios see the generated graph alone; VACUUM (ANALYZE) after.
/// Nothing when there are none.
pub fn remove_1536(c: &mut Client) -> Result<(), Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&DATASET_1536])?
        .get(0);
    if !exists {
        return Ok(());
    }
    let tenants: Vec<Uuid> = c
        .query(
            &format!("SELECT DISTINCT unnest(tenants) FROM {DATASET_1536}"),
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    remove_tenants(c, &tenants)?;
    c.batch_execute(&format!("DROP TABLE {DATASET_1536}"))?;
    Ok(())
}

fn remove_tenants(c: &mut Client, tenants: &[Uuid]) -> Result<(), Error> {
    let present: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM fractality.nodes WHERE user_id = ANY($1))",
            &[&tenants],
        )?
        .get(0);
    if !present {
        return Ok(());
    }
    eprintln!(
        "  removing the nodes of the {} tenants of model '{MODEL_1536}'",
        tenants.len()
    );
    // without the model's index the deletion and the VACUUM do not walk its graph
    let registered: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM fractality.embedding_models WHERE model = $1)",
            &[&MODEL_1536],
        )?
        .get(0);
    if registered {
        c.query_one("SELECT fractality.drop_model_index($1)", &[&MODEL_1536])?;
    }
    c.batch_execute("SET fractality.notify = off")?;
    c.execute(
        "DELETE FROM fractality.nodes WHERE user_id = ANY($1)",
        &[&tenants],
    )?;
    c.batch_execute("RESET fractality.notify")?;
    // one statement: VACUUM cannot run in the implicit transaction of several
    c.batch_execute(
        "VACUUM (ANALYZE) fractality.nodes, fractality.node_embeddings, fractality.edges,
                          fractality.consciousness_streams",
    )?;
    Ok(())
}

/// The load of the second model's data, as load steps turned into rows.
struct Load1536 {
    steps: Vec<(String, u64, f64)>,
}

/// Loads the second model's tenants, nodes, edges and embeddings (the model's index dropped
/// before, built on every partition after), unless the same seed and size are loaded already.
fn load_1536(c: &mut Client, p: &Params, n: usize) -> Result<Option<Load1536>, Error> {
    c.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {DATASET_1536} (seed bigint, nodes bigint, tenants uuid[],
             loaded_at timestamptz DEFAULT now())"
    ))?;
    let loaded: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {DATASET_1536} d
                  WHERE d.seed = $1 AND d.nodes = $2
                    AND (SELECT count(*) FROM fractality.node_embeddings e
                          WHERE e.model = $3 AND e.user_id = ANY(d.tenants)) = $2"
            ),
            &[&(p.seed as i64), &(n as i64), &MODEL_1536],
        )?
        .get(0);
    if loaded > 0 {
        eprintln!(
            "  {MODEL_1536}: reusing the loaded {n} embeddings (seed {})",
            p.seed
        );
        return Ok(None);
    }
    let started = Instant::now();
    let g = graph_1536(p.seed, n);
    let edge_list = datagen::edges_from(&g, &mut datagen::rng(p.seed, "edges_1536"));
    eprintln!(
        "  {MODEL_1536}: generated {} nodes of {} tenants in {:.1} s",
        g.nodes.len(),
        g.users.len(),
        started.elapsed().as_secs_f64()
    );
    // whatever an earlier load left: the recorded tenants and this seed's
    let mut old: Vec<Uuid> = c
        .query(
            &format!("SELECT DISTINCT unnest(tenants) FROM {DATASET_1536}"),
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    old.extend(&g.users);
    remove_tenants(c, &old)?;
    c.batch_execute(&format!("DELETE FROM {DATASET_1536}"))?;
    c.query_one(
        "SELECT fractality.register_model($1, $2)",
        &[&MODEL_1536, &(DIMS_1536 as i32)],
    )?;
    c.query_one("SELECT fractality.drop_model_index($1)", &[&MODEL_1536])?;

    let mut steps = Vec::new();
    c.batch_execute("SET fractality.notify = off")?;
    let copy = |c: &mut Client,
                table: &str,
                columns: &str,
                encode: &dyn Fn(&mut postgres::CopyInWriter<'_>) -> std::io::Result<u64>|
     -> Result<(u64, f64), Error> {
        let started = Instant::now();
        let mut w = c.copy_in(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))?;
        let encoded = encode(&mut w)?;
        let rows = w.finish()?;
        if rows != encoded {
            return Err(
                format!("COPY {table}: wrote {encoded} rows, the server took {rows}").into(),
            );
        }
        Ok((rows, started.elapsed().as_secs_f64()))
    };
    let (rows, secs) = copy(c, "fractality.nodes", datagen::NODE_COLUMNS, &|w| {
        datagen::encode_nodes_as(
            &g,
            &mut datagen::rng(p.seed, "nodes_1536"),
            "m1536-",
            p.anchor_us,
            w,
        )
    })?;
    steps.push((
        format!(
            "COPY nodes of the {} tenants of '{MODEL_1536}'",
            g.users.len()
        ),
        rows,
        secs,
    ));
    let (rows, secs) = copy(c, "fractality.edges", datagen::EDGE_COLUMNS, &|w| {
        datagen::encode_edges(&g, &edge_list, w)
    })?;
    steps.push(("COPY their edges".to_string(), rows, secs));
    let (rows, secs) = copy(
        c,
        "fractality.node_embeddings",
        datagen::EMBEDDING_COLUMNS,
        &|w| {
            datagen::encode_model_embeddings(
                &g,
                &mut datagen::rng(p.seed, "embeddings_1536"),
                MODEL_1536,
                w,
            )
        },
    )?;
    steps.push((
        format!(
            "COPY node_embeddings, '{MODEL_1536}' ({DIMS_1536} dimensions), its HNSW index dropped"
        ),
        rows,
        secs,
    ));
    c.batch_execute("RESET fractality.notify")?;
    let build = datagen::build_model_index(c, MODEL_1536)?;
    let graphs = datagen::build_tenant_graphs(c, MODEL_1536)?;
    steps.push((graphs.what, graphs.rows, graphs.secs));
    let ((), secs) = timed(|| {
        Ok(c.batch_execute(
            "ANALYZE fractality.nodes, fractality.node_embeddings, fractality.edges",
        )?)
    })?;
    steps.push(("ANALYZE".to_string(), 0, secs));
    c.execute(
        &format!("INSERT INTO {DATASET_1536} (seed, nodes, tenants) VALUES ($1, $2, $3)"),
        &[&(p.seed as i64), &(n as i64), &g.users],
    )?;
    eprintln!(
        "  {MODEL_1536}: index built on {} partitions in {:.1} s",
        build.partitions.len(),
        build.wall_secs
    );
    Ok(Some(Load1536 { steps }))
}

pub fn resonance_1536(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(3);
    let n = ctx.params.nodes;
    let p = ctx.params.clone();
    let c = &mut *ctx.client;
    open_session(c)?;
    let result = (|| -> Result<Vec<Row>, Error> {
        let s = &SPACE_1536;
        let load = load_1536(c, &p, n)?;
        let (mut rows, flat, scale) = find_resonant_rows(
            c,
            s,
            &[Mode::Default, Mode::Index, Mode::Shared],
            &[Mode::Default, Mode::Index, Mode::Shared],
        )?;
        // recall (the memory API) on the same vectors: issue 15's 200k x 1536 figure
        let srcs = sources(c, s, MEMORY_SOURCES)?;
        rows.extend(crate::bench_memory::recall_rows(c, s, &srcs, reps, false)?);
        c.batch_execute("RESET hnsw.ef_search")?;
        let build = datagen::recorded_build(c, s.model)?;
        rows.extend(build_rows(s, &scale, build.as_ref(), &flat));
        match load {
            Some(l) => {
                for (what, n, secs) in l.steps {
                    let detail = if n > 0 && secs > 0.0 {
                        format!(
                            " ({} rows, {})",
                            thousands(n),
                            Unit::RowsPerSec.format(n as f64 / secs)
                        )
                    } else {
                        String::new()
                    };
                    rows.push(Row::new(
                        format!("load: {what}{detail}"),
                        Some(Figure::single(secs, Unit::Seconds)),
                        None,
                    ));
                }
            }
            None => rows.push(Row::new(
                "load: reused from an earlier run (same seed and size)",
                None,
                None,
            )),
        }
        Ok(rows)
    })();
    close_session(c)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_the_exact_answers_found() {
        let a: Vec<Uuid> = (0..4).map(Uuid::from_u128).collect();
        let mut r = Recall::default();
        r.add(&a[..3], &a[1..]);
        assert_eq!(r, Recall { hits: 2, wanted: 3 });
        r.add(&a, &[]);
        assert!((r.value() - 2.0 / 3.0).abs() < 1e-12);
        assert!(Recall::default().value().is_nan());
    }

    #[test]
    fn the_second_model_has_20_tenants_in_shared_clusters_and_is_deterministic() {
        let g = graph_1536(42, 3_000);
        assert_eq!(g.users.len(), TENANTS_1536);
        assert_eq!(g.nodes.len(), 3_000);
        assert_eq!(g.centres[0].len(), DIMS_1536);
        assert_eq!(g, graph_1536(42, 3_000));
        assert_ne!(
            g.users,
            datagen::graph(&Params {
                seed: 42,
                nodes: 3_000,
                events: 0,
                users: 20,
                anchor_us: 0,
            })
            .users
        );
        let mut rng = datagen::rng(1, "test");
        let a = datagen::clustered(&g.centres[0], 0.2, &mut rng);
        let b = datagen::clustered(&g.centres[0], 0.2, &mut rng);
        let x = datagen::clustered(&g.centres[1], 0.2, &mut rng);
        assert!(datagen::cosine(&a, &b) > 0.75);
        assert!(datagen::cosine(&a, &x).abs() < 0.15);
    }
}
