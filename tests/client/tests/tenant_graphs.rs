//! Tenant graphs under concurrency: two build_tenant_graphs at once build each graph once (the
//! second waits for the first, then finds the graph made and writes nothing), and the tenant's
//! searches then go through it. And a tenant's graph that leaves rows no search reaches: a call
//! that asks for every row still gets every row.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The tests of this file build and drop graphs and lock partitions of node_embeddings (a
/// build's SHARE, a holder's ACCESS EXCLUSIVE, an open transaction's writes): run side by side,
/// one's lock held up another's build or call, which in turn held what the first waited for
/// through its client (a wait no deadlock check sees). They run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MODEL: &str = "graphs_at_once";

#[test]
fn tenant_graphs_two_builds_at_once_build_each_graph_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut a = common::db();
    a.batch_execute(&format!("SELECT fractality.register_model('{MODEL}', 4)"))
        .unwrap();
    let tenant = common::tenant();
    a.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    for i in 0..3 {
        a.execute(
            "SELECT fractality.upsert_node($1, NULL, NULL, NULL, $2::text::vector, NULL, $3)",
            &[&format!("g-{i}"), &format!("[1,{i},0.5,0.25]"), &MODEL],
        )
        .unwrap();
    }
    a.batch_execute("BEGIN").unwrap();
    let built: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.build_tenant_graphs($1, 1) WHERE action = 'built'",
            &[&MODEL],
        )
        .unwrap()
        .get(0);
    assert_eq!(built, 1, "the first build makes the tenant's graph");

    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let mut b = common::db();
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let second = std::thread::spawn(move || {
        let rows = b
            .query(
                "SELECT action FROM fractality.build_tenant_graphs($1, 1)",
                &[&MODEL],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
            });
        flag.store(true, Ordering::SeqCst);
        rows.map_err(|e| common::sqlstate(&e))
    });
    let mut admin = common::db();
    assert!(
        common::waits_for_a_lock(&mut admin, b_pid, &second),
        "the second build waits for the first"
    );
    assert!(!finished.load(Ordering::SeqCst));
    a.batch_execute("COMMIT").unwrap();
    let actions = second.join().unwrap();
    assert_eq!(
        actions,
        Ok(Vec::new()),
        "the second build finds the graph made and does nothing"
    );
    let graphs: i64 = a
        .query_one(
            "SELECT count(*) FROM pg_class c
              WHERE c.relnamespace = 'fractality'::regnamespace
                AND c.relname ~ ('^t[0-9a-f]{24}_' || $1 || '_hnsw$')",
            &[&MODEL],
        )
        .unwrap()
        .get(0);
    assert_eq!(graphs, 1, "one graph");
    // the catalog, which every role reads, does not show the tenant (whose id is all a session
    // needs to act as it): the graph's predicate names a digest of it
    let shown: i64 = a
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'fractality' AND indexdef ~ $1",
            &[&tenant.to_string()],
        )
        .unwrap()
        .get(0);
    assert_eq!(shown, 0, "an index definition names the tenant");
    let path: String = a
        .query_one(
            "SELECT DISTINCT path FROM fractality.recall_explain('[1,0,0.5,0.25]'::text::vector, 3, model => $1)",
            &[&MODEL],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        path, "tenant_graph",
        "the tenant is searched through its graph"
    );
    a.batch_execute(&format!(
        "SELECT fractality.drop_model_index('{MODEL}');
         DELETE FROM fractality.nodes WHERE user_id = '{tenant}'"
    ))
    .unwrap();
}

/// One cluster of 600 memories, each further from the centre than the last: the tenant's own
/// HNSW graph of them leaves 8 that no search reaches (the shared graph reaches them all). A call
/// that asks for more rows than the graph gives must read the rest exactly, as the shared graph's
/// path does; it returned 592 of 600 before it did (found by a review, 2026-12-07).
#[test]
fn a_tenant_graph_that_misses_rows_still_returns_every_row_asked_for() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const UNREACHED: &str = "unreached_rows";
    let mut c = common::db();
    c.batch_execute(&format!(
        "SELECT fractality.register_model('{UNREACHED}', 384)"
    ))
    .unwrap();
    let tenant = common::tenant();
    common::set_tenant(&mut c, tenant);
    c.batch_execute(&format!(
        "SELECT setseed(0.3);
         CREATE TEMP TABLE centre AS
             SELECT array_agg((random() * 2 - 1)::real) AS b FROM generate_series(1, 384);
         CREATE TEMP TABLE cluster AS
             SELECT i, (SELECT array_agg((b[j] + (random() * 2 - 1) * (i / 300.0))::real ORDER BY j)
                          FROM generate_series(1, 384) j, centre WHERE i > 0)::vector AS v
               FROM generate_series(1, 600) i;
         SELECT count(fractality.upsert_node('c' || i, 'memory ' || i, '{{}}', 0.5, v, NULL, '{UNREACHED}'))
           FROM cluster;"
    ))
    .unwrap();
    let count = |c: &mut postgres::Client, sql: &str| -> i64 {
        c.query_one(sql, &[&UNREACHED]).unwrap().get(0)
    };
    let recall = "SELECT count(*) FROM fractality.recall((SELECT v FROM cluster WHERE i = 1), 1000, model => $1)";
    let resonant = "SELECT count(*) FROM fractality.find_resonant('c1', -1, 1000, $1)";
    assert_eq!(
        count(&mut c, recall),
        600,
        "the shared graph's path: every memory"
    );
    let built = count(
        &mut c,
        "SELECT count(*) FROM fractality.build_tenant_graphs($1, 1) WHERE action = 'built'",
    );
    assert_eq!(built, 1, "the tenant's graph is built");
    let path: String = c
        .query_one(
            "SELECT DISTINCT path FROM fractality.recall_explain((SELECT v FROM cluster WHERE i = 1), 10, model => $1)",
            &[&UNREACHED],
        )
        .unwrap()
        .get(0);
    assert_eq!(path, "tenant_graph", "searched through the tenant's graph");
    assert_eq!(
        count(&mut c, recall),
        600,
        "recall through the tenant's graph: every memory"
    );
    assert_eq!(
        count(&mut c, resonant),
        599,
        "find_resonant through the tenant's graph: every other node"
    );
    c.batch_execute(&format!(
        "SELECT fractality.drop_model_index('{UNREACHED}');
         DELETE FROM fractality.nodes WHERE user_id = '{tenant}'"
    ))
    .unwrap();
}

/// build_tenant_graphs drops the graphs of shrunk tenants after every build: a drop locks its
/// partition against reads to the end of the call, and plans kept for any tenant lock every
/// partition, so a tenant of a third partition could not recall while a build that came after
/// the drop went on (here: held by a session writing to the built partition). Before, the call
/// dropped and built in the order of the partitions, and the tenant's recall waited (55P03
/// under a lock_timeout of 2 s).
#[test]
fn a_graph_dropped_waits_for_the_builds_so_other_tenants_recall_meanwhile() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const SHRINK: &str = "graphs_shrink";
    let mut a = common::db();
    a.batch_execute(&format!("SELECT fractality.register_model('{SHRINK}', 4)"))
        .unwrap();
    let remember = |a: &mut postgres::Client, t: uuid::Uuid, key: &str| {
        a.batch_execute(&format!("SET fractality.user_id = '{t}'"))
            .unwrap();
        a.execute(
            "SELECT fractality.upsert_node($1, NULL, NULL, NULL, '[1,0.5,0.25,0.125]'::vector, NULL, $2)",
            &[&key, &SHRINK],
        )
        .unwrap();
    };
    // three tenants: the shrunk one's partition named before the growing one's, the reader's
    // a third
    let mut by_part = std::collections::BTreeMap::new();
    while by_part.len() < 3 {
        let t = common::tenant();
        remember(&mut a, t, "probe");
        let p: String = a
            .query_one(
                "SELECT tableoid::regclass::text FROM fractality.node_embeddings WHERE user_id = $1 AND model = $2",
                &[&t, &SHRINK],
            )
            .unwrap()
            .get(0);
        by_part.entry(p).or_insert(t);
    }
    // in the order of their partitions' names: shrunk, reader, grown
    let mut ordered = by_part.into_values();
    let (shrunk, reader, grown) = (
        ordered.next().unwrap(),
        ordered.next().unwrap(),
        ordered.next().unwrap(),
    );
    for k in ["s-1", "s-2"] {
        remember(&mut a, shrunk, k);
    }
    let built: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.build_tenant_graphs($1, 3) WHERE action = 'built'",
            &[&SHRINK],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        built, 1,
        "the shrunk tenant's graph, built while it had three rows"
    );
    a.execute(
        "DELETE FROM fractality.nodes WHERE user_id = $1 AND node_key IN ('s-1', 's-2')",
        &[&shrunk],
    )
    .unwrap();
    for k in ["g-1", "g-2"] {
        remember(&mut a, grown, k);
    }
    // a session writing to the grown tenant's partition holds up the build there
    let mut holder = common::db();
    holder
        .batch_execute(&format!("SET fractality.user_id = '{grown}'; BEGIN"))
        .unwrap();
    holder
        .execute(
            "SELECT fractality.upsert_node('g-3', NULL, NULL, NULL, '[1,0.5,0.25,0.125]'::vector, NULL, $1)",
            &[&SHRINK],
        )
        .unwrap();
    let mut owner = common::db();
    let owner_pid: i32 = owner
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let call = std::thread::spawn(move || {
        owner
            .query(
                "SELECT action FROM fractality.build_tenant_graphs($1, 3)",
                &[&SHRINK],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| common::sqlstate(&e))
    });
    let mut admin = common::db();
    assert!(
        common::waits_for_a_lock(&mut admin, owner_pid, &call),
        "the build waits for the writer of the grown tenant's partition"
    );
    let mut r = common::db();
    r.batch_execute(&format!(
        "SET fractality.user_id = '{reader}'; SET plan_cache_mode = force_generic_plan;
         SET lock_timeout = '2s';"
    ))
    .unwrap();
    let recalled = r
        .query_one(
            "SELECT count(*) FROM fractality.recall('[1,0.5,0.25,0.125]'::vector, 3, model => $1)",
            &[&SHRINK],
        )
        .map(|row| row.get::<_, i64>(0))
        .map_err(|e| common::sqlstate(&e));
    holder.batch_execute("COMMIT").unwrap();
    let actions = call.join().unwrap();
    assert_eq!(recalled, Ok(1), "the reader's recall during the build");
    assert_eq!(
        actions,
        Ok(vec!["built".to_string(), "dropped".to_string()])
    );
}

/// A lock on one partition of node_embeddings holds up only the tenants hashed there. The
/// queries of one tenant's embeddings are planned per tenant, so they lock that tenant's
/// partition alone; a generic plan (what they ran before) locks every partition when it runs,
/// and every tenant's recall, remember, thaw and find_resonant waited behind a graph dropped or
/// a `CLUSTER` of one partition (55P03 under a lock_timeout of 1 s, before). Under SHARE (an
/// index built there), remember_many past staged_limit, which moves staged rows with an UPDATE,
/// waited too.
#[test]
fn a_lock_on_one_embeddings_partition_holds_up_only_its_own_tenants() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const LOCKED: &str = "partition_locked";
    let mut a = common::db();
    a.batch_execute(&format!("SELECT fractality.register_model('{LOCKED}', 4)"))
        .unwrap();
    let partition_of = |a: &mut postgres::Client, t: uuid::Uuid| -> String {
        common::set_tenant(a, t);
        a.execute(
            "SELECT fractality.upsert_node('probe', NULL, NULL, NULL, '[1,0.5,0.25,0.125]'::vector, NULL, $1)",
            &[&LOCKED],
        )
        .unwrap();
        a.query_one(
            "SELECT tableoid::regclass::text FROM fractality.node_embeddings WHERE user_id = $1 AND model = $2",
            &[&t, &LOCKED],
        )
        .unwrap()
        .get(0)
    };
    let held = common::tenant();
    let locked = partition_of(&mut a, held);
    let other = loop {
        let t = common::tenant();
        if partition_of(&mut a, t) != locked {
            break t;
        }
    };
    let mut app = common::app("partition_lock_app", Some(other));
    app.batch_execute("SET lock_timeout = '1s'; SET fractality.staged_limit = 0")
        .unwrap();
    let calls = [
        "SELECT count(*) FROM fractality.recall('[1,0.5,0.25,0.125]'::vector, 3, model => $1)",
        "SELECT count(*) FROM fractality.recall('[1,0.5,0.25,0.125]'::vector, 3, 'words', model => $1, reinforce => 0.1)",
        "SELECT count(*) FROM fractality.remember('m', 'words', '[0.5,1,0.25,0.125]'::vector, model => $1)",
        "SELECT count(*) FROM fractality.remember_many(ARRAY['n1', 'n2'], ARRAY['one', 'two'],
                ARRAY['[1,0,0,0]', '[0,1,0,0]']::vector[], model => $1)",
        "SELECT count(*) FROM fractality.find_resonant('probe', 0.1, 5, $1)",
        "SELECT count(*) FROM fractality.thaw('probe', 10, $1)",
        "SELECT count(*) FROM fractality.freeze(fractality.thaw('probe', 10, $1), $1)",
    ];
    for mode in ["ACCESS EXCLUSIVE", "SHARE"] {
        let mut holder = common::db();
        holder
            .batch_execute(&format!("BEGIN; LOCK TABLE {locked} IN {mode} MODE"))
            .unwrap();
        // twice: the plan made on the first call, then the plan kept
        for round in 0..2 {
            for call in calls {
                let r = app
                    .query_one(call, &[&LOCKED])
                    .map(|_| ())
                    .map_err(|e| common::sqlstate(&e));
                assert_eq!(
                    r,
                    Ok(()),
                    "{call} of a tenant outside {locked}, held in {mode} mode (round {round})"
                );
            }
        }
        holder.batch_execute("ROLLBACK").unwrap();
    }
    // the tenant of the locked partition does wait, and goes on once it is free: the lock is
    // real (seen in pg_locks, not by a timeout, which a server under libfaketime never fires)
    let mut holder = common::db();
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE"
        ))
        .unwrap();
    app.batch_execute("SET lock_timeout = 0").unwrap();
    common::set_tenant(&mut app, held);
    let app_pid: i32 = app
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let call = std::thread::spawn(move || {
        app.query_one(calls[0], &[&LOCKED])
            .map(|_| ())
            .map_err(|e| common::sqlstate(&e))
    });
    let mut admin = common::db();
    assert!(
        common::waits_for_a_lock(&mut admin, app_pid, &call),
        "the locked partition's own tenant waits"
    );
    holder.batch_execute("ROLLBACK").unwrap();
    assert_eq!(call.join().unwrap(), Ok(()));
}

/// Plans bound to tenants are kept within `fractality.tenant_plan_memory`: a backend that
/// searched 40 tenants keeps the plans of the last few of them when the setting is small, and
/// every tenant's when it is large enough. A value out of range is refused.
#[test]
fn plans_bound_to_tenants_stay_within_their_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const PLANNED: &str = "plan_memory";
    let mut a = common::db();
    a.batch_execute(&format!("SELECT fractality.register_model('{PLANNED}', 4)"))
        .unwrap();
    let tenants: Vec<uuid::Uuid> = (0..40).map(|_| common::tenant()).collect();
    for t in &tenants {
        common::set_tenant(&mut a, *t);
        a.execute(
            "SELECT fractality.upsert_node('probe', NULL, NULL, NULL, '[1,0.5,0.25,0.125]'::vector, NULL, $1)",
            &[&PLANNED],
        )
        .unwrap();
    }
    // the plans of tenant_path.sql this backend keeps, one a tenant
    let kept = |memory: &str| -> i64 {
        let mut c = common::db();
        c.batch_execute(&format!("SET fractality.tenant_plan_memory = '{memory}'"))
            .unwrap();
        for t in &tenants {
            common::set_tenant(&mut c, *t);
            c.query_one(
                "SELECT count(*) FROM fractality.find_resonant('probe', 0.1, 5, $1)",
                &[&PLANNED],
            )
            .unwrap();
        }
        c.query_one(
            "SELECT count(*) FROM pg_backend_memory_contexts
              WHERE name = 'CachedPlanSource' AND ident LIKE '-- How a tenant''s search of a model goes%'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let small = kept("256kB");
    assert!(
        (1..=8).contains(&small),
        "256 kB keeps the plans of a few tenants, not {small}"
    );
    assert_eq!(kept("64MB"), 40, "64 MB keeps every tenant's");
    let e = a
        .batch_execute("SET fractality.tenant_plan_memory = -1")
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "22023", "{e}");
}
