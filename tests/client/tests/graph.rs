//! The graph API through a real client: tenants walk only their own graph, SQLSTATEs of bad
//! input, nothing written on failure, concurrent upserts of one key, notifications from
//! upsert_node.

mod common;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::time::Duration;
use uuid::Uuid;

/// A chain root -> n1 -> ... -> n{len} plus a back edge n{len} -> root, for `user`.
fn chain(c: &mut Client, user: Uuid, len: i32) -> Uuid {
    common::set_tenant(c, user);
    c.execute(
        "SELECT fractality.upsert_node('n' || i, 'node ' || i, '{}', 0.5 + i / (2.0 * $1))
           FROM generate_series(0, $1) i",
        &[&len],
    )
    .unwrap();
    c.execute(
        "SELECT fractality.link('n' || i, 'n' || (i + 1)) FROM generate_series(0, $1 - 1) i",
        &[&len],
    )
    .unwrap();
    c.execute(
        "SELECT fractality.link('n' || $1, 'n0')",
        &[&len.to_string()],
    )
    .unwrap();
    c.query_one(
        "SELECT id FROM fractality.nodes WHERE node_key = 'n0' AND user_id = $1",
        &[&user],
    )
    .unwrap()
    .get(0)
}

#[test]
fn tenants_walk_only_their_own_graph() {
    let (ua, ub) = (common::tenant(), common::tenant());
    let mut a = common::app("fractality_graph_app", None);
    let mut b = common::app("fractality_graph_app", None);
    let root_a = chain(&mut a, ua, 6);
    let root_b = chain(&mut b, ub, 3);

    let walk = |c: &mut Client, root: Uuid, depth: i32| -> Vec<(String, i32)> {
        c.query(
            "SELECT node_key, depth FROM fractality.traverse($1, $2)",
            &[&root, &depth],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let mine = walk(&mut a, root_a, 10);
    assert_eq!(
        mine.len(),
        7,
        "the whole chain, the back edge cut: {mine:?}"
    );
    assert_eq!(mine[6], ("n6".to_string(), 6));
    // paths arrive as uuid[] in the binary protocol: root first, each step the next link
    let ids: Vec<Uuid> = a
        .query(
            "SELECT id FROM fractality.nodes WHERE user_id = $1 ORDER BY substr(node_key, 2)::int",
            &[&ua],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let paths: Vec<(i32, Vec<Uuid>)> = a
        .query(
            "SELECT depth, path FROM fractality.traverse($1, 10) ORDER BY depth",
            &[&root_a],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (depth, path) in &paths {
        assert_eq!(path[..], ids[..=*depth as usize], "depth {depth}");
    }
    assert_eq!(walk(&mut a, root_a, 2).len(), 3);
    assert_eq!(walk(&mut b, root_b, 10).len(), 4);

    // Bob cannot start from Alice's root, nor find a path into it
    let e = b
        .query("SELECT * FROM fractality.traverse($1)", &[&root_a])
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "P0002", "{e}");
    let e = b
        .query(
            "SELECT * FROM fractality.consciousness_path($1, $2)",
            &[&root_b, &root_a],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "P0002", "{e}");
    // same keys, separate graphs
    let keys: i64 = b
        .query_one("SELECT count(*) FROM fractality.children('n0')", &[])
        .unwrap()
        .get(0);
    assert_eq!(keys, 1);

    // the cheapest path along Alice's chain: cost 1 / (atp_i * atp_i+1) summed, on current
    // energy; with decay off for this session the stored values are the current ones
    a.batch_execute("SET fractality.decay_rate = 1").unwrap();
    let rows = a
        .query(
            "SELECT p.step, n.node_key, p.cost FROM fractality.consciousness_path($1,
                    (SELECT id FROM fractality.nodes WHERE node_key = 'n3')) p
               JOIN fractality.nodes n ON n.id = p.node_id ORDER BY p.step",
            &[&root_a],
        )
        .unwrap();
    let atp = |i: f64| 0.5 + i / 12.0;
    let want: f64 = (0..3)
        .map(|i| 1.0 / (atp(i as f64) * atp(i as f64 + 1.0)))
        .sum();
    assert_eq!(rows.len(), 4);
    approx::assert_relative_eq!(rows[3].get::<_, f64>(2), want, epsilon = 1e-9);
}

#[test]
fn bad_input_has_a_sqlstate_and_writes_nothing() {
    let mut c = common::db();
    let user = common::tenant();
    chain(&mut c, user, 2);
    let edges = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM fractality.edges WHERE user_id = $1",
            &[&user],
        )
        .unwrap()
        .get(0)
    };
    let before = edges(&mut c);
    for (sql, state) in [
        ("SELECT fractality.link('n0', 'missing')", "P0002"),
        ("SELECT fractality.link('n0', 'n0')", "22023"),
        ("SELECT fractality.link('n0', 'n2', 'child', -1.01)", "22023"),
        ("SELECT fractality.link('n0', 'n2', 'child', 'NaN')", "22023"),
        ("SELECT fractality.upsert_node('x', atp => 'Infinity')", "22023"),
        (
            "SELECT fractality.upsert_node('x', embedding => '[1,2]')",
            "22000",
        ),
        ("SELECT fractality.thaw('missing')", "P0002"),
        (
            "SELECT * FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'n0'), -3)",
            "22023",
        ),
        (
            "SELECT fractality.freeze('{\"node_key\": \"x\", \"edges\": {\"outgoing\": [{\"to_key\": \"missing\"}]}}')",
            "P0002",
        ),
    ] {
        let e = c.query(sql, &[]).unwrap_err();
        assert_eq!(common::sqlstate(&e), state, "{sql}: {e}");
    }
    assert_eq!(edges(&mut c), before);
    let x: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = $1 AND node_key = 'x'",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert_eq!(x, 0, "the failed freeze left no node behind");
    // without a tenant
    c.batch_execute("RESET fractality.user_id").unwrap();
    let e = c
        .query("SELECT fractality.upsert_node('x')", &[])
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "22004", "{e}");
}

#[test]
fn concurrent_upserts_of_one_key_make_one_node() {
    let user = common::tenant();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = common::db();
                common::set_tenant(&mut c, user);
                (0..25)
                    .map(|i| {
                        c.query_one(
                            "SELECT fractality.upsert_node('shared', $1, jsonb_build_object('t' || $2::text, $3::int))",
                            &[&format!("writer {t}"), &t.to_string(), &i],
                        )
                        .unwrap()
                        .get::<_, Uuid>(0)
                    })
                    .collect::<Vec<Uuid>>()
            })
        })
        .collect();
    let ids: Vec<Uuid> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one id for one key");
    let mut c = common::db();
    let (n, keys): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*), (SELECT count(*) FROM jsonb_object_keys(max(metadata::text)::jsonb))
                   FROM fractality.nodes WHERE user_id = $1",
                &[&user],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(n, 1);
    assert_eq!(keys, 4, "every writer's metadata merged in");
}

#[test]
fn upsert_node_announces_insert_then_update() {
    let mut listener = common::listener();
    let mut writer = common::db();
    // off by default (any session may LISTEN): this writer turns it on
    writer.batch_execute("SET fractality.notify = on").unwrap();
    let user = common::tenant();
    common::set_tenant(&mut writer, user);
    let id: Uuid = writer
        .query_one("SELECT fractality.upsert_node('live', atp => 0.3)", &[])
        .unwrap()
        .get(0);
    writer
        .execute("SELECT fractality.upsert_node('live', atp => 0.6)", &[])
        .unwrap();
    let mut got = Vec::new();
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_secs(2));
    while let Some(msg) = it.next().unwrap() {
        let p: serde_json::Value = serde_json::from_str(msg.payload()).unwrap();
        if p["user_id"] == user.to_string() {
            got.push(p);
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["action"], "INSERT");
    assert_eq!(got[1]["action"], "UPDATE");
    for p in &got {
        assert_eq!(p["node_id"], id.to_string());
        assert_eq!(p["node_key"], "live");
    }
    assert_eq!(got[0]["atp"], 0.3);
    assert_eq!(got[1]["atp"], 0.6);
}
