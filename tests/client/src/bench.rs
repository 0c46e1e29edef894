//! The benchmark harness: named scenarios, each timing a native path of fractality and a
//! baseline (plain SQL, or the seed's schema) doing the same work on the same data in the same
//! run. Measurements repeat; the table reports the median (and the p99 where there are enough
//! samples) of each side and the gain of the native side.
//!
//! Adding a scenario: write a `fn(&mut Ctx) -> Result<Vec<Row>, Error>` and add one entry to
//! [`SCENARIOS`]. [`alternate`] runs the two sides in turns; [`Figure::from_samples`] summarises.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Instant;

use postgres::Client;

use crate::datagen::{self, Error, LoadStep, Params};

/// What a scenario gets: the connection, the scale of the loaded data, and `--reps`.
pub struct Ctx<'a> {
    pub client: &'a mut Client,
    pub params: &'a Params,
    pub reps: Option<usize>,
}

impl Ctx<'_> {
    /// Repetitions: `--reps` if given, else the scenario's default.
    pub fn reps(&self, default: usize) -> usize {
        self.reps.unwrap_or(default).max(1)
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub about: &'static str,
    /// What the "baseline" column means for this scenario.
    pub baseline: &'static str,
    pub run: fn(&mut Ctx<'_>) -> Result<Vec<Row>, Error>,
    /// Whether `all` (or no scenario named) runs it; the others run only when named.
    pub in_all: bool,
}

/// Every scenario, in the order `all` runs them (those with `in_all`).
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ingest",
        aliases: &["storage"],
        about: "COPY and write_events rates into experience_events and bytes per stored event, incl. indexes",
        baseline: "the seed's experience_events (bench_seed schema: pk + 6 indexes); for write_events, \
                   binary COPY into fractality's own table",
        run: ingest,
        in_all: true,
    },
    Scenario {
        name: "decay",
        aliases: &[],
        about: "apply_consciousness_decay, current_atp reads and materialize_decay",
        baseline:
            "the seed's PL/pgSQL over energy->>'ATP' (bench_seed.nodes); sum(atp); a plain UPDATE",
        run: crate::bench_decay::decay,
        in_all: true,
    },
    Scenario {
        name: "graph",
        aliases: &["traverse"],
        about: "traverse vs the seed's recursive CTE (on the generated graph, and on sparse, dense and \
                skewed graphs built in tenants of their own), consciousness_path, upsert_node rates",
        baseline: "traverse: the seed's recursive CTE (path array, cycle check, every simple path) on the same roots; \
                   upsert_node: the seed's saveNode INSERT ... ON CONFLICT DO UPDATE",
        run: crate::bench_graph::graph,
        in_all: true,
    },
    Scenario {
        name: "resonance",
        aliases: &[],
        about: "find_resonant recall@20 and latency (default, index path, exact path, application role; \
                crowded neighbourhoods), resonance_with per pair, calculate_resonance per pair, \
                resonance_score per row, HNSW builds (partitions vs one index)",
        baseline: "find_resonant: a bare pgvector kNN (ORDER BY embedding <=> q LIMIT 20) over bench_flat, \
                   an unpartitioned copy of every tenant's embeddings with one HNSW index, at the lowest \
                   ef_search reaching recall@20 0.95; resonance_with: the seed's PL/pgSQL \
                   calculate_resonance per pair (bench_seed_resonance schema) and the same formula as one \
                   plain SQL query; resonance_score: the same arithmetic as an SQL expression",
        run: crate::bench_resonance::resonance,
        in_all: true,
    },
    Scenario {
        name: "reward",
        aliases: &[],
        about: "episode_returns and discounted_return over all events vs plain SQL",
        baseline: "plain SQL on the same events: GROUP BY sums for episode_returns, row_number() \
                   window + power() for discounted_return",
        run: reward,
        in_all: true,
    },
    Scenario {
        name: "archive",
        aliases: &[],
        about: "archive_old_events(7) over 30 days of events; cold-tier bytes per event and per stream point; query_events over an archived day",
        baseline: "the seed's archive_old_events (UPDATE ... SET archived = TRUE) on the seed-shaped table \
                   (bench_archive schema: pk + 6 indexes); for bytes and query_events, the hot tier",
        run: crate::bench_archive::archive,
        in_all: true,
    },
    Scenario {
        name: "memory",
        aliases: &["recall"],
        about: "recall k=10 (with and without words) latency and recall@10 against the same score over \
                the whole tenant; remember one at a time; remember_many of 10 000",
        baseline: "a bare pgvector kNN (k=10) over bench_flat at the lowest ef_search reaching recall@10 \
                   0.95; for remember, the plain SQL a user would write (a kNN duplicate check and \
                   INSERT ... ON CONFLICT of the node and its embedding, one statement); for \
                   remember_many, remember one at a time",
        run: crate::bench_memory::memory,
        in_all: true,
    },
    Scenario {
        name: "replay",
        aliases: &[],
        about: "a replay buffer over every hot event: sample 256 with weights, update_priorities of 256, \
                write_events with and without a buffer, sample time at 100k / 1M / 10M items",
        baseline: "weighted sampling in SQL (Efraimidis-Spirakis: ORDER BY random() ^ (1 / p^alpha) DESC \
                   LIMIT n over the buffer's items) and the 0.4.0 sample_experiences over the store; \
                   write_events with no buffer",
        run: crate::bench_replay::replay,
        in_all: true,
    },
    Scenario {
        name: "resonance_1536",
        aliases: &[],
        about: "a second model (openai_1536, 1536 dimensions, 20 tenants, --nodes embeddings): load and \
                per-partition HNSW build, find_resonant recall@20 and latency, recall k=10 latency and \
                recall@10 against the same score over the whole tenant",
        baseline: "a bare pgvector kNN over bench_flat_1536, an unpartitioned copy of the model's \
                   embeddings with one HNSW index, at the lowest ef_search reaching recall@20 0.95 \
                   (recall@10 0.95 for recall)",
        run: crate::bench_resonance::resonance_1536,
        in_all: false,
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
}

/// The scenarios named (all when none is); an unknown name is an error listing the known ones.
pub fn select(names: &[String]) -> Result<Vec<&'static Scenario>, String> {
    let mut out: Vec<&'static Scenario> = Vec::new();
    if names.is_empty() || names.iter().any(|n| n == "all") {
        out.extend(SCENARIOS.iter().filter(|s| s.in_all));
    }
    for name in names.iter().filter(|n| *n != "all") {
        let s = find(name)
            .ok_or_else(|| format!("unknown scenario '{name}'; known: {}", known_names()))?;
        if !out.iter().any(|o| o.name == s.name) {
            out.push(s);
        }
    }
    Ok(out)
}

pub fn known_names() -> String {
    let mut names: Vec<String> = SCENARIOS
        .iter()
        .map(|s| {
            if s.aliases.is_empty() {
                s.name.to_string()
            } else {
                format!("{} (alias {})", s.name, s.aliases.join(", "))
            }
        })
        .collect();
    names.push("all (every one but resonance_1536)".to_string());
    names.join(", ")
}

// ---- figures ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Micros,
    Millis,
    Seconds,
    RowsPerSec,
    BytesPerRow,
}

impl Unit {
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::RowsPerSec)
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Micros if v < 10.0 => format!("{v:.2} µs"),
            Unit::Micros => format!("{v:.1} µs"),
            Unit::Millis if v < 10.0 => format!("{v:.2} ms"),
            Unit::Millis => format!("{v:.1} ms"),
            Unit::Seconds => format!("{v:.2} s"),
            Unit::RowsPerSec => format!("{} rows/s", thousands(v.round() as u64)),
            Unit::BytesPerRow => format!("{v:.1} B"),
        }
    }
}

/// 1234567 -> "1 234 567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub median: f64,
    /// Only with at least `P99_MIN_SAMPLES` samples.
    pub p99: Option<f64>,
    pub unit: Unit,
}

pub const P99_MIN_SAMPLES: usize = 10;

impl Figure {
    pub fn single(value: f64, unit: Unit) -> Self {
        Figure {
            median: value,
            p99: None,
            unit,
        }
    }

    pub fn from_samples(samples: &[f64], unit: Unit) -> Self {
        let p99 = if samples.len() >= P99_MIN_SAMPLES {
            // the tail is the bad end: slow for times, low for rates
            let q = if unit.higher_is_better() { 0.01 } else { 0.99 };
            Some(percentile(samples, q))
        } else {
            None
        };
        Figure {
            median: percentile(samples, 0.5),
            p99,
            unit,
        }
    }

    pub fn render(&self) -> String {
        match self.p99 {
            Some(p) => format!(
                "{} (p99 {})",
                self.unit.format(self.median),
                self.unit.format(p)
            ),
            None => self.unit.format(self.median),
        }
    }
}

/// Nearest-rank percentile, `q` in [0, 1]; the median of an even count is the mean of the two
/// middle values.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    if q == 0.5 && v.len().is_multiple_of(2) {
        return (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// One line of the results table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub measure: String,
    pub native: Option<Figure>,
    pub baseline: Option<Figure>,
    pub target: String,
}

impl Row {
    pub fn new(
        measure: impl Into<String>,
        native: Option<Figure>,
        baseline: Option<Figure>,
    ) -> Self {
        Row {
            measure: measure.into(),
            native,
            baseline,
            target: String::new(),
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// How many times better the native side is (faster, higher rate, smaller): > 1 is better.
    pub fn gain(&self) -> Option<f64> {
        let (n, b) = (self.native.as_ref()?, self.baseline.as_ref()?);
        if n.unit != b.unit {
            return None;
        }
        Some(if n.unit.higher_is_better() {
            n.median / b.median
        } else {
            b.median / n.median
        })
    }
}

// ---- timing ----------------------------------------------------------------------------------

/// Runs `f` and returns its result with the seconds it took.
pub fn timed<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<(T, f64), Error> {
    let started = Instant::now();
    let out = f()?;
    Ok((out, started.elapsed().as_secs_f64()))
}

/// Runs `native` and `baseline` `reps` times each, in turns (so that drift hits both alike).
/// Each returns the figure it measured itself, so that its set-up stays out of the timing.
pub fn alternate<N, B>(
    client: &mut Client,
    reps: usize,
    mut native: N,
    mut baseline: B,
) -> Result<(Vec<f64>, Vec<f64>), Error>
where
    N: FnMut(&mut Client) -> Result<f64, Error>,
    B: FnMut(&mut Client) -> Result<f64, Error>,
{
    let (mut a, mut b) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        a.push(native(client)?);
        b.push(baseline(client)?);
    }
    Ok((a, b))
}

// ---- the report ------------------------------------------------------------------------------

/// The machine and the server, for the results' header.
pub struct Machine {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub mem_gib: f64,
    pub postgres: String,
    pub pgvector: String,
    pub fractality: String,
    /// The server's memory and WAL settings, as configured (before the harness sets anything).
    pub settings: String,
}

pub fn machine(client: &mut Client) -> Result<Machine, Error> {
    let row = client.query_one(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC',
                current_setting('server_version'),
                (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
                (SELECT extversion FROM pg_extension WHERE extname = 'fractality'),
                format('shared_buffers %s, work_mem %s, maintenance_work_mem %s, max_wal_size %s, effective_cache_size %s',
                       current_setting('shared_buffers'), current_setting('work_mem'),
                       current_setting('maintenance_work_mem'), current_setting('max_wal_size'),
                       current_setting('effective_cache_size'))",
        &[],
    )?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let mem_kib: f64 = field(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    Ok(Machine {
        date: row.get(0),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown cpu".into()),
        mem_gib: mem_kib / 1024.0 / 1024.0,
        postgres: row.get(1),
        pgvector: row
            .get::<_, Option<String>>(2)
            .unwrap_or_else(|| "-".into()),
        fractality: row
            .get::<_, Option<String>>(3)
            .unwrap_or_else(|| "-".into()),
        settings: row.get(4),
    })
}

/// How the data got there: loaded now (with the load steps) or reused from an earlier run.
pub enum DataSource {
    Loaded(Vec<LoadStep>),
    Reused,
}

pub struct Report<'a> {
    pub machine: &'a Machine,
    pub params: &'a Params,
    pub command: String,
    pub data: &'a DataSource,
    pub results: &'a [(&'static Scenario, Vec<Row>)],
    pub failure: Option<String>,
}

impl Report<'_> {
    pub fn markdown(&self) -> String {
        let (m, p) = (self.machine, self.params);
        let mut s = String::new();
        let _ = writeln!(s, "## fractality-bench, {}\n", m.date);
        let _ = writeln!(
            s,
            "- machine: {} cores ({}), {:.1} GiB RAM; PostgreSQL {}, pgvector {}, fractality {}",
            m.cores, m.cpu, m.mem_gib, m.postgres, m.pgvector, m.fractality
        );
        let _ = writeln!(
            s,
            "- server settings: {} (the harness sets maintenance_work_mem 2GB for its HNSW builds)",
            m.settings
        );
        let _ = writeln!(
            s,
            "- scale: {} nodes, {} events, {} tenants, {} clusters, seed {}",
            p.nodes,
            p.events,
            p.users,
            p.clusters(),
            p.seed
        );
        let _ = writeln!(s, "- command: `{}`\n", self.command);

        match self.data {
            DataSource::Reused => {
                let _ = writeln!(s, "Data: reused from an earlier run (`--reuse`).\n");
            }
            DataSource::Loaded(steps) => {
                let _ = writeln!(
                    s,
                    "### data load (binary COPY, constraints and triggers on)\n"
                );
                let _ = writeln!(s, "| step | rows | time | rate |");
                let _ = writeln!(s, "|---|---:|---:|---:|");
                for st in steps {
                    let rate = if st.rows > 0 && st.secs > 0.0 {
                        Unit::RowsPerSec.format(st.rows as f64 / st.secs)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.2} s | {} |",
                        st.what,
                        if st.rows > 0 {
                            thousands(st.rows)
                        } else {
                            String::new()
                        },
                        st.secs,
                        rate
                    );
                }
                let _ = writeln!(s);
            }
        }

        let _ = writeln!(s, "### results\n");
        let _ = writeln!(
            s,
            "| scenario | measure | fractality | baseline | gain | target |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
        for (scenario, rows) in self.results {
            for r in rows {
                let cell = |f: &Option<Figure>| f.as_ref().map_or("-".into(), Figure::render);
                let gain = r.gain().map_or(String::new(), |g| format!("{g:.2}x"));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    scenario.name,
                    r.measure,
                    cell(&r.native),
                    cell(&r.baseline),
                    gain,
                    r.target
                );
            }
        }
        let _ = writeln!(
            s,
            "\nMedians (p99 with >= {P99_MIN_SAMPLES} samples). gain: how many times better \
             fractality is (faster, higher rate, smaller); > 1 is better. Baselines:"
        );
        for (scenario, _) in self.results {
            let _ = writeln!(s, "- {}: {}", scenario.name, scenario.baseline);
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(s, "\n**failed:** {f}");
        }
        s
    }
}

// ---- scenario: ingest (alias storage) --------------------------------------------------------

const NATIVE_EVENTS: &str = "fractality.experience_events";
const SEED_EVENTS: &str = "bench_seed.experience_events";

/// The seed's experience_events (seeds/002) with its indexes, verbatim but schema-qualified.
const SEED_EVENTS_DDL: &str = include_str!("../sql/seed_experience_events.sql");

/// Empties `table`, checkpoints (so that no checkpoint lands inside the timing), then COPYs the
/// payload; returns events per second.
fn copy_events(
    client: &mut Client,
    table: &str,
    payload: &[u8],
    events: u64,
) -> Result<f64, Error> {
    copy_events_as(client, table, payload, events, "binary")
}

/// The events in COPY's text format, as a client sending rows as text would send them.
fn text_payload(events: &[datagen::Event]) -> Vec<u8> {
    let mut s = String::with_capacity(events.len() * 200);
    for e in events {
        let id: String = e.event_id.iter().map(|b| format!("{b:02x}")).collect();
        let _ = write!(
            s,
            "{}\t\\\\x{id}\t{}\t{}\t{}\t{}",
            e.timestamp_us, e.episode_id, e.step_number, e.event_type, e.flags
        );
        for v in e.state.iter().chain(&e.action).chain(&e.rewards) {
            let _ = write!(s, "\t{v}");
        }
        let _ = writeln!(s, "\t{}\t{}", e.adna_version_hash, e.sequence_number);
    }
    s.into_bytes()
}

fn copy_events_as(
    client: &mut Client,
    table: &str,
    payload: &[u8],
    events: u64,
    format: &str,
) -> Result<f64, Error> {
    client.batch_execute(&format!("TRUNCATE {table} CASCADE"))?;
    client.batch_execute("CHECKPOINT")?;
    let (rows, secs) = timed(|| {
        let mut writer = client.copy_in(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT {format})",
            datagen::EVENT_COLUMNS
        ))?;
        for chunk in payload.chunks(1 << 20) {
            writer.write_all(chunk)?;
        }
        Ok(writer.finish()?)
    })?;
    if rows != events {
        return Err(format!("COPY into {table} took {rows} rows, expected {events}").into());
    }
    Ok(rows as f64 / secs)
}

/// On-disk size of a table (all partitions) and of each of its indexes.
struct Size {
    rows: i64,
    /// Heap, TOAST, free space and visibility maps.
    table: i64,
    /// (index, bytes); a partitioned index sums its partitions.
    indexes: Vec<(String, i64)>,
}

impl Size {
    fn total(&self) -> i64 {
        self.table + self.indexes.iter().map(|(_, b)| b).sum::<i64>()
    }
    fn per_row(&self, bytes: i64) -> f64 {
        bytes as f64 / self.rows.max(1) as f64
    }
}

/// The tables holding the rows of table $1: its leaf partitions, or itself when it is not
/// partitioned (pg_partition_tree lists nothing for a plain table).
const LEAVES: &str = "SELECT relid::oid FROM pg_partition_tree($1::text::regclass) WHERE isleaf
                      UNION
                      SELECT c.oid FROM pg_class c
                       WHERE c.oid = $1::text::regclass AND c.relkind = 'r'";

fn size(client: &mut Client, table: &str) -> Result<Size, Error> {
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0);
    let heap: i64 = client
        .query_one(
            &format!("SELECT coalesce(sum(pg_table_size(relid)), 0)::bigint FROM ({LEAVES}) t"),
            &[&table],
        )?
        .get(0);
    let indexes = client
        .query(
            &format!(
                "SELECT coalesce(parent.relname, i.relname)::text,
                    sum(pg_relation_size(i.oid))::bigint
               FROM ({LEAVES}) t
               JOIN pg_index x ON x.indrelid = t.relid
               JOIN pg_class i ON i.oid = x.indexrelid
               LEFT JOIN pg_inherits h ON h.inhrelid = i.oid
               LEFT JOIN pg_class parent ON parent.oid = h.inhparent
              GROUP BY 1
              ORDER BY 2 DESC, 1"
            ),
            &[&table],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Size {
        rows,
        table: heap,
        indexes,
    })
}

/// COPY of the same events into fractality's table and the seed's, in turns; then the bytes
/// each takes per event, indexes included, after VACUUM (ANALYZE).
fn ingest(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(3);
    let p = ctx.params;
    let events = datagen::events(p, &datagen::policies(p));
    let mut payload = Vec::new();
    datagen::encode_events(&events, &mut payload)?;
    let n = events.len() as u64;

    ctx.client.batch_execute(SEED_EVENTS_DDL)?;
    let from = p.anchor_us - datagen::EVENT_DAYS * 86_400_000_000;
    datagen::ensure_months(ctx.client, NATIVE_EVENTS, from, p.anchor_us)?;
    eprintln!("  ingest: COPY {n} events x {reps} into each table");
    let (native, seed) = alternate(
        ctx.client,
        reps,
        |c| copy_events(c, NATIVE_EVENTS, &payload, n),
        |c| copy_events(c, SEED_EVENTS, &payload, n),
    )?;
    let mut rows = vec![Row::new(
        format!(
            "COPY {} events, binary ({} bytes/event on the wire)",
            thousands(n),
            payload.len() as u64 / n.max(1)
        ),
        Some(Figure::from_samples(&native, Unit::RowsPerSec)),
        Some(Figure::from_samples(&seed, Unit::RowsPerSec)),
    )];

    rows.extend(write_events_rows(ctx.client, &events, &native, reps)?);
    drop(events);

    // both tables (and the registry, below) rewritten compactly: the write_events rounds above
    // wrote and deleted this many events again and again, whose dead space a plain VACUUM keeps
    ctx.client
        .batch_execute(&format!("VACUUM (FULL, ANALYZE) {NATIVE_EVENTS}"))?;
    ctx.client
        .batch_execute(&format!("VACUUM (FULL, ANALYZE) {SEED_EVENTS}"))?;
    let ours = size(ctx.client, NATIVE_EVENTS)?;
    let theirs = size(ctx.client, SEED_EVENTS)?;
    for s in [&ours, &theirs] {
        if s.rows != n as i64 {
            return Err(format!("expected {n} events, found {}", s.rows).into());
        }
    }
    let bytes = |s: &Size, b: i64| Some(Figure::single(s.per_row(b), Unit::BytesPerRow));
    // every stored event also has its id in the registry that keeps ids unique across tiers
    ctx.client
        .batch_execute("VACUUM (FULL, ANALYZE) fractality.experience_event_ids")?;
    let registry: f64 = ctx
        .client
        .query_one(
            "SELECT pg_total_relation_size('fractality.experience_event_ids')::float8
                    / greatest(count(*), 1) FROM fractality.experience_event_ids",
            &[],
        )?
        .get(0);
    rows.push(
        Row::new(
            "bytes/event incl. indexes and the event-id registry",
            Some(Figure::single(
                ours.per_row(ours.total()) + registry,
                Unit::BytesPerRow,
            )),
            bytes(&theirs, theirs.total()),
        )
        .target("<= 200 B (seed doc: 349 B)"),
    );
    rows.push(Row::new(
        "- event-id registry (experience_event_ids: heap and primary key, per id)",
        Some(Figure::single(registry, Unit::BytesPerRow)),
        None,
    ));
    rows.push(Row::new(
        "- heap (incl. toast, fsm, vm)",
        bytes(&ours, ours.table),
        bytes(&theirs, theirs.table),
    ));
    for (name, b) in &ours.indexes {
        rows.push(Row::new(format!("- index {name}"), bytes(&ours, *b), None));
    }
    for (name, b) in &theirs.indexes {
        rows.push(Row::new(
            format!("- index {name}"),
            None,
            bytes(&theirs, *b),
        ));
    }
    Ok(rows)
}

// ---- write_events (part of the ingest scenario) ------------------------------------------------

/// Events per write_events call.
const WRITE_BATCH: usize = 10_000;

/// One batch as the typed arrays of write_events, built before the timing (as the COPY payload).
struct ArrayBatch {
    ids: Vec<Vec<u8>>,
    ts: Vec<i64>,
    eps: Vec<i64>,
    steps: Vec<i32>,
    types: Vec<i16>,
    flags: Vec<i16>,
    states: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    hashes: Vec<i32>,
    seqs: Vec<i32>,
}

impl ArrayBatch {
    fn new(batch: &[datagen::Event]) -> Self {
        ArrayBatch {
            ids: batch.iter().map(|e| e.event_id.to_vec()).collect(),
            ts: batch.iter().map(|e| e.timestamp_us).collect(),
            eps: batch.iter().map(|e| e.episode_id).collect(),
            steps: batch.iter().map(|e| e.step_number).collect(),
            types: batch.iter().map(|e| e.event_type).collect(),
            flags: batch.iter().map(|e| e.flags).collect(),
            states: batch.iter().flat_map(|e| e.state).collect(),
            actions: batch.iter().flat_map(|e| e.action).collect(),
            rewards: batch.iter().flat_map(|e| e.rewards).collect(),
            hashes: batch.iter().map(|e| e.adna_version_hash).collect(),
            seqs: batch.iter().map(|e| e.sequence_number).collect(),
        }
    }

    fn write(&self, client: &mut Client) -> Result<(), Error> {
        client.query_one(
            "SELECT fractality.write_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &self.ids,
                &self.ts,
                &self.eps,
                &self.steps,
                &self.types,
                &self.flags,
                &self.states,
                &self.actions,
                &self.rewards,
                &self.hashes,
                &self.seqs,
            ],
        )?;
        Ok(())
    }
}

/// One batch as the JSON array write_events(jsonb) takes.
fn json_batch(batch: &[datagen::Event]) -> String {
    let mut s = String::with_capacity(batch.len() * 700);
    s.push('[');
    for (i, e) in batch.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let id: String = e.event_id.iter().map(|b| format!("{b:02x}")).collect();
        let _ = write!(
            s,
            "{{\"event_id\":\"{id}\",\"timestamp\":{},\"episode_id\":{},\"step_number\":{},\
             \"event_type\":{},\"flags\":{}",
            e.timestamp_us, e.episode_id, e.step_number, e.event_type, e.flags
        );
        for (k, v) in e.state.iter().enumerate() {
            let _ = write!(s, ",\"state_l{}\":{v}", k + 1);
        }
        for (k, v) in e.action.iter().enumerate() {
            let _ = write!(s, ",\"action_l{}\":{v}", k + 1);
        }
        let [h, c, ef, g] = e.rewards;
        let _ = write!(
            s,
            ",\"reward_homeostasis\":{h},\"reward_curiosity\":{c},\"reward_efficiency\":{ef},\
             \"reward_goal\":{g},\"adna_version_hash\":{},\"sequence_number\":{}}}",
            e.adna_version_hash, e.sequence_number
        );
    }
    s.push(']');
    s
}

/// How write_all sends the batches.
#[derive(Clone, Copy)]
enum Form {
    Arrays,
    /// JSON text, a `text` parameter: the text form, read by serde from the text
    Text,
    /// the same text converted to jsonb by PostgreSQL before the call: the jsonb form
    Jsonb,
}

/// Empties the table, checkpoints, then writes every event through write_events in batches;
/// returns events per second.
fn write_all(
    client: &mut Client,
    events: usize,
    arrays: &[ArrayBatch],
    json: &[String],
    form: Form,
) -> Result<f64, Error> {
    client.batch_execute(&format!("TRUNCATE {NATIVE_EVENTS} CASCADE"))?;
    client.batch_execute("CHECKPOINT")?;
    let ((), secs) = timed(|| {
        match form {
            Form::Arrays => {
                for batch in arrays {
                    batch.write(client)?;
                }
            }
            Form::Text | Form::Jsonb => {
                let sql = if matches!(form, Form::Text) {
                    "SELECT fractality.write_events_json($1)"
                } else {
                    "SELECT fractality.write_events($1::text::jsonb)"
                };
                let stmt = client.prepare(sql)?;
                for b in json {
                    client.query_one(&stmt, &[b])?;
                }
            }
        }
        Ok(())
    })?;
    let stored: i64 = client
        .query_one(&format!("SELECT count(*) FROM {NATIVE_EVENTS}"), &[])?
        .get(0);
    if stored != events as i64 {
        return Err(format!("write_events stored {stored} events, expected {events}").into());
    }
    Ok(events as f64 / secs)
}

/// write_events (typed arrays, JSON text, jsonb) against the COPY rates measured into the same
/// table.
fn write_events_rows(
    client: &mut Client,
    events: &[datagen::Event],
    copy_rates: &[f64],
    reps: usize,
) -> Result<Vec<Row>, Error> {
    let json: Vec<String> = events.chunks(WRITE_BATCH).map(json_batch).collect();
    let arrays: Vec<ArrayBatch> = events.chunks(WRITE_BATCH).map(ArrayBatch::new).collect();
    let json_bytes: usize = json.iter().map(String::len).sum();
    eprintln!(
        "  ingest: write_events {} events x {reps}, typed arrays, JSON text and jsonb, {WRITE_BATCH} a batch ({} bytes of JSON an event)",
        events.len(),
        json_bytes / events.len().max(1)
    );
    let n = events.len();
    let (mut by_arrays, mut by_text, mut by_jsonb) = (Vec::new(), Vec::new(), Vec::new());
    // the three forms in turns, so that none of them has the machine to itself
    for _ in 0..reps {
        by_arrays.push(write_all(client, n, &arrays, &json, Form::Arrays)?);
        by_text.push(write_all(client, n, &arrays, &json, Form::Text)?);
        by_jsonb.push(write_all(client, n, &arrays, &json, Form::Jsonb)?);
    }
    // COPY in text format of the same events: what a client sending text pays, the like of the
    // JSON text form
    let text = text_payload(events);
    let mut copy_text = Vec::new();
    for _ in 0..reps {
        copy_text.push(copy_events_as(
            client,
            NATIVE_EVENTS,
            &text,
            n as u64,
            "text",
        )?);
    }
    // what any function taking jsonb pays before it runs: PostgreSQL's text -> jsonb input of
    // the same batches, alone (nothing written)
    let mut parse = Vec::new();
    for _ in 0..reps {
        let ((), secs) = timed(|| {
            for b in &json {
                client.query_one("SELECT ($1::text::jsonb) IS NOT NULL", &[b])?;
            }
            Ok(())
        })?;
        parse.push(n as f64 / secs);
    }
    let copy = Some(Figure::from_samples(copy_rates, Unit::RowsPerSec));
    let batch = thousands(WRITE_BATCH as u64);
    Ok(vec![
        Row::new(
            format!("write_events typed arrays, {batch} a batch, vs COPY into the same table"),
            Some(Figure::from_samples(&by_arrays, Unit::RowsPerSec)),
            copy.clone(),
        )
        .target(">= 50 000 events/s and >= 0.5x COPY"),
        Row::new(
            format!("write_events_json (JSON text), {batch} a batch, vs COPY into the same table"),
            Some(Figure::from_samples(&by_text, Unit::RowsPerSec)),
            copy.clone(),
        )
        .target(">= 50 000 events/s"),
        Row::new(
            format!("- the same, vs COPY in text format ({} bytes/event) into the same table", text.len() / n.max(1)),
            Some(Figure::from_samples(&by_text, Unit::RowsPerSec)),
            Some(Figure::from_samples(&copy_text, Unit::RowsPerSec)),
        )
        .target("within 2x of COPY"),
        Row::new(
            format!("write_events jsonb, {batch} a batch, vs COPY into the same table"),
            Some(Figure::from_samples(&by_jsonb, Unit::RowsPerSec)),
            copy.clone(),
        )
        .target(">= 50 000 events/s"),
        Row::new(
            "- the same JSON batches through text -> jsonb input alone (nothing written): the ceiling of any jsonb function",
            Some(Figure::from_samples(&parse, Unit::RowsPerSec)),
            copy,
        ),
    ])
}

// ---- scenario: reward ------------------------------------------------------------------------

const EPISODE_RETURNS: &str = "SELECT * FROM fractality.episode_returns($1, $2, 0.99)";

const EPISODE_SUMS_SQL: &str = r#"
SELECT episode_id, count(*) AS steps,
       sum(reward_homeostasis::float8 + reward_curiosity + reward_efficiency + reward_goal) AS total,
       avg(reward_homeostasis::float8 + reward_curiosity + reward_efficiency + reward_goal) AS mean,
       sum(reward_homeostasis::float8), sum(reward_curiosity::float8),
       sum(reward_efficiency::float8), sum(reward_goal::float8)
  FROM fractality.experience_events
 WHERE "timestamp" >= $1 AND "timestamp" < $2 AND NOT archived
 GROUP BY episode_id ORDER BY episode_id"#;

const DISCOUNTED_BY_STEP: &str = r#"
SELECT episode_id,
       fractality.discounted_return((reward_homeostasis + reward_curiosity + reward_efficiency + reward_goal)::float8,
                                    0.99, step_number)
  FROM fractality.experience_events GROUP BY episode_id"#;

const DISCOUNTED_ORDERED: &str = r#"
SELECT episode_id,
       fractality.discounted_return((reward_homeostasis + reward_curiosity + reward_efficiency + reward_goal)::float8,
                                    0.99 ORDER BY step_number)
  FROM fractality.experience_events GROUP BY episode_id"#;

const DISCOUNTED_WINDOW_SQL: &str = r#"
SELECT episode_id, sum(r * power(0.99::float8, k)) AS discounted
  FROM (SELECT episode_id,
               (reward_homeostasis + reward_curiosity + reward_efficiency + reward_goal)::float8 AS r,
               row_number() OVER (PARTITION BY episode_id ORDER BY step_number) - 1 AS k
          FROM fractality.experience_events) s
 GROUP BY episode_id"#;

/// Runs `sql` and returns (milliseconds, rows).
fn query_ms(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<(f64, usize), Error> {
    let (rows, secs) = timed(|| Ok(client.query(sql, params)?))?;
    Ok((secs * 1e3, rows.len()))
}

fn reward(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(7);
    let c = &mut *ctx.client;
    let events: i64 = c
        .query_one(&format!("SELECT count(*) FROM {NATIVE_EVENTS}"), &[])?
        .get(0);
    if events == 0 {
        return Err("no events loaded".into());
    }
    c.batch_execute(&format!("VACUUM (ANALYZE) {NATIVE_EVENTS}"))?;
    let (from, to) = (0i64, i64::MAX);
    // warm the cache and check that both sides agree before timing them
    let ours = c.query(EPISODE_RETURNS, &[&from, &to])?;
    let sql = c.query(EPISODE_SUMS_SQL, &[&from, &to])?;
    if ours.len() != sql.len() {
        return Err(format!(
            "episode_returns: {} episodes, SQL {}",
            ours.len(),
            sql.len()
        )
        .into());
    }
    for (a, b) in ours.iter().zip(&sql) {
        let (ta, tb): (f64, f64) = (a.get(2), b.get(2));
        if a.get::<_, i64>(0) != b.get::<_, i64>(0) || (ta - tb).abs() > 1e-6 * tb.abs().max(1.0) {
            return Err("episode_returns and the SQL GROUP BY disagree".into());
        }
    }
    let by_step = c.query(DISCOUNTED_BY_STEP, &[])?;
    let window = c.query(DISCOUNTED_WINDOW_SQL, &[])?;
    let sum = |rows: &[postgres::Row]| rows.iter().map(|r| r.get::<_, f64>(1)).sum::<f64>();
    if by_step.len() != window.len()
        || (sum(&by_step) - sum(&window)).abs() > 1e-6 * sum(&window).abs().max(1.0)
    {
        return Err("discounted_return and the window SQL disagree".into());
    }
    eprintln!(
        "  reward: {events} events, {} episodes, {reps} reps",
        ours.len()
    );
    // the generator writes episode after episode: the rows lie in episode order as loaded;
    // then the same rows again in a random order
    let mut rows = reward_rows(c, reps, events, ours.len(), "rows in episode order")?;
    eprintln!("  reward: the same events rewritten in a random order");
    c.batch_execute(&format!(
        "CREATE TEMP TABLE bench_reward_shuffled AS
             SELECT * FROM {NATIVE_EVENTS} ORDER BY md5(event_id::text);
         SET session_replication_role = replica;  -- the same rows: no trigger need see them
         DELETE FROM {NATIVE_EVENTS};
         INSERT INTO {NATIVE_EVENTS} SELECT * FROM bench_reward_shuffled;
         RESET session_replication_role;
         DROP TABLE bench_reward_shuffled;"
    ))?;
    c.batch_execute(&format!("VACUUM (FULL, ANALYZE) {NATIVE_EVENTS}"))?;
    rows.extend(reward_rows(c, reps, events, ours.len(), "rows shuffled")?);
    Ok(rows)
}

/// The reward aggregates against their SQL, in turns, over the events as they lie (`shape`).
fn reward_rows(
    c: &mut Client,
    reps: usize,
    events: i64,
    episodes: usize,
    shape: &str,
) -> Result<Vec<Row>, Error> {
    let (from, to) = (0i64, i64::MAX);
    let (a, b) = alternate(
        c,
        reps,
        |c| Ok(query_ms(c, EPISODE_RETURNS, &[&from, &to])?.0),
        |c| Ok(query_ms(c, EPISODE_SUMS_SQL, &[&from, &to])?.0),
    )?;
    let mut rows = vec![Row::new(
        format!(
            "episode_returns over {} events ({} episodes, {shape}) vs GROUP BY sums",
            thousands(events as u64),
            thousands(episodes as u64)
        ),
        Some(Figure::from_samples(&a, Unit::Millis)),
        Some(Figure::from_samples(&b, Unit::Millis)),
    )
    .target("<= 1.5x the SQL (gain >= 0.67)")];
    let (a, b) = alternate(
        c,
        reps,
        |c| Ok(query_ms(c, DISCOUNTED_BY_STEP, &[])?.0),
        |c| Ok(query_ms(c, DISCOUNTED_WINDOW_SQL, &[])?.0),
    )?;
    rows.push(
        Row::new(
            format!(
                "discounted_return(r, gamma, step) per episode ({shape}) vs row_number() window"
            ),
            Some(Figure::from_samples(&a, Unit::Millis)),
            Some(Figure::from_samples(&b, Unit::Millis)),
        )
        .target(">= 3x faster"),
    );
    let (a, b) = alternate(
        c,
        reps,
        |c| Ok(query_ms(c, DISCOUNTED_ORDERED, &[])?.0),
        |c| Ok(query_ms(c, DISCOUNTED_WINDOW_SQL, &[])?.0),
    )?;
    rows.push(Row::new(
        format!("discounted_return(r, gamma ORDER BY step) per episode ({shape}) vs row_number() window"),
        Some(Figure::from_samples(&a, Unit::Millis)),
        Some(Figure::from_samples(&b, Unit::Millis)),
    ));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn percentiles() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_relative_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5, epsilon = 1e-12);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.99), 99.0);
        assert_eq!(percentile(&hundred, 0.01), 1.0);
        assert!(Figure::from_samples(&v, Unit::Millis).p99.is_none());
        assert_eq!(Figure::from_samples(&hundred, Unit::Millis).p99, Some(99.0));
    }

    #[test]
    fn gain_is_better_than_one_when_native_wins() {
        let fast = Row::new(
            "t",
            Some(Figure::single(2.0, Unit::Millis)),
            Some(Figure::single(10.0, Unit::Millis)),
        );
        assert_relative_eq!(fast.gain().unwrap(), 5.0, epsilon = 1e-12);
        let rate = Row::new(
            "r",
            Some(Figure::single(300.0, Unit::RowsPerSec)),
            Some(Figure::single(100.0, Unit::RowsPerSec)),
        );
        assert_relative_eq!(rate.gain().unwrap(), 3.0, epsilon = 1e-12);
        assert_eq!(Row::new("x", None, None).gain(), None);
    }

    #[test]
    fn scenarios_by_name_or_alias_and_unknown_names_fail() {
        let every = SCENARIOS.iter().filter(|s| s.in_all).count();
        assert_eq!(select(&[]).unwrap().len(), every);
        assert_eq!(select(&["all".into()]).unwrap().len(), every);
        assert!(select(&[])
            .unwrap()
            .iter()
            .all(|s| s.name != "resonance_1536"));
        let s = select(&["all".into(), "resonance_1536".into()]).unwrap();
        assert_eq!(s.len(), every + 1);
        assert_eq!(s.last().unwrap().name, "resonance_1536");
        assert_eq!(select(&["reward".into()]).unwrap()[0].name, "reward");
        let s = select(&["storage".into(), "ingest".into()]).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "ingest");
        let err = select(&["nope".into()]).err().unwrap();
        assert!(err.contains("unknown scenario 'nope'") && err.contains("ingest"));
    }

    #[test]
    fn thousands_separator() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1 234 567");
    }
}
