//! Read scale-out on PostgreSQL's own streaming replication: a database filled through the
//! public functions (graph, memories, stream points, events with an archived month, policies,
//! configuration, a replay buffer, a consensus), a streaming standby of the test server made
//! with pg_basebackup and caught up to the primary's WAL position; then every read function
//! answers on the standby, as an application role of a tenant, what it answers on the primary,
//! and every writer fails there with 25006 (read_only_sql_transaction) and leaves the backend
//! alive, while the same call succeeds on the primary. This file holds one test (it starts a
//! second server, as the postgres OS user, on a free port; the standby is stopped and its
//! directory removed when the test ends, whether it passes or not).

mod common;
mod reliability;

use approx::relative_eq;
use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use reliability::{events_json, vector_text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const ROLE: &str = "fractality_replica_app";

/// Relative tolerance for what depends on now() (energy decays by 0.95 an hour: 1e-3 is over a
/// minute between the two reads); what does not is compared to 1e-9.
const NOW_TOL: f64 = 1e-3;
const TOL: f64 = 1e-9;

/// Runs a program as the postgres OS user (initdb and pg_ctl refuse root), from `/`.
fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    Command::new("sudo")
        .args(["-u", "postgres", "-H", &format!("{PG_BIN}/{program}")])
        .args(args)
        .current_dir("/")
        .output()
        .expect("run sudo -u postgres")
}

fn target_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")).to_path_buf()
}

/// A TCP port nobody listens on (the kernel's pick for port 0, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .unwrap()
        .port()
}

/// A streaming standby of the test server: stopped and its directory removed on drop.
struct Standby {
    dir: PathBuf,
    port: u16,
}

impl Standby {
    fn start() -> Standby {
        let primary: Config = common::admin_url().parse().expect("FRACTALITY_TEST_URL");
        let host = match primary.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let primary_port = primary.get_ports().first().copied().unwrap_or(5432);
        let user = primary.get_user().unwrap_or("postgres").to_string();
        let port = free_port();
        let standby = Standby {
            dir: target_dir().join(format!("replica-{}-{port}", std::process::id())),
            port,
        };
        let dir = standby.dir.display().to_string();
        let made = Command::new("sudo")
            .args([
                "install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700", &dir,
            ])
            .status()
            .expect("run install");
        assert!(made.success(), "create {dir} for the postgres user");
        let backup = as_postgres(
            "pg_basebackup",
            &[
                "-h",
                &host,
                "-p",
                &primary_port.to_string(),
                "-U",
                &user,
                "-D",
                &dir,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-N",
            ],
        );
        assert!(
            backup.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&backup.stderr)
        );
        // the primary's configuration names its own socket directory; the standby uses its own
        let opts = format!(
            "-p {port} -c listen_addresses=localhost -c unix_socket_directories={dir} -c hot_standby=on"
        );
        let log = format!("{dir}/standby.log");
        let started = as_postgres(
            "pg_ctl",
            &[
                "-D", &dir, "-l", &log, "-w", "-t", "180", "-o", &opts, "start",
            ],
        );
        assert!(
            started.status.success(),
            "pg_ctl start of the standby: {}{}\n{}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        standby
    }

    fn connect(&self, user: &str) -> Client {
        let url = format!(
            "host=localhost port={} dbname={} user={user} connect_timeout=30",
            self.port,
            common::DB
        );
        Client::connect(&url, NoTls).expect("connect to the standby")
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        if self.dir.join("postmaster.pid").exists() {
            let stop = as_postgres("pg_ctl", &["-D", &dir, "-m", "immediate", "-w", "stop"]);
            if !stop.status.success() {
                eprintln!(
                    "pg_ctl stop of the standby: {}",
                    String::from_utf8_lossy(&stop.stderr)
                );
            }
        }
        if std::fs::remove_dir_all(&self.dir).is_err() {
            let _ = Command::new("sudo").args(["rm", "-rf", &dir]).status();
        }
    }
}

/// Waits until the standby has replayed the primary's current WAL position.
fn catch_up(primary: &mut Client, standby: &mut Client) -> Duration {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let t0 = Instant::now();
    loop {
        let done: Option<bool> = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .unwrap()
            .get(0);
        if done == Some(true) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the standby did not replay {lsn} within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The connection still answers, from the same backend process.
fn alive(c: &mut Client, pid: i32) -> bool {
    c.simple_query("SELECT 1").is_ok() && reliability::backend_pid(c) == pid
}

/// SQLSTATE and message of a failed statement.
fn describe(e: &postgres::Error) -> (String, String) {
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string());
    (common::sqlstate(e), message)
}

/// Every row of `sql` as one JSON object (`to_jsonb` of the row), in the query's order.
fn json_rows(c: &mut Client, sql: &str) -> Result<Vec<Value>, (String, String)> {
    c.query(&format!("SELECT to_jsonb(t) FROM ({sql}) t"), &[])
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .map_err(|e| describe(&e))
}

/// Equal JSON, integers and text exactly, other numbers to the relative tolerance `tol`.
fn same(a: &Value, b: &Value, tol: f64) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => relative_eq!(
                x.as_f64().unwrap(),
                y.as_f64().unwrap(),
                epsilon = 1e-12,
                max_relative = tol
            ),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q, tol))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(v, w, tol)))
        }
        _ => a == b,
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn vector(family: usize, tilt: usize, amount: f32) -> String {
    vector_text(family, tilt, amount)
}

struct Fixture {
    tenant: Uuid,
    root: Uuid,
    child: Uuid,
    leaf: Uuid,
    other: Uuid,
    frozen: Uuid,
    consensus: Uuid,
    policy: i32,
    event_id: String,
}

/// The database filled through the public functions, as the application role of `tenant` where
/// the data is a tenant's, as the owner where the function needs it (archiving).
fn fill(admin: &mut Client, app: &mut Client, tenant: Uuid) -> Fixture {
    let mut ids = Vec::new();
    for (i, (key, label, description)) in [
        (
            "root",
            "Root of the garden",
            "the first thought of the garden",
        ),
        ("child", "Child idea", "a thought that grew from the root"),
        ("leaf", "Leaf idea", "the last thought on the branch"),
        ("other", "Other path", "a detour thought"),
    ]
    .iter()
    .enumerate()
    {
        let id: Uuid = app
            .query_one(
                "SELECT fractality.upsert_node($1, $2, $3, $4, $5::text::vector, 'idea')",
                &[
                    key,
                    label,
                    &serde_json::json!({"description": description, "rank": i}),
                    &(0.9 - 0.1 * i as f64),
                    &vector(0, i + 1, 0.3 * (i + 1) as f32),
                ],
            )
            .unwrap()
            .get(0);
        ids.push(id);
    }
    app.batch_execute(
        "SELECT fractality.link('root', 'child', 'child', 0.8);
         SELECT fractality.link('child', 'leaf', 'child', 0.7);
         SELECT fractality.link('root', 'other', 'child', 0.4);
         SELECT fractality.link('other', 'leaf', 'child', 0.9);",
    )
    .unwrap();
    for (key, content, family) in [
        ("memo-paris", "The capital of France is Paris", 2),
        ("memo-seine", "The Seine flows through Paris", 3),
        ("memo-rome", "Rome is the capital of Italy", 4),
    ] {
        let created: bool = app
            .query_one(
                "SELECT created FROM fractality.remember($1, $2, $3::text::vector, '{\"source\": \"replica\"}')",
                &[&key, &content, &vector(family, 7, 0.2)],
            )
            .unwrap()
            .get(0);
        assert!(created, "{key} is a new memory");
    }
    app.execute("SELECT fractality.pulse($1, 0.05)", &[&ids[0]])
        .unwrap();
    app.execute("SELECT fractality.pulse($1, -0.1)", &[&ids[1]])
        .unwrap();
    let embedding: Vec<f64> = serde_json::from_str(&vector(5, 3, 0.1)).unwrap();
    let frozen: Uuid = app
        .query_one(
            "SELECT fractality.freeze($1)",
            &[&serde_json::json!({
                "node_key": "frozen", "label": "Frozen idea", "type": "idea", "atp": 0.6,
                "metadata": {"description": "a thought frozen elsewhere"},
                "embedding": embedding,
                "edges": {"outgoing": [{"to_key": "root", "type": "child", "weight": 0.5}]},
                "stream": [{"time": "2026-11-01T00:00:00Z", "atp_level": 0.6},
                           {"time": "2026-11-02T00:00:00Z", "atp_level": 0.55}]
            })],
        )
        .unwrap()
        .get(0);
    // two more minds near the root: a consensus of three
    let (t2, t3) = (common::tenant(), common::tenant());
    for (t, key, tilt) in [(t2, "peer-b", 11), (t3, "peer-c", 12)] {
        admin
            .execute(
                "SELECT fractality.upsert_node_for($1, $2, 'Root of the garden', '{}', 0.8, $3::text::vector)",
                &[&t, &key, &vector(0, tilt, 0.3)],
            )
            .unwrap();
    }
    let consensus: Option<Uuid> = app
        .query_one(
            "SELECT fractality.crystallize_consensus($1, 0.7, 3)",
            &[&ids[0]],
        )
        .unwrap()
        .get(0);
    let consensus = consensus.expect("three minds near the root");

    // the experience store: recent events, events of two months ago (archived below), one with
    // metadata, policies with lineage, configuration, a replay buffer
    let now = now_us();
    app.execute(
        "SELECT fractality.create_replay_buffer('replica-buf', backfill => true)",
        &[],
    )
    .unwrap();
    let recent = events_json(0xa1 << 56, 300, now - 3_600_000_000);
    let old = events_json(0xa2 << 56, 200, now - 60 * 86_400_000_000);
    for batch in [&recent, &old] {
        let n: i64 = app
            .query_one("SELECT fractality.write_events($1::jsonb)", &[batch])
            .unwrap()
            .get(0);
        assert_eq!(n, batch.as_array().unwrap().len() as i64);
    }
    let mut with_meta = events_json(0xa3 << 56, 1, now - 1_800_000_000)[0].clone();
    with_meta["reward_goal"] = serde_json::json!(0.9);
    app.execute(
        "SELECT fractality.write_event_with_metadata($1, $2)",
        &[
            &with_meta,
            &serde_json::json!({"intent_type": "explore", "executor_id": "replica-agent",
                                "parameters": {"depth": 2}}),
        ],
    )
    .unwrap();
    app.batch_execute(
        "SELECT fractality.save_policy('bin-a', 'rule-1', '{\"0\": 1}');
         SELECT fractality.save_policy('bin-a', 'rule-2', '{\"0\": 0.5, \"1\": 0.5}', '{\"why\": \"test\"}');
         SELECT fractality.save_config('agent', 'learning_rate', '0.1');
         SELECT fractality.save_config('agent', 'learning_rate', '0.05');
         SELECT fractality.refresh_policy_rewards();",
    )
    .unwrap();
    let policy: i32 = app
        .query_one(
            "SELECT (fractality.load_policy('bin-a')->>'policy_id')::int",
            &[],
        )
        .unwrap()
        .get(0);
    // archived: the events of two months ago, and stream points of 100 days ago
    let moved: i64 = admin
        .query_one("SELECT fractality.archive_old_events(30)", &[])
        .unwrap()
        .get(0);
    assert_eq!(moved, 200, "events of two months ago archived");
    admin
        .execute(
            "INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score)
             SELECT now() - interval '100 days' + g * interval '1 hour', $1, $2, 0.5 + g / 100.0, 0.1
               FROM generate_series(0, 9) g",
            &[&ids[0], &tenant],
        )
        .unwrap();
    let packed: i64 = admin
        .query_one("SELECT fractality.archive_streams('30 days')", &[])
        .unwrap()
        .get(0);
    assert!(packed >= 10, "{packed} stream points packed");
    let event_id = format!("{:016x}{:016x}", 0xa1u64 << 56, 5);
    Fixture {
        tenant,
        root: ids[0],
        child: ids[1],
        leaf: ids[2],
        other: ids[3],
        frozen,
        consensus,
        policy,
        event_id,
    }
}

/// The read calls compared between the primary and the standby, with their tolerance.
fn reads(f: &Fixture) -> Vec<(&'static str, String, f64)> {
    let (root, child, leaf, other, frozen) = (f.root, f.child, f.leaf, f.other, f.frozen);
    let q = vector(2, 7, 0.25);
    let far = 9_000_000_000_000_000_000i64;
    vec![
        ("find_resonant by id", format!("SELECT * FROM fractality.find_resonant('{root}'::uuid, 0.5, 20)"), NOW_TOL),
        ("find_resonant by key", "SELECT * FROM fractality.find_resonant('root', 0.5, 20)".into(), NOW_TOL),
        ("calculate_resonance", format!("SELECT fractality.calculate_resonance('{root}', '{child}') AS r"), NOW_TOL),
        ("resonance_with", format!("SELECT * FROM fractality.resonance_with('{root}', ARRAY['{child}', '{leaf}', '{other}', '{frozen}']::uuid[])"), NOW_TOL),
        ("traverse", format!("SELECT * FROM fractality.traverse('{root}')"), TOL),
        ("consciousness_path", format!("SELECT * FROM fractality.consciousness_path('{root}', '{leaf}')"), NOW_TOL),
        ("children", "SELECT * FROM fractality.children('root')".into(), NOW_TOL),
        ("parents", "SELECT * FROM fractality.parents('leaf')".into(), NOW_TOL),
        // (atp_at is the moment of the read: its atp is the energy then, compared to NOW_TOL)
        ("thaw of a frozen node", "SELECT fractality.thaw('frozen', 10) - 'atp_at' AS doc".into(), NOW_TOL),
        ("thaw", "SELECT fractality.thaw('root', 100) - 'atp_at' AS doc".into(), NOW_TOL),
        ("search_nodes", "SELECT * FROM fractality.search_nodes('thought')".into(), NOW_TOL),
        ("node_energy", "SELECT * FROM fractality.node_energy ORDER BY node_key".into(), NOW_TOL),
        ("current_atp", "SELECT node_key, fractality.current_atp(atp, atp_at) AS atp FROM fractality.nodes ORDER BY node_key".into(), NOW_TOL),
        ("active_consciousness", "SELECT * FROM fractality.active_consciousness ORDER BY node_id".into(), NOW_TOL),
        ("consciousness_evolution", "SELECT * FROM fractality.consciousness_evolution ORDER BY 1, 2".into(), NOW_TOL),
        ("stream_history", format!("SELECT * FROM fractality.stream_history('{root}', '-infinity', 'infinity')"), TOL),
        ("recall, reinforce 0", format!("SELECT * FROM fractality.recall('{q}'::vector, 5, 'capital of France', reinforce => 0)"), NOW_TOL),
        ("recall with context", format!("SELECT * FROM fractality.recall('{}'::vector, 5, context => 'root', reinforce => 0)", vector(0, 2, 0.3)), NOW_TOL),
        ("recall_explain", format!("SELECT * FROM fractality.recall_explain('{q}'::vector, 5, 'capital')"), NOW_TOL),
        ("consensus_nodes", "SELECT id, node_key, label, metadata, contributor_count, resonance_score, last_calculated, model FROM fractality.consensus_nodes ORDER BY id".into(), TOL),
        ("consensus_links", format!("SELECT * FROM fractality.consensus_links WHERE consensus_id = '{}' ORDER BY node_id", f.consensus), TOL),
        ("consensus_tree", "SELECT * FROM fractality.consensus_tree(-1, 5)".into(), TOL),
        ("episode_returns", format!("SELECT * FROM fractality.episode_returns(0, {far}, 0.9) ORDER BY episode_id"), TOL),
        ("query_events, both tiers", format!("SELECT * FROM fractality.query_events(0, {far}, 1000, true, true)"), TOL),
        ("query_events, hot", format!("SELECT * FROM fractality.query_events(0, {far}, 50)"), TOL),
        ("high_reward_events", "SELECT * FROM fractality.high_reward_events(0, 0.1, 50)".into(), TOL),
        ("reward_stats", "SELECT (fractality.reward_stats(reward_goal)).* FROM fractality.experience_events".into(), TOL),
        ("discounted_return", "SELECT episode_id, fractality.discounted_return(reward_goal, 0.9, step_number) AS g FROM fractality.experience_events GROUP BY 1 ORDER BY 1".into(), TOL),
        ("sample_experiences", "SELECT * FROM fractality.sample_experiences(20, 0.6, 0.4, 7)".into(), TOL),
        ("sample_experiences from a buffer", "SELECT * FROM fractality.sample_experiences('replica-buf', 20, NULL, 7)".into(), TOL),
        ("replay_batch", "SELECT * FROM fractality.replay_batch('replica-buf', 8, seed => 7)".into(), TOL),
        ("load_policy", "SELECT fractality.load_policy('bin-a') AS p".into(), TOL),
        ("policy_lineage", format!("SELECT * FROM fractality.policy_lineage({})", f.policy), TOL),
        ("load_config", "SELECT fractality.load_config('agent', 'learning_rate') AS c".into(), TOL),
        ("config_history", "SELECT * FROM fractality.config_history('agent', 'learning_rate')".into(), TOL),
        ("current_user_id", "SELECT fractality.current_user_id() AS u".into(), TOL),
        ("cosine_similarity", format!("SELECT fractality.cosine_similarity('{q}', '{}') AS s", vector(2, 8, 0.25)), TOL),
    ]
}

/// Writers: each must fail on the standby with 25006 and succeed on the primary. `true`: as the
/// owner (the function needs it), else as the application role.
fn writers(f: &Fixture) -> Vec<(&'static str, String, bool)> {
    let (root, tenant) = (f.root, f.tenant);
    let v = vector(6, 2, 0.2);
    let embedding: Vec<f64> = serde_json::from_str(&v).unwrap();
    let events = events_json(0xa4 << 56, 3, now_us() - 600_000_000);
    let text = events_json(0xa5 << 56, 3, now_us() - 500_000_000);
    let one = events_json(0xa6 << 56, 1, now_us() - 400_000_000)[0].clone();
    let memories =
        serde_json::json!([{"content": "a memory of the standby", "embedding": embedding}]);
    let frozen = serde_json::json!({"node_key": "frozen-2", "label": "Frozen again", "atp": 0.4,
        "edges": {"outgoing": [{"to_key": "root", "type": "child", "weight": 0.2}]}});
    vec![
        ("upsert_node", "SELECT fractality.upsert_node('standby-node', 'written on a standby')".into(), false),
        ("upsert_node of an existing key", "SELECT fractality.upsert_node('leaf', 'Leaf renamed')".into(), false),
        ("upsert_node_for", format!("SELECT fractality.upsert_node_for('{tenant}', 'standby-owner', 'by the owner')"), true),
        ("remember", format!("SELECT * FROM fractality.remember('memo-standby', 'a memory of the standby', '{v}'::vector)"), false),
        ("remember_many", format!("SELECT * FROM fractality.remember_many('{memories}'::jsonb)"), false),
        ("recall, reinforce 0.1", format!("SELECT * FROM fractality.recall('{}'::vector, 3, reinforce => 0.1)", vector(2, 7, 0.2)), false),
        ("forget", "SELECT fractality.forget('memo-rome')".into(), false),
        ("pulse", format!("SELECT fractality.pulse('{root}', 0.1)"), false),
        ("link", "SELECT fractality.link('leaf', 'root', 'back', 0.3)".into(), false),
        ("unlink", "SELECT fractality.unlink('root', 'other')".into(), false),
        ("freeze", format!("SELECT fractality.freeze('{frozen}'::jsonb)"), false),
        ("write_events (jsonb)", format!("SELECT fractality.write_events('{events}'::jsonb)"), false),
        ("write_events_json", format!("SELECT fractality.write_events_json('{text}'::text)"), false),
        ("write_event_with_metadata", format!("SELECT fractality.write_event_with_metadata('{one}'::jsonb, '{{\"intent_type\": \"x\", \"executor_id\": \"standby\"}}'::jsonb)"), false),
        ("apply_consciousness_decay", "SELECT * FROM fractality.apply_consciousness_decay(0.9, 0.1, NULL)".into(), false),
        ("materialize_decay", "SELECT fractality.materialize_decay()".into(), false),
        ("save_policy", "SELECT fractality.save_policy('bin-a', 'rule-3', '{\"1\": 1}')".into(), false),
        ("save_config", "SELECT fractality.save_config('agent', 'learning_rate', '0.01')".into(), false),
        ("refresh_policy_rewards", "SELECT fractality.refresh_policy_rewards()".into(), false),
        ("create_replay_buffer", "SELECT fractality.create_replay_buffer('standby-buf')".into(), false),
        ("update_priorities", format!("SELECT fractality.update_priorities('replica-buf', ARRAY['\\x{}'::bytea], ARRAY[2.0])", f.event_id), false),
        ("crystallize_consensus", format!("SELECT fractality.crystallize_consensus('{root}', 0.7, 3)"), false),
        ("archive_streams", "SELECT fractality.archive_streams('1 day')".into(), true),
        ("drop_replay_buffer", "SELECT fractality.drop_replay_buffer('replica-buf')".into(), false),
        ("run_maintenance", "SELECT fractality.run_maintenance()".into(), true),
        ("archive_old_events", "SELECT fractality.archive_old_events(1)".into(), true),
        ("ensure_partitions", "SELECT fractality.ensure_partitions(4)".into(), true),
        ("add_retention_policy", "SELECT fractality.add_retention_policy('fractality.experience_events', '90 days', 'archive')".into(), true),
        ("register_model", "SELECT fractality.register_model('standby_model', 8)".into(), true),
    ]
}

#[test]
fn a_streaming_standby_answers_every_read_and_refuses_every_write() {
    let mut admin = common::db();
    let tenant = common::tenant();
    let mut app = common::app(ROLE, Some(tenant));
    // the documented grants: tables and sequences (save_policy, save_config)
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA fractality TO {ROLE}"
        ))
        .unwrap();
    let f = fill(&mut admin, &mut app, tenant);

    let t0 = Instant::now();
    let standby = Standby::start();
    let started = t0.elapsed();
    let mut s_admin = standby.connect("postgres");
    let in_recovery: bool = s_admin
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery, "the standby is in recovery");
    // written after the base backup: reaches the standby by streaming
    app.execute("SELECT fractality.pulse($1, 0.02)", &[&f.leaf])
        .unwrap();
    let lag = catch_up(&mut admin, &mut s_admin);
    let streamed: i64 = s_admin
        .query_one(
            "SELECT count(*) FROM fractality.consciousness_streams WHERE node_id = $1",
            &[&f.leaf],
        )
        .unwrap()
        .get(0);
    assert_eq!(streamed, 1, "the pulse after the base backup was streamed");
    let receiving: i64 = s_admin
        .query_one(
            "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(receiving, 1, "the standby streams from the primary");
    // every table holds the same rows
    assert_eq!(
        reliability::counts(&mut s_admin),
        reliability::counts(&mut admin),
        "row counts of every table, standby against primary"
    );

    // ---- reads: the same answers as the application role of the tenant -----------------------
    let mut s_app = standby.connect(ROLE);
    common::set_tenant(&mut s_app, tenant);
    let s_pid = reliability::backend_pid(&mut s_app);
    let mut failures: Vec<String> = Vec::new();
    let reads = reads(&f);
    let (mut alike, mut rows_alike) = (0, 0);
    for (name, sql, tol) in &reads {
        let on_primary = json_rows(&mut app, sql)
            .unwrap_or_else(|e| panic!("{name} on the primary: {e:?}\n{sql}"));
        assert!(!on_primary.is_empty(), "{name}: no rows on the primary");
        match json_rows(&mut s_app, sql) {
            Ok(on_standby) => {
                if on_standby.len() != on_primary.len()
                    || !on_primary
                        .iter()
                        .zip(&on_standby)
                        .all(|(p, s)| same(p, s, *tol))
                {
                    failures.push(format!(
                        "{name}: the standby answered differently\n  primary: {on_primary:?}\n  standby: {on_standby:?}"
                    ));
                } else {
                    alike += 1;
                    rows_alike += on_primary.len();
                }
            }
            Err((state, message)) => {
                failures.push(format!("{name}: {state} {message} on the standby"));
                // an error, not a crash: the same backend answers the next statement
                assert!(
                    alive(&mut s_app, s_pid),
                    "{name}: the standby backend did not survive"
                );
            }
        }
    }
    // readers the standby must serve whose answer is the server's own
    for sql in [
        "SELECT * FROM fractality.database_health",
        "SELECT * FROM fractality.statement_times()",
    ] {
        if let Err((state, message)) = json_rows(&mut s_app, sql) {
            failures.push(format!("{sql}: {state} {message} on the standby"));
        }
    }
    // recall with reinforce 0 wrote nothing on the primary either: the same energy afterwards
    let reread = json_rows(
        &mut app,
        "SELECT node_key, stored_atp, atp_at FROM fractality.node_energy ORDER BY node_key",
    )
    .unwrap();
    let s_reread = json_rows(
        &mut s_app,
        "SELECT node_key, stored_atp, atp_at FROM fractality.node_energy ORDER BY node_key",
    )
    .unwrap();
    assert_eq!(reread, s_reread, "stored energy after the reads");

    // ---- writes: 25006 on the standby, the backend alive; the same call works on the primary --
    let writers = writers(&f);
    let mut refused = 0;
    for (name, sql, as_owner) in &writers {
        let (c, role) = if *as_owner {
            (&mut s_admin, "postgres")
        } else {
            (&mut s_app, ROLE)
        };
        let pid = reliability::backend_pid(c);
        match c.batch_execute(sql) {
            Ok(()) => failures.push(format!("{name}: succeeded on the standby")),
            Err(e) => {
                let (state, message) = describe(&e);
                if state == "25006" {
                    refused += 1;
                } else {
                    failures.push(format!(
                        "{name}: {state} {message} on the standby, expected 25006"
                    ));
                }
            }
        }
        assert!(
            alive(c, pid),
            "{name}: the standby backend of {role} did not survive"
        );
    }
    assert_eq!(s_pid, reliability::backend_pid(&mut s_app));
    // the standby took no write: every table as before
    assert_eq!(
        reliability::counts(&mut s_admin),
        reliability::counts(&mut admin),
        "row counts after the refused writes"
    );
    // the same calls are valid writes: they succeed on the primary
    for (name, sql, as_owner) in &writers {
        let c = if *as_owner { &mut admin } else { &mut app };
        if let Err(e) = c.batch_execute(sql) {
            panic!("{name} on the primary: {:?}\n{sql}", describe(&e));
        }
    }
    // and the standby follows
    let lag2 = catch_up(&mut admin, &mut s_admin);
    let new_node: i64 = s_app
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE node_key = 'standby-node'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(new_node, 1, "the primary's write reached the standby");

    reliability::report(&format!(
        "replica: standby made and started in {:.1} s, caught up in {} ms and {} ms; {} of {} reads answered as on the primary ({} rows); {} of {} writers refused with 25006; {} failures",
        started.as_secs_f64(),
        lag.as_millis(),
        lag2.as_millis(),
        alike,
        reads.len(),
        rows_alike,
        refused,
        writers.len(),
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "{} failures on the standby (of {} reads and {} writers):\n{}",
        failures.len(),
        reads.len() + 2,
        writers.len(),
        failures.join("\n")
    );
    drop(s_app);
    drop(s_admin);
    drop(standby);
}
