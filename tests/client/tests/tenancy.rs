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

/// The tenant tables the erase test fills for each tenant before it leaves.
const HELD: [&str; 7] = [
    "nodes",
    "node_embeddings",
    "edges",
    "node_text",
    "consciousness_streams",
    "consciousness_archive",
    "consensus_links",
];

/// A tenant leaves with its nodes: `DELETE FROM fractality.nodes` in the tenant's session (row
/// level security limits it to the tenant) removes every row fractality keeps of it, in every
/// tenant table: embeddings, edges, full text, stream points hot and packed in the cold archive,
/// consensus links. Another tenant's rows stay as they were.
#[test]
fn a_tenant_erases_itself_with_its_nodes() {
    // a database of its own: archiving the streams packs every tenant's points
    let db = "fractality_erase";
    let mut admin = common::fresh_db(
        db,
        "CREATE EXTENSION fractality CASCADE;
         DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fractality_erase_a') THEN CREATE ROLE fractality_erase_a LOGIN; END IF;
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fractality_erase_b') THEN CREATE ROLE fractality_erase_b LOGIN; END IF;
         END $$;
         GRANT USAGE ON SCHEMA fractality TO fractality_erase_a, fractality_erase_b;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_erase_a, fractality_erase_b;",
    );
    let (ua, ub) = (common::tenant(), common::tenant());
    let login = |role: &str, user: uuid::Uuid| {
        let mut c = Client::connect(&common::url_for(db, role), postgres::NoTls).unwrap();
        common::set_tenant(&mut c, user);
        c
    };
    let mut a = login("fractality_erase_a", ua);
    let mut b = login("fractality_erase_b", ub);
    for c in [&mut a, &mut b] {
        c.batch_execute(common::TWO_LINKED_MEMORIES).unwrap();
    }
    // the stream points so far packed into the cold archive, then one more hot point each
    admin
        .batch_execute("SELECT fractality.archive_streams('0 seconds')")
        .unwrap();
    // a consensus holding one node of each tenant (written as its owner writes one: a consensus
    // needs three users, and what is tested here is that the links go with their nodes)
    admin
        .batch_execute(
            "WITH c AS (INSERT INTO fractality.consensus_nodes (node_key, contributor_count)
                        VALUES ('erase-test', 2) RETURNING id)
             INSERT INTO fractality.consensus_links (consensus_id, node_id, user_id, similarity)
             SELECT c.id, n.id, n.user_id, 0.9 FROM c, fractality.nodes n WHERE n.node_key = 'sea'",
        )
        .unwrap();
    for c in [&mut a, &mut b] {
        c.batch_execute("SELECT fractality.pulse(id, 0.1) FROM fractality.nodes")
            .unwrap();
    }
    // every table of the schema that carries a tenant, counted for one tenant
    let tables: Vec<String> = admin
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ('r', 'p')
                AND NOT c.relispartition ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in HELD {
        assert!(
            tables.contains(&format!("fractality.{t}")),
            "{t} in {tables:?}"
        );
    }
    let rows = |admin: &mut Client, user: uuid::Uuid| -> Vec<(String, String)> {
        tables
            .iter()
            .map(|t| {
                let digest: String = admin
                    .query_one(
                        &format!(
                            "SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '')
                               FROM {t} x WHERE x.user_id = $1"
                        ),
                        &[&user],
                    )
                    .unwrap()
                    .get(0);
                (t.clone(), digest)
            })
            .collect()
    };
    let held = rows(&mut admin, ua);
    for t in HELD {
        let (_, d) = held
            .iter()
            .find(|(n, _)| n == &format!("fractality.{t}"))
            .unwrap();
        assert!(
            !d.starts_with("0 "),
            "tenant A holds rows of {t} before: {d}"
        );
    }
    let others = rows(&mut admin, ub);
    let deleted = a.execute("DELETE FROM fractality.nodes", &[]).unwrap();
    assert_eq!(deleted, 2);
    for (t, d) in rows(&mut admin, ua) {
        assert!(
            d.starts_with("0 "),
            "{t} keeps rows of the tenant that left: {d}"
        );
    }
    assert_eq!(
        rows(&mut admin, ub),
        others,
        "the other tenant's rows are unchanged"
    );
    let recalled = count(
        &mut a,
        "SELECT count(*) FROM fractality.recall(array_fill(0.5, ARRAY[384])::vector, 5)",
    );
    assert_eq!(recalled, 0);
    drop((a, b, admin));
    common::drop_db(db);
}

/// A tenant's id written in any form PostgreSQL's `uuid` input takes (canonical, upper case
/// without hyphens, in braces) is the same tenant for every call: the functions read the common
/// forms natively and the others through `current_user_id()` (src/tenant.rs), as the row-level
/// security policy reads them.
#[test]
fn a_tenant_in_any_uuid_form_is_one_tenant() {
    let user = common::tenant();
    let canonical = user.to_string();
    let upper = user.simple().to_string().to_uppercase();
    let braces = format!("{{{canonical}}}");
    let mut c = common::app("fractality_tenant_forms", None);
    let set = |c: &mut Client, form: &str| {
        c.execute(
            "SELECT set_config('fractality.user_id', $1, false)",
            &[&form],
        )
        .unwrap();
    };
    let v = "array_fill(0.2::real, ARRAY[384])::vector";
    set(&mut c, &braces);
    let created: bool = c
        .query_one(
            &format!("SELECT created FROM fractality.remember('forms', 'told in braces', {v})"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(created);
    c.execute("SELECT fractality.upsert_node('other')", &[])
        .unwrap();
    c.execute("SELECT fractality.link('forms', 'other')", &[])
        .unwrap();
    for form in [&upper, &canonical] {
        set(&mut c, form);
        let recalled: Vec<String> = c
            .query(
                &format!("SELECT content FROM fractality.recall({v}, 5)"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(recalled, vec!["told in braces".to_string()], "{form}");
        assert_eq!(
            count(&mut c, "SELECT count(*) FROM fractality.children('forms')"),
            1,
            "{form}"
        );
    }
    // every row under the one tenant, and forgotten from another form
    set(&mut c, &upper);
    let forgotten: bool = c
        .query_one("SELECT fractality.forget('forms')", &[])
        .unwrap()
        .get(0);
    assert!(forgotten);
    let mut admin = common::db();
    let rows: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = $1",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the node 'other' left, under the canonical id");
}
