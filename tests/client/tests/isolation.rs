//! Tenant isolation through every table and every function that reads or writes tenant data,
//! with two login roles of two tenants (neither owner nor BYPASSRLS): tenant A neither sees nor
//! changes tenant B's rows (B's rows are digested before and after A's attempts), a session with
//! no user id sees nothing, consensus exposes only aggregates, and the SECURITY DEFINER
//! crystallize_consensus resists a search_path hijack.

mod common;
mod reliability;

use postgres::Client;
use reliability::{tenant_snapshot, vector_text, TENANT_TABLES};
use uuid::Uuid;

struct Graph {
    root: Uuid,
    child: Uuid,
    leaf: Uuid,
}

/// root -> child -> leaf of the session's tenant, with embeddings close to every other tenant's,
/// a pulse (stream point), an old stream point (default partition) and an archive row.
fn build(c: &mut Client, who: &str) -> Graph {
    let mut ids = Vec::new();
    for (i, key) in ["root", "child", "leaf"].iter().enumerate() {
        let id: Uuid = c
            .query_one(
                "SELECT fractality.upsert_node($1, $2, $3, 0.9, $4::text::vector, 'idea')",
                &[
                    key,
                    &format!("{who} {key} secret"),
                    &serde_json::json!({"description": format!("{who} private thought"), "owner": who}),
                    &vector_text(0, i, 0.05),
                ],
            )
            .unwrap()
            .get(0);
        ids.push(id);
    }
    c.batch_execute(
        "SELECT fractality.link('root', 'child', 'child', 0.8);
         SELECT fractality.link('child', 'leaf', 'child', 0.7);",
    )
    .unwrap();
    c.execute("SELECT fractality.pulse($1, 0.05)", &[&ids[0]])
        .unwrap();
    c.execute(
        "INSERT INTO fractality.consciousness_streams (time, node_id, atp_level) VALUES ('2001-01-01', $1, 0.5)",
        &[&ids[1]],
    )
    .unwrap();
    c.execute(
        "INSERT INTO fractality.consciousness_archive (node_id, time_from, time_to, points, times, atp_levels)
         VALUES ($1, '2001-01-01', '2001-01-01', 1, ARRAY['2001-01-01'::timestamptz], ARRAY[0.4])",
        &[&ids[2]],
    )
    .unwrap();
    Graph {
        root: ids[0],
        child: ids[1],
        leaf: ids[2],
    }
}

/// Every uuid a query returns (any column of type uuid or uuid[]).
fn uuids(c: &mut Client, sql: &str) -> Result<Vec<Uuid>, String> {
    let rows = c.query(sql, &[]).map_err(|e| common::sqlstate(&e))?;
    let mut out = Vec::new();
    for r in rows {
        for (i, col) in r.columns().iter().enumerate() {
            match col.type_().name() {
                "uuid" => out.extend(r.get::<_, Option<Uuid>>(i)),
                "_uuid" => out.extend(r.get::<_, Option<Vec<Uuid>>>(i).unwrap_or_default()),
                "jsonb" => {
                    let v: Option<serde_json::Value> = r.get(i);
                    let text = v.map(|v| v.to_string()).unwrap_or_default();
                    for word in text.split('"') {
                        if let Ok(u) = Uuid::parse_str(word) {
                            out.push(u);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Whether `sql` names one of B's `ids` or B itself.
fn names_b(sql: &str, ids: &[Uuid], ub: Uuid) -> bool {
    ids.iter()
        .chain([&ub])
        .any(|id| sql.contains(&id.to_string()))
}

/// Runs each of `reads` as tenant A: what it returns never names one of B's `ids` or B (`ub`);
/// a call that fails fails with P0002, and a call given one of B's nodes fails so (a node of B
/// is, for A, a node that does not exist; B's tenant id alone may find nothing). Returns
/// the reads that failed or named none of A's own rows (`own`): the callers check that these are
/// the reads that ask about B alone, so that a read failing or coming back empty for A as well
/// (a grant or the tenant lost) does not pass for isolation.
fn none_of_bs(
    a: &mut Client,
    reads: &[String],
    ids: &[Uuid],
    ub: Uuid,
    own: &[Uuid],
) -> Vec<String> {
    let mut without_a = Vec::new();
    for sql in reads {
        let given_bs_node = ids.iter().any(|id| sql.contains(&id.to_string()));
        match uuids(a, sql) {
            Ok(seen) => {
                assert!(
                    !given_bs_node,
                    "tenant A was answered about B's node (not P0002): {sql}"
                );
                for id in ids.iter().chain([&ub]) {
                    assert!(!seen.contains(id), "tenant A saw B's {id} through: {sql}");
                }
                if !own.iter().any(|id| seen.contains(id)) {
                    without_a.push(sql.clone());
                }
            }
            Err(state) => {
                // P0002 for B's node; 22023 where a call is given B's tenant id itself
                // (apply_consciousness_decay's p_user_id, which A may not name)
                let names_b = sql.contains(&ub.to_string());
                assert!(
                    state == "P0002" || (state == "22023" && names_b),
                    "{state}: {sql}"
                );
                without_a.push(sql.clone());
            }
        }
    }
    without_a
}

#[test]
fn tenant_a_neither_sees_nor_changes_tenant_b() {
    let mut admin = common::db();
    let (ua, ub) = (common::tenant(), common::tenant());
    let mut a = common::app("fractality_iso_a", Some(ua));
    let mut b = common::app("fractality_iso_b", Some(ub));
    let ga = build(&mut a, "A");
    let gb = build(&mut b, "B");
    let b_ids = [gb.root, gb.child, gb.leaf];
    // one of B's embeddings waits outside the index, as remember_many leaves it: A's
    // index_staged_embeddings must not index it
    admin
        .execute(
            "UPDATE fractality.node_embeddings SET staged = true WHERE user_id = $1 AND node_id = $2",
            &[&ub, &gb.child],
        )
        .unwrap();
    let before = tenant_snapshot(&mut admin, ub);
    assert_eq!(before["nodes"].0, 3);
    assert_eq!(before["edges"].0, 2);
    assert_eq!(before["consciousness_streams"].0, 2);
    assert_eq!(before["consciousness_archive"].0, 1);

    // ---- reads: what A gets back never names one of B's rows ----------------------------------
    let (br, bc, bl, ar) = (gb.root, gb.child, gb.leaf, ga.root);
    let reads: Vec<String> = vec![
        "SELECT id, user_id FROM fractality.nodes".into(),
        "SELECT node_id, user_id FROM fractality.node_embeddings".into(),
        "SELECT node_id, user_id FROM fractality.node_text".into(),
        "SELECT id, from_node, to_node, user_id FROM fractality.edges".into(),
        "SELECT node_id, user_id FROM fractality.consciousness_streams".into(),
        "SELECT node_id, user_id FROM fractality.consciousness_streams_default".into(),
        "SELECT node_id, user_id FROM fractality.consciousness_archive".into(),
        "SELECT node_id, user_id FROM fractality.consensus_links".into(),
        "SELECT node_id, user_id FROM fractality.node_energy".into(),
        "SELECT node_id, user_id FROM fractality.active_consciousness".into(),
        format!("SELECT node_id FROM fractality.recall('{}'::vector, 1000, 'secret private thought')", vector_text(0, 1, 0.05)),
        format!("SELECT node_id FROM fractality.recall('{}'::vector, 1000, context => 'root')", vector_text(0, 2, 0.05)),
        format!("SELECT node_id FROM fractality.recall_explain('{}'::vector, 1000, 'secret')", vector_text(0, 1, 0.05)),
        format!("SELECT node_id FROM fractality.resonance_with('{ar}', ARRAY['{bc}'::uuid])"),
        "SELECT * FROM fractality.children('root')".into(),
        "SELECT * FROM fractality.parents('child')".into(),
        "SELECT * FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'root'))".into(),
        format!("SELECT * FROM fractality.traverse('{br}')"),
        format!("SELECT * FROM fractality.consciousness_path('{br}', '{bl}')"),
        format!("SELECT * FROM fractality.consciousness_path('{ar}', '{bl}')"),
        "SELECT fractality.thaw('root', 10)".into(),
        "SELECT * FROM fractality.search_nodes('secret')".into(),
        "SELECT * FROM fractality.search_nodes('private thought')".into(),
        "SELECT * FROM fractality.find_resonant('root', 0.0, 1000)".into(),
        format!("SELECT * FROM fractality.find_resonant('{ar}'::uuid, -1.0, 1000)"),
        format!("SELECT * FROM fractality.find_resonant('{br}'::uuid, -1.0, 1000)"),
        format!("SELECT fractality.calculate_resonance('{ar}', '{br}')"),
        format!("SELECT fractality.calculate_resonance('{br}', '{bc}')"),
        "SELECT * FROM fractality.consensus_tree(-1, 5)".into(),
        "SELECT node_id FROM fractality.apply_consciousness_decay(0.5, 0.1, NULL)".into(),
        format!("SELECT node_id FROM fractality.apply_consciousness_decay(0.5, 0.1, '{ub}')"),
        format!("SELECT fractality.pulse('{br}', 0.5)"),
        format!("SELECT fractality.crystallize_consensus('{br}', 0.5, 3)"),
    ];
    // every partition of the streams, read directly (granted by ON ALL TABLES)
    let mut reads = reads;
    for r in admin
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'fractality.consciousness_streams'::regclass",
            &[],
        )
        .unwrap()
    {
        let part: String = r.get(0);
        reads.push(format!("SELECT node_id, user_id FROM fractality.{part}"));
    }
    let without_a = none_of_bs(
        &mut a,
        &reads,
        &b_ids,
        ub,
        &[ga.root, ga.child, ga.leaf, ua],
    );
    // A holds no consensus, and its points lie in the default partition and this month's
    let empty_for_a = |sql: &str| {
        sql.ends_with("consensus_links")
            || sql.contains("consensus_tree")
            || (sql.contains("FROM fractality.consciousness_streams_")
                && !sql.ends_with("_default"))
    };
    for sql in &without_a {
        assert!(
            names_b(sql, &b_ids, ub) || empty_for_a(sql),
            "A's own rows missing from: {sql}"
        );
    }
    assert!(without_a.len() < reads.len() / 2, "{without_a:?}");
    // the hourly view has no ids: B's keys and labels are the same as A's, so count A's points
    let points: i64 = a
        .query_one(
            "SELECT coalesce(sum(points), 0)::bigint FROM fractality.consciousness_evolution",
            &[],
        )
        .unwrap()
        .get(0);
    let own: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.consciousness_streams WHERE time > now() - interval '24 hours'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(points, own);
    let minds: i64 = a
        .query_one(
            "SELECT coalesce(max(active_minds), 0) FROM fractality.consciousness_evolution",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        minds, 1,
        "consciousness_evolution counts only the caller's mind"
    );
    // materialize_decay writes A's rows only (B's atp_at stays: the digest below)
    a.batch_execute("SELECT fractality.materialize_decay(1)")
        .unwrap();

    // ---- writes: by key they land in A's graph, by id or in B's name they are refused ---------
    let writes: Vec<(String, &[&str])> = vec![
        (
            format!("SELECT fractality.upsert_node_for('{ub}', 'root', 'hijacked')"),
            &["42501"],
        ),
        (
            format!("SELECT fractality.upsert_node_for('{ub}', 'planted', 'planted')"),
            &["42501"],
        ),
        ("SELECT fractality.upsert_node('root', 'A again')".into(), &[]),
        // remember lands in A's memory (B's near-duplicate root is not A's to reinforce)
        (
            format!("SELECT * FROM fractality.remember(NULL, 'B root secret', '{}'::vector)", vector_text(0, 0, 0.05)),
            &[],
        ),
        // and so do both forms of remember_many
        (
            format!(
                "SELECT * FROM fractality.remember_many(jsonb_build_array(jsonb_build_object(
                        'content', 'B root secret, told in a batch', 'embedding', '{}'::vector::real[])))",
                vector_text(0, 0, 0.05)
            ),
            &[],
        ),
        (
            format!(
                "SELECT * FROM fractality.remember_many(ARRAY[NULL], ARRAY['B root secret, told in arrays'],
                                                        ARRAY['{}'::vector])",
                vector_text(0, 0, 0.05)
            ),
            &[],
        ),
        (
            "SELECT fractality.link('root', 'leaf', 'cross', 0.5)".into(),
            &[],
        ),
        ("SELECT fractality.unlink('root', 'child')".into(), &[]),
        ("SELECT fractality.link('root', 'child')".into(), &[]),
        (
            format!(
                "SELECT fractality.freeze(jsonb_build_object('id', '{br}'::uuid, 'user_id', '{ub}'::uuid,
                        'node_key', 'root', 'label', 'frozen by A', 'atp', 0.2,
                        'edges', jsonb_build_object('outgoing', jsonb_build_array(
                            jsonb_build_object('to_node', '{bl}'::uuid, 'to_key', 'leaf', 'type', 'freeze', 'weight', 0.3)))))"
            ),
            &[],
        ),
        (format!("SELECT fractality.pulse('{bc}', -1)"), &["P0002"]),
        (
            format!("UPDATE fractality.nodes SET label = 'x' WHERE user_id = '{ub}'"),
            &[],
        ),
        (
            format!("DELETE FROM fractality.edges WHERE user_id = '{ub}'"),
            &[],
        ),
        (
            format!("DELETE FROM fractality.consciousness_streams WHERE node_id = '{br}'"),
            &[],
        ),
        (
            format!("DELETE FROM fractality.consciousness_archive WHERE user_id = '{ub}'"),
            &[],
        ),
        (
            format!("UPDATE fractality.node_embeddings SET model_version = 'x' WHERE node_id = '{bc}'"),
            &[],
        ),
        (
            format!("INSERT INTO fractality.nodes (user_id, node_key) VALUES ('{ub}', 'planted')"),
            &["42501"],
        ),
        (
            format!("INSERT INTO fractality.edges (user_id, from_node, to_node) VALUES ('{ub}', '{br}', '{bl}')"),
            &["42501"],
        ),
        (
            format!("INSERT INTO fractality.edges (from_node, to_node) VALUES ('{ar}', '{bl}')"),
            &["23503"],
        ),
        (
            format!("INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level) VALUES (now(), '{br}', '{ub}', 1)"),
            &["42501"],
        ),
        (
            format!("INSERT INTO fractality.consciousness_streams (time, node_id, atp_level) VALUES (now(), '{br}', 1)"),
            &["23503"],
        ),
        (
            format!("INSERT INTO fractality.node_embeddings (node_id, user_id, embedding) VALUES ('{br}', '{ub}', array_fill(0.1, ARRAY[384])::vector)"),
            &["42501"],
        ),
        (
            format!("UPDATE fractality.nodes SET user_id = '{ub}' WHERE node_key = 'leaf'"),
            &["42501"],
        ),
        (
            format!("INSERT INTO fractality.node_text (user_id, node_id, search) VALUES ('{ub}', '{br}', 'planted')"),
            &["42501"],
        ),
        (
            format!("UPDATE fractality.node_text SET search = 'rewritten' WHERE node_id = '{bc}'"),
            &[],
        ),
        (
            format!("DELETE FROM fractality.node_text WHERE user_id = '{ub}'"),
            &[],
        ),
        // A's staged embeddings (none) indexed, none of B's
        ("SELECT fractality.index_staged_embeddings()".into(), &[]),
        // last: forget by key forgets A's own leaf, nothing of B's
        ("SELECT fractality.forget('leaf')".into(), &[]),
    ];
    ends_as(&mut a, &writes);
    let after = tenant_snapshot(&mut admin, ub);
    assert_eq!(before, after, "tenant B's rows changed while A worked");
    // A's own graph did change: the writes by key landed there
    let a_label: String = admin
        .query_one(
            "SELECT label FROM fractality.nodes WHERE user_id = $1 AND node_key = 'root'",
            &[&ua],
        )
        .unwrap()
        .get(0);
    assert_eq!(a_label, "frozen by A");

    // ---- no user id: nothing visible, nothing writable ----------------------------------------
    let mut none = common::app("fractality_iso_none", None);
    for t in TENANT_TABLES.iter().chain(&[
        "node_energy",
        "active_consciousness",
        "consciousness_evolution",
    ]) {
        let n: i64 = none
            .query_one(&format!("SELECT count(*) FROM fractality.{t}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{t} without a user id");
    }
    let anonymous: Vec<(String, &[&str])> = vec![
        ("SELECT fractality.upsert_node('x')".into(), &["22004"]),
        ("SELECT fractality.link('root', 'child')".into(), &["22004"]),
        (
            "SELECT fractality.unlink('root', 'child')".into(),
            &["22004"],
        ),
        (
            "SELECT * FROM fractality.children('root')".into(),
            &["22004", "P0002"],
        ),
        (
            "SELECT * FROM fractality.parents('child')".into(),
            &["22004", "P0002"],
        ),
        ("SELECT fractality.thaw('root')".into(), &["22004", "P0002"]),
        (
            "SELECT fractality.freeze('{\"node_key\": \"root\"}')".into(),
            &["22004"],
        ),
        (
            format!("SELECT * FROM fractality.traverse('{ar}')"),
            &["P0002"],
        ),
        (
            format!(
                "SELECT * FROM fractality.consciousness_path('{ar}', '{}')",
                ga.leaf
            ),
            &["P0002"],
        ),
        (format!("SELECT fractality.pulse('{ar}', 0.1)"), &["P0002"]),
        (
            format!(
                "SELECT fractality.calculate_resonance('{ar}', '{}')",
                ga.child
            ),
            &["P0002"],
        ),
        (
            format!("SELECT * FROM fractality.find_resonant('{ar}'::uuid)"),
            &["P0002"],
        ),
        (
            "SELECT * FROM fractality.find_resonant('root')".into(),
            &["22004", "P0002"],
        ),
        (
            format!("SELECT fractality.crystallize_consensus('{ar}', 0.5, 3)"),
            &["P0002"],
        ),
    ];
    for (sql, states) in &anonymous {
        match common_try(&mut none, sql) {
            // only an empty answer may succeed
            Ok(()) => {
                let rows = uuids(&mut none, sql).unwrap();
                assert!(rows.is_empty(), "{sql} without a user id returned {rows:?}");
            }
            Err(s) => assert!(
                states.contains(&s.as_str()),
                "{sql}: {s}, expected {states:?}"
            ),
        }
    }
    // the consensus nodes themselves (depth 0) are the shared aggregate; no tenant node below
    let sql = "SELECT node_id FROM fractality.consensus_tree(-1, 5) WHERE depth > 0";
    assert!(uuids(&mut none, sql).unwrap().is_empty(), "{sql}");
    // the calls that read every row the caller sees when it names no tenant: an application
    // role without one is told so (before, an empty answer hid the missing setting)
    for sql in [
        "SELECT * FROM fractality.search_nodes('secret')",
        "SELECT node_id FROM fractality.apply_consciousness_decay(0.5, 0.1, NULL)",
    ] {
        assert_eq!(
            common_try(&mut none, sql),
            Err("22004".to_string()),
            "{sql} without a user id"
        );
    }
    assert_eq!(
        none.query_one("SELECT fractality.materialize_decay()", &[])
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    assert_eq!(before, tenant_snapshot(&mut admin, ub));
}

/// The same isolation for a second model: tenant A, naming the model in every call, neither
/// sees nor changes tenant B's embeddings of it, nor reaches B's own graph of it
/// (build_tenant_graphs), though B's embeddings are the nearest there are to A's queries.
#[test]
fn a_second_model_is_as_isolated_as_the_default() {
    const M: &str = "iso_m2";
    let mut admin = common::db();
    admin
        .batch_execute(&format!("SELECT fractality.register_model('{M}', 4)"))
        .unwrap();
    let (ua, ub) = (common::tenant(), common::tenant());
    let mut a = common::app("fractality_iso_m2_a", Some(ua));
    let mut b = common::app("fractality_iso_m2_b", Some(ub));
    // the same keys in both tenants; B's vectors are A's query exactly, A's a little off it
    let node = |c: &mut Client, key: &str, v: &str| -> Uuid {
        c.query_one(
            "SELECT fractality.upsert_node($1, $1 || ' secret', '{}', 0.9, $2::text::vector, NULL, $3)",
            &[&key, &v, &M],
        )
        .unwrap()
        .get(0)
    };
    let b_ids: Vec<Uuid> = ["m2-root", "m2-near", "m2-far"]
        .iter()
        .zip(["[1,0,0,0]", "[0.99,0.01,0,0]", "[0.9,0.1,0,0]"])
        .map(|(k, v)| node(&mut b, k, v))
        .collect();
    b.batch_execute("SELECT fractality.link('m2-root', 'm2-near', 'child', 0.9)")
        .unwrap();
    let a_ids: Vec<Uuid> = ["m2-root", "m2-near"]
        .iter()
        .zip(["[0.8,0.2,0,0]", "[0.7,0.3,0,0]"])
        .map(|(k, v)| node(&mut a, k, v))
        .collect();
    // B's graph of its own for the model: the search that could reach past the tenant filter
    let built: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.build_tenant_graphs($1, 3) WHERE action = 'built'",
            &[&M],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        built, 1,
        "B alone holds 3 embeddings of {M}: its graph is built"
    );
    let before = tenant_snapshot(&mut admin, ub);
    assert_eq!(before["node_embeddings"].0, 3);

    let (ar, br, bn) = (a_ids[0], b_ids[0], b_ids[1]);
    let q = "'[1,0,0,0]'::vector";
    let reads = [
        format!("SELECT * FROM fractality.find_resonant('m2-root', -1.0, 1000, '{M}')"),
        format!("SELECT * FROM fractality.find_resonant('{ar}'::uuid, -1.0, 1000, '{M}')"),
        format!("SELECT * FROM fractality.find_resonant('{br}'::uuid, -1.0, 1000, '{M}')"),
        format!("SELECT fractality.calculate_resonance('{ar}', '{br}', '{M}')"),
        format!("SELECT fractality.calculate_resonance('{br}', '{bn}', '{M}')"),
        format!("SELECT * FROM fractality.resonance_with('{ar}', ARRAY['{bn}'::uuid], '{M}')"),
        format!("SELECT * FROM fractality.resonance_with('{br}', ARRAY['{bn}'::uuid], '{M}')"),
        format!("SELECT node_id FROM fractality.recall({q}, 1000, model => '{M}')"),
        format!("SELECT node_id FROM fractality.recall({q}, 1000, 'secret', 'm2-root', '{M}')"),
        format!(
            "SELECT node_id FROM fractality.recall_explain({q}, 1000, 'secret', model => '{M}')"
        ),
        format!("SELECT fractality.thaw('m2-root', 10, '{M}')"),
        "SELECT node_id, user_id FROM fractality.node_embeddings".into(),
    ];
    let without_a = none_of_bs(&mut a, &reads, &b_ids, ub, &a_ids);
    for sql in &without_a {
        assert!(names_b(sql, &b_ids, ub), "A's own rows missing from: {sql}");
    }
    // A's own search finds A's own rows through the model (not an empty answer by accident)
    let own = uuids(
        &mut a,
        &format!("SELECT node_id FROM fractality.find_resonant('m2-root', -1.0, 1000, '{M}')"),
    )
    .unwrap();
    assert_eq!(own, vec![a_ids[1]]);
    let recalled = uuids(
        &mut a,
        &format!("SELECT node_id FROM fractality.recall({q}, 1000, model => '{M}')"),
    )
    .unwrap();
    assert_eq!(recalled.len(), 2, "A recalls its two memories of {M}");

    // writes naming the model land in A's tenant or are refused
    let writes: Vec<(String, &[&str])> = vec![
        (
            format!("SELECT fractality.upsert_node_for('{ub}', 'm2-root', 'hijacked', NULL, NULL, '[0,1,0,0]'::vector, NULL, '{M}')"),
            &["42501"],
        ),
        (
            format!("SELECT fractality.upsert_node('m2-root', NULL, NULL, NULL, '[0,0,1,0]'::vector, NULL, '{M}')"),
            &[],
        ),
        (
            format!("SELECT * FROM fractality.remember(NULL, 'm2-root secret', {q}, '{{}}', '{M}')"),
            &[],
        ),
        (
            format!(
                "SELECT * FROM fractality.remember_many(ARRAY[NULL]::text[], ARRAY['B secret, in arrays'], ARRAY[{q}], model => '{M}')"
            ),
            &[],
        ),
        (
            format!(
                "SELECT fractality.freeze(jsonb_build_object('id', '{br}'::uuid, 'user_id', '{ub}'::uuid,
                        'node_key', 'm2-root', 'label', 'frozen by A',
                        'embeddings', jsonb_build_object('{M}', ARRAY[0,0,0,1])))"
            ),
            &[],
        ),
        (
            format!("SELECT * FROM fractality.recall({q}, 1000, model => '{M}', reinforce => 0.5)"),
            &[],
        ),
        (
            format!("UPDATE fractality.node_embeddings SET embedding = '[0,1,0,0]' WHERE user_id = '{ub}' AND model = '{M}'"),
            &[],
        ),
        (
            format!("DELETE FROM fractality.node_embeddings WHERE node_id = '{bn}'"),
            &[],
        ),
        (
            format!("INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding) VALUES ('{br}', '{ub}', '{M}', '[0,1,0,0]')"),
            &["42501"],
        ),
        ("SELECT fractality.index_staged_embeddings()".into(), &[]),
    ];
    ends_as(&mut a, &writes);
    assert_eq!(
        before,
        tenant_snapshot(&mut admin, ub),
        "tenant B's rows changed while A worked with {M}"
    );
    // B still finds its own neighbours through its graph
    let b_found = uuids(
        &mut b,
        &format!("SELECT node_id FROM fractality.find_resonant('m2-root', 0.5, 10, '{M}')"),
    )
    .unwrap();
    assert_eq!(
        b_found.len(),
        2,
        "B's search of {M} finds its two other nodes"
    );
    assert!(b_found.iter().all(|id| b_ids.contains(id)));
}

/// Runs each write as `c`: it succeeds where no SQLSTATE is given, else fails with one of them.
fn ends_as(c: &mut Client, writes: &[(String, &[&str])]) {
    for (sql, states) in writes {
        match common_try(c, sql) {
            Ok(()) => assert!(states.is_empty(), "{sql} succeeded, expected {states:?}"),
            Err(s) => assert!(
                states.contains(&s.as_str()),
                "{sql}: {s}, expected {states:?}"
            ),
        }
    }
}

fn common_try(c: &mut Client, sql: &str) -> Result<(), String> {
    reliability::try_sql(c, sql)
}

/// Consensus sees across tenants (SECURITY DEFINER) but exposes only aggregates: no tenant's
/// label or metadata reaches the others, the links stay per tenant, and a tenant cannot
/// write consensus nodes. A tenant that puts look-alike functions, operators and tables first in
/// its search_path does not change what the function reads.
#[test]
fn consensus_exposes_only_aggregates_and_resists_search_path_hijack() {
    let mut admin = common::db();
    let (ua, ub, uc) = (common::tenant(), common::tenant(), common::tenant());
    let mut ids = Vec::new();
    // B holds three nodes with one secret label and key: a majority of the nodes, not of the minds
    for (i, (u, key, label, secret)) in [
        (ua, "hj-a", "alpha thought", "a-only"),
        (ub, "hj-b1", "beta secret plan", "b-only"),
        (ub, "hj-b2", "beta secret plan", "b-only"),
        (ub, "hj-b3", "beta secret plan", "b-only"),
        (uc, "hj-c", "gamma thought", "c-only"),
    ]
    .iter()
    .enumerate()
    {
        let id: Uuid = admin
            .query_one(
                "SELECT fractality.upsert_node_for($1, $2, $3, $4, 0.8, $5::text::vector)",
                &[
                    u,
                    key,
                    label,
                    &serde_json::json!({"secret": secret, "theme": "hijack"}),
                    &vector_text(1, 9 + i, 0.02),
                ],
            )
            .unwrap()
            .get(0);
        ids.push(id);
    }
    let role = "fractality_iso_hijacker";
    let mut a = common::app(role, Some(ua));
    let db: String = admin
        .query_one("SELECT current_database()::text", &[])
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!("GRANT CREATE ON DATABASE {db} TO {role}"))
        .unwrap();
    let (bid, aid) = (ids[1], ids[0]);
    a.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS evil CASCADE;
         CREATE SCHEMA evil;
         CREATE TABLE evil.calls (what text);
         CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE sql
             AS $$ INSERT INTO evil.calls VALUES ('current_setting'); SELECT '{ub}'::text $$;
         CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE sql
             AS $$ INSERT INTO evil.calls VALUES ('current_setting'); SELECT 'on'::text $$;
         CREATE FUNCTION evil.current_user_id() RETURNS uuid LANGUAGE sql
             AS $$ INSERT INTO evil.calls VALUES ('current_user_id'); SELECT '{ub}'::uuid $$;
         CREATE FUNCTION evil.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE sql
             AS $$ INSERT INTO evil.calls VALUES ('='); SELECT true $$;
         CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);
         CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql
             AS $$ INSERT INTO evil.calls VALUES ('unnest'); SELECT NULL::anyelement WHERE false $$;
         CREATE TABLE evil.nodes AS SELECT * FROM fractality.nodes WHERE false;
         CREATE TABLE evil.node_embeddings AS SELECT * FROM fractality.node_embeddings WHERE false;
         CREATE TABLE evil.consensus_links AS SELECT * FROM fractality.consensus_links WHERE false;
         CREATE TABLE evil.pg_roles (rolname name, rolsuper boolean, rolbypassrls boolean);
         INSERT INTO evil.pg_roles VALUES ('{role}', true, true);
         CREATE TEMP TABLE nodes (id uuid);
         SET search_path = evil, pg_temp, pg_catalog, public, fractality;"
    ))
    .unwrap();
    // the hijack is live for A's own queries ...
    let own_eq: bool = a.query_one("SELECT '{00000000-0000-0000-0000-000000000001}'::uuid = '{00000000-0000-0000-0000-000000000002}'::uuid", &[]).unwrap().get(0);
    assert!(
        own_eq,
        "the look-alike operator is first in A's search_path"
    );
    a.batch_execute("TRUNCATE evil.calls").unwrap();
    // ... but not inside crystallize_consensus: B's node stays invisible to A
    let e = a
        .execute(
            "SELECT fractality.crystallize_consensus($1, 0.9, 3)",
            &[&bid],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "P0002", "{e}");
    // and A's own node forms the consensus from the real tables
    let cid: Option<Uuid> = a
        .query_one(
            "SELECT fractality.crystallize_consensus($1, 0.9, 3)",
            &[&aid],
        )
        .unwrap()
        .get(0);
    let cid = cid.expect("three minds hold the theme");
    let calls: i64 = a
        .query_one("SELECT count(*) FROM evil.calls", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        calls, 0,
        "a look-alike object ran inside the SECURITY DEFINER function"
    );
    a.batch_execute("RESET search_path").unwrap();

    let (contributors, label, meta): (i32, Option<String>, serde_json::Value) = {
        let r = a
            .query_one(
                "SELECT contributor_count, label, metadata FROM fractality.consensus_nodes WHERE id = $1",
                &[&cid],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(contributors, 3);
    // no mind's label or metadata, not even the caller's: a consensus publishes counts and coarse
    // scores only
    assert_eq!(meta, serde_json::json!({}));
    assert_eq!(label, None, "one mind's label became the consensus label");
    // links: each tenant its own
    let links: Vec<Uuid> = a
        .query(
            "SELECT node_id FROM fractality.consensus_links WHERE consensus_id = $1",
            &[&cid],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(links, vec![aid]);
    let mut b = common::app("fractality_iso_b", Some(ub));
    let b_links: i64 = b
        .query_one(
            "SELECT count(*) FROM fractality.consensus_links WHERE consensus_id = $1",
            &[&cid],
        )
        .unwrap()
        .get(0);
    assert_eq!(b_links, 3);
    // nor the seed's id: every role reads consensus_nodes, and its key named A's node (B read it)
    let (key, digest): (String, String) = {
        let r = b
            .query_one(
                "SELECT node_key, 'consensus-' || md5($2::uuid::text) FROM fractality.consensus_nodes
                  WHERE id = $1",
                &[&cid, &aid],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(!key.contains(&aid.to_string()), "{key} names A's node");
    assert_eq!(key, digest);
    // a tenant cannot rewrite or delete the collective layer (it would cascade to others' links)
    for (sql, state) in [
        ("UPDATE fractality.consensus_nodes SET label = 'mine'", None),
        ("DELETE FROM fractality.consensus_nodes", None),
        (
            "INSERT INTO fractality.consensus_nodes (node_key) VALUES ('forged')",
            Some("42501"),
        ),
        // nor its own links: they are what the curator's next run counts and unlinks by
        (
            "UPDATE fractality.consensus_links SET similarity = 0.125",
            None,
        ),
        ("DELETE FROM fractality.consensus_links", None),
    ] {
        match reliability::try_sql(&mut a, sql) {
            Ok(()) => assert!(state.is_none(), "{sql}"),
            Err(s) => assert_eq!(Some(s.as_str()), state, "{sql}"),
        }
    }
    let still: (i64, i64) = {
        let r = admin
            .query_one(
                "SELECT (SELECT count(*) FROM fractality.consensus_nodes WHERE id = $1 AND label IS DISTINCT FROM 'mine'),
                        (SELECT count(*) FROM fractality.consensus_links WHERE consensus_id = $1)",
                &[&cid],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(still, (1, 5));
    let forged = reliability::try_sql(
        &mut a,
        &format!(
            "INSERT INTO fractality.consensus_links (consensus_id, node_id, user_id, similarity)
             VALUES ('{cid}', '{aid}', '{ua}', 0.125) ON CONFLICT DO NOTHING"
        ),
    );
    assert_eq!(
        forged,
        Err("42501".to_string()),
        "a tenant links a node to a consensus"
    );
    let kept: f64 = admin
        .query_one(
            "SELECT similarity FROM fractality.consensus_links WHERE consensus_id = $1 AND node_id = $2",
            &[&cid, &aid],
        )
        .unwrap()
        .get(0);
    assert!(kept != 0.125, "A's link rewritten: {kept}");
    admin
        .batch_execute(&format!(
            "DROP SCHEMA evil CASCADE; REVOKE CREATE ON DATABASE {db} FROM {role}"
        ))
        .unwrap();
}

/// The retention policies are the owner's: run_maintenance applies them to every tenant's rows
/// as the owner. An application role granted every table (as the README's GRANT does) can
/// neither read nor write them (before: a tenant could insert a policy dropping every tenant's
/// stream points at the next maintenance run).
#[test]
fn a_tenant_cannot_set_the_retention_policies() {
    let mut a = common::app("fractality_iso_a", Some(common::tenant()));
    let forged = reliability::try_sql(
        &mut a,
        "INSERT INTO fractality.retention_policies (relation, keep, action)
         VALUES ('fractality.consciousness_streams', '1 microsecond', 'drop')",
    );
    assert_eq!(forged, Err("42501".to_string()));
    let mut admin = common::db();
    admin
        .batch_execute(
            "INSERT INTO fractality.retention_policies (relation, keep, action)
             VALUES ('fractality.experience_events', '3650 days', 'archive')
             ON CONFLICT (relation) DO NOTHING",
        )
        .unwrap();
    for sql in [
        "UPDATE fractality.retention_policies SET keep = '1 microsecond'",
        "DELETE FROM fractality.retention_policies",
    ] {
        reliability::try_sql(&mut a, sql).unwrap();
    }
    let seen: i64 = a
        .query_one("SELECT count(*) FROM fractality.retention_policies", &[])
        .unwrap()
        .get(0);
    let kept: String = admin
        .query_one(
            "SELECT keep::text FROM fractality.retention_policies WHERE relation = 'fractality.experience_events'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    admin
        .batch_execute("DELETE FROM fractality.retention_policies WHERE relation = 'fractality.experience_events'::regclass")
        .unwrap();
    assert_eq!((seen, kept.as_str()), (0, "3650 days"));
}

/// The tenant a session acts as is its setting `fractality.user_id`, whatever functions its
/// search_path puts before pg_catalog's: `current_user_id()`, which every policy inlines, names
/// pg_catalog's `current_setting` (a review found it called whatever `current_setting` the caller's
/// path found first).
#[test]
fn the_tenant_is_the_setting_whatever_the_callers_search_path() {
    let db = "fractality_tenant_path";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute(
        "CREATE SCHEMA lookalike;
         CREATE FUNCTION lookalike.current_setting(text, boolean) RETURNS text LANGUAGE sql
             AS $$ SELECT 'bbbbbbbb-0000-0000-0000-000000000000' $$;
         SET search_path = lookalike, pg_catalog, public;
         SET fractality.user_id = 'aaaaaaaa-0000-0000-0000-000000000000';",
    )
    .unwrap();
    let who: String = c
        .query_one("SELECT fractality.current_user_id()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(who, "aaaaaaaa-0000-0000-0000-000000000000");
    drop(c);
    common::drop_db(db);
}

/// Another tenant cannot hold up a tenant's memory writes: it reads the key the tenant's
/// `remember` held from pg_locks (as any role may) and holds every advisory key it saw there at
/// session level, and holds the key the tenant's writes took before by its formula; the
/// tenant's next remember, remember_many and forget go on (before: they waited for as long as the
/// other session lived). Nor can it insert the tenant's key into fractality.locks, where the
/// lock is now taken (row-level security), or see it there.
#[test]
fn another_tenant_cannot_hold_up_a_tenants_memory_writes() {
    let (ta, tb) = (common::tenant(), common::tenant());
    let mut a = common::app("fractality_iso_lock_a", Some(ta));
    let mut b = common::app("fractality_iso_lock_b", Some(tb));
    let mut admin = common::db();
    // B writes in a transaction it keeps open; A looks at the locks meanwhile
    b.batch_execute("BEGIN").unwrap();
    b.query_one(
        &format!(
            "SELECT created FROM fractality.remember('b-first', 'b first', '{}')",
            vector_text(1, 0, 0.0)
        ),
        &[],
    )
    .unwrap();
    let seen: Vec<(u32, u32)> = a
        .query(
            "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, i64>(1) as u32))
        .collect();
    b.batch_execute("COMMIT").unwrap();
    for (classid, objid) in &seen {
        a.execute(
            "SELECT pg_advisory_lock((($1::bigint) << 32) | $2::bigint)",
            &[&i64::from(*classid), &i64::from(*objid)],
        )
        .unwrap();
    }
    a.execute(
        "SELECT pg_advisory_lock(hashtextextended('fractality.remember ' || $1::uuid::text, 0::bigint))",
        &[&tb],
    )
    .unwrap();
    // B's writes do not wait (a lock_timeout turns a wait into an error here)
    b.batch_execute("SET lock_timeout = '5s'").unwrap();
    b.query_one(
        &format!(
            "SELECT created FROM fractality.remember('b-second', 'b second', '{}')",
            vector_text(2, 0, 0.0)
        ),
        &[],
    )
    .unwrap();
    b.query(
        &format!(
            "SELECT * FROM fractality.remember_many(ARRAY['b-third'], ARRAY['b third'], ARRAY['{}'::vector])",
            vector_text(3, 0, 0.0)
        ),
        &[],
    )
    .unwrap();
    let forgotten: bool = b
        .query_one("SELECT fractality.forget('b-first')", &[])
        .unwrap()
        .get(0);
    assert!(forgotten);
    let left: i64 = admin
        .query_one("SELECT count(*) FROM fractality.locks", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no key is kept after the transactions");
    a.batch_execute("SELECT pg_advisory_unlock_all()").unwrap();
    let e = a
        .execute(
            "INSERT INTO fractality.locks VALUES ($1, 'remember')",
            &[&tb],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "42501", "{e}");
}
