//! Tenant graphs under concurrency: two build_tenant_graphs at once build each graph once (the
//! second waits for the first, then finds the graph made and writes nothing), and the tenant's
//! searches then go through it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const MODEL: &str = "graphs_at_once";

#[test]
fn tenant_graphs_two_builds_at_once_build_each_graph_once() {
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
