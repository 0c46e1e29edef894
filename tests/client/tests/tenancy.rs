//! Tenant isolation through real login roles: each sees and writes only its own rows.

mod common;

use postgres::Client;

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn tenants_see_and_change_only_their_own_rows() {
    let mut admin = common::db();
    let (ua, ub) = (common::tenant(), common::tenant());

    let mut a = common::app("fractality_tenant_a", None);
    let mut b = common::app("fractality_tenant_b", None);
    // no user id: nothing visible, nothing writable
    assert_eq!(count(&mut a, "SELECT count(*) FROM fractality.nodes"), 0);
    let e = a
        .execute(
            "INSERT INTO fractality.nodes (node_key) VALUES ('nobody')",
            &[],
        )
        .unwrap_err();
    // user_id defaults to the unset setting (NULL): the row-level security check refuses it first
    assert_eq!(common::sqlstate(&e), "42501", "{e}");

    a.execute(
        "SELECT set_config('fractality.user_id', $1, false)",
        &[&ua.to_string()],
    )
    .unwrap();
    b.execute(
        "SELECT set_config('fractality.user_id', $1, false)",
        &[&ub.to_string()],
    )
    .unwrap();
    for (c, key) in [(&mut a, "idea"), (&mut b, "idea")] {
        c.batch_execute(&format!(
            "INSERT INTO fractality.nodes (node_key, label) VALUES ('{key}', 'root'), ('{key}-child', 'child');
             INSERT INTO fractality.edges (from_node, to_node)
             SELECT p.id, ch.id FROM fractality.nodes p, fractality.nodes ch
              WHERE p.node_key = '{key}' AND ch.node_key = '{key}-child';
             INSERT INTO fractality.node_embeddings (node_id, embedding)
             SELECT id, array_fill(0.25, ARRAY[384])::vector FROM fractality.nodes;
             INSERT INTO fractality.consciousness_streams (time, node_id, atp_level)
             SELECT now(), id, atp FROM fractality.nodes;"
        ))
        .unwrap();
    }
    for table in [
        "nodes",
        "edges",
        "node_embeddings",
        "consciousness_streams",
        "active_consciousness",
    ] {
        let sql = format!("SELECT count(*) FROM fractality.{table}");
        let expected = if table == "edges" { 1 } else { 2 };
        assert_eq!(count(&mut a, &sql), expected, "tenant a, {table}");
        assert_eq!(count(&mut b, &sql), expected, "tenant b, {table}");
    }
    // the owner sees both tenants
    let both = admin
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = ANY($1)",
            &[&vec![ua, ub]],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(both, 4);

    // a cannot change or delete b's rows: they are invisible to it
    let updated = a
        .execute(
            "UPDATE fractality.nodes SET label = 'hijacked' WHERE user_id = $1",
            &[&ub],
        )
        .unwrap();
    assert_eq!(updated, 0);
    let deleted = a
        .execute("DELETE FROM fractality.edges WHERE user_id = $1", &[&ub])
        .unwrap();
    assert_eq!(deleted, 0);
    // nor write a row in b's name, nor move its own row to b
    let e = a
        .execute(
            "INSERT INTO fractality.nodes (user_id, node_key) VALUES ($1, 'planted')",
            &[&ub],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "42501", "{e}");
    let e = a
        .execute(
            "UPDATE fractality.nodes SET user_id = $1 WHERE node_key = 'idea'",
            &[&ub],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "42501", "{e}");
    let labels: Vec<String> = b
        .query("SELECT label FROM fractality.nodes ORDER BY label", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels, vec!["child", "root"]);
}

#[test]
fn partitions_granted_directly_still_filter_by_tenant() {
    let mut admin = common::db();
    let (ua, ub) = (common::tenant(), common::tenant());
    for u in [ua, ub] {
        admin
            .execute(
                "WITH n AS (INSERT INTO fractality.nodes (user_id, node_key) VALUES ($1, 'p') RETURNING id, user_id)
                 INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
                 SELECT '2001-01-01', id, user_id, 0.5 FROM n",
                &[&u],
            )
            .unwrap();
    }
    let mut a = common::app("fractality_tenant_a", None);
    a.execute(
        "SELECT set_config('fractality.user_id', $1, false)",
        &[&ua.to_string()],
    )
    .unwrap();
    let rows = a
        .query(
            "SELECT user_id FROM fractality.consciousness_streams_default",
            &[],
        )
        .unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.get::<_, uuid::Uuid>(0) == ua));
}
