//! kill -9 of a backend half way, and the server's crash recovery. PostgreSQL ends every
//! backend when one dies by a signal, and replays its write-ahead log: what was acknowledged
//! must all be there, exactly once, and nothing of the calls in flight. Two crashes: one during
//! materialize_decay with a batch ingest and a remember_many in flight, one during
//! archive_old_events. This file holds one test
//! (the crash ends every connection of the server, so it must not share a process with others;
//! cargo runs test binaries one after another).

mod common;
mod reliability;

use postgres::{Client, NoTls};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn test_db_url() -> String {
    let mut parts: Vec<String> = common::admin_url()
        .split_whitespace()
        .filter(|kv| !kv.starts_with("dbname="))
        .map(str::to_string)
        .collect();
    parts.push(format!("dbname={}", common::DB));
    parts.join(" ")
}

/// Connects once the server accepts connections again (crash recovery done).
fn reconnect() -> Client {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        match Client::connect(&test_db_url(), NoTls) {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no recovery after the crash: {e}"
                );
                thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// kill -9 of a backend, with the shell's own kill (no procps needed on a minimal machine).
fn kill_9(pid: i32) {
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -9 {pid}")])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -9 {pid}");
}

/// Everything a test may compare before and after the crash.
fn state(c: &mut Client, tenant: Uuid) -> (std::collections::BTreeMap<String, i64>, String, i64) {
    let digest: String = c
        .query_one(
            "SELECT md5(string_agg(id::text || atp::text || atp_at::text, ',' ORDER BY id))
               FROM fractality.nodes WHERE user_id = $1",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    let events: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT DISTINCT \"timestamp\", event_id FROM fractality.experience_events) d",
            &[],
        )
        .unwrap()
        .get(0);
    (reliability::counts(c), digest, events)
}

#[test]
fn kill_9_half_way_then_crash_recovery_loses_nothing_acknowledged() {
    let mut admin = common::db();
    let tenant = Uuid::from_u128(0xc7a5_0000_0000_4000_8000_0000_0000_0001);
    admin
        .execute(
            "INSERT INTO fractality.nodes (user_id, node_key, atp, atp_at)
             SELECT $1, 'crash-' || i, 0.9, now() - interval '3 hours'
               FROM generate_series(1, 100000) i",
            &[&tenant],
        )
        .unwrap();
    admin.batch_execute("ANALYZE fractality.nodes").unwrap();
    // acknowledged before the crash: events, pulses (stream points), policies
    let acked = reliability::events_json(9 << 60, 5000, 7_000_000_000);
    admin
        .execute("SELECT fractality.write_events($1::jsonb)", &[&acked])
        .unwrap();
    admin
        .batch_execute(&format!(
            "SET fractality.user_id = '{tenant}';
             SELECT fractality.pulse(id, 0.05) FROM fractality.nodes
              WHERE user_id = '{tenant}' AND node_key LIKE 'crash-1_';
             SELECT fractality.save_policy('crash-bin', 'r' || i, '{{\"0\": 1}}') FROM generate_series(1, 3) i;
             SELECT fractality.remember('crash-memory', 'a memory from before the crash', $v${}$v$);
             RESET fractality.user_id;
             SELECT fractality.drop_replay_buffer('crash');
             SELECT fractality.create_replay_buffer('crash', backfill => true);",
            reliability::vector_text(5, 0, 0.0)
        ))
        .unwrap();
    let before = state(&mut admin, tenant);
    assert_eq!(before.0["consciousness_streams"], 10);
    assert_eq!(before.0["node_embeddings"], 1);

    // a write_events batch held in its statement trigger (and, last, a materialize_decay half way)
    let mut holder = common::db();
    holder
        .batch_execute("BEGIN; LOCK TABLE fractality.policy_reward_inbox IN SHARE MODE")
        .unwrap();
    let mut ingest = common::db();
    let ingest_pid = reliability::backend_pid(&mut ingest);
    let batch = reliability::events_json(10 << 60, 20_000, 7_100_000_000);
    let ingest_call = thread::spawn(move || {
        ingest
            .query_one("SELECT fractality.write_events($1::jsonb)", &[&batch])
            .map(|_| ())
    });
    reliability::wait_until_half_way(&mut admin, ingest_pid, true);
    // a remember_many of 300 memories, held at its last one after inserting the 299 before it
    // (another session is inserting the same key and has not committed)
    let mut memory_holder = common::db();
    memory_holder
        .batch_execute(&format!(
            "BEGIN; INSERT INTO fractality.nodes (user_id, node_key) VALUES ('{tenant}', 'crash-last')"
        ))
        .unwrap();
    let mut rememberer = common::db();
    rememberer
        .batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    let remember_pid = reliability::backend_pid(&mut rememberer);
    let mut memories: Vec<serde_json::Value> = (0..299)
        .map(|i| {
            serde_json::json!({
                "content": format!("memory {i} of the batch in flight"),
                "embedding": serde_json::from_str::<serde_json::Value>(
                    &reliability::vector_text(i % 8, i, 0.1 + i as f32 * 0.01)).unwrap(),
            })
        })
        .collect();
    memories.push(serde_json::json!({
        "node_key": "crash-last", "content": "the last of the batch",
        "embedding": serde_json::from_str::<serde_json::Value>(&reliability::vector_text(7, 999, 0.77)).unwrap(),
    }));
    let memories = serde_json::Value::Array(memories);
    let remember_call = thread::spawn(move || {
        rememberer
            .query(
                "SELECT * FROM fractality.remember_many($1::jsonb, 'default', 1.0)",
                &[&memories],
            )
            .map(|_| ())
    });
    reliability::wait_until_half_way(&mut admin, remember_pid, true);
    // a learner's update_priorities half way: its items and leaf blocks written, held at the
    // root of the buffer's sum tree (locked by another session)
    let mut tree_holder = common::db();
    tree_holder
        .batch_execute(
            "BEGIN; SELECT 1 FROM fractality.replay_tree t JOIN fractality.replay_buffers b USING (buffer_id)
              WHERE b.name = 'crash' AND t.level = b.levels - 1 FOR UPDATE OF t",
        )
        .unwrap();
    let mut learner = common::db();
    let learner_pid = reliability::backend_pid(&mut learner);
    // folding on every call: the update writes its items and the tree's blocks (the part of
    // update_priorities with several writes; by default it appends one row and folds later)
    learner
        .batch_execute("SET fractality.replay_fold_after = 0")
        .unwrap();
    let learn_call = thread::spawn(move || {
        learner
            .query_one(
                "SELECT fractality.update_priorities('crash',
                        ARRAY(SELECT event_id FROM fractality.replay_items i JOIN fractality.replay_buffers b USING (buffer_id)
                               WHERE b.name = 'crash' ORDER BY i.slot LIMIT 300),
                        ARRAY(SELECT 3.0 FROM generate_series(1, 300)))",
                &[],
            )
            .map(|_| ())
    });
    reliability::wait_until_half_way(&mut admin, learner_pid, true);
    // materialize_decay last: the calls above wait for locks, it runs on (and would end before
    // a kill that came a few seconds after it got half way)
    let mut decay = common::db();
    let decay_pid = reliability::backend_pid(&mut decay);
    let decay_call = thread::spawn(move || {
        decay
            .query_one("SELECT fractality.materialize_decay(100)", &[])
            .map(|_| ())
    });
    reliability::wait_until_half_way(&mut admin, decay_pid, false);

    kill_9(decay_pid);
    assert!(
        decay_call.join().unwrap().is_err(),
        "materialize_decay was killed"
    );
    assert!(
        ingest_call.join().unwrap().is_err(),
        "the server ended every backend"
    );
    assert!(
        remember_call.join().unwrap().is_err(),
        "the server ended the remember_many in flight"
    );
    assert!(
        learn_call.join().unwrap().is_err(),
        "the server ended the update_priorities in flight"
    );
    drop(tree_holder);
    drop(memory_holder);
    drop(holder);
    drop(admin);

    let mut admin = reconnect();
    let after = state(&mut admin, tenant);
    assert_eq!(after, before, "rows or energy changed across the crash");
    // the replay buffer's tree still equals its items (priorities as before the crash)
    let (consistent, updated): (bool, i64) = {
        let r = admin
            .query_one(
                "SELECT bool_and(abs(l.s - i.s) <= 1e-9 * greatest(1, i.s)) AND min(b.size) = min(i.n),
                        min(i.updated)
                   FROM fractality.replay_buffers b,
                        LATERAL (SELECT t.level, sum(x) AS s FROM fractality.replay_tree t, unnest(t.sums) x
                                  WHERE t.buffer_id = b.buffer_id GROUP BY t.level) l,
                        LATERAL (SELECT coalesce(sum(power(r.priority, b.alpha)), 0) AS s, count(*) AS n,
                                        count(*) FILTER (WHERE r.priority > 2) AS updated
                                   FROM fractality.replay_items r WHERE r.buffer_id = b.buffer_id) i
                  WHERE b.name = 'crash'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        consistent,
        "the sum tree differs from its items after the crash"
    );
    assert_eq!(
        updated, 0,
        "the killed update_priorities left priorities behind"
    );
    let stored: i64 = acknowledged(&mut admin, "experience_events");
    assert_eq!(stored, 5000, "acknowledged events after recovery");
    let active: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.adna_policies WHERE state_bin_id = 'crash-bin' AND is_active",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(active, 1);
    // every btree index of the extension is consistent with its table
    admin
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS amcheck;
             SELECT bt_index_check(c.oid, true)
               FROM pg_class c JOIN pg_am am ON am.oid = c.relam
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind = 'i'
                AND am.amname = 'btree';",
        )
        .unwrap();
    // and the calls that were in flight succeed now
    let batch = reliability::events_json(10 << 60, 20_000, 7_100_000_000);
    let n: i64 = admin
        .query_one("SELECT fractality.write_events($1::jsonb)", &[&batch])
        .unwrap()
        .get(0);
    assert_eq!(n, 20_000);
    let written: i64 = admin
        .query_one("SELECT fractality.materialize_decay()", &[])
        .unwrap()
        .get(0);
    assert!(written >= 100_000, "{written}");

    // a second crash: archive_old_events half way (the events moved into the cold tier, waiting
    // to move their metadata behind another session's lock), kill -9, recovery; every event and
    // metadata row is still there exactly once, in the hot tier where it was
    let before = tiers(&mut admin);
    let mut holder = common::db();
    holder
        .batch_execute(
            "BEGIN; LOCK TABLE fractality.action_metadata_archive IN ACCESS EXCLUSIVE MODE",
        )
        .unwrap();
    let mut archiver = common::db();
    let archive_pid = reliability::backend_pid(&mut archiver);
    let archive_call = thread::spawn(move || {
        archiver
            .query_one("SELECT fractality.archive_old_events(1)", &[])
            .map(|_| ())
    });
    reliability::wait_until_half_way(&mut admin, archive_pid, true);
    kill_9(archive_pid);
    assert!(
        archive_call.join().unwrap().is_err(),
        "archive_old_events was killed"
    );
    drop(holder);
    drop(admin);

    let mut admin = reconnect();
    assert_eq!(
        tiers(&mut admin),
        before,
        "events or metadata changed across the crash of an archive"
    );
    let hot: i64 = acknowledged(&mut admin, "experience_events");
    assert_eq!(hot, 5000, "the killed archive moved nothing");
    admin
        .batch_execute(
            "SELECT bt_index_check(c.oid, true)
               FROM pg_class c JOIN pg_am am ON am.oid = c.relam
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind = 'i'
                AND am.amname = 'btree';",
        )
        .unwrap();
    // the archive run again goes through, and still every event is there once
    let moved: i64 = admin
        .query_one("SELECT fractality.archive_old_events(1)", &[])
        .unwrap()
        .get(0);
    assert!(moved >= 25_000, "{moved}");
    assert_eq!(tiers(&mut admin), before, "events after the archive");
    let cold: i64 = acknowledged(&mut admin, "experience_events_archive");
    assert_eq!(cold, 5000, "the acknowledged events, archived");
    let hot: i64 = acknowledged(&mut admin, "experience_events");
    assert_eq!(hot, 0, "the archived events left the hot tier");
}

/// The acknowledged events (ids beginning 9 << 60) in `table` of fractality.
fn acknowledged(c: &mut Client, table: &str) -> i64 {
    c.query_one(
        &format!("SELECT count(*) FROM fractality.{table} WHERE substr(event_id, 1, 8) = $1"),
        &[&(9u64 << 60).to_be_bytes().to_vec()],
    )
    .unwrap()
    .get(0)
}

/// Events and metadata rows across the hot and the cold tier, each counted as often as it is
/// there (an event left in both tiers counts twice).
fn tiers(c: &mut Client) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM (SELECT \"timestamp\", event_id FROM fractality.experience_events
                                           UNION ALL
                                           SELECT \"timestamp\", event_id FROM fractality.experience_events_archive) e),
                    (SELECT count(*) FROM fractality.action_metadata)
                  + (SELECT count(*) FROM fractality.action_metadata_archive)",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}
