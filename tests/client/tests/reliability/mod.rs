//! Shared by the reliability suites (isolation, bad_input, load, crash, upgrade): invariants of
//! the fractality tables as a superuser sees them.
#![allow(dead_code)]

use postgres::Client;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Every table of the extension (partitions excluded: their parents count their rows).
pub fn tables(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT c.relname::text FROM pg_class c
          WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ('r', 'p')
            AND NOT c.relispartition
          ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Row count of every table of the extension.
pub fn counts(c: &mut Client) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for t in tables(c) {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM fractality.{t}"), &[])
            .unwrap()
            .get(0);
        out.insert(t, n);
    }
    out
}

/// The tenant tables (those with a user_id column).
pub const TENANT_TABLES: &[&str] = &[
    "nodes",
    "node_text",
    "node_embeddings",
    "edges",
    "consciousness_streams",
    "consciousness_archive",
    "consensus_links",
];

/// A digest of every row of `tenant` in every tenant table, as the owner sees them.
pub fn tenant_snapshot(admin: &mut Client, tenant: Uuid) -> BTreeMap<String, (i64, String)> {
    let mut out = BTreeMap::new();
    for t in TENANT_TABLES {
        let row = admin
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')
                       FROM fractality.{t} x WHERE x.user_id = $1"
                ),
                &[&tenant],
            )
            .unwrap();
        out.insert(t.to_string(), (row.get(0), row.get(1)));
    }
    out
}

/// The server process of this connection.
pub fn backend_pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// A 384-d unit vector as pgvector text: direction `family` (vectors of two families are far
/// apart, cosine about 0.2) plus a small tilt on dimension `tilt`.
pub fn vector_text(family: usize, tilt: usize, amount: f32) -> String {
    let mut v: Vec<f32> = (0..384)
        .map(|j| if j % 8 == family % 8 { 1.0 } else { 0.05 })
        .collect();
    v[tilt % 384] += amount;
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let parts: Vec<String> = v.iter().map(|x| format!("{}", x / norm)).collect();
    format!("[{}]", parts.join(","))
}

/// Events of the experience store that break no rule: ids `prefix` (the first 8 bytes) and
/// 0, 1, ..., one per microsecond from `ts0`, as the JSON array write_events takes.
pub fn events_json(prefix: u64, n: usize, ts0: i64) -> serde_json::Value {
    serde_json::Value::Array(
        (0..n)
            .map(|i| {
                let id = i as u64;
                let mut e = serde_json::json!({
                    "event_id": format!("{prefix:016x}{id:016x}"),
                    "timestamp": ts0 + i as i64,
                    "episode_id": (id / 100) as i64,
                    "step_number": (i % 100) as i32,
                    "event_type": 1,
                    "flags": 0,
                    "adna_version_hash": 7,
                    "sequence_number": i as i32,
                    "reward_goal": 0.5,
                });
                for l in 1..=8 {
                    e[format!("state_l{l}")] = serde_json::json!(0.1 * l as f64);
                    e[format!("action_l{l}")] = serde_json::json!(0.0);
                }
                e
            })
            .collect(),
    )
}

/// A figure of a reliability suite: printed, and appended to target/reliability-figures.txt
/// (cargo shows a passing test's output only with --nocapture; the README quotes these lines).
pub fn report(line: &str) {
    use std::io::Write;
    eprintln!("{line}");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/reliability-figures.txt"
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Runs `sql` and returns its SQLSTATE when it fails.
pub fn try_sql(c: &mut Client, sql: &str) -> Result<(), String> {
    c.batch_execute(sql).map_err(|e| {
        e.code()
            .map(|s| s.code().to_string())
            .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
    })
}

/// Polls pg_stat_activity until backend `pid` is active in a transaction that has written
/// (it holds a transaction id) and, with `waiting`, waits for a lock.
pub fn wait_until_half_way(admin: &mut Client, pid: i32, waiting: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ok: bool = admin
            .query_one(
                "SELECT coalesce(bool_or(state = 'active' AND backend_xid IS NOT NULL
                                         AND (NOT $2 OR wait_event_type = 'Lock')), false)
                   FROM pg_stat_activity WHERE pid = $1",
                &[&pid, &waiting],
            )
            .unwrap()
            .get(0);
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backend {pid} never got half way"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
