//! The data model through a real client: tables, partitions, pgvector values, constraints.

mod common;

use approx::assert_relative_eq;
use pgvector::Vector;

#[test]
fn every_table_and_view_of_the_data_model_is_there() {
    let mut c = common::db();
    let rows = c
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = 'fractality'::regnamespace
                AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
              ORDER BY 1",
            &[],
        )
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for expected in [
        "action_metadata",
        "active_consciousness",
        "adna_policies",
        "configuration_store",
        "consciousness_archive",
        "consciousness_evolution",
        "consciousness_streams",
        "consensus_links",
        "consensus_nodes",
        "database_health",
        "edges",
        "experience_events",
        "learning_metrics",
        "node_embeddings",
        "nodes",
        "retention_policies",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn embeddings_round_trip_as_pgvector_values() {
    let mut c = common::db();
    let user = common::tenant();
    let a: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin()).collect();
    let b: Vec<f32> = (0..384)
        .map(|i| ((i as f32) * 0.37).sin() + 0.1 * ((i as f32) * 1.3).cos())
        .collect();
    let mut ids = Vec::new();
    for (key, v) in [("a", &a), ("b", &b)] {
        let id: uuid::Uuid = c
            .query_one(
                "INSERT INTO fractality.nodes (user_id, node_key) VALUES ($1, $2) RETURNING id",
                &[&user, &key],
            )
            .unwrap()
            .get(0);
        c.execute(
            "INSERT INTO fractality.node_embeddings (node_id, user_id, embedding) VALUES ($1, $2, $3)",
            &[&id, &user, &Vector::from(v.clone())],
        )
        .unwrap();
        ids.push(id);
    }
    let row = c
        .query_one(
            "SELECT ea.embedding, fractality.cosine_similarity(ea.embedding, eb.embedding),
                    1 - (ea.embedding <=> eb.embedding)
               FROM fractality.node_embeddings ea, fractality.node_embeddings eb
              WHERE ea.node_id = $1 AND eb.node_id = $2",
            &[&ids[0], &ids[1]],
        )
        .unwrap();
    let back: Vector = row.get(0);
    assert_eq!(back.as_slice(), a.as_slice());
    let native: f64 = row.get(1);
    let pgvector: f64 = row.get(2);
    let dot: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    assert_relative_eq!(native, dot / (na * nb), epsilon = 1e-9);
    assert_relative_eq!(native, pgvector, epsilon = 1e-5);
    // a returned vector arrives as a pgvector value
    let unit: Vector = c
        .query_one(
            "SELECT fractality.normalize_vector($1)",
            &[&Vector::from(vec![3.0, 4.0])],
        )
        .unwrap()
        .get(0);
    assert_relative_eq!(unit.as_slice(), &[0.6f32, 0.8][..], max_relative = 1e-6);
}

#[test]
fn bad_rows_are_refused_with_their_sqlstate_and_nothing_is_written() {
    let mut c = common::db();
    let user = common::tenant();
    let e = c
        .execute(
            "INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES ($1, 'x', $2)",
            &[&user, &f64::NAN],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "23514", "{e}");
    let e = c
        .execute(
            "INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             VALUES (gen_random_uuid(), $1, array_fill(0.5, ARRAY[384])::vector)",
            &[&user],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "23503", "{e}");
    let e = c
        .query_one(
            "SELECT fractality.cosine_similarity($1, $2)",
            &[
                &Vector::from(vec![1.0, 2.0, 3.0]),
                &Vector::from(vec![1.0, 2.0]),
            ],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "22000", "{e}");
    assert!(e.as_db_error().unwrap().message().contains("3 and 2"));
    // a multi-row insert with one bad row writes none of them
    let e = c
        .execute(
            "INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES ($1, 'ok-1', 0.5), ($1, 'ok-2', 0.5), ($1, 'bad', 2)",
            &[&user],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "23514");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = $1",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn stream_points_are_routed_to_monthly_partitions() {
    let mut c = common::db();
    // this month's and next month's partitions, whenever the test runs (the suite's set-up made
    // them once, and a month may have begun since)
    c.batch_execute("SELECT fractality.ensure_partitions(1)")
        .unwrap();
    let user = common::tenant();
    let id: uuid::Uuid = c
        .query_one(
            "INSERT INTO fractality.nodes (user_id, node_key) VALUES ($1, 'streamer') RETURNING id",
            &[&user],
        )
        .unwrap()
        .get(0);
    c.execute(
        "INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score)
         VALUES (now(), $1, $2, 0.9, 0.5), ((now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC', $1, $2, 0.8, 0.4),
                ('2001-01-01', $1, $2, 0.7, NULL)",
        &[&id, &user],
    )
    .unwrap();
    let rows = c
        .query(
            "SELECT tableoid::regclass::text, atp_level FROM fractality.consciousness_streams
              WHERE node_id = $1 ORDER BY time",
            &[&id],
        )
        .unwrap();
    let parts: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(parts[0], "fractality.consciousness_streams_default");
    assert!(
        parts[1].starts_with("fractality.consciousness_streams_20"),
        "{parts:?}"
    );
    assert!(
        parts[2].starts_with("fractality.consciousness_streams_20"),
        "{parts:?}"
    );
    assert_ne!(
        parts[1], parts[2],
        "this month and next month are separate partitions"
    );
}

/// A session that searched before the extensions were dropped and made again (pgvector's type
/// then has a new OID) searches afterwards as a new session does: its kept plans are keyed by
/// their parameters' types too, not by their text alone.
#[test]
fn a_session_searches_on_after_the_extensions_are_made_again() {
    use postgres::{Client, NoTls};
    let db = "fractality_reinstall";
    let mut other = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    let mut a = Client::connect(&common::url_of(db), NoTls).unwrap();
    let user = common::tenant();
    common::set_tenant(&mut a, user);
    let recall =
        "SELECT count(*) FROM fractality.recall(array_fill(0.5::real, ARRAY[384])::vector, 5)";
    let remember = "SELECT count(*) FROM fractality.remember(NULL, 'the sea is salty', array_fill(0.5::real, ARRAY[384])::vector)";
    a.query_one(remember, &[]).unwrap();
    assert_eq!(a.query_one(recall, &[]).unwrap().get::<_, i64>(0), 1);
    let old: u32 = a
        .query_one("SELECT 'vector'::regtype::oid", &[])
        .unwrap()
        .get(0);
    other
        .batch_execute(
            "DROP EXTENSION fractality CASCADE; DROP EXTENSION vector; CREATE EXTENSION fractality CASCADE",
        )
        .unwrap();
    let new: u32 = a
        .query_one("SELECT 'vector'::regtype::oid", &[])
        .unwrap()
        .get(0);
    assert_ne!(old, new, "pgvector's type was made again");
    a.query_one(remember, &[]).unwrap();
    assert_eq!(a.query_one(recall, &[]).unwrap().get::<_, i64>(0), 1);
    drop(a);
    drop(other);
    common::drop_db(db);
}

/// A database in another encoding than UTF8 is refused by the install (0A000, naming the
/// encoding), before anything is created: Rust strings are UTF-8, and there a word outside ASCII
/// failed each call with an internal error.
#[test]
fn the_install_refuses_a_database_that_is_not_utf8() {
    use postgres::{Client, NoTls};
    for (db, encoding) in [
        ("fractality_latin1", "LATIN1"),
        ("fractality_sql_ascii", "SQL_ASCII"),
    ] {
        common::drop_db(db);
        let mut admin = Client::connect(&common::admin_url(), NoTls).unwrap();
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {db} ENCODING '{encoding}' LOCALE 'C' TEMPLATE template0"
            ))
            .unwrap();
        let mut c = Client::connect(&common::url_of(db), NoTls).unwrap();
        let e = c
            .batch_execute("CREATE EXTENSION fractality CASCADE")
            .unwrap_err();
        assert_eq!(common::sqlstate(&e), "0A000", "{e:?}");
        let message = e.as_db_error().map(|d| d.message()).unwrap_or_default();
        assert!(
            message.contains(&format!("the encoding of database {db} is {encoding}")),
            "{message}"
        );
        let made: i64 = c
            .query_one(
                "SELECT (SELECT count(*) FROM pg_extension WHERE extname IN ('fractality', 'vector', 'btree_gin'))
                      + (SELECT count(*) FROM pg_namespace WHERE nspname = 'fractality')",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(made, 0, "nothing is created in {encoding}");
        drop(c);
        common::drop_db(db);
    }
}

/// A publication of every table (logical replication, or a change-data-capture tool) leaves
/// every call working: PostgreSQL refuses UPDATE and DELETE on a published table without a
/// replica identity, and the event tables, the stream points and the reward inbox have no
/// primary key. They, and every partition maintenance makes later, replicate with the whole row
/// as identity. (Before: forget, a tenant deleting its nodes, refresh_policy_rewards, the
/// archiving and run_maintenance all failed with 55000 once the publication existed.)
#[test]
fn a_publication_of_every_table_leaves_every_call_working() {
    let db = "fractality_published";
    let mut c = common::fresh_db(
        db,
        "CREATE EXTENSION fractality CASCADE;
         SET client_min_messages = error;  -- the warning that wal_level is not logical
         CREATE PUBLICATION everything FOR ALL TABLES;",
    );
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute(common::TWO_LINKED_MEMORIES).unwrap();
    c.batch_execute(
        "SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
             'event_id', 'd0' || lpad(to_hex(g), 30, '0'),
             -- 50 days back, now, and 190 days ahead (the default partitions catch them)
             'timestamp', fractality.epoch_us(now() + (g - 1) * interval '50 days' + (g / 2) * interval '140 days'),
             'episode_id', 1, 'step_number', g, 'event_type', 1, 'flags', 0,
             'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0,
             'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0,
             'action_l1', 0, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
             'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
             'adna_version_hash', 7, 'sequence_number', g))
           FROM generate_series(0, 2) g));",
    )
    .unwrap();
    for call in [
        "SELECT fractality.forget('sky')",
        "SELECT fractality.refresh_policy_rewards()",
        "SELECT fractality.ensure_partitions(9)",
        "SELECT fractality.archive_streams('0 seconds')",
        "SELECT fractality.archive_old_events(30)",
        "SELECT fractality.run_maintenance()",
        "SELECT fractality.materialize_decay()",
        "DELETE FROM fractality.experience_events WHERE step_number = 1",
        "DELETE FROM fractality.nodes",
    ] {
        if let Err(e) = c.batch_execute(call) {
            panic!("{call}: {} {e:?}", common::sqlstate(&e));
        }
    }
    // every table and partition there is now (maintenance made some) has a key or the row
    let unidentified: Vec<String> = c
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ('r', 'p')
                AND c.relreplident <> 'f'
                AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unidentified.is_empty(), "{unidentified:?}");
    let partitions: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'fractality.experience_events'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(partitions > 5, "{partitions}");
    drop(c);
    common::drop_db(db);
}
