//! Backups with PostgreSQL's own tools: a database filled through the public functions (every
//! table of the extension holds rows: hot and cold tiers, monthly and default partitions, a second
//! embedding model, policies, configuration, metrics, consensus, retention policies, replay
//! buffers) is dumped with the real `pg_dump` and restored with the real `pg_restore` (custom
//! format) and `psql` (plain format), both in one transaction, into new databases; and dumped
//! `--data-only` into a database where the extension was just created. Every table's rows (a
//! digest of each) and every sequence's value come back, with no error, and the restored
//! database works: functions answer as before, writes go on, new partitions are made.

mod common;
mod reliability;

use postgres::{Client, NoTls};
use std::collections::BTreeMap;
use std::process::Command;
use uuid::Uuid;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// host and port of the test server, for the command-line tools.
fn server() -> (String, String) {
    let url = common::admin_url();
    let get = |k: &str, d: &str| {
        url.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_else(|| d.to_string())
    };
    (get("host", "localhost"), get("port", "5432"))
}

fn url(db: &str) -> String {
    let mut parts: Vec<String> = common::admin_url()
        .split_whitespace()
        .filter(|kv| !kv.starts_with("dbname="))
        .map(str::to_string)
        .collect();
    parts.push(format!("dbname={db}"));
    parts.join(" ")
}

fn admin() -> Client {
    Client::connect(&common::admin_url(), NoTls).expect("connect")
}

fn recreate(name: &str) {
    let mut a = admin();
    a.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    a.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
}

fn drop_db(name: &str) {
    admin()
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

/// Runs a PostgreSQL client program against the test server; its stderr must be empty of
/// errors and its status 0.
fn tool(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let (host, port) = server();
    let mut cmd = Command::new(format!("{PG_BIN}/{program}"));
    cmd.args(["-h", &host, "-p", &port, "-U", "postgres"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && !stderr.contains("ERROR") && !stderr.contains("error:"),
        "{program} {args:?} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn dump_file(name: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/backup-test");
    std::fs::create_dir_all(dir).unwrap();
    format!("{dir}/{name}")
}

const USERS: [Uuid; 3] = [
    Uuid::from_u128(0x0b0b_0000_0000_4000_8000_0000_0000_0001),
    Uuid::from_u128(0x0b0b_0000_0000_4000_8000_0000_0000_0002),
    Uuid::from_u128(0x0b0b_0000_0000_4000_8000_0000_0000_0003),
];

/// A small 8-d vector of model 'small' as pgvector text.
fn small(i: usize) -> String {
    let v: Vec<String> = (0..8)
        .map(|j| format!("{}", if j == i % 8 { 1.0 } else { 0.1 }))
        .collect();
    format!("[{}]", v.join(","))
}

/// Every table of the extension filled through the public functions (and, for history the
/// functions only make over time, rows written as the owner would have them).
fn fill(c: &mut Client) -> Uuid {
    c.batch_execute("SELECT fractality.register_model('small', 8)")
        .unwrap();
    let mut roots = Vec::new();
    for (i, u) in USERS.iter().enumerate() {
        c.batch_execute(&format!("SET fractality.user_id = '{u}'"))
            .unwrap();
        let root: Uuid = c
            .query_one(
                "SELECT fractality.upsert_node('root', 'Backup root', '{\"theme\": \"backup\", \"description\": \"kept in a dump\"}', 0.9, $1::text::vector, 'idea')",
                &[&reliability::vector_text(3, i, 0.05)],
            )
            .unwrap()
            .get(0);
        c.execute(
            "SELECT fractality.upsert_node('child', 'Backup child', '{}', 0.7, $1::text::vector)",
            &[&reliability::vector_text(3, 10 + i, 0.05)],
        )
        .unwrap();
        for (key, j) in [("child", i), ("root", i + 4)] {
            c.execute(
                "SELECT fractality.upsert_node($1, NULL, NULL, NULL, $2::text::vector, NULL, 'small')",
                &[&key, &small(j)],
            )
            .unwrap();
        }
        c.execute(
            "SELECT * FROM fractality.remember(NULL, 'Paris is the capital of France', $1::text::vector, '{\"src\": \"backup\"}', ttl => '30 days')",
            &[&reliability::vector_text(5, i, 0.05)],
        )
        .unwrap();
        c.batch_execute(&format!(
            "SELECT fractality.link('root', 'child', 'child', 0.8);
             SELECT fractality.pulse('{root}', 0.05);
             -- a point of an earlier month (its own partition), one of long ago (packed into the
             -- cold tier below) and one beyond the monthly partitions' names (the default's)
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score, resonance_vector)
             VALUES (now() - interval '40 days', '{root}', '{u}', 0.5, 0.25, '{{0.5,1.5}}'),
                    ('2001-01-01', '{root}', '{u}', 0.4, NULL, NULL),
                    ('9999-12-20', '{root}', '{u}', 0.3, NULL, NULL);"
        ))
        .unwrap();
        roots.push(root);
    }
    c.batch_execute("RESET fractality.user_id").unwrap();
    // streams of long ago packed into the cold tier
    let packed: i64 = c
        .query_one("SELECT fractality.archive_streams('10 years')", &[])
        .unwrap()
        .get(0);
    assert_eq!(packed, 3, "the points of 2001 are packed");
    // consensus across the three tenants
    c.batch_execute(&format!("SET fractality.user_id = '{}'", USERS[0]))
        .unwrap();
    let consensus: Option<Uuid> = c
        .query_one(
            "SELECT fractality.crystallize_consensus($1, 0.8, 3)",
            &[&roots[0]],
        )
        .unwrap()
        .get(0);
    assert!(consensus.is_some(), "a consensus of three tenants");
    c.batch_execute("RESET fractality.user_id").unwrap();
    // events: 60 days ago (archived below), 10 days ago, now; metadata; a replay buffer
    let now_us: i64 = c
        .query_one("SELECT fractality.epoch_us(now())", &[])
        .unwrap()
        .get(0);
    let day = 86_400_000_000i64;
    c.batch_execute(
        "SELECT fractality.create_replay_buffer('backup', capacity => 1000);
         SELECT fractality.create_replay_buffer('backup-all');",
    )
    .unwrap();
    for (k, age) in [(1u64, 60), (2, 10), (3, 0)] {
        let events = reliability::events_json(0x0b0b_0000 + k, 50, now_us - age * day);
        c.execute("SELECT fractality.write_events($1::jsonb)", &[&events])
            .unwrap();
    }
    // and a few beyond the monthly partitions' names (December 9999): the default partition's
    let events = reliability::events_json(0x0b0b_0004, 3, 253_402_000_000_000_000);
    c.execute("SELECT fractality.write_events($1::jsonb)", &[&events])
        .unwrap();
    c.execute(
        "SELECT fractality.write_event_with_metadata(
             jsonb_build_object('event_id', '0000000000000000000000000000b0b0', 'timestamp', $1::bigint,
                 'episode_id', 9, 'step_number', 0, 'event_type', 1, 'flags', 0,
                 'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0, 'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0,
                 'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0, 'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
                 'adna_version_hash', 7, 'sequence_number', 0),
             '{\"intent_type\": \"explore\", \"executor_id\": \"e1\", \"parameters\": {\"p\": 1}}')",
        &[&(now_us - 2 * day)],
    )
    .unwrap();
    c.execute(
        "SELECT fractality.write_event_with_metadata(
             jsonb_build_object('event_id', '0000000000000000000000000000b0b1', 'timestamp', $1::bigint,
                 'episode_id', 9, 'step_number', 1, 'event_type', 1, 'flags', 0,
                 'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0, 'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0,
                 'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0, 'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
                 'adna_version_hash', 7, 'sequence_number', 1),
             '{\"intent_type\": \"rest\", \"executor_id\": \"e2\", \"parameters\": {}}')",
        &[&(now_us - 59 * day)],
    )
    .unwrap();
    // partitions for every month that holds rows, then the events of 60 days ago go cold
    c.batch_execute("SELECT fractality.ensure_partitions(2)")
        .unwrap();
    // events of 2001 written since (the default partition's), archived row by row into the cold
    // tier's default partition
    let events = reliability::events_json(0x0b0b_0005, 4, 978_307_200_000_000);
    c.execute("SELECT fractality.write_events($1::jsonb)", &[&events])
        .unwrap();
    c.batch_execute("SELECT fractality.archive_old_events(30)")
        .unwrap();
    let ids: Vec<Vec<u8>> = c
        .query(
            "SELECT s.event_id FROM fractality.sample_experiences('backup', 5, seed => 3) s",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!ids.is_empty());
    let priorities: Vec<f64> = (0..ids.len()).map(|i| 0.5 + i as f64).collect();
    c.execute(
        "SELECT fractality.update_priorities('backup', $1, $2)",
        &[&ids, &priorities],
    )
    .unwrap();
    c.batch_execute(
        "SELECT fractality.save_policy('backup-bin', 'rule-1', '{\"0\": 0.5}');
         SELECT fractality.save_policy('backup-bin', 'rule-2', '{\"0\": 0.7}');
         SELECT fractality.save_config('backup', 'key', '{\"v\": 1}');
         SELECT fractality.save_config('backup', 'key', '{\"v\": 2}');
         INSERT INTO fractality.learning_metrics (metric_type, metric_data) VALUES ('backup', '{\"x\": 1}');
         SELECT fractality.add_retention_policy('fractality.consciousness_streams', '3 months', 'archive');
         -- a graph of its own for each tenant's 'small' embeddings (two each)
         SELECT count(*) FROM fractality.build_tenant_graphs('small', 1);",
    )
    .unwrap();
    roots[0]
}

/// The tenant graphs of model 'small' in the database.
fn small_graphs(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_class c
          WHERE c.relnamespace = 'fractality'::regnamespace AND c.relname ~ '^t[0-9a-f]{24}_small_hnsw$'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Row count and digest of every table of schema fractality (each leaf table on its own, by
/// name, when `leaves`; else each table as a whole, its partitions together), and every
/// sequence's value.
fn digest(c: &mut Client, leaves: bool) -> BTreeMap<String, (i64, String)> {
    let kinds = if leaves { "'r'" } else { "'r', 'p'" };
    let tables: Vec<String> = c
        .query(
            &format!(
                "SELECT c.relname::text FROM pg_class c
                  WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ({kinds})
                    AND ($1 OR NOT c.relispartition)
                  ORDER BY 1"
            ),
            &[&leaves],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = BTreeMap::new();
    for t in tables {
        let rows = format!("fractality.{t}");
        let r = c
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')
                       FROM {rows} x"
                ),
                &[],
            )
            .unwrap();
        out.insert(t, (r.get(0), r.get(1)));
    }
    for r in c
        .query(
            "SELECT s.sequencename::text, s.last_value FROM pg_sequences s
              WHERE s.schemaname = 'fractality' ORDER BY 1",
            &[],
        )
        .unwrap()
    {
        let v: Option<i64> = r.get(1);
        out.insert(
            format!("sequence {}", r.get::<_, String>(0)),
            (v.unwrap_or(0), String::new()),
        );
    }
    out
}

/// The tables and sequences whose digest differs, for the failure message.
fn differences(
    got: &BTreeMap<String, (i64, String)>,
    want: &BTreeMap<String, (i64, String)>,
) -> Vec<String> {
    let mut keys: Vec<&String> = got.keys().chain(want.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| format!("{k}: restored {:?}, source {:?}", got.get(k), want.get(k)))
        .collect()
}

fn same(got: &BTreeMap<String, (i64, String)>, want: &BTreeMap<String, (i64, String)>, what: &str) {
    let d = differences(got, want);
    assert!(d.is_empty(), "{what}: rows differ:\n  {}", d.join("\n  "));
}

/// The restored database answers as the source did, and goes on.
fn works(c: &mut Client, root: Uuid, source: &mut Client) -> usize {
    let reads = [
        "SELECT count(*) FROM fractality.find_resonant('root', 0.0, 10)",
        "SELECT count(*) FROM fractality.find_resonant('child', 0.0, 10, 'small')",
        "SELECT count(*) FROM fractality.children('root')",
        "SELECT jsonb_array_length(fractality.thaw('root') -> 'stream')",
        "SELECT count(*) FROM fractality.search_nodes('backup')",
        "SELECT count(*) FROM fractality.recall(fractality.normalize_vector((SELECT embedding FROM fractality.node_embeddings WHERE node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'root' AND user_id = fractality.current_user_id()) AND model = 'default')), 5)",
        "SELECT count(*) FROM fractality.stream_history((SELECT id FROM fractality.nodes WHERE node_key = 'root' AND user_id = fractality.current_user_id()), '2000-01-01', now() + interval '1 day')",
        "SELECT count(*) FROM fractality.query_events(0, fractality.epoch_us(now()) + 1, 1000, true, true)",
        "SELECT count(*) FROM fractality.sample_experiences('backup', 7, seed => 11)",
        "SELECT (fractality.load_policy('backup-bin') ->> 'version')::bigint",
        "SELECT count(*) FROM fractality.config_history('backup', 'key')",
        "SELECT count(*) FROM fractality.consensus_tree(0.0, 5)",
    ];
    for db in [&mut *source, &mut *c] {
        db.batch_execute(&format!("SET fractality.user_id = '{}'", USERS[0]))
            .unwrap();
    }
    for sql in reads {
        let a: i64 = source
            .query_one(&format!("SELECT ({sql})::bigint"), &[])
            .unwrap_or_else(|e| panic!("{sql} on the source: {e}"))
            .get(0);
        let b: i64 = c
            .query_one(&format!("SELECT ({sql})::bigint"), &[])
            .unwrap_or_else(|e| panic!("{sql} on the restored database: {e}"))
            .get(0);
        assert_eq!(b, a, "{sql}");
        assert!(a > 0, "{sql} reads something");
    }
    // the same draws from the same buffer state
    let draws = |db: &mut Client| -> Vec<Vec<u8>> {
        db.query(
            "SELECT event_id FROM fractality.sample_experiences('backup', 20, seed => 5)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(draws(c), draws(source), "replay draws");
    // tenant graphs are indexes, not rows: not in a dump; the searches above answered the same
    // without them, and build_tenant_graphs makes them again
    assert_eq!(
        small_graphs(source),
        USERS.len() as i64,
        "the source's tenant graphs"
    );
    assert_eq!(small_graphs(c), 0, "tenant graphs are not restored");
    let rebuilt = c
        .query(
            "SELECT * FROM fractality.build_tenant_graphs('small', 1)",
            &[],
        )
        .unwrap()
        .len();
    assert_eq!(
        rebuilt,
        USERS.len(),
        "build_tenant_graphs after the restore"
    );
    let near = |db: &mut Client| -> Vec<Uuid> {
        db.query(
            "SELECT node_id FROM fractality.find_resonant('child', 0.0, 10, 'small')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(
        near(c),
        near(source),
        "find_resonant through the rebuilt graph"
    );
    // writes go on: a node, a pulse, an event (into its buffers), partitions ahead, archiving
    let (lo, hi): (i64, i64) = c
        .query_one(
            "SELECT last_value, (SELECT last_value FROM pg_sequences WHERE schemaname = 'fractality' AND sequencename = 'adna_policies_policy_id_seq')
               FROM pg_sequences WHERE schemaname = 'fractality' AND sequencename = 'replay_buffers_buffer_id_seq'",
            &[],
        )
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .unwrap();
    c.batch_execute(
        "SELECT fractality.upsert_node('after-restore', 'written after the restore', '{}', 0.5);
         SELECT fractality.link('root', 'after-restore');
         SELECT fractality.save_policy('backup-bin', 'rule-3', '{\"0\": 0.9}');",
    )
    .unwrap();
    c.execute("SELECT fractality.pulse($1, 0.01)", &[&root])
        .unwrap();
    let buffer: i32 = c
        .query_one(
            "SELECT fractality.create_replay_buffer('after-restore')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        i64::from(buffer) > lo,
        "the identity goes on from the dumped value"
    );
    let policy: i64 = c
        .query_one(
            "SELECT max(policy_id)::bigint FROM fractality.adna_policies",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(policy > hi, "policy ids go on from the dumped value");
    let now_us: i64 = c
        .query_one("SELECT fractality.epoch_us(now())", &[])
        .unwrap()
        .get(0);
    c.execute(
        "SELECT fractality.write_events($1::jsonb)",
        &[&reliability::events_json(0x0b0b_00ff, 5, now_us)],
    )
    .unwrap();
    let made: i32 = c
        .query_one("SELECT fractality.ensure_partitions(8)", &[])
        .unwrap()
        .get(0);
    assert!(made > 0, "ensure_partitions makes the months ahead");
    c.batch_execute(
        "SELECT fractality.archive_old_events(5); SELECT fractality.run_maintenance();",
    )
    .unwrap();
    c.batch_execute("RESET fractality.user_id").unwrap();
    source.batch_execute("RESET fractality.user_id").unwrap();
    reads.len() + 1
}

struct Dbs(Vec<String>);
impl Drop for Dbs {
    fn drop(&mut self) {
        for d in &self.0 {
            drop_db(d);
        }
    }
}

#[test]
fn backup_pg_dump_and_pg_restore_give_back_every_row() {
    let (src, custom, plain, data, parallel, root_dump) = (
        "fractality_backup_src",
        "fractality_backup_custom",
        "fractality_backup_plain",
        "fractality_backup_data",
        "fractality_backup_parallel",
        "fractality_backup_root",
    );
    let _cleanup = Dbs(vec![
        src.into(),
        custom.into(),
        plain.into(),
        data.into(),
        parallel.into(),
        root_dump.into(),
    ]);
    recreate(src);
    let mut source = Client::connect(&url(src), NoTls).unwrap();
    source
        .batch_execute("CREATE EXTENSION fractality CASCADE")
        .unwrap();
    let root = fill(&mut source);
    let before = digest(&mut source, true);
    let whole = digest(&mut source, false);
    for (t, (n, _)) in &whole {
        // the inbox is emptied when policies take their events in; locks is empty between
        // transactions (its keys are deleted as soon as they are inserted), which is checked
        assert!(t != "locks" || *n == 0, "locks keeps {n} rows");
        assert!(
            *n > 0 || t == "policy_reward_inbox" || t == "locks",
            "no row in {t}: the test must fill every table"
        );
    }
    for part in [
        "consciousness_streams_default",
        "experience_events_default",
        "experience_events_archive_default",
    ] {
        assert!(before[part].0 > 0, "no row in {part}");
    }
    assert!(
        before
            .iter()
            .any(|(t, (n, _))| t.starts_with("experience_events_archive_20") && *n > 0),
        "an archived month"
    );
    let rows: i64 = before
        .iter()
        .filter(|(t, _)| !t.starts_with("sequence "))
        .map(|(_, v)| v.0)
        .sum();

    // custom format, pg_restore in one transaction
    let file = dump_file("custom.dump");
    tool("pg_dump", &["-Fc", "-f", &file, src], &[]);
    recreate(custom);
    tool(
        "pg_restore",
        &[
            "--single-transaction",
            "--exit-on-error",
            "-d",
            custom,
            &file,
        ],
        &[],
    );
    let mut restored = Client::connect(&url(custom), NoTls).unwrap();
    same(&digest(&mut restored, true), &before, "custom format");

    // plain format, psql in one transaction
    let file = dump_file("plain.sql");
    tool("pg_dump", &["-Fp", "-f", &file, src], &[]);
    recreate(plain);
    tool(
        "psql",
        &[
            "-X",
            "-q",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            plain,
            "-f",
            &file,
        ],
        &[],
    );
    let mut restored_plain = Client::connect(&url(plain), NoTls).unwrap();
    same(&digest(&mut restored_plain, true), &before, "plain format");

    // data only, into a database with the extension freshly created: rows through the parents
    // (the monthly partitions are made afterwards), triggers off as pg_dump --disable-triggers
    // would have them (session_replication_role = replica), then partitions made by maintenance
    let file = dump_file("data.sql");
    tool(
        "pg_dump",
        &["--data-only", "--load-via-partition-root", "-f", &file, src],
        &[],
    );
    recreate(data);
    let mut fresh = Client::connect(&url(data), NoTls).unwrap();
    fresh
        .batch_execute("CREATE EXTENSION fractality CASCADE")
        .unwrap();
    tool(
        "psql",
        &[
            "-X",
            "-q",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            data,
            "-f",
            &file,
        ],
        &[("PGOPTIONS", "-c session_replication_role=replica")],
    );
    fresh
        .batch_execute("SELECT fractality.ensure_partitions(2)")
        .unwrap();
    same(&digest(&mut fresh, false), &whole, "data only");

    // directory format, pg_restore in parallel (a transaction per table, in no fixed order), as
    // a superuser with session_replication_role = replica: the checks that tie one table's rows
    // to another's (foreign keys, action_metadata's reference to its event) are off while the
    // tables are loaded side by side, the triggers that fire always (node_text, a model's index)
    // on
    let dir = dump_file("directory.d");
    let _ = std::fs::remove_dir_all(&dir);
    tool("pg_dump", &["-Fd", "-j", "2", "-f", &dir, src], &[]);
    recreate(parallel);
    tool(
        "pg_restore",
        &["-j", "2", "--exit-on-error", "-d", parallel, &dir],
        &[("PGOPTIONS", "-c session_replication_role=replica")],
    );
    let mut restored_parallel = Client::connect(&url(parallel), NoTls).unwrap();
    same(
        &digest(&mut restored_parallel, true),
        &before,
        "directory format, in parallel",
    );

    // a whole dump whose partitions' rows load through their parents (--load-via-partition-root),
    // under session_replication_role = replica: the events' statement triggers, which would
    // register the ids the dumped registry holds too, stay off
    let file = dump_file("root.dump");
    tool(
        "pg_dump",
        &["-Fc", "--load-via-partition-root", "-f", &file, src],
        &[],
    );
    recreate(root_dump);
    tool(
        "pg_restore",
        &[
            "--single-transaction",
            "--exit-on-error",
            "-d",
            root_dump,
            &file,
        ],
        &[("PGOPTIONS", "-c session_replication_role=replica")],
    );
    let mut restored_root = Client::connect(&url(root_dump), NoTls).unwrap();
    same(
        &digest(&mut restored_root, true),
        &before,
        "through the partitions' parents",
    );

    // every restored database works as the source did
    let mut checked = 0;
    for db in [
        &mut restored,
        &mut restored_plain,
        &mut fresh,
        &mut restored_parallel,
        &mut restored_root,
    ] {
        // the model registered after install has its index on every partition again (its row
        // restored fires the trigger that builds it, under session_replication_role = replica too)
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM pg_inherits WHERE inhparent = 'fractality.node_embeddings'::regclass),
                        (SELECT count(*) FROM pg_inherits
                          WHERE inhparent = to_regclass('fractality.node_embeddings_small_hnsw'))",
                &[],
            )
            .unwrap();
        let (parts, indexed): (i64, i64) = (row.get(0), row.get(1));
        assert!(parts > 0);
        assert_eq!(indexed, parts, "model small's index on every partition");
        checked = works(db, root, &mut source);
    }
    reliability::report(&format!(
        "backup: pg_dump -Fc / pg_restore --single-transaction, pg_dump -Fp / psql --single-transaction, pg_dump --data-only into a fresh CREATE EXTENSION, pg_dump -Fd / pg_restore -j 2 and pg_dump --load-via-partition-root / pg_restore, both with session_replication_role = replica: {} tables and sequences, {rows} rows, every one restored each time; {} reads equal, writes, partitions and archiving go on",
        before.len(),
        checked
    ));
}

/// A database made with another number of embedding partitions is restored with that setting
/// (the partitions are the extension's: the restore's CREATE EXTENSION makes them, and the dump
/// holds each partition's rows): every embedding back, in the partition its hash names. Without
/// it the restore refuses the rows (a partition constraint) and, in one transaction, writes nothing.
#[test]
fn backup_of_another_partition_count_is_restored_with_that_setting() {
    let (src, bad, good) = (
        "fractality_backup_p16",
        "fractality_backup_p16_default",
        "fractality_backup_p16_restored",
    );
    let _cleanup = Dbs(vec![src.into(), bad.into(), good.into()]);
    let partitions = [("PGOPTIONS", "-c fractality.embedding_partitions=16")];
    recreate(src);
    tool(
        "psql",
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            src,
            "-c",
            "CREATE EXTENSION fractality CASCADE",
            "-c",
            // 50 tenants: their hashes spread over the partitions
            "SELECT count(fractality.upsert_node_for(\
             ('aaaaaaaa-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'k', 'l', '{}', 0.5, \
             array_fill(i::real, ARRAY[384])::vector)) FROM generate_series(1, 50) i",
        ],
        &partitions,
    );
    let count = |db: &str, sql: &str| -> i64 {
        Client::connect(&url(db), NoTls)
            .unwrap()
            .query_one(sql, &[])
            .unwrap()
            .get(0)
    };
    let parts = "SELECT count(*) FROM pg_inherits \
                 WHERE inhparent = 'fractality.node_embeddings'::regclass";
    let rows = "SELECT count(*) FROM fractality.node_embeddings";
    assert_eq!(count(src, parts), 16);
    assert_eq!(count(src, rows), 50);
    let file = dump_file("p16.dump");
    tool("pg_dump", &["-Fc", "-f", &file, src], &[]);

    // with the default (64): refused, nothing written
    recreate(bad);
    let (host, port) = server();
    let out = std::process::Command::new(format!("{PG_BIN}/pg_restore"))
        .args(["-h", &host, "-p", &port, "-U", "postgres"])
        .args(["--single-transaction", "--exit-on-error", "-d", bad, &file])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("violates partition constraint"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(
            bad,
            "SELECT count(*) FROM pg_extension WHERE extname = 'fractality'"
        ),
        0
    );

    // with the source's setting: every row, each where its hash puts it
    recreate(good);
    tool(
        "pg_restore",
        &["--single-transaction", "--exit-on-error", "-d", good, &file],
        &partitions,
    );
    assert_eq!(count(good, parts), 16);
    assert_eq!(count(good, rows), 50);
    let v = "array_fill(7, ARRAY[384])::vector";
    let mut c = Client::connect(&url(good), NoTls).unwrap();
    c.batch_execute("SET fractality.user_id = 'aaaaaaaa-0000-4000-8000-000000000001'")
        .unwrap();
    let found: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM fractality.recall({v}, 5)"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    reliability::report(
        "backup: a database of 16 embedding partitions restored with PGOPTIONS='-c fractality.embedding_partitions=16' (refused, nothing written, without it)",
    );
}
