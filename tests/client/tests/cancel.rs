//! A cancelled call leaves nothing behind: every function that writes several rows or tables in
//! one call is run under a statement_timeout that grows from 1 ms until the call ends; after each
//! cancel (57014) every table of the schema holds exactly what it held before the call (a digest
//! of every row of every table and partition), and the call that ends writes what it should.
//! It needs a server whose timeouts fire: dev/test-dates.sh (libfaketime, where they do not)
//! leaves it out.

mod common;

use postgres::Client;

const DB: &str = "fractality_cancel";
const TENANTS: [&str; 3] = [
    "c0000000-0000-4000-8000-000000000001",
    "c0000000-0000-4000-8000-000000000002",
    "c0000000-0000-4000-8000-000000000003",
];

/// A digest of every row of every table and partition of the schema fractality, by table.
fn digest(c: &mut Client) -> Vec<(String, String)> {
    let tables: Vec<String> = c
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind = 'r'
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let d: Option<String> = c
                .query_one(
                    &format!("SELECT md5(string_agg(x::text, E'\\n' ORDER BY x::text)) FROM {t} x"),
                    &[],
                )
                .unwrap()
                .get(0);
            (t, d.unwrap_or_default())
        })
        .collect()
}

/// RESET statement_timeout. The reset runs under the timeout too: on a busy machine even it may
/// take a millisecond and be cancelled (changing nothing), so it runs again until it is through.
fn reset_timeout(c: &mut Client) {
    for _ in 0..1000 {
        match c.batch_execute("RESET statement_timeout") {
            Ok(()) => return,
            Err(e) => assert_eq!(common::sqlstate(&e), "57014", "RESET: {e:?}"),
        }
    }
    panic!("RESET statement_timeout cancelled 1000 times");
}

/// Runs `sql` under a statement_timeout of 1, 2, 3, 5, 8, ... ms until it ends: after every
/// cancel, the digest of the schema is what it was before. Returns how many runs were cancelled.
fn until_it_ends(c: &mut Client, sql: &str) -> usize {
    let before = digest(c);
    let mut cancelled = 0;
    let (mut a, mut b) = (1u64, 2u64);
    loop {
        c.batch_execute(&format!("SET statement_timeout = '{a}ms'"))
            .unwrap();
        let r = c.batch_execute(sql);
        reset_timeout(c);
        match r {
            Ok(()) => return cancelled,
            Err(e) => {
                assert_eq!(common::sqlstate(&e), "57014", "{sql}: {e:?}");
                cancelled += 1;
                let after = digest(c);
                for ((t, d0), (_, d1)) in before.iter().zip(&after) {
                    assert_eq!(d0, d1, "{sql}, cancelled after {a} ms, changed {t}");
                }
                assert_eq!(before.len(), after.len(), "{sql}: a table made or dropped");
            }
        }
        assert!(a < 600_000, "{sql} never ended");
        (a, b) = (b, a + b);
    }
}

/// A 384-d vector of phase `d` (deterministic; two phases' cosine is about the cosine of their
/// difference times 7), as SQL.
fn vector_sql(d: &str) -> String {
    format!(
        "(SELECT array_agg(sin(({d}) * 7.0 + i))::real[]::vector FROM generate_series(1, 384) i)"
    )
}

fn events_sql(from: i64, n: i64, policy: i32) -> String {
    format!(
        "SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
             'event_id', lpad(to_hex({from} + g), 32, '0'),
             'timestamp', fractality.epoch_us(now()) - 1000000000 + g,
             'episode_id', g / 10, 'step_number', g % 10, 'event_type', 1, 'flags', 0,
             'reward_goal', (g % 7) / 7.0, 'reward_homeostasis', 0.1,
             'state_l1', 0.5, 'state_l2', 0.5, 'state_l3', 0.5, 'state_l4', 0.5,
             'state_l5', 0.5, 'state_l6', 0.5, 'state_l7', 0.5, 'state_l8', 0.5,
             'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
             'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
             'adna_version_hash', {policy}, 'sequence_number', g))
           FROM generate_series(0, {n} - 1) g))"
    )
}

#[test]
fn a_cancelled_call_writes_nothing() {
    let mut c = common::fresh_db(DB, "CREATE EXTENSION fractality CASCADE");
    let (t1, t2, t3) = (TENANTS[0], TENANTS[1], TENANTS[2]);
    // what the calls below find: memories of three tenants around one theme (a consensus),
    // a graph, stream points, events in a replay buffer, a policy
    for t in TENANTS {
        c.batch_execute(&format!(
            "SET fractality.user_id = '{t}';
             SELECT fractality.remember_many((SELECT jsonb_agg(jsonb_build_object(
                 'content', 'theme ' || g, 'node_key', 'theme-' || g,
                 'embedding', (SELECT array_agg(sin(i) + 2.0 + g * 0.001) FROM generate_series(1, 384) i)))
               FROM generate_series(1, 40) g), dedup_threshold => 1.0);
             SELECT fractality.index_staged_embeddings();
             SELECT fractality.link('theme-1', 'theme-2'), fractality.link('theme-2', 'theme-3');
             SELECT fractality.pulse(id, 0.1) FROM fractality.nodes WHERE node_key = 'theme-1';"
        ))
        .unwrap();
    }
    c.batch_execute(&format!(
        "SELECT fractality.create_replay_buffer('learner', policy_version => 7);
         {};
         SELECT fractality.save_policy('bin', 'rule', '{{\"a\": 1}}');
         SET fractality.user_id = '{t1}';",
        events_sql(0x10_0000, 2000, 7)
    ))
    .unwrap();
    let thawed: String = c
        .query_one("SELECT fractality.thaw('theme-2', 10)::text", &[])
        .unwrap()
        .get(0);
    let frozen = thawed.replace("theme-2", "theme-2-copy").replace(
        &c.query_one(
            "SELECT id::text FROM fractality.nodes WHERE node_key = 'theme-2' AND user_id = $1::text::uuid",
            &[&t1],
        )
        .unwrap()
        .get::<_, String>(0),
        "d0000000-0000-4000-8000-000000000001",
    );

    let calls: Vec<String> = vec![
        // memory
        format!(
            "SELECT count(*) FROM fractality.remember_many((SELECT jsonb_agg(jsonb_build_object(
                 'content', 'fact ' || g, 'embedding', {}::real[]))
               FROM generate_series(1, 800) g), dedup_threshold => 1.0)",
            vector_sql("g")
        ),
        format!(
            "SELECT count(*) FROM fractality.remember_many(
                 ARRAY(SELECT 'array-' || g FROM generate_series(1, 800) g),
                 ARRAY(SELECT 'array fact ' || g FROM generate_series(1, 800) g),
                 ARRAY(SELECT {} FROM generate_series(1, 800) g), dedup_threshold => 1.0)",
            vector_sql("g + 0.5")
        ),
        "SELECT fractality.index_staged_embeddings()".into(),
        format!(
            "SELECT count(*) FROM fractality.recall({}, 20, reinforce => 0.2)",
            vector_sql("3")
        ),
        "SELECT fractality.forget('theme-5')".into(),
        format!("SELECT fractality.freeze('{}'::jsonb)", frozen.replace('\'', "''")),
        format!(
            "SELECT fractality.upsert_node('new-node', 'a label', '{{}}', 0.5, {})",
            vector_sql("11")
        ),
        // energy
        format!("SELECT count(*) FROM fractality.apply_consciousness_decay(0.5, 0.1, '{t1}')"),
        "SELECT fractality.materialize_decay()".into(),
        // consensus and models
        "SELECT fractality.crystallize_consensus(id, 0.9, 3) FROM fractality.nodes WHERE node_key = 'theme-3'"
            .into(),
        "SELECT count(*) FROM fractality.build_tenant_graphs('default', 20)".into(),
        "SELECT fractality.register_model('cancel_m', 8)".into(),
        "SELECT fractality.register_model('cancel_m', 16)".into(),
        // experience and replay
        events_sql(0x20_0000, 5000, 7),
        "SELECT fractality.update_priorities('learner',
             ARRAY(SELECT event_id FROM fractality.experience_events WHERE adna_version_hash = 7 ORDER BY event_id LIMIT 3000),
             ARRAY(SELECT 1.0 + g % 5 FROM generate_series(1, 3000) g))"
            .into(),
        "SELECT fractality.fold_priorities('learner')".into(),
        "SELECT fractality.create_replay_buffer('backfilled', backfill => true)".into(),
        "SELECT fractality.drop_replay_buffer('backfilled')".into(),
        "SELECT fractality.save_policy('bin', 'rule', '{\"a\": 2}')".into(),
        "SELECT fractality.save_config('agent', 'lr', '0.01')".into(),
        "SELECT fractality.refresh_policy_rewards()".into(),
        // maintenance
        "SELECT fractality.run_maintenance()".into(),
    ];
    let mut cancelled = 0;
    for sql in &calls {
        cancelled += until_it_ends(&mut c, sql);
    }
    // the timeouts fired (they do not in a server under libfaketime, where dev/test-dates.sh
    // leaves this test out)
    let fires = c
        .batch_execute("SET statement_timeout = '10ms'; SELECT pg_sleep(0.2)")
        .is_err();
    reset_timeout(&mut c);
    assert!(fires, "statement_timeout does not fire on this server");
    assert!(
        cancelled > 0,
        "no call was cancelled part way: the test tested nothing"
    );
    // the calls did their work in the end
    let counts = c
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM fractality.nodes WHERE user_id = '{t1}'),
                        (SELECT count(*) FROM fractality.experience_events),
                        (SELECT count(*) FROM fractality.replay_buffers),
                        (SELECT count(*) FROM fractality.embedding_models WHERE model = 'cancel_m' AND dims = 16),
                        (SELECT count(*) FROM fractality.consensus_nodes),
                        (SELECT count(*) FROM fractality.nodes WHERE user_id IN ('{t2}', '{t3}'))"
            ),
            &[],
        )
        .unwrap();
    // 40 themes - 1 forgotten + 1 frozen copy + 800 + 800 memories + 1 node (the rest of t1's
    // writes reinforce)
    assert_eq!(counts.get::<_, i64>(0), 40 - 1 + 1 + 1600 + 1);
    assert_eq!(counts.get::<_, i64>(1), 7000);
    assert_eq!(counts.get::<_, i64>(2), 1);
    assert_eq!(counts.get::<_, i64>(3), 1);
    assert_eq!(counts.get::<_, i64>(4), 1);
    assert_eq!(counts.get::<_, i64>(5), 80);
    eprintln!("{cancelled} calls cancelled part way, each leaving every table as it was");
    drop(c);
    common::drop_db(DB);
}
