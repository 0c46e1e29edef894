//! Archiving and retention through a real client: a run cancelled or killed half way leaves every
//! event and stream point exactly once; tenants cannot read each other's archived points;
//! run_maintenance lets a second caller return at once; pg_cron runs it.

mod common;

use common::*;
use postgres::Client;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The tests of this file move every old row of the database: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Both tiers emptied, every non-default partition dropped, this month and the next recreated.
fn reset(c: &mut Client) {
    c.batch_execute(
        "DROP TRIGGER IF EXISTS pause_packing ON fractality.consciousness_archive;
         DO $$ DECLARE r record; BEGIN
             FOR r IN SELECT part FROM fractality._partition_bounds('fractality.experience_events_archive') WHERE lo IS NOT NULL
                      UNION ALL
                      SELECT part FROM fractality._partition_bounds('fractality.experience_events') WHERE lo IS NOT NULL
                      UNION ALL
                      SELECT part FROM fractality._partition_bounds('fractality.consciousness_streams') WHERE lo IS NOT NULL LOOP
                 PERFORM fractality._drop_partition(r.part);
             END LOOP;
         END $$;
         TRUNCATE fractality.experience_events, fractality.experience_events_archive,
                  fractality.action_metadata_archive, fractality.consciousness_streams,
                  fractality.consciousness_archive, fractality.retention_policies;
         SELECT fractality.ensure_partitions(1);",
    )
    .unwrap();
}

/// 400 events, one every 6 hours back from now (100 days), metadata on every fifth, and
/// partitions for the months 40 and 70 days back; ensure_partitions makes those of the other
/// months from the rows the default partition caught, whatever the date.
fn seed_events(c: &mut Client) {
    c.batch_execute(
        "SELECT fractality._create_month_partition('fractality.experience_events', (now() - interval '40 days')::date);
         SELECT fractality._create_month_partition('fractality.experience_events', (now() - interval '70 days')::date);
         SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
             'event_id', 'c0' || lpad(to_hex(g), 30, '0'),
             'timestamp', fractality.epoch_us(now() - g * interval '6 hours') - 1,
             'episode_id', g / 10, 'step_number', g % 10, 'event_type', 1, 'flags', 0,
             'state_l1', 1.0 / 3, 'state_l2', 0.5, 'state_l3', 0.5, 'state_l4', 0.5,
             'state_l5', 0.5, 'state_l6', 0.5, 'state_l7', 0.5, 'state_l8', 0.5,
             'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
             'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
             'adna_version_hash', 7, 'sequence_number', g))
           FROM generate_series(0, 399) g));
         INSERT INTO fractality.action_metadata (event_timestamp, event_id, intent_type, executor_id)
         SELECT \"timestamp\", event_id, 'explore', 'agent' FROM fractality.experience_events
          WHERE sequence_number % 5 = 0;
         SELECT fractality.ensure_partitions(1);",
    )
    .unwrap();
}

/// (events hot, events cold, distinct events, metadata hot + cold, distinct metadata).
fn event_counts(c: &mut Client) -> (i64, i64, i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM fractality.experience_events),
                    (SELECT count(*) FROM fractality.experience_events_archive),
                    (SELECT count(DISTINCT (\"timestamp\", event_id)) FROM
                        (SELECT \"timestamp\", event_id FROM fractality.experience_events
                         UNION ALL
                         SELECT \"timestamp\", event_id FROM fractality.experience_events_archive) u),
                    (SELECT count(*) FROM fractality.action_metadata)
                      + (SELECT count(*) FROM fractality.action_metadata_archive),
                    (SELECT count(DISTINCT event_id) FROM
                        (SELECT event_id FROM fractality.action_metadata
                         UNION ALL
                         SELECT event_id FROM fractality.action_metadata_archive) u)",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

fn backend_pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// `sql` (one text value) called by the owner in a thread of its own, trying for its locks for
/// up to 60 s: the backend's pid, and the call's value or SQLSTATE.
fn owner_call(sql: &'static str) -> (i32, thread::JoinHandle<Result<String, String>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let call = thread::spawn(move || {
        let mut m = db();
        m.batch_execute("SET fractality.maintenance_lock_wait = '60s'")
            .unwrap();
        tx.send(backend_pid(&mut m)).unwrap();
        m.query_one(sql, &[])
            .map(|r| r.get::<_, String>(0))
            .map_err(|e| sqlstate(&e))
    });
    (rx.recv().unwrap(), call)
}

/// Waits until backend `pid` satisfies `cond` (SQL over pg_stat_activity a / pg_locks l).
fn wait_for(c: &mut Client, pid: i32, cond: &str) {
    let started = Instant::now();
    loop {
        let hit: bool = c
            .query_one(&format!("SELECT EXISTS ({cond})"), &[&pid])
            .unwrap()
            .get(0);
        if hit {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "backend {pid} never reached: {cond}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

const WAITS_ON_METADATA_ARCHIVE: &str = "SELECT 1 FROM pg_locks l
     WHERE l.pid = $1 AND NOT l.granted
       AND l.relation = 'fractality.action_metadata_archive'::regclass";

/// Runs archive_old_events(7) in a session of its own while `blocker` holds the cold metadata
/// table: the run moves the partitions, then waits at its last step. `interrupt` ends it there.
fn interrupted_event_archive(interrupt: &str, timeout: Option<&str>) -> String {
    let mut admin = db();
    let mut blocker = db();
    blocker
        .batch_execute(
            "BEGIN; LOCK TABLE fractality.action_metadata_archive IN ACCESS EXCLUSIVE MODE",
        )
        .unwrap();
    let mut runner = db();
    let pid = backend_pid(&mut runner);
    let timeout = timeout.map(str::to_string);
    let handle = thread::spawn(move || {
        if let Some(t) = timeout {
            runner
                .batch_execute(&format!("SET statement_timeout = '{t}'"))
                .unwrap();
        }
        runner.query_one("SELECT fractality.archive_old_events(7)", &[])
    });
    wait_for(&mut admin, pid, WAITS_ON_METADATA_ARCHIVE);
    if !interrupt.is_empty() {
        let sent: bool = admin
            .query_one(&format!("SELECT {interrupt}($1)"), &[&pid])
            .unwrap()
            .get(0);
        assert!(sent);
    }
    let err = handle.join().unwrap().expect_err("the run was interrupted");
    blocker.batch_execute("ROLLBACK").unwrap();
    err.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| "closed".into())
}

#[test]
fn archive_events_cancelled_or_killed_half_way_keeps_each_event_once() {
    let _s = serial();
    let mut c = db();
    for (interrupt, timeout, expect) in [
        ("", Some("2s"), "57014"),
        ("pg_cancel_backend", None, "57014"),
        ("pg_terminate_backend", None, "closed"),
    ] {
        reset(&mut c);
        seed_events(&mut c);
        let before = event_counts(&mut c);
        assert_eq!(before, (400, 0, 400, 80, 80));
        let state = interrupted_event_archive(interrupt, timeout);
        assert!(
            state == expect || (expect == "closed" && state == "57P01"),
            "{interrupt}: ended with {state}"
        );
        // nothing happened: every event once, all hot, partitions back in place
        assert_eq!(event_counts(&mut c), before, "after {interrupt}");
        let cold_parts: i64 = c
            .query_one(
                "SELECT count(*) FROM fractality._partition_bounds('fractality.experience_events_archive')
                  WHERE lo IS NOT NULL",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(cold_parts, 0);
        // and a run to the end moves them all, exactly once
        let moved: i64 = c
            .query_one("SELECT fractality.archive_old_events(7)", &[])
            .unwrap()
            .get(0);
        let (hot, cold, distinct, meta, meta_distinct) = event_counts(&mut c);
        assert_eq!((cold, hot + cold, distinct), (moved, 400, 400));
        assert_eq!((meta, meta_distinct), (80, 80));
        assert!(moved > 350);
    }
}

/// A node of tenant `user` with 1200 points, one every 6 hours back from now (300 days), and a
/// partition for the month 5 months back.
fn seed_points(c: &mut Client, node: uuid::Uuid, user: uuid::Uuid) {
    c.execute(
        "INSERT INTO fractality.nodes (id, user_id, node_key, label) VALUES ($1, $2, $3, 'archived')",
        &[&node, &user, &format!("arch-{node}")],
    )
    .unwrap();
    c.batch_execute(
        "SELECT fractality._create_month_partition('fractality.consciousness_streams', ((now() - interval '5 months') AT TIME ZONE 'UTC')::date)",
    )
    .unwrap();
    c.execute(
        "INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score, resonance_vector)
         SELECT now() - g * interval '6 hours', $1, $2, (g % 10) / 10.0, g / 7.0,
                CASE WHEN g % 4 = 0 THEN ARRAY[g / 3.0, 0.5]::real[] END
           FROM generate_series(0, 1199) g",
        &[&node, &user],
    )
    .unwrap();
}

/// (points hot, points cold, distinct point times) of a node.
fn point_counts(c: &mut Client, node: uuid::Uuid) -> (i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM fractality.consciousness_streams WHERE node_id = $1),
                    (SELECT coalesce(sum(points), 0)::bigint FROM fractality.consciousness_archive WHERE node_id = $1),
                    (SELECT count(DISTINCT time) FROM fractality.stream_history($1, '-infinity', 'infinity'))",
            &[&node],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[test]
fn archive_streams_cancelled_or_killed_half_way_keeps_each_point_once() {
    let _s = serial();
    let mut c = db();
    for interrupt in ["pg_cancel_backend", "pg_terminate_backend"] {
        reset(&mut c);
        let (node, user) = (uuid::Uuid::new_v4(), tenant());
        seed_points(&mut c, node, user);
        assert_eq!(point_counts(&mut c, node), (1200, 0, 1200));
        // a pause at the second packing statement: after the old partition was packed and dropped
        c.batch_execute(
            "CREATE SEQUENCE IF NOT EXISTS public.packing_calls;
             SELECT setval('public.packing_calls', 1, false);
             CREATE OR REPLACE FUNCTION public.pause_packing() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('public.packing_calls') >= 2 THEN PERFORM pg_sleep(60); END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER pause_packing AFTER INSERT ON fractality.consciousness_archive
                 FOR EACH STATEMENT EXECUTE FUNCTION public.pause_packing();",
        )
        .unwrap();
        let mut runner = db();
        let pid = backend_pid(&mut runner);
        let handle =
            thread::spawn(move || runner.query_one("SELECT fractality.archive_streams()", &[]));
        wait_for(
            &mut c,
            pid,
            "SELECT 1 FROM pg_stat_activity a WHERE a.pid = $1 AND a.wait_event = 'PgSleep'",
        );
        let calls: i64 = c
            .query_one("SELECT last_value FROM public.packing_calls", &[])
            .unwrap()
            .get(0);
        assert_eq!(calls, 2, "the first packing step is done");
        let sent: bool = c
            .query_one(&format!("SELECT {interrupt}($1)"), &[&pid])
            .unwrap()
            .get(0);
        assert!(sent);
        // the call ended by the interrupt: 57014 for a cancel, 57P01 for a terminate
        let e = handle
            .join()
            .unwrap()
            .expect_err("the archiving was interrupted");
        let want = if interrupt == "pg_cancel_backend" {
            "57014"
        } else {
            "57P01"
        };
        assert_eq!(common::sqlstate(&e), want, "{interrupt}: {e}");
        c.batch_execute("DROP TRIGGER pause_packing ON fractality.consciousness_archive")
            .unwrap();
        // every point once, all hot; the dropped partition is back
        assert_eq!(
            point_counts(&mut c, node),
            (1200, 0, 1200),
            "after {interrupt}"
        );
        let part: bool = c
            .query_one(
                "SELECT to_regclass(format('fractality.consciousness_streams_%s',
                            to_char((now() - interval '5 months') AT TIME ZONE 'UTC', 'YYYY_MM'))) IS NOT NULL",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(part);
        // a run to the end: each point once, across the tiers
        let moved: i64 = c
            .query_one("SELECT fractality.archive_streams()", &[])
            .unwrap()
            .get(0);
        let (hot, cold, distinct) = point_counts(&mut c, node);
        assert_eq!((cold, hot + cold, distinct), (moved, 1200, 1200));
        assert!(moved > 800);
    }
}

#[test]
fn archived_points_stay_with_their_tenant() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (ta, tb) = (tenant(), tenant());
    let (na, nb) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    seed_points(&mut c, na, ta);
    seed_points(&mut c, nb, tb);

    // archiving is the owner's maintenance: a tenant's role may not run it
    let mut a = app("archive_tenant", Some(ta));
    let err = a
        .query_one("SELECT fractality.archive_streams('30 days')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(point_counts(&mut c, na).1, 0);

    // the administrator archives both tenants' points, each packed row one tenant's
    let both: i64 = c
        .query_one("SELECT fractality.archive_streams('30 days')", &[])
        .unwrap()
        .get(0);
    let moved = point_counts(&mut c, na).1;
    assert!(moved > 1000);
    assert_eq!(point_counts(&mut c, nb).1, moved);
    assert_eq!(both, 2 * moved);
    let mixed: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.consciousness_archive r
               JOIN fractality.nodes n ON n.id = r.node_id WHERE n.user_id <> r.user_id",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        mixed, 0,
        "a packed row of one tenant's node under another tenant"
    );

    // tenant a sees its own packed rows only, and no history of b's node
    let rows: Vec<uuid::Uuid> = a
        .query(
            "SELECT DISTINCT node_id FROM fractality.consciousness_archive",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![na]);
    let err = a
        .query(
            "SELECT * FROM fractality.stream_history($1, '-infinity', 'infinity')",
            &[&nb],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "P0002");
    let own: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.stream_history($1, '-infinity', 'infinity') WHERE archived",
            &[&na],
        )
        .unwrap()
        .get(0);
    assert_eq!(own, moved);
    // nor can it write into b's archive
    let err = a
        .execute(
            "INSERT INTO fractality.consciousness_archive (node_id, user_id, time_from, time_to, points, times, atp_levels)
             VALUES ($1, $2, now(), now(), 1, ARRAY[now()], ARRAY[0.5::float8])",
            &[&nb, &tb],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
}

#[test]
fn run_maintenance_second_caller_returns_at_once() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let mut first = db();
    first.batch_execute("BEGIN").unwrap();
    let r: serde_json::Value = first
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert_eq!(r["skipped"], false);
    let started = Instant::now();
    let r: serde_json::Value = c
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert_eq!(r["skipped"], true);
    assert!(started.elapsed() < Duration::from_secs(2));
    first.batch_execute("COMMIT").unwrap();
    let r: serde_json::Value = c
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert_eq!(r["skipped"], false);
    assert_eq!(r["partitions_created"], 0);
}

#[test]
fn pg_cron_runs_maintenance() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (node, user) = (uuid::Uuid::new_v4(), tenant());
    seed_points(&mut c, node, user);
    c.batch_execute(
        "SELECT fractality.add_retention_policy('fractality.consciousness_streams', '2 days', 'archive')",
    )
    .unwrap();

    // pg_cron lives in the database named by cron.database_name (postgres on the test server)
    let mut cron = Client::connect(&admin_url(), postgres::NoTls).unwrap();
    cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        .unwrap();
    cron.batch_execute(
        "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'fractality-archive-test'",
    )
    .unwrap();
    let job: i64 = cron
        .query_one(
            "SELECT cron.schedule_in_database('fractality-archive-test', '* * * * *',
                                              'SELECT fractality.run_maintenance()', $1)",
            &[&DB],
        )
        .unwrap()
        .get(0);
    let started = Instant::now();
    let status = loop {
        let row = cron
            .query_opt(
                "SELECT status, return_message FROM cron.job_run_details
                  WHERE jobid = $1 AND status IN ('succeeded', 'failed')
                  ORDER BY runid LIMIT 1",
                &[&job],
            )
            .unwrap();
        if let Some(r) = row {
            break (r.get::<_, String>(0), r.get::<_, Option<String>>(1));
        }
        if started.elapsed() > Duration::from_secs(130) {
            break ("never ran".to_string(), None);
        }
        thread::sleep(Duration::from_millis(500));
    };
    cron.query_one("SELECT cron.unschedule($1::bigint)", &[&job])
        .unwrap();
    assert_eq!(status.0, "succeeded", "{:?}", status.1);
    // it did the work: the retention policy ran and the old points are packed
    let (last_result, hot_old): (Option<i64>, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT last_result FROM fractality.retention_policies),
                        (SELECT count(*) FROM fractality.consciousness_streams
                          WHERE time < now() - interval '3 days')",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(last_result.unwrap_or(0) > 1000);
    assert_eq!(hot_old, 0);
    let (hot, cold, distinct) = point_counts(&mut c, node);
    assert_eq!((hot + cold, distinct), (1200, 1200));
}

/// Partition upkeep and an archiver in two sessions take their locks in one order: a
/// transaction that ran ensure_partitions (as run_maintenance does first) and then archives,
/// beside an archiver started in between, ends with both done, not with a deadlock.
#[test]
fn partition_upkeep_and_an_archiver_beside_it_do_not_deadlock() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (t, n) = (tenant(), uuid::Uuid::new_v4());
    seed_points(&mut c, n, t);
    c.batch_execute("BEGIN; SELECT fractality.ensure_partitions(0);")
        .unwrap();
    let archiver = thread::spawn(|| {
        let mut s2 = db();
        s2.query_one("SELECT fractality.archive_streams('30 days')", &[])
            .map(|r| r.get::<_, i64>(0))
            .map_err(|e| sqlstate(&e))
    });
    // the archiver waits (for the upkeep's locks)
    wait_for_a_lock(&mut db(), "SELECT fractality.archive_streams(%");
    let moved = c.query_one("SELECT fractality.archive_streams('30 days')", &[]);
    assert!(moved.is_ok(), "the upkeep's own archiving: {moved:?}");
    c.batch_execute("COMMIT").unwrap();
    let later = archiver.join().unwrap();
    assert_eq!(
        later,
        Ok(0),
        "the archiver, after the upkeep: nothing left to move"
    );
    assert!(moved.unwrap().get::<_, i64>(0) > 1000);
}

/// Partition maintenance never waits for a table while it holds another, so a session that read
/// stream points (or events) and then writes a node while maintenance tries for its locks is
/// never a deadlock's victim, however short its deadlock_timeout. Before: a try held SHARE ROW
/// EXCLUSIVE on nodes (and the streams) while it waited for the streams (or the events) for up to
/// 1 s, as long as the default deadlock_timeout; the session waited for nodes behind it, and its
/// own deadlock check found the cycle first (40P01 for a pulse and a remember in a load run).
/// Here the session's deadlock_timeout is 20 ms, and it writes just after a try began to wait.
#[test]
fn maintenance_never_waits_for_a_table_while_it_holds_another() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (t, n) = (tenant(), uuid::Uuid::new_v4());
    seed_points(&mut c, n, t);
    c.batch_execute("SELECT fractality.ensure_partitions(3)")
        .unwrap();
    let cases = [
        (
            "SELECT count(*) FROM fractality.consciousness_streams",
            "SELECT fractality.archive_streams('30 days')::text",
            "",
        ),
        (
            "SELECT count(*) FROM fractality.experience_events",
            "SELECT fractality.run_maintenance()::text",
            "SELECT fractality.add_retention_policy('fractality.consciousness_streams', '1 day', 'archive');
             SELECT fractality.add_retention_policy('fractality.experience_events', '1 day', 'archive');",
        ),
    ];
    for (read, maintain, policies) in cases {
        c.batch_execute(policies).unwrap();
        let mut session = db();
        session
            .batch_execute(&format!(
                "SET deadlock_timeout = '20ms'; SET fractality.user_id = '{t}'; BEGIN; {read}"
            ))
            .unwrap();
        let (pid, maintenance) = owner_call(maintain);
        // a try that waits for the streams or the events began to within 30 ms (the build before
        // waited there; this one never does, and goes on after 2 s)
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            let waiting: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks l
                      WHERE l.pid = $1 AND NOT l.granted AND l.waitstart > clock_timestamp() - interval '30 ms'
                        AND l.relation IN ('fractality.consciousness_streams'::regclass,
                                           'fractality.experience_events'::regclass))",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            if waiting {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        let pulsed = session.query_one("SELECT fractality.pulse($1, 0.1)", &[&n]);
        assert!(
            pulsed.is_ok(),
            "{read}, then a pulse while {maintain} tries: {:?}",
            pulsed.map_err(|e| sqlstate(&e))
        );
        session.batch_execute("COMMIT").unwrap();
        let done = maintenance.join().unwrap();
        assert!(
            matches!(&done, Ok(out) if !out.contains("busy")),
            "{maintain}: {done:?}"
        );
    }
    c.batch_execute("TRUNCATE fractality.retention_policies")
        .unwrap();
}

/// Every writer of stream points takes nodes before the streams, as partition maintenance takes
/// them: while one waits for nodes behind a maintenance try (SHARE ROW EXCLUSIVE on nodes), the
/// try can still take the streams at once, as it must (it takes a second table only when it is
/// free, `_lock_for_partitions`). Before: pulse, remember's and remember_many's reinforcement and
/// recall's statement inserted the point with the node's update in a CTE, and such a statement's
/// kept plan locks the streams first, so that a try under a steady load of them missed every time.
#[test]
fn a_writer_waiting_for_the_nodes_holds_none_of_the_streams() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let t = tenant();
    let mut w = app("fractality_lock_order", Some(t));
    let v = "(SELECT array_agg(0.1 + (i % 7) / 10.0)::vector FROM generate_series(1, 384) i)";
    w.batch_execute(&format!(
        "SELECT fractality.remember('order-fact', 'a fact told twice', {v})"
    ))
    .unwrap();
    let n: uuid::Uuid = w
        .query_one("SELECT fractality.upsert_node('order-node', 'a node')", &[])
        .unwrap()
        .get(0);
    let calls = [
        format!("SELECT fractality.pulse('{n}', 0.1)::text"),
        format!("SELECT created::text FROM fractality.remember('order-fact', 'a fact told twice', {v})"),
        format!(
            "SELECT string_agg(created::text, ',') FROM fractality.remember_many(NULL, ARRAY['a fact told twice'], ARRAY[{v}])"
        ),
        format!("SELECT string_agg(node_key, ',') FROM fractality.recall({v}, 1, reinforce => 0.01)"),
    ];
    let mut missed = Vec::new();
    for call in calls {
        // the statement's plan kept, as every later call uses it
        w.query_one(call.as_str(), &[]).unwrap();
        let pid = backend_pid(&mut w);
        let mut maintenance = db();
        maintenance
            .batch_execute("BEGIN; LOCK TABLE fractality.nodes IN SHARE ROW EXCLUSIVE MODE")
            .unwrap();
        let writer = thread::spawn(move || {
            let out = w
                .query_one(call.as_str(), &[])
                .map(|r| r.get::<_, Option<String>>(0));
            (w, call, out.map_err(|e| sqlstate(&e)))
        });
        wait_for(
            &mut c,
            pid,
            "SELECT 1 FROM pg_locks l WHERE l.pid = $1 AND NOT l.granted
                AND l.relation = 'fractality.nodes'::regclass",
        );
        let streams = maintenance.batch_execute(
            "LOCK TABLE fractality.consciousness_streams IN ACCESS EXCLUSIVE MODE NOWAIT",
        );
        let streams = streams.map_err(|e| sqlstate(&e));
        maintenance.batch_execute("ROLLBACK").unwrap();
        let (back, call, out) = writer.join().unwrap();
        w = back;
        if streams.is_err() || !matches!(out, Ok(Some(_))) {
            missed.push(format!("{call}: the streams {streams:?}, the call {out:?}"));
        }
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

/// A tenant's transaction that read its stream points and stays open holds up neither the owner's
/// stream archiving nor the other tenants' writes, and does not deadlock with it when it then
/// writes a node: the archiver tries for its locks without queueing behind the reader
/// (`_lock_for_partitions`) and moves the points once the reader is done. Before: it queued for
/// the streams holding SHARE ROW EXCLUSIVE on nodes, every writer of nodes waited behind it, and
/// the reader's pulse ended in 40P01. Past `fractality.maintenance_lock_wait` the archiver gives
/// up (55P03), and run_maintenance names the step in "busy" and does the rest.
#[test]
fn a_long_reader_of_stream_points_holds_up_neither_the_archiver_nor_the_writers() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (t, n) = (tenant(), uuid::Uuid::new_v4());
    seed_points(&mut c, n, t);
    let read = "BEGIN; SELECT count(*) FROM fractality.stream_history(";
    let mut reader = app("fractality_archive_reader", Some(t));
    reader
        .batch_execute(&format!("{read}'{n}', '-infinity', 'infinity')"))
        .unwrap();
    let archiver = thread::spawn(|| {
        let mut s2 = db();
        s2.batch_execute("SET fractality.maintenance_lock_wait = '120s'")
            .unwrap();
        s2.query_one("SELECT fractality.archive_streams('30 days')", &[])
            .map(|r| r.get::<_, i64>(0))
            .map_err(|e| sqlstate(&e))
    });
    // the archiver is trying for its locks (a try waiting, or the pause between two), and has
    // been for longer than deadlock_timeout
    wait_for(
        &mut c,
        0,
        "SELECT 1 FROM pg_stat_activity a WHERE $1 = 0
            AND a.query LIKE 'SELECT fractality.archive_streams(%'
            AND (a.wait_event_type = 'Lock' OR a.wait_event = 'PgSleep')",
    );
    thread::sleep(Duration::from_millis(1500));
    // another tenant writes a node meanwhile (under the old locks it waited for the reader)
    let mut writer = app("fractality_archive_writer", Some(tenant()));
    writer
        .batch_execute("SET statement_timeout = '20s'")
        .unwrap();
    let written = writer.query_one(
        "SELECT fractality.upsert_node('written-meanwhile', 'a node')",
        &[],
    );
    assert!(written.is_ok(), "another tenant's write: {written:?}");
    // the reader writes its node, and ends
    let pulsed = reader.query_one("SELECT fractality.pulse($1, 0.1)", &[&n]);
    assert!(
        pulsed.is_ok(),
        "the reader's pulse: {:?}",
        pulsed.map_err(|e| sqlstate(&e))
    );
    reader.batch_execute("COMMIT").unwrap();
    let moved = archiver.join().unwrap();
    assert!(
        matches!(moved, Ok(m) if m > 1000),
        "the archiver: {moved:?}"
    );
    // every month's partition made now, so that the run below has none to make
    c.batch_execute("SELECT fractality.ensure_partitions(3)")
        .unwrap();

    // the reader again; this time the owner tries for 300 ms
    reader
        .batch_execute(&format!("{read}'{n}', '-infinity', 'infinity')"))
        .unwrap();
    c.batch_execute(
        "SET fractality.maintenance_lock_wait = '300ms';
         SELECT fractality.add_retention_policy('fractality.consciousness_streams', '1 day', 'archive');",
    )
    .unwrap();
    let refused = c
        .query_one("SELECT fractality.archive_streams('0 days')", &[])
        .map_err(|e| {
            let message = e.as_db_error().map(|d| d.message().to_string());
            (sqlstate(&e), message.unwrap_or_default())
        });
    assert!(
        matches!(&refused, Err((state, message)) if state == "55P03"
            && message.contains("fractality.nodes, fractality.consciousness_streams")),
        "{refused:?}"
    );
    let run: serde_json::Value = c
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert_eq!(run["skipped"], false);
    // (and "partitions", should a month have begun since the partitions were made above)
    let busy = run["busy"].as_array().cloned().unwrap_or_default();
    assert!(
        busy.contains(&serde_json::json!("fractality.consciousness_streams")),
        "{run}"
    );
    assert_eq!(run["retention"], serde_json::json!([]));
    reader.batch_execute("COMMIT").unwrap();
    // the reader gone, the step runs: at once, or once autovacuum (whose SHARE UPDATE EXCLUSIVE
    // on a partition it analyses a 300 ms try does not outwait, as a run outside a test would
    // not) is done with the points seeded above; a reader still in the way would keep it busy in
    // every one of these runs
    let mut runs = Vec::new();
    let run: serde_json::Value = loop {
        let run: serde_json::Value = c
            .query_one("SELECT fractality.run_maintenance()", &[])
            .unwrap()
            .get(0);
        if run.get("busy").is_none() || runs.len() == 20 {
            break run;
        }
        runs.push(run);
        thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(run.get("busy"), None, "{run} after {runs:?}");
    assert_eq!(
        run["retention"][0]["relation"],
        "fractality.consciousness_streams"
    );
    assert!(run["retention"][0]["rows"].as_i64().unwrap() > 0, "{run}");

    // both tiers' policies, and a reader of events this time: a try that holds nodes and the
    // streams while it waits for the events lets go of them when it misses it (it held them
    // while it tried for the events, and every writer of nodes waited for the whole of
    // fractality.maintenance_lock_wait)
    c.batch_execute(
        "SELECT fractality.add_retention_policy('fractality.experience_events', '1 day', 'archive')",
    )
    .unwrap();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM fractality.experience_events")
        .unwrap();
    let maintenance = thread::spawn(|| {
        let mut s2 = db();
        s2.batch_execute("SET fractality.maintenance_lock_wait = '8s'")
            .unwrap();
        s2.query_one("SELECT fractality.run_maintenance()", &[])
            .map(|r| r.get::<_, serde_json::Value>(0))
            .map_err(|e| sqlstate(&e))
    });
    wait_for(
        &mut c,
        0,
        "SELECT 1 FROM pg_stat_activity a WHERE $1 = 0
            AND a.query LIKE 'SELECT fractality.run_maintenance()%'
            AND (a.wait_event_type = 'Lock' OR a.wait_event = 'PgSleep')",
    );
    // (a try waits at most 1 s; the whole wait is 8 s)
    writer
        .batch_execute("SET statement_timeout = '3s'")
        .unwrap();
    let written = writer.query_one(
        "SELECT fractality.upsert_node('written-while-it-tries', 'a node')",
        &[],
    );
    assert!(
        written.is_ok(),
        "a write while maintenance tries: {written:?}"
    );
    assert!(!maintenance.is_finished(), "maintenance still trying");
    let run = maintenance.join().unwrap().expect("run_maintenance");
    let busy = run["busy"].as_array().cloned().unwrap_or_default();
    for relation in [
        "fractality.consciousness_streams",
        "fractality.experience_events",
    ] {
        assert!(busy.contains(&serde_json::json!(relation)), "{run}");
    }
    reader.batch_execute("COMMIT").unwrap();
    c.batch_execute(
        "SELECT fractality.remove_retention_policy('fractality.consciousness_streams');
         SELECT fractality.remove_retention_policy('fractality.experience_events');
         RESET fractality.maintenance_lock_wait;",
    )
    .unwrap();
}

/// thaw reads a node's stream points from both tiers, and freeze of that document adds none of
/// them again: every point once in stream_history after a thaw, an archive run and a freeze.
#[test]
fn thaw_and_freeze_see_archived_points() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (t, n) = (tenant(), uuid::Uuid::new_v4());
    seed_points(&mut c, n, t);
    c.batch_execute(&format!("SET fractality.user_id = '{t}'"))
        .unwrap();
    let key = format!("arch-{n}");
    let thawed: serde_json::Value = c
        .query_one("SELECT fractality.thaw($1, 2000)", &[&key])
        .unwrap()
        .get(0);
    assert_eq!(thawed["stream"].as_array().unwrap().len(), 1200);
    let moved: i64 = c
        .query_one("SELECT fractality.archive_streams('30 days')", &[])
        .unwrap()
        .get(0);
    assert!(moved > 1000);
    // the thawed document as it was: its points now mostly archived
    c.execute("SELECT fractality.freeze($1)", &[&thawed])
        .unwrap();
    let (hot, cold, distinct) = point_counts(&mut c, n);
    assert_eq!((hot + cold, distinct), (1200, 1200), "each point once");
    // a thaw now: the same 1 200 points, newest first, archived ones among them
    let again: serde_json::Value = c
        .query_one("SELECT fractality.thaw($1, 2000)", &[&key])
        .unwrap()
        .get(0);
    assert_eq!(again["stream"], thawed["stream"]);
    let latest: serde_json::Value = c
        .query_one("SELECT fractality.thaw($1, 3)", &[&key])
        .unwrap()
        .get(0);
    assert_eq!(
        latest["stream"].as_array().unwrap()[..],
        thawed["stream"].as_array().unwrap()[..3]
    );
    c.batch_execute("RESET fractality.user_id").unwrap();
}

/// An age with a negative part, or one reaching before the earliest timestamp, is refused
/// where a cutoff is computed from it (22023, nothing stored): a 'drop' policy of '1 month -29
/// days' would delete today's rows on some days, one of 10 000 years would make every
/// run_maintenance fail.
#[test]
fn ages_that_are_not_ages_are_refused() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    for sql in [
        "SELECT fractality.add_retention_policy('fractality.consciousness_streams', '1 month -29 days', 'drop')",
        "SELECT fractality.add_retention_policy('fractality.experience_events', '10000 years', 'archive')",
        "SELECT fractality.add_retention_policy('fractality.consciousness_streams', '1 day -1 hour', 'drop')",
        "SELECT fractality.archive_streams('1 month -30 days')",
        "SELECT fractality.archive_streams('10000 years')",
    ] {
        let e = c.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&e), "22023", "{sql}: {e}");
    }
    let policies: i64 = c
        .query_one("SELECT count(*) FROM fractality.retention_policies", &[])
        .unwrap()
        .get(0);
    assert_eq!(policies, 0);
    c.batch_execute(
        "SELECT fractality.add_retention_policy('fractality.consciousness_streams', '1 month 2 days', 'archive')",
    )
    .unwrap();
    let run: serde_json::Value = c
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert_eq!(run["skipped"], serde_json::json!(false));
    c.batch_execute("TRUNCATE fractality.retention_policies")
        .unwrap();
}

/// Month partitions made in a session of any DateStyle and TimeZone have their bounds at
/// midnight UTC: made under DateStyle SQL in Asia/Kolkata (whose abbreviation, IST, reads back
/// as another zone), they were 3.5 hours off, and the next month's, made in UTC, overlapped.
#[test]
fn month_partitions_have_utc_bounds_whatever_the_session_settings() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    c.batch_execute(
        "SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kolkata';
         SELECT fractality.ensure_partitions(2);
         RESET DateStyle; RESET TimeZone;",
    )
    .unwrap();
    c.batch_execute("SET TimeZone = 'UTC'; SELECT fractality.ensure_partitions(3);")
        .unwrap();
    for parent in [
        "fractality.consciousness_streams",
        "fractality.experience_events",
    ] {
        let off: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM fractality._partition_bounds('{parent}') b
                      WHERE b.lo IS NOT NULL
                        AND CASE WHEN '{parent}' = 'fractality.experience_events'
                                 THEN fractality._us_to_timestamptz(b.lo::bigint)
                                 ELSE b.lo::timestamptz END
                            <> date_trunc('month', CASE WHEN '{parent}' = 'fractality.experience_events'
                                 THEN fractality._us_to_timestamptz(b.lo::bigint)
                                 ELSE b.lo::timestamptz END)"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(off, 0, "{parent}: every bound at a month's start, UTC");
    }
    c.batch_execute("RESET TimeZone").unwrap();
}

/// An age is counted back from now in UTC, as the partitions are bounded: the same call at the
/// same moment moves the same rows whatever the caller's TimeZone. Before, `now() - '91 days'`
/// was calendar arithmetic in the session's zone, so a zone whose offset changed in between (a
/// daylight saving change) moved the cutoff by that change: pg_cron in UTC and an operator's
/// psql in Lord Howe archived different events. The age used is one across which Lord Howe's
/// offset changes (there is one within any 200 days), so the test bites on any date.
#[test]
fn ages_are_counted_in_utc_whatever_the_session_time_zone() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let days: i32 = c
        .query_one(
            "SELECT min(n) FROM generate_series(30, 400) n
              WHERE (now() AT TIME ZONE 'Australia/Lord_Howe') - (now() AT TIME ZONE 'UTC')
                 <> ((now() - n * interval '24 hours') AT TIME ZONE 'Australia/Lord_Howe')
                    - ((now() - n * interval '24 hours') AT TIME ZONE 'UTC')",
            &[],
        )
        .unwrap()
        .get(0);
    // events and stream points 70, 50, 20, 10 and 1 minutes either side of the cutoff in UTC
    let node = uuid::Uuid::new_v4();
    let user = uuid::Uuid::new_v4();
    c.execute(
        "INSERT INTO fractality.nodes (id, user_id, node_key, label) VALUES ($1, $2, 'utc-ages', 'x')",
        &[&node, &user],
    )
    .unwrap();
    c.execute(
        "WITH o(i, m) AS (SELECT i, m FROM unnest(ARRAY[-70, -50, -20, -10, -1, 1, 10, 20, 50, 70])
                                              WITH ORDINALITY u(m, i))
         SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
             'event_id', 'd1' || lpad(to_hex(i), 30, '0'),
             'timestamp', fractality.epoch_us(now() - $1 * interval '24 hours' + m * interval '1 minute'),
             'episode_id', 1, 'step_number', i, 'event_type', 1, 'flags', 0,
             'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0,
             'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0,
             'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
             'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
             'adna_version_hash', 7, 'sequence_number', i)) FROM o))",
        &[&(days as f64)],
    )
    .unwrap();
    c.execute(
        "INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score)
         SELECT now() - $3 * interval '24 hours' + m * interval '1 minute', $1, $2, 0.5, 0.5
           FROM unnest(ARRAY[-70, -50, -20, -10, -1, 1, 10, 20, 50, 70]) m",
        &[&node, &user, &(days as f64)],
    )
    .unwrap();
    c.batch_execute("SELECT fractality.ensure_partitions(1)")
        .unwrap();
    for zone in [
        "UTC",
        "Australia/Lord_Howe",
        "America/St_Johns",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
    ] {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute(&format!("SET LOCAL TimeZone = '{zone}'"))
            .unwrap();
        let events: i64 = tx
            .query_one("SELECT fractality.archive_old_events($1)", &[&days])
            .unwrap()
            .get(0);
        let points: i64 = tx
            .query_one(
                "SELECT fractality.archive_streams(make_interval(days => $1))",
                &[&days],
            )
            .unwrap()
            .get(0);
        tx.rollback().unwrap();
        let mut tx = c.transaction().unwrap();
        tx.batch_execute(&format!(
            "SET LOCAL TimeZone = '{zone}';
             SELECT fractality.add_retention_policy('fractality.experience_events', '{days} days', 'archive');"
        ))
        .unwrap();
        let by_policy: i64 = tx
            .query_one(
                "SELECT (fractality.run_maintenance() -> 'retention' -> 0 ->> 'rows')::bigint",
                &[],
            )
            .unwrap()
            .get(0);
        tx.rollback().unwrap();
        assert_eq!(
            (events, points, by_policy),
            (5, 5, 5),
            "{zone}, {days} days: the five rows older than the cutoff in UTC"
        );
    }
    reset(&mut c);
}

/// The partitions' bounds, and so archiving, read the same under `standard_conforming_strings =
/// off` (a setting of old applications and drivers): the bounds' pattern held backslashes, which
/// that setting took as escapes, so every bound read NULL and `archive_old_events` moved nothing,
/// with a warning.
#[test]
fn archiving_reads_partition_bounds_whatever_standard_conforming_strings() {
    let _g = serial();
    let mut c = common::db();
    reset(&mut c);
    seed_events(&mut c);
    let before = event_counts(&mut c);
    c.batch_execute("SET standard_conforming_strings = off")
        .unwrap();
    let (parts, bounded): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*), count(lo) FROM fractality._partition_bounds('fractality.experience_events')
                  WHERE part::text NOT LIKE '%default'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(parts >= 4, "{parts} month partitions");
    assert_eq!(bounded, parts, "every month partition's bounds read");
    let moved: i64 = c
        .query_one("SELECT fractality.archive_old_events(7)", &[])
        .unwrap()
        .get(0);
    c.batch_execute("RESET standard_conforming_strings")
        .unwrap();
    let after = event_counts(&mut c);
    assert!(moved > 0, "moved {moved}");
    assert_eq!(after.1, before.1 + moved, "into the cold tier");
    assert_eq!(after.0 + after.1, before.0 + before.1, "every event kept");
    assert_eq!(after.2, before.2);
}

/// Creating partitions waits for the writers' locks and then reads the default partitions for
/// rows to move: at REPEATABLE READ it is refused (55000) before it creates anything, as
/// archiving is, and so is `run_maintenance`, which creates them (before, a row written
/// meanwhile into the default partition failed the new partition's check with 23514); READ
/// UNCOMMITTED, which PostgreSQL runs as READ COMMITTED, is not.
#[test]
fn creating_partitions_refuses_a_snapshot_older_than_its_lock() {
    let _g = serial();
    let mut c = common::db();
    reset(&mut c);
    let partitions = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_inherits
              WHERE inhparent IN ('fractality.experience_events'::regclass,
                                  'fractality.consciousness_streams'::regclass)",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = partitions(&mut c);
    for sql in [
        "SELECT fractality.ensure_partitions(5)",
        "SELECT fractality.run_maintenance()",
    ] {
        assert_eq!(at_repeatable_read(&mut c, sql), "55000", "{sql}");
        assert_eq!(partitions(&mut c), before, "{sql}");
    }
    // at READ UNCOMMITTED, which PostgreSQL runs as READ COMMITTED (it was refused too)
    let created: i32 = {
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::ReadUncommitted)
            .start()
            .unwrap();
        let n = tx
            .query_one("SELECT fractality.ensure_partitions(5)", &[])
            .unwrap()
            .get(0);
        tx.commit().unwrap();
        n
    };
    // the months up to 5 ahead of both tables (8 made, unless the month turned
    // since reset: then what it made is counted, and every month is there all the same)
    assert!(created >= 1, "made {created}");
    assert_eq!(partitions(&mut c), before + i64::from(created));
    let missing: i64 = c
        .query_one(
            "SELECT count(*) FROM generate_series(0, 5) g, LATERAL (
                 SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => g), 'YYYY_MM') AS m) x
              WHERE to_regclass('fractality.experience_events_' || x.m) IS NULL
                 OR to_regclass('fractality.consciousness_streams_' || x.m) IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(missing, 0, "every month to 5 ahead");
}

/// The SQLSTATE `sql` fails with in a REPEATABLE READ transaction, which is then rolled back.
fn at_repeatable_read(c: &mut Client, sql: &str) -> String {
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    let err = tx.batch_execute(sql).expect_err(sql);
    tx.rollback().unwrap();
    common::sqlstate(&err)
}

/// The owner archives stream points by packing whole old partitions and dropping them, which
/// needs to see every point: at REPEATABLE READ (a snapshot that can be older than its locks)
/// it is refused (55000) and moves nothing.
#[test]
fn the_owners_stream_archive_refuses_a_snapshot_older_than_its_locks() {
    let _g = serial();
    let mut c = common::db();
    let (node, user) = (uuid::Uuid::new_v4(), common::tenant());
    seed_points(&mut c, node, user);
    let before = point_counts(&mut c, node);
    assert_eq!(
        at_repeatable_read(&mut c, "SELECT fractality.archive_streams('30 days')"),
        "55000"
    );
    assert_eq!(point_counts(&mut c, node), before);
    // at READ COMMITTED it archives
    let moved: i64 = c
        .query_one("SELECT fractality.archive_streams('30 days')", &[])
        .unwrap()
        .get(0);
    assert!(moved > 0);
    let after = point_counts(&mut c, node);
    assert_eq!(after.0 + after.1, before.0 + before.1);
}

/// An age beyond the earliest timestamp is refused naming days_threshold (22023), as
/// archive_streams refuses its older_than (before: 22008, "timestamp out of range").
#[test]
fn archive_old_events_refuses_an_age_before_time_began() {
    let mut c = common::db();
    let err = c
        .query_one("SELECT fractality.archive_old_events(2147483647)", &[])
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("days_threshold"),
        "{err}"
    );
}

/// Archiving events moves and drops whole partitions once it holds their lock: at an isolation
/// level whose snapshot predates that lock it is refused (55000), and nothing moves (before, an
/// event committed while it waited went with its partition).
#[test]
fn archiving_events_refuses_a_snapshot_older_than_its_lock() {
    let _g = serial();
    let mut c = common::db();
    reset(&mut c);
    seed_events(&mut c);
    let before = event_counts(&mut c);
    assert_eq!(
        at_repeatable_read(&mut c, "SELECT fractality.archive_old_events(7)"),
        "55000"
    );
    assert_eq!(event_counts(&mut c), before);
}

/// The owner's archive and drop of stream points take no lock on `nodes` that readers wait for:
/// with a reader of `nodes` in an open transaction, both end without waiting for it (before: the
/// drop of a detached partition asked for ACCESS EXCLUSIVE on `nodes` while holding SHARE ROW
/// EXCLUSIVE, so it waited for every reader, every new reader waited behind it, and a reader
/// that then wrote a node, as recall's reinforcement does, deadlocked with it).
#[test]
fn dropping_old_stream_partitions_does_not_wait_for_readers_of_nodes() {
    let _s = serial();
    let mut c = db();
    for sql in [
        "SELECT fractality.archive_streams('30 days')",
        "SELECT fractality._drop_streams_before(now() - interval '30 days')",
    ] {
        reset(&mut c);
        let (t, n) = (tenant(), uuid::Uuid::new_v4());
        seed_points(&mut c, n, t);
        let mut reader = db();
        reader
            .batch_execute("BEGIN; SELECT count(*) FROM fractality.nodes")
            .unwrap();
        let mut runner = db();
        let pid = backend_pid(&mut runner);
        let run = thread::spawn(move || {
            runner
                .query_one(sql, &[])
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| sqlstate(&e))
        });
        // ended, or waiting for a lock (the reader's, on nodes)
        let waiting = waits_for_a_lock(&mut c, pid, &run);
        reader.batch_execute("COMMIT").unwrap();
        let moved = run.join().unwrap();
        assert!(!waiting, "{sql} waited for the reader of nodes");
        assert!(moved.unwrap() > 1000, "{sql}: the old points");
    }
}

/// A row written by hand into the cold metadata table for no event stops no archiving run: when
/// an event of that id is archived later, its own metadata takes the row's place (before, every
/// run failed from then on with 23505 on action_metadata_archive_pkey).
#[test]
fn a_stray_row_of_the_cold_metadata_stops_no_archiving() {
    let _g = serial();
    let mut c = common::db();
    reset(&mut c);
    seed_events(&mut c);
    // an event 30 days old with metadata, and a row for its id in the cold table beforehand
    let id = "c1000000000000000000000000000001";
    c.batch_execute(&format!(
        "INSERT INTO fractality.action_metadata_archive (event_id, event_timestamp, intent_type, executor_id)
         VALUES ('\\x{id}', 1, 'stray', 'by hand');
         SELECT fractality.write_events(jsonb_build_array(jsonb_build_object(
             'event_id', '{id}', 'timestamp', fractality.epoch_us(now() - interval '30 days'),
             'episode_id', 1, 'step_number', 0, 'event_type', 1, 'flags', 0,
             'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0,
             'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0,
             'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
             'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
             'adna_version_hash', 7, 'sequence_number', 0,
             'metadata', jsonb_build_object('intent_type', 'explore', 'executor_id', 'agent'))));"
    ))
    .unwrap();
    let before = event_counts(&mut c);
    let moved: i64 = c
        .query_one("SELECT fractality.archive_old_events(7)", &[])
        .unwrap()
        .get(0);
    assert!(moved > 0);
    let after = event_counts(&mut c);
    // every event and every metadata row once; the stray row replaced, not added
    assert_eq!(after.0 + after.1, before.0 + before.1);
    assert_eq!(after.2, before.2);
    assert_eq!(after.3, before.3 - 1);
    assert_eq!(after.4, before.4);
    let (intent, ts_ok): (String, bool) = {
        let r = c
            .query_one(
                &format!(
                    "SELECT m.intent_type, m.event_timestamp = e.\"timestamp\"
                       FROM fractality.action_metadata_archive m
                       JOIN fractality.experience_events_archive e ON e.event_id = m.event_id
                      WHERE m.event_id = '\\x{id}'"
                ),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(intent, "explore");
    assert!(ts_ok);
}

/// `run_maintenance` and `archive_old_events` run side by side without a deadlock: maintenance
/// read the default partitions, then waited for the archiver's lock, while the archiver held
/// that lock and asked for ACCESS EXCLUSIVE on those partitions (40P01 in 7 of 28 calls in a
/// review's run). Each runs in a loop for three seconds here; every call must succeed.
#[test]
fn maintenance_beside_an_archiver_does_not_deadlock() {
    let _g = serial();
    let mut c = common::db();
    reset(&mut c);
    seed_events(&mut c);
    let until = Instant::now() + Duration::from_secs(3);
    let looped = |sql: &'static str| {
        thread::spawn(move || {
            let mut c = common::db();
            let mut calls = 0;
            while Instant::now() < until {
                c.batch_execute(sql).map_err(|e| format!("{sql}: {e:?}"))?;
                calls += 1;
            }
            Ok::<u32, String>(calls)
        })
    };
    let archiver = looped("SELECT fractality.archive_old_events(30)");
    let maintenance = looped("SELECT fractality.run_maintenance()");
    let (a, m) = (archiver.join().unwrap(), maintenance.join().unwrap());
    let (a, m) = (a.unwrap(), m.unwrap());
    assert!(a > 0 && m > 0, "{a} archiving and {m} maintenance calls");
}

/// A stream point's resonance vector holds at most 1 000 000 elements (the table's check,
/// 23514; `freeze` says 22023 naming the point), and the archive packs a node's points into rows
/// of at most about 4 000 000 elements: 1 000 points of vectors of any size, packed as text into
/// one row, passed the 1 GB a value may hold, and every archiving run failed on them (a review
/// made one tenant's 26 points of 3.9 million elements stop `run_maintenance` for every tenant).
#[test]
fn stream_points_large_vectors_are_bounded_and_packed_into_bounded_rows() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (t, n) = (tenant(), uuid::Uuid::new_v4());
    c.execute(
        "INSERT INTO fractality.nodes (id, user_id, node_key) VALUES ($1, $2, $3)",
        &[&n, &t, &format!("big-{n}")],
    )
    .unwrap();
    c.batch_execute(
        "SELECT fractality._create_month_partition('fractality.consciousness_streams', ((now() - interval '2 months') AT TIME ZONE 'UTC')::date)",
    )
    .unwrap();
    let e = c
        .execute(
            "INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, resonance_vector)
             VALUES (now() - interval '40 days', $1, $2, 0.5, array_fill(0.25::real, ARRAY[1000001]))",
            &[&n, &t],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514", "{e}");
    // five points of 1 000 000 elements (and one without a vector), 40 days back
    c.execute(
        "INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, resonance_vector)
         SELECT now() - interval '40 days' - g * interval '1 minute', $1, $2, 0.5,
                CASE WHEN g > 0 THEN array_fill((g / 3.0)::real, ARRAY[1000000]) END
           FROM generate_series(0, 5) g",
        &[&n, &t],
    )
    .unwrap();
    let before: Vec<(String, Option<i32>, Option<f32>)> = c
        .query(
            "SELECT time::text, cardinality(resonance_vector), resonance_vector[1000000]
               FROM fractality.consciousness_streams WHERE node_id = $1 ORDER BY time",
            &[&n],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(before.len(), 6);
    let moved: i64 = c
        .query_one("SELECT fractality.archive_streams('30 days')", &[])
        .unwrap()
        .get(0);
    assert_eq!(moved, 6);
    // 5 000 000 elements: two rows (the first four vectors; the fifth and the point without
    // one), not one
    let rows: Vec<(i32, i64)> = c
        .query(
            "SELECT points, (SELECT sum(cardinality(v::real[])) FROM unnest(resonance_vectors) v)::bigint
               FROM fractality.consciousness_archive WHERE node_id = $1 ORDER BY time_from",
            &[&n],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(4, 4_000_000), (2, 1_000_000)]);
    // and read back as they were
    let after: Vec<(String, Option<i32>, Option<f32>)> = c
        .query(
            "SELECT time::text, cardinality(resonance_vector), resonance_vector[1000000]
               FROM fractality.stream_history($1, '-infinity', 'infinity') ORDER BY time",
            &[&n],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(after, before);

    // freeze names what the tables would refuse: a vector too large, a time read as infinite
    c.batch_execute(&format!("SET fractality.user_id = '{t}'"))
        .unwrap();
    let key = format!("big-{n}");
    for (point, state, names) in [
        (
            serde_json::json!({"time": "2026-01-01 00:00:00+00", "atp_level": 0.5,
                               "resonance_vector": vec![0.5; 1_000_001]}),
            "22023",
            "1000001 elements (point 1)",
        ),
        (
            serde_json::json!({"time": "infinity UTC", "atp_level": 0.5}),
            "22023",
            "infinity UTC (point 1)",
        ),
        (
            serde_json::json!({"time": "-\tinfinity", "atp_level": 0.5}),
            "22023",
            "(point 1)",
        ),
        (
            // an array literal in a string, which the column reads as well
            serde_json::json!({"time": "2026-01-01 00:00:00+00", "atp_level": 0.5,
                               "resonance_vector": format!("{{{}0.5}}", "0.5,".repeat(1_000_000))}),
            "22023",
            "1000001 elements (point 1)",
        ),
    ] {
        let doc = serde_json::json!({"node_key": key, "stream": [
            {"time": "2026-01-02 00:00:00+00", "atp_level": 0.5}, point]});
        let e = c
            .execute("SELECT fractality.freeze($1)", &[&doc])
            .unwrap_err();
        assert_eq!(sqlstate(&e), state, "{e}");
        let msg = e.as_db_error().unwrap().message().to_string();
        assert!(msg.contains(names), "{msg}");
    }
    c.batch_execute("RESET fractality.user_id").unwrap();
}

/// run_maintenance leaves what a session holds for its next run rather than wait for it: an
/// expired memory, a staged embedding, a replay buffer with pending priorities. The run holds the
/// tables its partitions and retention need from its start (SHARE ROW EXCLUSIVE on nodes with a
/// stream retention policy, ACCESS EXCLUSIVE on the events with an event one), so a session that
/// holds such a row and then writes a node, or reads events, waits for the run, and the run
/// waiting for the row was a deadlock (the session's 40P01 with its deadlock_timeout of 20 ms, or
/// the run's, named in "failed": the memories' step so before).
#[test]
fn maintenance_leaves_what_a_session_holds_for_its_next_run() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (t, gone, other) = (tenant(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let buffer = format!("held-{}", uuid::Uuid::new_v4().simple());
    c.execute(
        "INSERT INTO fractality.nodes (id, user_id, node_key) VALUES ($1, $2, 'kept')",
        &[&other, &t],
    )
    .unwrap();
    // what each case holds, made just before it (a run does the others' work too)
    let expire = format!(
        "INSERT INTO fractality.nodes (id, user_id, node_key, expires_at)
         VALUES ('{gone}', '{t}', 'expired', now() - interval '1 minute')"
    );
    let stage = format!(
        "SET fractality.user_id = '{t}';
         SELECT fractality.remember_many(NULL, ARRAY['a staged fact'],
             ARRAY[(SELECT array_agg(0.1 + (i % 5) / 10.0)::vector FROM generate_series(1, 384) i)]);
         RESET fractality.user_id;"
    );
    let prioritise = format!(
        "SELECT fractality.create_replay_buffer('{buffer}');
         SELECT fractality.write_events(jsonb_build_array(jsonb_build_object(
             'event_id', md5('{buffer}'), 'timestamp', fractality.epoch_us(now()), 'episode_id', 1,
             'step_number', 0, 'event_type', 1, 'flags', 0, 'adna_version_hash', 0,
             'sequence_number', 0, 'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0,
             'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0, 'action_l1', 0,
             'action_l2', 0, 'action_l3', 0, 'action_l4', 0, 'action_l5', 0, 'action_l6', 0,
             'action_l7', 0, 'action_l8', 0)));
         SELECT fractality.update_priorities('{buffer}', ARRAY[decode(md5('{buffer}'), 'hex')], ARRAY[2.0]);"
    );
    let staged =
        format!("SELECT count(*) FROM fractality.node_embeddings WHERE user_id = '{t}' AND staged");
    let pending = format!(
        "SELECT count(*) FROM fractality.replay_pending p JOIN fractality.replay_buffers b USING (buffer_id)
          WHERE b.name = '{buffer}'"
    );
    let left = format!("SELECT count(*) FROM fractality.nodes WHERE id = '{gone}'");
    let pulse = format!("SELECT fractality.pulse('{other}', 0.1)::text");
    let cases = [
        (
            expire,
            format!("SELECT 1 FROM fractality.nodes WHERE id = '{gone}' FOR UPDATE"),
            pulse.clone(),
            "fractality.consciousness_streams",
            ("fractality.nodes", "ShareRowExclusiveLock"),
            left,
        ),
        (
            stage,
            format!("SELECT 1 FROM fractality.node_embeddings WHERE user_id = '{t}' AND staged FOR UPDATE"),
            pulse,
            "fractality.consciousness_streams",
            ("fractality.nodes", "ShareRowExclusiveLock"),
            staged,
        ),
        (
            prioritise,
            format!("SELECT 1 FROM fractality.replay_buffers WHERE name = '{buffer}' FOR UPDATE"),
            "SELECT count(*)::text FROM fractality.experience_events".to_string(),
            "fractality.experience_events",
            ("fractality.experience_events", "AccessExclusiveLock"),
            pending,
        ),
    ];
    for (make, hold, then, policy, (table, mode), count) in cases {
        c.batch_execute(&make).unwrap();
        let n: i64 = c.query_one(count.as_str(), &[]).unwrap().get(0);
        assert_eq!(n, 1, "{count}");
        c.execute(
            "SELECT fractality.add_retention_policy($1::text::regclass, '30 days', 'archive')",
            &[&policy],
        )
        .unwrap();
        let mut session = db();
        session
            .batch_execute(&format!(
                "SET deadlock_timeout = '20ms'; SET fractality.user_id = '{t}'; BEGIN; {hold}"
            ))
            .unwrap();
        let (pid, maintenance) = owner_call("SELECT fractality.run_maintenance()::text");
        // the run holds its retention's table before the session goes on
        wait_for(
            &mut c,
            pid,
            &format!(
                "SELECT 1 FROM pg_locks l WHERE l.pid = $1 AND l.granted
                    AND l.relation = '{table}'::regclass AND l.mode = '{mode}'"
            ),
        );
        let went_on = session
            .query_one(then.as_str(), &[])
            .map(|r| r.get::<_, String>(0))
            .map_err(|e| sqlstate(&e));
        session.batch_execute("COMMIT").unwrap();
        let run = maintenance.join().unwrap();
        assert!(went_on.is_ok(), "{hold}; {then}: {went_on:?}");
        let run: serde_json::Value = serde_json::from_str(&run.expect("run_maintenance")).unwrap();
        assert!(run.get("failed").is_none(), "{hold}: {run}");
        let n: i64 = c.query_one(count.as_str(), &[]).unwrap().get(0);
        assert_eq!(n, 1, "{hold}: left for the next run ({count}): {run}");
        // the next run does it
        let run: serde_json::Value = c
            .query_one("SELECT fractality.run_maintenance()", &[])
            .unwrap()
            .get(0);
        let n: i64 = c.query_one(count.as_str(), &[]).unwrap().get(0);
        assert_eq!(n, 0, "{hold}: {count}: {run}");
        c.batch_execute("TRUNCATE fractality.retention_policies")
            .unwrap();
    }
    c.execute("SELECT fractality.drop_replay_buffer($1)", &[&buffer])
        .unwrap();
}

/// maintain() runs run_maintenance's steps in two transactions: while its steps on rows run
/// (held here in its decay by a trigger that waits for an advisory lock the test holds), it holds
/// none of the tables its partitions and retention took, and a writer of nodes goes on.
/// run_maintenance() does all in one transaction and holds them to its end: the same writer
/// waits for it (55P03 under a lock_timeout of 2 s). Its report is run_maintenance's.
#[test]
fn maintain_lets_writers_go_on_while_it_works_on_rows() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let (t, stale, other) = (tenant(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    c.execute(
        "INSERT INTO fractality.nodes (id, user_id, node_key, atp, atp_at)
         VALUES ($1, $3, 'stale', 0.9, now() - interval '1 hour'), ($2, $3, 'written', 0.5, now())",
        &[&stale, &other, &t],
    )
    .unwrap();
    c.batch_execute(
        "SELECT fractality.add_retention_policy('fractality.consciousness_streams', '30 days', 'archive');
         CREATE FUNCTION public.hold_maintenance() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
         CREATE TRIGGER hold_maintenance BEFORE UPDATE ON fractality.nodes FOR EACH ROW
             WHEN (current_setting('application_name') = 'held-maintenance')
             EXECUTE FUNCTION public.hold_maintenance();",
    )
    .unwrap();
    let mut writer = app("fractality_maintain_writer", Some(t));
    writer.batch_execute("SET lock_timeout = '2s'").unwrap();
    for (call, writes) in [
        ("CALL fractality.maintain()", true),
        ("SELECT fractality.run_maintenance()", false),
    ] {
        let mut holder = db();
        holder
            .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(4242)")
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let run = thread::spawn(move || {
            let mut m = db();
            m.batch_execute("SET application_name = 'held-maintenance'")
                .unwrap();
            tx.send(backend_pid(&mut m)).unwrap();
            m.query_one(call, &[])
                .map(|r| r.get::<_, serde_json::Value>(0))
                .map_err(|e| sqlstate(&e))
        });
        let pid = rx.recv().unwrap();
        // held in its decay
        wait_for(
            &mut c,
            pid,
            "SELECT 1 FROM pg_locks l WHERE l.pid = $1 AND NOT l.granted AND l.locktype = 'advisory'",
        );
        let tables: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_locks l WHERE l.pid = $1
                    AND (l.relation, l.mode) IN (('fractality.nodes'::regclass, 'ShareRowExclusiveLock'),
                                                 ('fractality.consciousness_streams'::regclass, 'AccessExclusiveLock'))",
                &[&pid],
            )
            .unwrap()
            .get(0);
        let pulsed = writer
            .query_one("SELECT fractality.pulse($1, 0.1)", &[&other])
            .map(|_| ())
            .map_err(|e| sqlstate(&e));
        holder.batch_execute("COMMIT").unwrap();
        let report = run
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{call}: {e}"));
        if writes {
            assert_eq!((tables, pulsed), (0, Ok(())), "{call}");
        } else {
            assert_eq!((tables, pulsed), (2, Err("55P03".to_string())), "{call}");
        }
        assert_eq!(report["skipped"], false, "{call}: {report}");
        assert!(report.get("failed").is_none(), "{call}: {report}");
        assert_eq!(
            report["retention"][0]["relation"],
            "fractality.consciousness_streams"
        );
        assert!(report["partitions_created"].is_i64(), "{call}: {report}");
        assert!(
            report["decay_materialized"].as_i64().unwrap() >= 1,
            "{call}: {report}"
        );
        c.execute(
            "UPDATE fractality.nodes SET atp_at = now() - interval '1 hour' WHERE id = $1",
            &[&stale],
        )
        .unwrap();
    }
    c.batch_execute(
        "DROP TRIGGER hold_maintenance ON fractality.nodes;
         DROP FUNCTION public.hold_maintenance();
         TRUNCATE fractality.retention_policies;",
    )
    .unwrap();
    // inside a transaction block it cannot commit
    let mut tx = c.transaction().unwrap();
    let refused = tx
        .batch_execute("CALL fractality.maintain()")
        .map_err(|e| sqlstate(&e));
    assert_eq!(refused, Err("2D000".to_string()));
}

/// A step of run_maintenance that fails is rolled back alone and named in "failed" (and in a
/// WARNING); the other steps go on. A review made one row an application role may write (a
/// pending priority of NaN in a replay buffer's table, which update_priorities never writes) fail
/// every run, for every tenant: no memory expired, no partition made, no decay materialised.
#[test]
fn a_failing_step_of_maintenance_leaves_the_others_to_run() {
    let _s = serial();
    let mut c = db();
    reset(&mut c);
    let buffer = format!("maint-{}", uuid::Uuid::new_v4().simple());
    let (t, n) = (tenant(), uuid::Uuid::new_v4());
    c.execute("SELECT fractality.create_replay_buffer($1)", &[&buffer])
        .unwrap();
    // an event in it, at slot 0
    c.execute(
        "SELECT fractality.write_events(jsonb_build_array(jsonb_build_object(
             'event_id', md5($1), 'timestamp', fractality.epoch_us(now()), 'episode_id', 1,
             'step_number', 0, 'event_type', 1, 'flags', 0, 'adna_version_hash', 0,
             'sequence_number', 0, 'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0,
             'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0, 'action_l1', 0,
             'action_l2', 0, 'action_l3', 0, 'action_l4', 0, 'action_l5', 0, 'action_l6', 0,
             'action_l7', 0, 'action_l8', 0)))",
        &[&buffer],
    )
    .unwrap();
    c.execute(
        "INSERT INTO fractality.replay_pending (buffer_id, slots, olds, priorities)
         SELECT buffer_id, '{0}', '{1}', '{NaN}' FROM fractality.replay_buffers WHERE name = $1",
        &[&buffer],
    )
    .unwrap();
    c.execute(
        "UPDATE fractality.replay_buffers SET pending = 1 WHERE name = $1",
        &[&buffer],
    )
    .unwrap();
    c.execute(
        "INSERT INTO fractality.nodes (id, user_id, node_key, expires_at)
         VALUES ($1, $2, 'gone', now() - interval '1 minute')",
        &[&n, &t],
    )
    .unwrap();
    let run: serde_json::Value = c
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    let failed = run["failed"].as_array().unwrap_or_else(|| panic!("{run}"));
    assert_eq!(failed.len(), 1, "{run}");
    assert_eq!(failed[0]["step"], format!("replay:{buffer}"));
    assert_eq!(failed[0]["sqlstate"], "23514", "{run}");
    // the steps after it ran, and those before it kept their work
    assert!(run["memories_expired"].as_i64().unwrap() >= 1, "{run}");
    let gone: i64 = c
        .query_one("SELECT count(*) FROM fractality.nodes WHERE id = $1", &[&n])
        .unwrap()
        .get(0);
    assert_eq!(gone, 0);
    assert!(run["decay_materialized"].is_i64(), "{run}");
    // the failed step's rows as they were: the pending row is still there
    let pending: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.replay_pending p JOIN fractality.replay_buffers b USING (buffer_id)
              WHERE b.name = $1",
            &[&buffer],
        )
        .unwrap()
        .get(0);
    assert_eq!(pending, 1);
    c.execute("SELECT fractality.drop_replay_buffer($1)", &[&buffer])
        .unwrap();
    // and without the bad row, no "failed" at all
    let run: serde_json::Value = c
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert!(run.get("failed").is_none(), "{run}");
}

/// The months maintenance makes partitions for from the rows the default partitions caught lie
/// from 120 months before the current one to 24 after it: any role may write events, and a
/// tenant stream points, of any time, and a partition a month of them made both tables grow
/// without end, 48 partitions a run (a security review grew them to 3 409 each in 141 runs; every
/// statement that cannot prune by time then locks each partition, and 8 tenants' forgets ran
/// out of shared memory). Rows of the months outside stay in the default partitions, read as
/// before.
#[test]
fn months_far_from_now_get_no_partition_of_their_own() {
    const DB: &str = "fractality_partition_window";
    let mut c = common::fresh_db(DB, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute("SET fractality.user_id = 'c0c0c0c0-0000-4000-8000-000000000001'")
        .unwrap();
    let node: uuid::Uuid = c
        .query_one(
            "SELECT fractality.upsert_node('far', 'far', '{}', 0.5)",
            &[],
        )
        .unwrap()
        .get(0);
    // months relative to the current one (UTC), the 15th at noon: 132 and 119 before, 23 and
    // 30 after
    let offsets = [-132i32, -119, 23, 30];
    for (i, m) in offsets.iter().enumerate() {
        c.execute(
            "INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             VALUES ((date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1, days => 14, hours => 12)) AT TIME ZONE 'UTC',
                     $2, 'c0c0c0c0-0000-4000-8000-000000000001', 0.5)",
            &[m, &node],
        )
        .unwrap();
        c.execute(
            "SELECT fractality.write_events(jsonb_build_array(jsonb_build_object(
                 'event_id', lpad(to_hex($2::int), 32, 'f'),
                 'timestamp', fractality.epoch_us((date_trunc('month', now() AT TIME ZONE 'UTC')
                                                   + make_interval(months => $1, days => 14, hours => 12)) AT TIME ZONE 'UTC'),
                 'episode_id', 1, 'step_number', $2::int, 'event_type', 1, 'flags', 0,
                 'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0,
                 'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0,
                 'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
                 'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
                 'adna_version_hash', 7, 'sequence_number', 0)))",
            &[m, &(i as i32)],
        )
        .unwrap();
    }
    c.batch_execute("SELECT fractality.ensure_partitions(0)")
        .unwrap();
    for table in ["consciousness_streams", "experience_events"] {
        let made: Vec<bool> = c
            .query(
                "SELECT to_regclass(format('fractality.%s_%s', $1::text,
                            to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => m), 'YYYY_MM'))) IS NOT NULL
                   FROM unnest($2::int[]) WITH ORDINALITY AS t(m, n) ORDER BY n",
                &[&table, &offsets.to_vec()],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            made,
            vec![false, true, true, false],
            "{table}: partitions for the months {offsets:?} from now"
        );
        // every row still read through the parent, the far ones in the default partition
        let (all, default): (i64, i64) = {
            let r = c
                .query_one(
                    &format!(
                        "SELECT (SELECT count(*) FROM fractality.{table}), (SELECT count(*) FROM fractality.{table}_default)"
                    ),
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!(
            (all, default),
            (4, 2),
            "{table}: rows in all, in the default partition"
        );
    }
    // a run after it makes none for them either
    let report: serde_json::Value = c
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert!(report.get("failed").is_none(), "{report}");
    drop(c);
    common::drop_db(DB);
}

/// No role but the owner can hold up the owner's maintenance or a curator's consensus: a role
/// with no grant at all, holding at session level (outside any transaction, beyond the reach of
/// idle_in_transaction_session_timeout) every advisory key those steps took before, leaves
/// run_maintenance running (before: `{"skipped": true}` at every run, while the session lived)
/// and archive_streams and crystallize_consensus going on (before: they waited as long); and it
/// cannot insert the owner's keys into fractality.locks, where those locks are now taken.
#[test]
fn no_other_role_holds_up_maintenance_or_consensus() {
    let _serial = serial();
    let mut admin = db();
    admin
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fractality_no_grant') THEN
                     CREATE ROLE fractality_no_grant LOGIN;
                 END IF;
             END $$;",
        )
        .unwrap();
    let mut holder = connect_as("fractality_no_grant");
    for key in [
        "fractality.run_maintenance",
        "fractality.archive_streams",
        "fractality.archive_events",
        "fractality.partitions",
        "fractality.build_tenant_graphs",
        "fractality.consensus default",
    ] {
        holder
            .execute(
                "SELECT pg_advisory_lock(hashtextextended($1, 0::bigint))",
                &[&key],
            )
            .unwrap();
    }
    // the owner's calls do not wait (a lock_timeout turns a wait into an error here)
    admin.batch_execute("SET lock_timeout = '5s'").unwrap();
    let run: serde_json::Value = admin
        .query_one("SELECT fractality.run_maintenance()", &[])
        .unwrap()
        .get(0);
    assert_eq!(run["skipped"], false, "{run}");
    admin
        .query_one("SELECT fractality.archive_streams('100 years')", &[])
        .unwrap();
    let curator_tenant = tenant();
    let mut curator = app("fractality_archive_curator", Some(curator_tenant));
    let seed: uuid::Uuid = curator
        .query_one(
            "SELECT fractality.upsert_node('lock-seed', embedding => array_fill(0.1::real, ARRAY[384])::vector)",
            &[],
        )
        .unwrap()
        .get(0);
    curator.batch_execute("SET lock_timeout = '5s'").unwrap();
    curator
        .query(
            "SELECT fractality.crystallize_consensus($1, 0.9, 3)",
            &[&seed],
        )
        .unwrap();
    let left: i64 = admin
        .query_one("SELECT count(*) FROM fractality.locks", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the locks keep no row between transactions");
    holder
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .unwrap();
    // a role with the application's grants cannot take the owner's locks either
    let mut granted = app("fractality_archive_app", Some(tenant()));
    for name in ["run_maintenance", "remember"] {
        let e = granted
            .execute(
                "INSERT INTO fractality.locks VALUES ('00000000-0000-0000-0000-000000000000', $1)",
                &[&name],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{name}: {e}");
    }
}
