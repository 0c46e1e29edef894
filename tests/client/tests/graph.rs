//! The graph API through a real client: tenants walk only their own graph, SQLSTATEs of bad
//! input, nothing written on failure, concurrent upserts of one key, notifications from
//! upsert_node.

mod common;
mod reliability;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use reliability::vector_text;
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
        // a relationship type link refuses, refused by every function that takes one
        ("SELECT fractality.link('n0', 'n2', '')", "22023"),
        ("SELECT fractality.unlink('n0', 'n1', '')", "22023"),
        ("SELECT * FROM fractality.children('n0', '')", "22023"),
        ("SELECT * FROM fractality.parents('n1', '')", "22023"),
        (
            "SELECT * FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'n0'), 3, '')",
            "22023",
        ),
        ("SELECT * FROM fractality.children('n0', repeat('r', 51))", "22023"),
        // a field freeze does not know (a misspelt one was dropped without a word, and an edge
        // without its weight written at 1), and ids that are no uuid (an edge to n1 whose
        // to_node equalled the document's id became a self-loop)
        (
            "SELECT fractality.freeze('{\"node_key\": \"x\", \"lable\": \"important\"}')",
            "22023",
        ),
        (
            "SELECT fractality.freeze('{\"node_key\": \"x\", \"edges\": {\"outgoing\": [{\"to_key\": \"n1\", \"wieght\": 0.1}]}}')",
            "22023",
        ),
        (
            "SELECT fractality.freeze('{\"node_key\": \"x\", \"stream\": [{\"time\": \"2026-01-01\", \"atp_level\": 0.5, \"atention\": 3}]}')",
            "22023",
        ),
        (
            "SELECT fractality.freeze('{\"node_key\": \"x\", \"id\": \"x\", \"edges\": {\"outgoing\": [{\"to_key\": \"n1\", \"to_node\": \"x\"}]}}')",
            "22023",
        ),
        (
            "SELECT fractality.freeze('{\"node_key\": \"x\", \"id\": 5}')",
            "22023",
        ),
        // a vector's element beyond a real: 22023 naming the point (22003 naming nothing before)
        (
            "SELECT fractality.freeze('{\"node_key\": \"x\", \"stream\": [{\"time\": \"2026-01-01\", \"atp_level\": 0.5, \"resonance_vector\": [1e39]}]}')",
            "22023",
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
    // the tenant by the md5 of its id
    let tenant = common::digest(user);
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_secs(2));
    while let Some(msg) = it.next().unwrap() {
        let p: serde_json::Value = serde_json::from_str(msg.payload()).unwrap();
        if p["tenant"] == tenant {
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
    // exact on purpose: upsert_node writes the energy as of now, and the energy of now is then
    // the value written (the decay returns its input unchanged when no time has passed)
    assert_eq!(got[0]["atp"], 0.3);
    assert_eq!(got[1]["atp"], 0.6);
}

/// upsert_node of an expired memory deletes it, as run_maintenance would, and writes the node
/// anew (as remember does with an expired memory's key): a new id, nothing of the old one
/// (before: the old node came back with its label, content and embedding, and without an
/// expiry); an energy-only upsert leaves updated_at, a content one moves it.
#[test]
fn upsert_node_writes_an_expired_node_anew_and_moves_updated_at_for_content_only() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    let old: Uuid = c
        .query_one(
            &format!(
                "SELECT node_id FROM fractality.remember('tea', 'tea is brewed hot', '{}', ttl => '1 hour')",
                vector_text(3, 0, 0.0)
            ),
            &[],
        )
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE fractality.nodes SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&old],
    )
    .unwrap();
    let id: Uuid = c
        .query_one("SELECT fractality.upsert_node('tea', atp => 0.3)", &[])
        .unwrap()
        .get(0);
    assert_ne!(id, old, "an expired node is written anew");
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE id = $1), count(*),
                    bool_and(expires_at IS NULL AND label IS NULL),
                    (SELECT count(*) FROM fractality.node_embeddings WHERE node_id = $1),
                    (SELECT count(*) FROM fractality.node_text WHERE node_id = $1)
               FROM fractality.nodes WHERE user_id = $2 AND node_key = 'tea'",
            &[&old, &user],
        )
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 0, "the expired node is gone");
    assert_eq!(r.get::<_, i64>(1), 1, "one node of the key");
    assert!(
        r.get::<_, bool>(2),
        "the new one without an expiry or the old label"
    );
    assert_eq!(r.get::<_, i64>(3), 0, "nor its embedding");
    assert_eq!(r.get::<_, i64>(4), 0, "nor its words");
    let recalled: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM fractality.recall('{}', 5)",
                vector_text(3, 0, 0.0)
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(recalled, 0, "the expired memory is not recalled again");
    c.execute(
        "UPDATE fractality.nodes SET updated_at = '2000-01-01' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    c.query_one("SELECT fractality.upsert_node('tea', atp => 0.4)", &[])
        .unwrap();
    let old: bool = c
        .query_one(
            "SELECT updated_at = '2000-01-01' FROM fractality.nodes WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(old, "an energy write leaves updated_at");
    c.query_one("SELECT fractality.upsert_node('tea', 'Tea, kept')", &[])
        .unwrap();
    let moved: bool = c
        .query_one(
            "SELECT updated_at > now() - interval '1 minute' FROM fractality.nodes WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(moved, "a content write moves updated_at");
    // a node with a future expiry keeps it
    c.execute(
        "UPDATE fractality.nodes SET expires_at = now() + interval '1 day' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    c.query_one("SELECT fractality.upsert_node('tea', atp => 0.5)", &[])
        .unwrap();
    let kept: bool = c
        .query_one(
            "SELECT expires_at > now() FROM fractality.nodes WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(kept);
}

/// A tenant setting that is no uuid is refused with 22P02 by the graph and memory functions, as by
/// PostgreSQL's own cast: multibyte text of 32 bytes, signs among the digits (before: an
/// internal error, and a node written under the all-zero tenant); a frozen node's user_id that
/// is no uuid is 22023.
#[test]
fn a_tenant_that_is_no_uuid_is_refused() {
    let mut c = common::db();
    for bad in [format!("a\u{e9}{}", "a".repeat(29)), "+0".repeat(16)] {
        c.execute(
            "SELECT set_config('fractality.user_id', $1, false)",
            &[&bad],
        )
        .unwrap();
        for call in [
            "SELECT count(*) FROM fractality.children('x')",
            "SELECT fractality.upsert_node('no-uuid-tenant')::text",
            // the memory calls read the tenant through the same reader (src/tenant.rs)
            "SELECT fractality.forget('no-uuid-tenant')::text",
            "SELECT count(*) FROM fractality.recall(array_fill(0.1::real, ARRAY[384])::vector, 1)",
        ] {
            let err = c.query_one(call, &[]).unwrap_err();
            assert_eq!(common::sqlstate(&err), "22P02", "{bad:?} {call}: {err}");
        }
    }
    c.batch_execute("RESET fractality.user_id").unwrap();
    let written: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE node_key = 'no-uuid-tenant'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
    let err = c
        .query_one(
            "SELECT fractality.freeze('{\"node_key\": \"k\", \"user_id\": \"+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0\"}')",
            &[],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
}

/// An embedding needs a direction: a zero vector is refused with 22023 by upsert_node,
/// upsert_node_for and freeze, as remember refuses it, and nothing is written.
#[test]
fn a_zero_embedding_is_refused() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    let zero = "array_fill(0, ARRAY[384])::real[]::vector";
    for call in [
        format!("SELECT fractality.upsert_node('zero-emb', embedding => {zero})::text"),
        format!("SELECT fractality.upsert_node_for('{user}', 'zero-emb', embedding => {zero})::text"),
        "SELECT fractality.freeze(jsonb_build_object('node_key', 'zero-emb', 'embedding', array_fill(0, ARRAY[384])))::text".to_string(),
        "SELECT fractality.freeze(jsonb_build_object('node_key', 'zero-emb', 'embeddings', jsonb_build_object('default', array_fill(0, ARRAY[384]))))::text".to_string(),
    ] {
        let err = c.query_one(&call, &[]).unwrap_err();
        assert_eq!(common::sqlstate(&err), "22023", "{call}: {err}");
    }
    let written: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes
              WHERE node_key = 'zero-emb' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
}

/// A memory's expiry goes across: thaw gives `expires_at`, freeze writes it back (a bad time is
/// refused, and writes nothing).
#[test]
fn thaw_and_freeze_carry_the_expiry() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('ttl-src');
         UPDATE fractality.nodes SET expires_at = '2031-05-06 07:08:09.123456+00'
          WHERE node_key = 'ttl-src' AND user_id = fractality.current_user_id();",
    )
    .unwrap();
    let thawed: Option<String> = c
        .query_one("SELECT fractality.thaw('ttl-src') ->> 'expires_at'", &[])
        .unwrap()
        .get(0);
    assert!(thawed.is_some(), "thaw gives the expiry");
    c.query_one(
        "SELECT fractality.freeze(fractality.thaw('ttl-src') || '{\"node_key\": \"ttl-copy\"}')",
        &[],
    )
    .unwrap();
    let same: bool = c
        .query_one(
            "SELECT expires_at = '2031-05-06 07:08:09.123456+00' FROM fractality.nodes
              WHERE node_key = 'ttl-copy' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(same, "freeze writes the expiry back");
    for (bad, state) in [
        ("\"next week\"", "22007"),
        ("\"infinity\"", "22023"),
        ("7", "22023"),
    ] {
        let err = c
            .query_one(
                &format!(
                    "SELECT fractality.freeze('{{\"node_key\": \"ttl-bad\", \"expires_at\": {bad}}}')"
                ),
                &[],
            )
            .unwrap_err();
        assert_eq!(common::sqlstate(&err), state, "{bad}: {err}");
    }
    let written: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes
              WHERE node_key = 'ttl-bad' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
}

/// thaw keeps every digit of its numbers whatever the session's `extra_float_digits`: at -15
/// it gave energy 0.7 for 0.7357588823428847 and edge weight 0.1 for 0.123456789, and freeze
/// then stored them so.
#[test]
fn thaw_keeps_every_digit_under_a_sessions_float_rounding() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('efd-src', 'src', '{}', 0.7357588823428847);
         SELECT fractality.upsert_node('efd-dst', 'dst', '{}', 0.25);
         SELECT fractality.link('efd-src', 'efd-dst', 'child', 0.123456789);
         SELECT fractality.pulse(id, 0.000123456789) FROM fractality.nodes
          WHERE node_key = 'efd-src' AND user_id = fractality.current_user_id();",
    )
    .unwrap();
    let mut tx = c.transaction().unwrap(); // one now(): the same decayed energy in both
    let mut thawed = Vec::new();
    for digits in [-15, 0, 1, 3] {
        tx.batch_execute(&format!("SET LOCAL extra_float_digits = {digits}"))
            .unwrap();
        let doc: serde_json::Value = tx
            .query_one("SELECT fractality.thaw('efd-src')", &[])
            .unwrap()
            .get(0);
        thawed.push(doc);
    }
    tx.commit().unwrap();
    for doc in &thawed[..3] {
        assert_eq!(doc, &thawed[3]);
    }
    let weight = thawed[3]["edges"]["outgoing"][0]["weight"]
        .as_f64()
        .unwrap();
    approx::assert_relative_eq!(weight, 0.123456789, max_relative = 1e-15);
    let points = thawed[3]["stream"].as_array().unwrap();
    assert!(!points.is_empty(), "the pulse's stream point");
}

/// thaw gives the energy of now as of now: read back through the decay curve, the pair is the
/// energy `node_energy` shows (it gave the stored `atp_at` beside the decayed energy, which
/// read back decayed it twice: 0.18 for 0.30 after ten hours).
#[test]
fn thaw_gives_the_energy_as_of_now() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('ten-hours', 'ten hours', '{}', 0.5);
         UPDATE fractality.nodes SET atp_at = now() - interval '10 hours'
          WHERE node_key = 'ten-hours' AND user_id = fractality.current_user_id();",
    )
    .unwrap();
    let (read_back, shown): (f64, f64) = {
        let r = c
            .query_one(
                "SELECT fractality.current_atp((d ->> 'atp')::float8, (d ->> 'atp_at')::timestamptz),
                        (SELECT atp FROM fractality.node_energy
                          WHERE node_key = 'ten-hours' AND user_id = fractality.current_user_id())
                   FROM fractality.thaw('ten-hours') d",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    approx::assert_relative_eq!(shown, 0.5 * 0.95f64.powi(10), max_relative = 1e-4);
    approx::assert_relative_eq!(read_back, shown, max_relative = 1e-9);
}

/// freeze takes a document's energy as of its `atp_at` and decays it over the time the document
/// was kept, as the pair reads back: it stored the energy as of the freeze (0.5 kept ten hours
/// came back as 0.5). An `atp_at` that is no time is 22007, an infinite one 22023, and nothing
/// is written.
#[test]
fn freeze_decays_a_documents_energy_from_its_atp_at() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute("SELECT fractality.upsert_node('kept', 'kept', '{}', 0.5)")
        .unwrap();
    let energy = |c: &mut postgres::Client| -> f64 {
        c.query_one(
            "SELECT atp FROM fractality.node_energy
              WHERE node_key = 'kept' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0)
    };
    // a document thawed ten hours ago
    c.batch_execute(
        "SELECT fractality.freeze(jsonb_set(fractality.thaw('kept'), '{atp_at}',
                                            to_jsonb(now() - interval '10 hours')))",
    )
    .unwrap();
    approx::assert_relative_eq!(energy(&mut c), 0.5 * 0.95f64.powi(10), max_relative = 1e-4);
    // a document of now keeps its energy, and one without atp_at is the energy of now
    c.batch_execute("SELECT fractality.freeze(fractality.thaw('kept') || '{\"atp\": 0.7}')")
        .unwrap();
    approx::assert_relative_eq!(energy(&mut c), 0.7, max_relative = 1e-4);
    c.batch_execute("SELECT fractality.freeze('{\"node_key\": \"kept\", \"atp\": 0.6}')")
        .unwrap();
    approx::assert_relative_eq!(energy(&mut c), 0.6, max_relative = 1e-6);
    for (at, state) in [("\"soon\"", "22007"), ("\"infinity\"", "22023")] {
        let e = c
            .query_one(
                &format!(
                    "SELECT fractality.freeze('{{\"node_key\": \"kept\", \"label\": \"changed\", \"atp\": 0.9, \"atp_at\": {at}}}')"
                ),
                &[],
            )
            .unwrap_err();
        assert_eq!(common::sqlstate(&e), state, "{at}: {e}");
    }
    approx::assert_relative_eq!(energy(&mut c), 0.6, max_relative = 1e-6);
    let label: String = c
        .query_one(
            "SELECT label FROM fractality.nodes WHERE node_key = 'kept' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(label, "kept");
}

/// (from key, to key, type, weight, metadata)
type Edge = (String, String, String, f64, serde_json::Value);

/// Thaws the node `key`, forgets it (its edges go with it), freezes the document twice, and
/// checks that the tenant's edges are `before` each time; returns the document.
fn edges_thawed_forgotten_and_frozen(
    c: &mut postgres::Client,
    key: &str,
    before: &[Edge],
) -> serde_json::Value {
    let doc: serde_json::Value = c
        .query_one("SELECT fractality.thaw($1)", &[&key])
        .unwrap()
        .get(0);
    let forgotten: bool = c
        .query_one("SELECT fractality.forget($1)", &[&key])
        .unwrap()
        .get(0);
    assert!(forgotten);
    assert_eq!(tenant_edges(c).len(), 0);
    for _ in 0..2 {
        c.query_one("SELECT fractality.freeze($1)", &[&doc])
            .unwrap();
        assert_eq!(tenant_edges(c), before);
    }
    doc
}

/// The session tenant's edges, by the keys of their ends.
fn tenant_edges(c: &mut postgres::Client) -> Vec<Edge> {
    c.query(
        "SELECT f.node_key, t.node_key, e.relationship_type, e.weight, e.metadata
           FROM fractality.edges e
           JOIN fractality.nodes f ON f.id = e.from_node AND f.user_id = e.user_id
           JOIN fractality.nodes t ON t.id = e.to_node AND t.user_id = e.user_id
          WHERE e.user_id = fractality.current_user_id()
          ORDER BY 1, 2, 3",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// A self-loop goes across: `link` makes none, but the table holds one an application wrote,
/// thaw gives it, and freeze writes it back (it was refused as "link to itself", so a thawed
/// node with one could not be frozen at all).
#[test]
fn a_self_loop_survives_thaw_and_freeze() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('loop-src', 'loop');
         SELECT fractality.upsert_node('loop-dst');
         SELECT fractality.link('loop-src', 'loop-dst', 'child', 0.5);
         INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight, metadata)
         SELECT user_id, id, id, 'self', -0.25, '{\"why\": \"habit\"}' FROM fractality.nodes
          WHERE node_key = 'loop-src' AND user_id = fractality.current_user_id();",
    )
    .unwrap();
    let before = tenant_edges(&mut c);
    assert_eq!(before.len(), 2);
    // frozen twice: the same edges, not a second self-loop
    let doc = edges_thawed_forgotten_and_frozen(&mut c, "loop-src", &before);
    // a copy under another key gets a loop of its own (it got an edge to the original and one
    // back, the original's key being the loop's other end in the document)
    let mut copy = doc.clone();
    copy["node_key"] = "loop-copy".into();
    c.query_one("SELECT fractality.freeze($1)", &[&copy])
        .unwrap();
    let mut expected = before.clone();
    for e in &before {
        let end = |k: &String| {
            if *k == "loop-src" {
                "loop-copy".to_string()
            } else {
                k.clone()
            }
        };
        expected.push((end(&e.0), end(&e.1), e.2.clone(), e.3, e.4.clone()));
    }
    expected.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    assert_eq!(tenant_edges(&mut c), expected);
    // link still makes none
    let err = c
        .query_one("SELECT fractality.link('loop-dst', 'loop-dst')", &[])
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
}

/// traverse's path to a node is its strongest at its depth with weights of either sign: to e
/// through d's edge of -1, the path whose product at d is the most negative (a review found
/// a > b > d > e at -0.18, where a > c > d > e gives 0.45).
#[test]
fn traverse_takes_the_strongest_path_through_negative_weights() {
    let mut c = common::db();
    common::set_tenant(&mut c, common::tenant());
    c.batch_execute(
        "SELECT fractality.upsert_node(k) FROM unnest(ARRAY['na', 'nb', 'nc', 'nd', 'ne']) k;
         SELECT fractality.link('na', 'nb', 'child', 0.9), fractality.link('na', 'nc', 'child', 0.5),
                fractality.link('nb', 'nd', 'child', 0.2), fractality.link('nc', 'nd', 'child', -0.9),
                fractality.link('nd', 'ne', 'child', -1);",
    )
    .unwrap();
    let rows: Vec<(String, i32, f64, Vec<String>)> = c
        .query(
            "SELECT t.node_key, t.depth, t.accumulated_weight,
                    ARRAY(SELECT n.node_key FROM unnest(t.path) WITH ORDINALITY p(id, i)
                            JOIN fractality.nodes n ON n.id = p.id ORDER BY p.i)
               FROM fractality.traverse((SELECT id FROM fractality.nodes
                                          WHERE node_key = 'na' AND user_id = fractality.current_user_id()), 5) t
              ORDER BY t.depth, t.node_key",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let e = rows.iter().find(|r| r.0 == "ne").expect("e reached");
    assert_eq!(e.1, 3);
    approx::assert_relative_eq!(e.2, 0.45, epsilon = 1e-12);
    assert_eq!(e.3, vec!["na", "nc", "nd", "ne"]);
    let d = rows.iter().find(|r| r.0 == "nd").expect("d reached");
    approx::assert_relative_eq!(d.2, 0.18, epsilon = 1e-12);
    assert_eq!(d.3, vec!["na", "nb", "nd"]);
}

/// The edges into a node go across too: thaw gives them (`edges.incoming`), and freeze writes
/// them back from the other node's key (it read only the outgoing ones, so a thawed, forgotten and
/// frozen node lost every edge into it; found by a review, 2026-12-07).
#[test]
fn incoming_edges_survive_thaw_forget_and_freeze() {
    let mut c = common::db();
    common::set_tenant(&mut c, common::tenant());
    c.batch_execute(
        "SELECT fractality.upsert_node(k) FROM unnest(ARRAY['in-a', 'in-b', 'in-node']) k;
         SELECT fractality.link('in-a', 'in-node', 'cause', 0.75);
         UPDATE fractality.edges SET metadata = '{\"seen\": 2}'
          WHERE relationship_type = 'cause' AND user_id = fractality.current_user_id();
         SELECT fractality.link('in-b', 'in-node', 'child', -0.5);
         SELECT fractality.link('in-node', 'in-b', 'child', 0.25);",
    )
    .unwrap();
    let before = tenant_edges(&mut c);
    assert_eq!(before.len(), 3);
    let doc = edges_thawed_forgotten_and_frozen(&mut c, "in-node", &before);
    assert_eq!(doc["edges"]["incoming"].as_array().map(Vec::len), Some(2));
    // an incoming edge from a node the tenant does not hold: refused, nothing written
    let mut stray = doc.clone();
    stray["node_key"] = serde_json::json!("in-other");
    stray["edges"]["incoming"][0]["from_key"] = serde_json::json!("no-such-node");
    let err = c
        .query_one("SELECT fractality.freeze($1)", &[&stray])
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "P0002", "{err}");
    let held: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE node_key = 'in-other'
                AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "a failed freeze writes nothing");
}

/// freeze takes back what thaw gives: stream points whose resonance vector holds NULL or NaN
/// elements; and it checks the model it is given even when the document carries embeddings.
#[test]
fn freeze_takes_back_what_thaw_gives_and_checks_its_model() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('vec-src');
         INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, resonance_vector)
         SELECT now() - interval '1 minute', id, user_id, 0.5, '{0.5, NULL, NaN}'
           FROM fractality.nodes WHERE node_key = 'vec-src' AND user_id = fractality.current_user_id();",
    )
    .unwrap();
    c.query_one(
        "SELECT fractality.freeze(fractality.thaw('vec-src') || '{\"node_key\": \"vec-copy\"}')",
        &[],
    )
    .unwrap();
    let v: String = c
        .query_one(
            "SELECT s.resonance_vector::text FROM fractality.consciousness_streams s
               JOIN fractality.nodes n ON n.id = s.node_id
              WHERE n.node_key = 'vec-copy' AND n.user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(v, "{0.5,NULL,NaN}");
    // two points of one document at one time (one transaction's pulses share its now()): both
    // are written, once (it kept the first only, and a thawed node lost points)
    c.query_one(
        "SELECT fractality.freeze('{\"node_key\": \"twice\", \"stream\": [
            {\"time\": \"2026-01-01 00:00:00+00\", \"atp_level\": 0.25},
            {\"time\": \"2026-01-01 00:00:00+00\", \"atp_level\": 0.75}]}')",
        &[],
    )
    .unwrap();
    let levels: Vec<f64> = c
        .query(
            "SELECT s.atp_level FROM fractality.consciousness_streams s
               JOIN fractality.nodes n ON n.id = s.node_id
              WHERE n.node_key = 'twice' AND n.user_id = fractality.current_user_id()
              ORDER BY s.atp_level",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(levels, vec![0.25, 0.75]);
    c.query_one(
        "SELECT fractality.freeze('{\"node_key\": \"twice\", \"stream\": [
            {\"time\": \"2026-01-01 00:00:00+00\", \"atp_level\": 0.25},
            {\"time\": \"2026-01-01 00:00:00+00\", \"atp_level\": 0.75}]}')",
        &[],
    )
    .unwrap();
    let again: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.consciousness_streams s
               JOIN fractality.nodes n ON n.id = s.node_id
              WHERE n.node_key = 'twice' AND n.user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(again, 2, "frozen again: nothing added");
    // an edge's metadata and the node's energy object go across too
    c.batch_execute(
        "SELECT fractality.upsert_node('vec-dst');
         SELECT fractality.link('vec-src', 'vec-dst', 'child', 0.5);
         UPDATE fractality.edges SET metadata = '{\"why\": \"x\"}'
          WHERE user_id = fractality.current_user_id();
         UPDATE fractality.nodes SET energy = '{\"network\": \"dream\"}'
          WHERE node_key = 'vec-src' AND user_id = fractality.current_user_id();
         SELECT fractality.freeze(fractality.thaw('vec-src') || '{\"node_key\": \"vec-copy\"}');",
    )
    .unwrap();
    let meta: serde_json::Value = c
        .query_one(
            "SELECT e.metadata FROM fractality.edges e JOIN fractality.nodes n ON n.id = e.from_node
              WHERE n.node_key = 'vec-copy' AND n.user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(meta, serde_json::json!({"why": "x"}));
    let network: String = c
        .query_one(
            "SELECT energy ->> 'network' FROM fractality.nodes
              WHERE node_key = 'vec-copy' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(network, "dream");
    let err = c
        .query_one(
            "SELECT fractality.freeze('{\"node_key\": \"vec-copy\", \"energy\": 3}')",
            &[],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    let err = c
        .query_one(
            "SELECT fractality.freeze('{\"node_key\": \"vec-copy\", \"edges\": {\"outgoing\": [{\"to_key\": \"vec-dst\", \"metadata\": [1]}]}}')",
            &[],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    let err = c
        .query_one(
            "SELECT fractality.freeze(jsonb_build_object('node_key', 'm',
                    'embeddings', jsonb_build_object('default', array_fill(0.1::real, ARRAY[384]))),
                    'no_such_model')",
            &[],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("no_such_model"));
}

/// A walk whose rows would hold more than 32 000 000 node ids in their paths together is refused
/// (54000) before they are built: traverse builds every row, with its whole path, in the
/// process's own memory, where a failed allocation ends the server (a chain of 100 levels fanning
/// out to 2 000 000 nodes asked for 3 GB). Here a chain of 99 nodes and 320 000 leaves at depth
/// 100: 32.3 million ids. One level less deep, the same walk is answered.
#[test]
fn a_walk_past_its_path_budget_is_refused() {
    // a database of its own, dropped at the end (deleting 320 000 nodes one cascade at a time
    // would take longer than the rest of the test); built without the foreign keys' triggers
    // (session_replication_role), which the rows satisfy by construction, nor the full-text
    // index's (the walk does not read it)
    let db = "fractality_path_budget";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute(
        "SET fractality.user_id = 'c0000000-0000-4000-8000-000000000001';
         SET session_replication_role = replica;
         ALTER TABLE fractality.nodes DISABLE TRIGGER nodes_text_insert;
         INSERT INTO fractality.nodes (user_id, node_key)
         SELECT fractality.current_user_id(), 'chain-' || i FROM generate_series(0, 99) i;
         INSERT INTO fractality.nodes (user_id, node_key)
         SELECT fractality.current_user_id(), 'leaf-' || i FROM generate_series(1, 320000) i;
         INSERT INTO fractality.edges (user_id, from_node, to_node)
         SELECT a.user_id, a.id, b.id
           FROM generate_series(0, 98) i
           JOIN fractality.nodes a ON a.node_key = 'chain-' || i
           JOIN fractality.nodes b ON b.node_key = 'chain-' || (i + 1);
         INSERT INTO fractality.edges (user_id, from_node, to_node)
         SELECT a.user_id, a.id, b.id
           FROM fractality.nodes a, fractality.nodes b
          WHERE a.node_key = 'chain-99' AND b.node_key LIKE 'leaf-%';
         SET session_replication_role = origin;
         ANALYZE fractality.nodes, fractality.edges;",
    )
    .unwrap();
    let root: Uuid = c
        .query_one(
            "SELECT id FROM fractality.nodes WHERE node_key = 'chain-0'",
            &[],
        )
        .unwrap()
        .get(0);
    let err = c
        .query_one(
            "SELECT count(*) FROM fractality.traverse($1, 100)",
            &[&root],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "54000", "{err}");
    let msg = err.as_db_error().unwrap().message().to_string();
    assert!(
        msg.contains("320100 nodes reached") && msg.contains("32325050 ids"),
        "{msg}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM fractality.traverse($1, 99)", &[&root])
        .unwrap()
        .get(0);
    assert_eq!(n, 100);
    drop(c);
    common::drop_db(db);
}

/// link (and unlink, and freeze's edges) lock the two nodes before writing the edge: a node
/// forgotten meanwhile by another session is no node (P0002, as for a key never stored), not a
/// foreign key failing (23503) when the edge is written.
#[test]
fn link_racing_a_forget_finds_no_node() {
    let user = common::tenant();
    let mut a = common::db();
    common::set_tenant(&mut a, user);
    a.batch_execute(
        "SELECT fractality.upsert_node('race-x'); SELECT fractality.upsert_node('race-y');",
    )
    .unwrap();
    let mut b = common::db();
    common::set_tenant(&mut b, user);
    b.batch_execute("BEGIN; SELECT fractality.forget('race-x');")
        .unwrap();
    let pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let linking =
        std::thread::spawn(move || a.query_one("SELECT fractality.link('race-x', 'race-y')", &[]));
    let mut admin = common::db();
    assert!(
        common::waits_for_a_lock(&mut admin, pid, &linking),
        "link waits for the forget"
    );
    b.batch_execute("COMMIT").unwrap();
    let err = linking.join().unwrap().unwrap_err();
    assert_eq!(common::sqlstate(&err), "P0002", "{err:?}");
    assert!(
        err.as_db_error().unwrap().message().contains("race-x"),
        "{err:?}"
    );
}

/// A document thawed for one model names it (`model`), and freeze files its `embedding` under
/// that model: frozen without naming the model, it overwrote the default model's embedding with
/// the other model's vector. Naming another model is refused (22023), nothing written.
#[test]
fn freeze_files_an_embedding_under_the_model_thaw_named() {
    let mut c = common::db();
    c.batch_execute("SELECT fractality.register_model('frz384', 384)")
        .unwrap();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    let (a, b) = (vector_text(1, 0, 0.0), vector_text(2, 0, 0.0));
    c.batch_execute(&format!(
        "SELECT fractality.upsert_node('two-models', 'two', '{{}}', 0.5, '{a}'::vector);
         SELECT fractality.upsert_node('two-models', embedding => '{b}'::vector, model => 'frz384');"
    ))
    .unwrap();
    let stored = |c: &mut postgres::Client| -> Vec<(String, String)> {
        c.query(
            "SELECT e.model, e.embedding::text FROM fractality.node_embeddings e
               JOIN fractality.nodes n ON n.id = e.node_id AND n.user_id = e.user_id
              WHERE n.node_key = 'two-models' AND n.user_id = fractality.current_user_id()
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let before = stored(&mut c);
    assert_eq!(before.len(), 2);
    let doc: serde_json::Value = c
        .query_one("SELECT fractality.thaw('two-models', 10, 'frz384')", &[])
        .unwrap()
        .get(0);
    assert_eq!(doc["model"], "frz384");
    c.query_one("SELECT fractality.freeze($1)", &[&doc])
        .unwrap();
    assert_eq!(stored(&mut c), before, "each model's embedding kept");
    let err = c
        .query_one("SELECT fractality.freeze($1, 'default2')", &[&doc])
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err:?}");
    assert_eq!(stored(&mut c), before);
}

/// The stream points one transaction records share its now(): thaw gives them all and freeze
/// writes them all back (it kept one of them, not even the last).
#[test]
fn stream_points_of_one_moment_survive_thaw_and_freeze() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('one-moment', 'moment', '{}', 0.2);
         BEGIN;
         SELECT fractality.pulse(id, 0.1) FROM fractality.nodes
          WHERE node_key = 'one-moment' AND user_id = fractality.current_user_id();
         SELECT fractality.pulse(id, 0.1) FROM fractality.nodes
          WHERE node_key = 'one-moment' AND user_id = fractality.current_user_id();
         SELECT fractality.pulse(id, 0.2) FROM fractality.nodes
          WHERE node_key = 'one-moment' AND user_id = fractality.current_user_id();
         COMMIT;",
    )
    .unwrap();
    let levels = |c: &mut postgres::Client| -> Vec<f64> {
        let mut v: Vec<f64> = c
            .query(
                "SELECT s.atp_level FROM fractality.consciousness_streams s
                   JOIN fractality.nodes n ON n.id = s.node_id AND n.user_id = s.user_id
                  WHERE n.node_key = 'one-moment' AND n.user_id = fractality.current_user_id()",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let before = levels(&mut c);
    assert_eq!(before.len(), 3);
    let doc: serde_json::Value = c
        .query_one("SELECT fractality.thaw('one-moment')", &[])
        .unwrap()
        .get(0);
    c.batch_execute("SELECT fractality.forget('one-moment')")
        .unwrap();
    c.query_one("SELECT fractality.freeze($1)", &[&doc])
        .unwrap();
    assert_eq!(levels(&mut c), before, "every point of the moment");
    // frozen again: nothing added
    c.query_one("SELECT fractality.freeze($1)", &[&doc])
        .unwrap();
    assert_eq!(levels(&mut c).len(), 3);
}

/// A memory longer than a tsvector holds (2 MB of distinct words) is stored, and found by the
/// words of its beginning: its write failed with PostgreSQL's 54000, naming nothing.
#[test]
fn a_memory_beyond_what_a_tsvector_holds_is_stored_and_found() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('long-text',
                'beginning ' || (SELECT string_agg(md5(g::text), ' ') FROM generate_series(1, 60000) g))",
    )
    .unwrap();
    let found: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.search_nodes('beginning') WHERE node_key = 'long-text'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    // 264 000 Hangul characters in hyphenated words: the parser keeps each word and its parts,
    // more bytes of words than characters (a cap of 250 000 characters still failed)
    c.batch_execute(
        "SELECT fractality.upsert_node('long-hangul',
                (SELECT string_agg((SELECT string_agg(chr(44032 + ((g * 10 + p) / 11172))
                                                      || chr(44032 + ((g * 10 + p) % 11172))
                                                      || repeat(chr(44032 + p), 8), '-')
                                      FROM generate_series(0, 9) p), ' ')
                   FROM generate_series(1, 2400) g))",
    )
    .unwrap();
}

/// Two sessions freezing two nodes linked both ways do not deadlock: each wrote its outgoing
/// edges before its incoming ones, so the two took the same two edges in opposite orders
/// (40P01 in 4 of 367 transactions in a review's run). Both loop for three seconds here, every
/// call must succeed, and the edges are the two there were.
#[test]
fn freezing_two_nodes_linked_both_ways_at_once_does_not_deadlock() {
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(
        "SELECT fractality.upsert_node('both-a', 'A'); SELECT fractality.upsert_node('both-b', 'B');
         SELECT fractality.link('both-a', 'both-b'); SELECT fractality.link('both-b', 'both-a');",
    )
    .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let looped = |key: &'static str| {
        std::thread::spawn(move || {
            let mut c = common::db();
            common::set_tenant(&mut c, user);
            let mut calls = 0u32;
            while std::time::Instant::now() < until {
                c.query_one("SELECT fractality.freeze(fractality.thaw($1, 1))", &[&key])
                    .map_err(|e| format!("freeze of {key}: {e:?}"))?;
                calls += 1;
            }
            Ok::<u32, String>(calls)
        })
    };
    let (a, b) = (looped("both-a"), looped("both-b"));
    let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
    assert!(a > 0 && b > 0, "{a} and {b} freezes");
    let edges: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.edges WHERE user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(edges, 2);
}

/// What thaw gives, freeze takes: a stream point holding the largest real either way, which
/// thaw writes out in full (340282350000000000000000000000000000000), is frozen back as it was
/// (before: 22023, "beyond a real", though PostgreSQL's real input takes it).
#[test]
fn freeze_takes_the_largest_real_that_thaw_wrote() {
    let mut c = common::db();
    common::set_tenant(&mut c, common::tenant());
    c.batch_execute(
        "SELECT fractality.upsert_node('largest-real', 'largest');
         INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, resonance_vector)
         SELECT now() - interval '1 minute', id, user_id, 0.5, '{3.4028235e38,-3.4028235e38}'
           FROM fractality.nodes WHERE node_key = 'largest-real' AND user_id = fractality.current_user_id();",
    )
    .unwrap();
    let frozen: String = c
        .query_one("SELECT fractality.thaw('largest-real', 100)::text", &[])
        .unwrap()
        .get(0);
    assert!(
        frozen.contains("340282350000000000000000000000000000000"),
        "{frozen}"
    );
    c.query_one(
        "SELECT fractality.freeze(fractality.thaw('largest-real', 100))",
        &[],
    )
    .unwrap();
    let kept: String = c
        .query_one(
            "SELECT resonance_vector::text FROM fractality.consciousness_streams s
               JOIN fractality.nodes n ON n.id = s.node_id AND n.user_id = s.user_id
              WHERE n.node_key = 'largest-real' AND n.user_id = fractality.current_user_id()
              ORDER BY s.time LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, "{3.4028235e+38,-3.4028235e+38}");
}
