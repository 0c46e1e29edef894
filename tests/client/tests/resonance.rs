//! Resonance and consensus through real login roles: a tenant's find_resonant never returns
//! another tenant's nodes; consensus forms across tenants (3 users, not 2) and each tenant sees
//! only the aggregate and its own links.

mod common;

use fractality_client::datagen::{clustered, random_unit, rng};
use pgvector::Vector;
use postgres::Client;
use uuid::Uuid;

/// `per` nodes of each tenant around one shared cluster centre, keys `<prefix>-<i>`.
fn load(
    admin: &mut Client,
    tenants: &[Uuid],
    prefix: &str,
    per: usize,
    seed: u64,
) -> Vec<Vec<Uuid>> {
    let mut r = rng(seed, prefix);
    let centre = random_unit(&mut r);
    tenants
        .iter()
        .map(|t| {
            (0..per)
                .map(|i| {
                    let id = Uuid::new_v4();
                    admin
                        .execute(
                            "INSERT INTO fractality.nodes (id, user_id, node_key, label, atp)
                             VALUES ($1, $2, $3, $4, 0.8)",
                            &[&id, t, &format!("{prefix}-{i}"), &format!("{prefix} idea")],
                        )
                        .unwrap();
                    let v = Vector::from(clustered(&centre, 0.2, &mut r));
                    admin
                        .execute(
                            "INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
                             VALUES ($1, $2, $3)",
                            &[&id, t, &v],
                        )
                        .unwrap();
                    id
                })
                .collect()
        })
        .collect()
}

#[test]
fn find_resonant_never_crosses_tenants() {
    let mut admin = common::db();
    let (ua, ub) = (common::tenant(), common::tenant());
    let ids = load(&mut admin, &[ua, ub], "shared-theme", 8, 7);
    let mut a = common::app("fractality_resonance_a", Some(ua));

    // both paths: the exact scan of alice's embeddings (under fractality.exact_scan_limit), and
    // the HNSW scan over every tenant that runs as the table's owner (limit 0), where bob's nodes
    // come up and must be left out
    for limit in ["2000", "0"] {
        a.batch_execute(&format!("SET fractality.exact_scan_limit = {limit}"))
            .unwrap();
        let rows = a
            .query(
                "SELECT node_id, similarity FROM fractality.find_resonant('shared-theme-0', 0.5, 50)",
                &[],
            )
            .unwrap();
        assert_eq!(
            rows.len(),
            7,
            "alice's 7 other nodes, none of bob's 8 (limit {limit})"
        );
        for r in &rows {
            let id: Uuid = r.get(0);
            assert!(ids[0].contains(&id) && id != ids[0][0]);
            assert!(r.get::<_, f64>(1) >= 0.5);
        }
        // the owner's identity does not outlive the call
        let who: String = a
            .query_one("SELECT current_user::text", &[])
            .unwrap()
            .get(0);
        assert_eq!(who, "fractality_resonance_a");
    }
    // bob's node, as alice: P0002 for find_resonant and calculate_resonance alike
    let e = a
        .query(
            "SELECT * FROM fractality.find_resonant($1::uuid)",
            &[&ids[1][0]],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "P0002", "{e}");
    let e = a
        .query_one(
            "SELECT fractality.calculate_resonance($1, $2)",
            &[&ids[0][0], &ids[1][0]],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "P0002", "{e}");
    let ok: Option<f64> = a
        .query_one(
            "SELECT fractality.calculate_resonance($1, $2)",
            &[&ids[0][0], &ids[0][1]],
        )
        .unwrap()
        .get(0);
    assert!(ok.unwrap() > 0.5);
}

#[test]
fn consensus_forms_with_three_users_not_two() {
    let mut admin = common::db();
    let (ua, ub, uc) = (common::tenant(), common::tenant(), common::tenant());
    let ids = load(&mut admin, &[ua, ub], "consensus-theme", 3, 11);
    let mut a = common::app("fractality_resonance_a", Some(ua));
    let none: Option<Uuid> = a
        .query_one("SELECT fractality.crystallize_consensus($1)", &[&ids[0][0]])
        .unwrap()
        .get(0);
    assert_eq!(none, None, "two users are not a consensus");

    // a third user holds the same theme (same seed and prefix: the same centre)
    load(&mut admin, &[uc], "consensus-theme", 3, 11);
    let id: Option<Uuid> = a
        .query_one("SELECT fractality.crystallize_consensus($1)", &[&ids[0][0]])
        .unwrap()
        .get(0);
    let id = id.expect("three users form a consensus");
    let again: Option<Uuid> = a
        .query_one("SELECT fractality.crystallize_consensus($1)", &[&ids[0][0]])
        .unwrap()
        .get(0);
    assert_eq!(again, Some(id), "idempotent");
    let row = a
        .query_one(
            "SELECT contributor_count, resonance_score, label FROM fractality.consensus_nodes WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert!(row.get::<_, f64>(1) > 0.7);
    // no label is published: a label would confirm a guess about another tenant's nodes
    assert_eq!(row.get::<_, Option<String>>(2), None);
    // every link is visible to the owner only: alice sees her own links
    let mine: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.consensus_links WHERE consensus_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    let all: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.consensus_links WHERE consensus_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(mine >= 3 && all > mine, "alice sees {mine} of {all} links");
    let foreign: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.consensus_links WHERE user_id <> $1",
            &[&ua],
        )
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0);
}

/// A consensus is kept per seed and model: the same seed crystallised under a second model
/// makes a consensus of its own, and the first keeps its model, its members and its links.
#[test]
fn a_consensus_per_seed_and_model() {
    let mut admin = common::db();
    admin
        .batch_execute("SELECT fractality.register_model('cons_m2', 4)")
        .unwrap();
    let tenants = [common::tenant(), common::tenant(), common::tenant()];
    let mut seed = None;
    for (i, t) in tenants.iter().enumerate() {
        let id: Uuid = admin
            .query_one(
                "SELECT fractality.upsert_node_for($1, 'both-models', 'an idea', '{}', 0.8,
                        array_fill(0.05::real, ARRAY[384])::vector)",
                &[t],
            )
            .unwrap()
            .get(0);
        admin
            .execute(
                "SELECT fractality.upsert_node_for($1, 'both-models', embedding => $2::text::vector, model => 'cons_m2')",
                &[t, &format!("[1,{},0,0]", 0.01 * i as f64)],
            )
            .unwrap();
        seed.get_or_insert(id);
    }
    let seed = seed.unwrap();
    let crystallize = |c: &mut Client, model: &str| -> Uuid {
        c.query_one(
            "SELECT fractality.crystallize_consensus($1, 0.9, 3, $2)",
            &[&seed, &model],
        )
        .unwrap()
        .get::<_, Option<Uuid>>(0)
        .expect("a consensus of three users")
    };
    let first = crystallize(&mut admin, "default");
    let second = crystallize(&mut admin, "cons_m2");
    assert_ne!(first, second, "a second model's consensus is its own");
    assert_eq!(
        crystallize(&mut admin, "default"),
        first,
        "the first is found again"
    );
    let rows: Vec<(Uuid, String, i64)> = admin
        .query(
            "SELECT c.id, c.model, (SELECT count(*) FROM fractality.consensus_links l WHERE l.consensus_id = c.id)
               FROM fractality.consensus_nodes c WHERE c.id = ANY($1) ORDER BY c.model",
            &[&vec![first, second]],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (second, "cons_m2".to_string(), 3),
            (first, "default".to_string(), 3)
        ]
    );
}

/// A tenant with a small share of a crowded partition, searched through the partition's shared
/// index: pgvector's iterative scan ends once it has visited `hnsw.max_scan_tuples` (100 000)
/// tuples, here all other tenants' and nearer; the search then reads the rest of the tenant
/// exactly, so recall and find_resonant return what the exact path returns. A staged row below
/// recall's bound must not end the search first.
#[test]
fn a_search_the_shared_index_ends_early_reads_the_rest_of_the_tenant() {
    let db = "fractality_crowded";
    let t = common::tenant();
    // one partition: every tenant shares it; 120 000 embeddings of ten other tenants near the
    // query [1, 0, 0, 0], then 200 of tenant t on the far side
    let mut c = common::fresh_db(
        db,
        "SET fractality.embedding_partitions = 1; CREATE EXTENSION fractality CASCADE",
    );
    c.batch_execute(&format!(
        "SELECT fractality.register_model('tiny', 4);
         SELECT count(*) FROM fractality.drop_model_index('tiny');
         INSERT INTO fractality.nodes (user_id, node_key)
         SELECT ('00000000-0000-4000-8000-00000000000' || (g % 10))::uuid, 'o-' || g
           FROM generate_series(1, 120000) g;
         INSERT INTO fractality.nodes (user_id, node_key)
         SELECT '{t}', 't-' || g FROM generate_series(1, 200) g;
         INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding)
         SELECT n.user_id, n.id, 'tiny',
                CASE WHEN n.user_id = '{t}'
                     THEN format('[-1, %s, %s, 0.5]', (g % 17) / 100.0, (g % 13) / 100.0)
                     ELSE format('[1, %s, %s, 0.5]', (g % 97) / 100.0, (g % 89) / 100.0) END::vector
           FROM (SELECT n.*, row_number() OVER () AS g FROM fractality.nodes n) n;
         SELECT count(*) FROM fractality.build_model_index('tiny');
         INSERT INTO fractality.nodes (user_id, node_key) VALUES ('{t}', 't-staged');
         INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding, staged)
         SELECT user_id, id, 'tiny', '[-1, 0, 0, 0]', true
           FROM fractality.nodes WHERE node_key = 't-staged';
         ANALYZE fractality.node_embeddings;
         SELECT set_config('fractality.user_id', '{t}', false);"
    ))
    .unwrap();
    let query = "'[1, 0, 0, 0]'::vector";
    let counts = |c: &mut Client| -> (i64, i64) {
        let recall: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM fractality.recall({query}, 200, model => 'tiny', min_similarity => -0.95)"),
                &[],
            )
            .unwrap()
            .get(0);
        let resonant: i64 = c
            .query_one(
                "SELECT count(*) FROM fractality.nodes n, fractality.find_resonant(n.id, -1, 500, 'tiny')
                  WHERE n.node_key = 't-1' AND n.user_id = fractality.current_user_id()",
                &[],
            )
            .unwrap()
            .get(0);
        (recall, resonant)
    };
    c.batch_execute("SET fractality.exact_scan_limit = 0")
        .unwrap();
    let (recall, resonant) = counts(&mut c);
    c.batch_execute("SET fractality.exact_scan_limit = 1000000")
        .unwrap();
    let exact = counts(&mut c);
    // recall: the 200 indexed rows (similarity about -0.89), not the staged one (-1); find_resonant:
    // every other row of the tenant
    assert_eq!(exact, (200, 200), "the exact path");
    assert_eq!((recall, resonant), exact, "through the shared index");
    drop(c);
    common::drop_db(db);
}

/// A consensus crystallised afresh from user 1's node of model 'tiny' (every consensus deleted
/// first), with `consensus_exact_limit` at `exact_limit`: its id and its number of users.
fn crystallised_tiny(
    c: &mut Client,
    exact_limit: &str,
    threshold: f64,
    min: i32,
) -> (uuid::Uuid, i32) {
    c.batch_execute(&format!(
        "SET fractality.consensus_exact_limit = {exact_limit};
         DELETE FROM fractality.consensus_nodes;"
    ))
    .unwrap();
    let made: Option<uuid::Uuid> = c
        .query_one(
            "SELECT fractality.crystallize_consensus(n.id, $1, $2, 'tiny')
               FROM fractality.nodes n
              WHERE n.user_id = '00000000-0000-4000-8000-000000000001'",
            &[&threshold, &min],
        )
        .unwrap()
        .get(0);
    let made = made.unwrap_or_else(|| panic!("no consensus, consensus_exact_limit {exact_limit}"));
    let count: i32 = c
        .query_one(
            "SELECT contributor_count FROM fractality.consensus_nodes WHERE id = $1",
            &[&made],
        )
        .unwrap()
        .get(0);
    (made, count)
}

/// A consensus can gather as many users as `min_contributors` may ask for (1 000): 700 users
/// holding the same idea crystallise a consensus of 700 at `min_contributors` 600, by the exact
/// path and through the partitions' indexes.
#[test]
fn a_consensus_gathers_every_user_min_contributors_allows() {
    let db = "fractality_consensus_many";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute(
        "SELECT fractality.register_model('tiny', 4);
         INSERT INTO fractality.nodes (user_id, node_key)
         SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'idea'
           FROM generate_series(1, 700) g;
         INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding)
         SELECT n.user_id, n.id, 'tiny',
                format('[1, %s, %s, 0]', (g % 7) / 100.0, (g % 5) / 100.0)::vector
           FROM (SELECT n.*, row_number() OVER (ORDER BY user_id) AS g FROM fractality.nodes n) n;
         ANALYZE fractality.node_embeddings;",
    )
    .unwrap();
    for exact_limit in ["10000", "0"] {
        let (_, count) = crystallised_tiny(&mut c, exact_limit, 0.9, 600);
        assert_eq!(count, 700, "consensus_exact_limit {exact_limit}");
    }
    drop(c);
    common::drop_db(db);
}

/// The dimension check of node_embeddings looks a model up again after a rollback to a
/// savepoint: a model registered inside the rolled-back part is gone for the next statement
/// (22023, unknown), even though the statement runs under the same command id.
#[test]
fn the_dimension_check_forgets_what_a_savepoint_rolled_back() {
    let db = "fractality_savepoint_dims";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute(
        "SET fractality.user_id = 'a0000000-0000-4000-8000-000000000001';
         SELECT fractality.upsert_node('n');",
    )
    .unwrap();
    c.batch_execute("BEGIN").unwrap();
    c.batch_execute("SAVEPOINT s").unwrap();
    c.batch_execute("SELECT fractality.register_model('gone', 3)")
        .unwrap();
    // the check reads the model, then the foreign key to the node fails
    let err = c
        .batch_execute(
            "INSERT INTO fractality.node_embeddings (node_id, model, embedding)
             VALUES (gen_random_uuid(), 'gone', '[1,2,3]')",
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "23503", "{err}");
    c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    let err = c
        .batch_execute(
            "INSERT INTO fractality.node_embeddings (node_id, model, embedding)
             SELECT id, 'gone', '[1,2,3]' FROM fractality.nodes WHERE node_key = 'n'",
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    c.batch_execute("ROLLBACK").unwrap();
    // the statement fails in the check itself (its second row): no command id is used up, so
    // only the subtransaction tells the rolled-back dimension from the one that stands
    c.batch_execute("SELECT fractality.register_model('kept', 3)")
        .unwrap();
    c.batch_execute("BEGIN").unwrap();
    c.batch_execute("SAVEPOINT s").unwrap();
    c.batch_execute("SELECT fractality.register_model('kept', 5)")
        .unwrap();
    let err = c
        .batch_execute(
            "INSERT INTO fractality.node_embeddings (node_id, model, embedding, staged)
             SELECT id, 'kept', v::vector, true
               FROM fractality.nodes, (VALUES ('[1,2,3,4,5]'), ('[1,2,3]')) AS t(v)
              WHERE node_key = 'n'",
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22000", "{err}");
    c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    let err = c
        .batch_execute(
            "INSERT INTO fractality.node_embeddings (node_id, model, embedding, staged)
             SELECT id, 'kept', '[1,2,3,4,5]', true FROM fractality.nodes WHERE node_key = 'n'",
        )
        .unwrap_err();
    assert_eq!(
        common::sqlstate(&err),
        "22000",
        "a 5-d row in a 3-d model: {err}"
    );
    c.batch_execute("ROLLBACK").unwrap();
    drop(c);
    common::drop_db(db);
}

/// A statement that fails after the check has read a model, rolled back to a savepoint, releases
/// the writers' lock: another session may then change the (now empty) model's dimension, and the
/// next statement, under the same command id, checks against the new one (before: against the
/// dimension read by the failed statement, refusing a right embedding and taking a wrong one).
#[test]
fn the_dimension_check_reads_a_change_made_after_a_savepoints_rollback() {
    let db = "fractality_savepoint_dims_other";
    let mut a = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    a.batch_execute(
        "SELECT fractality.register_model('moved', 3);
         SET fractality.user_id = 'a0000000-0000-4000-8000-000000000003';
         SELECT fractality.upsert_node('n1'), fractality.upsert_node('n2');",
    )
    .unwrap();
    a.batch_execute("BEGIN; SAVEPOINT s").unwrap();
    // the check reads 'moved' (3) for both rows; the second is the same key as the first
    let err = a
        .batch_execute(
            "INSERT INTO fractality.node_embeddings (node_id, model, embedding, staged)
             SELECT id, 'moved', '[1,2,3]', true
               FROM fractality.nodes, generate_series(1, 2)
              WHERE node_key = 'n1'",
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "23505", "{err}");
    a.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    let mut b = Client::connect(&common::url_of(db), postgres::NoTls).unwrap();
    b.batch_execute("SELECT fractality.register_model('moved', 5)")
        .unwrap();
    a.batch_execute(
        "INSERT INTO fractality.node_embeddings (node_id, model, embedding, staged)
         SELECT id, 'moved', '[1,2,3,4,5]', true FROM fractality.nodes WHERE node_key = 'n2'",
    )
    .unwrap();
    let err = a
        .batch_execute(
            "INSERT INTO fractality.node_embeddings (node_id, model, embedding, staged)
             SELECT id, 'moved', '[1,2,3]', true FROM fractality.nodes WHERE node_key = 'n1'",
        )
        .unwrap_err();
    assert_eq!(
        common::sqlstate(&err),
        "22000",
        "a 3-d row in a 5-d model: {err}"
    );
    a.batch_execute("ROLLBACK").unwrap();
    drop((a, b));
    common::drop_db(db);
}

/// Two sessions registering the same new model at once (two instances of an application at
/// boot): the second waits for the first and then finds the model registered, as a later call
/// would (before: 23505 on embedding_models' key).
#[test]
fn two_sessions_registering_one_new_model_at_once_both_succeed() {
    let db = "fractality_register_race";
    let mut a = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    let mut admin = Client::connect(&common::url_of(db), postgres::NoTls).unwrap();
    a.batch_execute("BEGIN; SELECT fractality.register_model('booted', 6)")
        .unwrap();
    let url = common::url_of(db);
    let mut b = Client::connect(&url, postgres::NoTls).unwrap();
    let second = std::thread::spawn(move || {
        b.batch_execute("SELECT fractality.register_model('booted', 6)")
            .map_err(|e| format!("{}: {e:?}", common::sqlstate(&e)))
    });
    common::wait_for_a_lock(&mut admin, "%register_model('booted'%");
    a.batch_execute("COMMIT").unwrap();
    second.join().unwrap().expect("the second registration");
    let models: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.embedding_models WHERE model = 'booted' AND dims = 6",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(models, 1);
    drop((a, admin));
    common::drop_db(db);
}

/// A dimension change waits for a session that has read embeddings and then writes one, and
/// neither fails: register_model takes ACCESS EXCLUSIVE on node_embeddings at once. It took
/// SHARE ROW EXCLUSIVE and then, dropping the model's index, ACCESS EXCLUSIVE: the session's
/// write waited for the first and register_model for the session (40P01, found by a review).
#[test]
fn a_dimension_change_beside_a_reader_that_then_writes_is_no_deadlock() {
    let db = "fractality_dims_upgrade";
    let mut a = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    a.batch_execute(
        "SELECT fractality.register_model('resized', 8);
         SET fractality.user_id = 'a0000000-0000-4000-8000-000000000003';
         SET deadlock_timeout = '20ms';",
    )
    .unwrap();
    a.batch_execute("BEGIN").unwrap();
    a.batch_execute(
        "SELECT count(*) FROM fractality.recall((SELECT array_agg(0.1)::vector FROM generate_series(1, 384)), 3)",
    )
    .unwrap();
    let url = common::url_of(db);
    let owner = std::thread::spawn(move || {
        let mut b = Client::connect(&url, postgres::NoTls).unwrap();
        b.batch_execute("SELECT fractality.register_model('resized', 16)")
            .map_err(|e| common::sqlstate(&e))
    });
    let mut admin = Client::connect(&common::url_of(db), postgres::NoTls).unwrap();
    // waiting for the reader's ACCESS SHARE on node_embeddings
    common::wait_for_a_lock(&mut admin, "%register_model('resized', 16)%");
    let wrote = a
        .batch_execute(
            "SELECT fractality.remember('written', 'a memory written while the model changes',
                 (SELECT array_agg(0.1 + i / 1000.0)::vector FROM generate_series(1, 384) i))",
        )
        .map_err(|e| common::sqlstate(&e));
    a.batch_execute("COMMIT").unwrap();
    let changed = owner.join().unwrap();
    assert_eq!((wrote, changed), (Ok(()), Ok(())));
    let dims: i32 = a
        .query_one(
            "SELECT dims FROM fractality.embedding_models WHERE model = 'resized'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dims, 16);
    drop((a, admin));
    common::drop_db(db);
}

/// A model's dimension cannot change under an embedding being written: register_model waits for
/// the writer and then refuses (the model holds an embedding), even for a staged row, which no
/// HNSW index checks (before: the new dimension was taken and the 3-d row stayed in a 5-d model).
#[test]
fn a_dimension_change_waits_for_the_writers_of_the_model() {
    let db = "fractality_dims_race";
    let mut a = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    a.batch_execute(
        "SELECT fractality.register_model('raced', 3);
         SET fractality.user_id = 'a0000000-0000-4000-8000-000000000002';
         SELECT fractality.upsert_node('n');",
    )
    .unwrap();
    a.batch_execute("BEGIN").unwrap();
    a.batch_execute(
        "INSERT INTO fractality.node_embeddings (node_id, model, embedding, staged)
         SELECT id, 'raced', '[1,2,3]', true FROM fractality.nodes WHERE node_key = 'n'",
    )
    .unwrap();
    let url = common::url_of(db);
    let owner = std::thread::spawn(move || {
        let mut b = Client::connect(&url, postgres::NoTls).unwrap();
        b.batch_execute("SELECT fractality.register_model('raced', 5)")
            .err()
            .map(|e| common::sqlstate(&e))
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    a.batch_execute("COMMIT").unwrap();
    let refused = owner.join().unwrap();
    assert_eq!(refused.as_deref(), Some("22023"));
    let dims: i32 = a
        .query_one(
            "SELECT dims FROM fractality.embedding_models WHERE model = 'raced'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dims, 3);
    // a snapshot taken before the lock would miss such a writer: refused
    a.batch_execute("SELECT fractality.register_model('free', 4)")
        .unwrap();
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .unwrap();
    let err = a
        .batch_execute("SELECT fractality.register_model('free', 7)")
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "55000", "{err}");
    a.batch_execute("ROLLBACK").unwrap();
    a.batch_execute("SELECT fractality.register_model('free', 7)")
        .unwrap();
    drop(a);
    common::drop_db(db);
}

/// A node id is unique within its tenant only. Another tenant may hold a node of the same id
/// (here tenant A copies B's, which consensus_nodes' keys show every role): a caller who sees
/// both (the owner) is told so (22023) rather than served whichever came first, and with the
/// session naming B gets B's node, in find_resonant and in crystallize_consensus (which then
/// gathers around B's embedding, not A's).
#[test]
fn a_node_id_another_tenant_copied_is_not_taken_for_the_original() {
    let db = "fractality_copied_id";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    let x = uuid::Uuid::new_v4();
    c.batch_execute(&format!(
        "SELECT fractality.register_model('tiny', 4);
         INSERT INTO fractality.nodes (id, user_id, node_key)
         VALUES ('{x}', 'b0000000-0000-4000-8000-00000000000b', 'original'),
                ('{x}', 'a0000000-0000-4000-8000-00000000000a', 'copy');
         INSERT INTO fractality.nodes (user_id, node_key)
         SELECT ('c0000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'near-b'
           FROM generate_series(1, 4) g;
         INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding)
         SELECT user_id, id, 'tiny',
                CASE WHEN node_key = 'copy' THEN '[-1, 0, 0, 0]' ELSE '[1, 0.01, 0, 0]' END::vector
           FROM fractality.nodes;"
    ))
    .unwrap();
    let err = c
        .query(
            "SELECT * FROM fractality.find_resonant($1::uuid, 0.5, 10, 'tiny')",
            &[&x],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    c.batch_execute("SET fractality.user_id = 'b0000000-0000-4000-8000-00000000000b'")
        .unwrap();
    let near: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.find_resonant($1::uuid, 0.5, 10, 'tiny')",
            &[&x],
        )
        .unwrap()
        .get(0);
    assert_eq!(near, 0, "B holds no other node: its own tenant's, none");
    let made: Option<uuid::Uuid> = c
        .query_one(
            "SELECT fractality.crystallize_consensus($1, 0.9, 3, 'tiny')",
            &[&x],
        )
        .unwrap()
        .get(0);
    let minds: i32 = c
        .query_one(
            "SELECT contributor_count FROM fractality.consensus_nodes WHERE id = $1",
            &[&made.expect("a consensus around B's node")],
        )
        .unwrap()
        .get(0);
    assert_eq!(minds, 5, "B and the four near it, not A");
    drop(c);
    common::drop_db(db);
}

/// Two curators crystallising two seeds of one group at once end with one consensus, as one after
/// the other would: the second waits for the first and then takes its consensus over (before:
/// neither saw the other's uncommitted one, and the group had two).
#[test]
fn two_curators_crystallising_one_group_at_once_make_one_consensus() {
    let mut admin = common::db();
    let tenants = [common::tenant(), common::tenant(), common::tenant()];
    let ids = load(&mut admin, &tenants, "consensus-race", 3, 23);
    let mut first = common::db();
    first.batch_execute("BEGIN").unwrap();
    let one: Option<Uuid> = first
        .query_one("SELECT fractality.crystallize_consensus($1)", &[&ids[0][0]])
        .unwrap()
        .get(0);
    let one = one.expect("three users form a consensus");
    let mut second = common::db();
    let pid: i32 = second
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let seed = ids[1][0];
    let other = std::thread::spawn(move || {
        second
            .query_one("SELECT fractality.crystallize_consensus($1)", &[&seed])
            .map(|r| r.get::<_, Option<Uuid>>(0))
            .map_err(|e| format!("{e:?}"))
    });
    // the second ends, or waits for the first
    common::waits_for_a_lock(&mut admin, pid, &other);
    first.batch_execute("COMMIT").unwrap();
    let two = other.join().unwrap().expect("the second curator");
    assert_eq!(two, Some(one), "the group's one consensus");
    let members: Vec<Uuid> = ids.iter().flatten().copied().collect();
    let consensus: i64 = admin
        .query_one(
            "SELECT count(DISTINCT consensus_id) FROM fractality.consensus_links
              WHERE node_id = ANY($1)",
            &[&members],
        )
        .unwrap()
        .get(0);
    assert_eq!(consensus, 1);
}

/// Crystallises `seed` in a curator's session while another session deletes node `gone` (it
/// deletes first and commits once the curator waits for it): the curator's answer.
fn crystallise_while_deleting(
    admin: &mut Client,
    seed: Uuid,
    gone: Uuid,
) -> Result<Option<Uuid>, String> {
    let mut forgetter = common::db();
    forgetter
        .batch_execute(&format!(
            "BEGIN; DELETE FROM fractality.nodes WHERE id = '{gone}'"
        ))
        .unwrap();
    let mut curator = common::db();
    let pid: i32 = curator
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let made = std::thread::spawn(move || {
        curator
            .query_one("SELECT fractality.crystallize_consensus($1)", &[&seed])
            .map(|r| r.get::<_, Option<Uuid>>(0))
            .map_err(|e| format!("{}: {e:?}", common::sqlstate(&e)))
    });
    // the curator waits for the delete (the member's lock), which then commits
    common::waits_for_a_lock(admin, pid, &made);
    forgetter.batch_execute("COMMIT").unwrap();
    made.join().unwrap()
}

/// A member deleted (forget, run_maintenance) while a curator's consensus is being written is
/// left out of it: of its links, and of its count of users, which it may take below the
/// threshold (no consensus then). Before: its link failed the foreign key (23503) and no
/// consensus was made; and, had it gone through, the deleted member was counted and in the
/// centroid.
#[test]
fn a_member_deleted_while_consensus_links_it_is_left_out() {
    let mut admin = common::db();
    let tenants = [common::tenant(), common::tenant(), common::tenant()];
    let ids = load(&mut admin, &tenants, "consensus-forget", 3, 29);
    let gone = ids[2][1];
    let id = crystallise_while_deleting(&mut admin, ids[0][0], gone)
        .expect("the consensus")
        .expect("three users hold the group");
    let linked: Vec<Uuid> = admin
        .query(
            "SELECT node_id FROM fractality.consensus_links WHERE consensus_id = $1",
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(linked.len(), 8, "every member but the deleted one");
    assert!(!linked.contains(&gone));

    // the third user's only member goes: two users are left, no consensus, nothing written
    let two = [common::tenant(), common::tenant()];
    let ids = load(&mut admin, &two, "consensus-forget-last", 3, 31);
    let third = common::tenant();
    let only = load(&mut admin, &[third], "consensus-forget-last", 1, 31)[0][0];
    let before: i64 = admin
        .query_one("SELECT count(*) FROM fractality.consensus_nodes", &[])
        .unwrap()
        .get(0);
    let none = crystallise_while_deleting(&mut admin, ids[0][0], only).expect("an answer");
    assert_eq!(none, None, "two users are left: no consensus");
    let after: i64 = admin
        .query_one("SELECT count(*) FROM fractality.consensus_nodes", &[])
        .unwrap()
        .get(0);
    assert_eq!(after, before, "nothing written");
}

/// The backend's peak resident memory of its own so far, in kB (Linux; as a superuser): the peak
/// of all its resident pages less the shared buffers and files it has mapped (those only grow as
/// a scan touches them, and are not the call's own).
fn peak_kb(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT sum(CASE k WHEN 'VmHWM' THEN v ELSE -v END)::bigint
           FROM (SELECT m[1] AS k, m[2]::bigint AS v
                   FROM regexp_matches(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                                       '(VmHWM|RssFile|RssShmem):[[:space:]]+([0-9]+)', 'g') m) x",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Embeddings of a model above about 2 000 dimensions are stored toasted (compressed or out of
/// line); a scan that reads them detoasts each into a copy, and every copy was kept until the
/// query ended: `resonance_with` over 8 000 embeddings of 4 000 dimensions held 125 MB. Each copy
/// is freed once read.
#[test]
fn toasted_embeddings_are_freed_as_a_scan_reads_them() {
    let db = "fractality_toasted";
    let user = Uuid::new_v4();
    let mut c = common::fresh_db(
        db,
        &format!(
            "CREATE EXTENSION fractality CASCADE;
             SELECT fractality.register_model('wide', 3000);
             INSERT INTO fractality.nodes (user_id, node_key)
             SELECT '{user}', 'n' || g FROM generate_series(1, 3000) g;
             INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
             SELECT id, user_id, 'wide', array_fill(0.5 + (random() > 2)::int, ARRAY[3000])::vector
               FROM fractality.nodes WHERE user_id = '{user}';"
        ),
    );
    drop(c);
    c = Client::connect(&common::url_of(db), postgres::NoTls).unwrap();
    c.batch_execute(&format!("SET fractality.user_id = '{user}'"))
        .unwrap();
    // the library loaded, and the call's plans made, before the peak is read
    c.batch_execute(
        "SELECT count(*) FROM fractality.resonance_with(
                    (SELECT id FROM fractality.nodes WHERE node_key = 'n1'),
                    ARRAY(SELECT id FROM fractality.nodes WHERE node_key IN ('n2', 'n3')), 'wide')",
    )
    .unwrap();
    let before = peak_kb(&mut c);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.resonance_with(
                        (SELECT id FROM fractality.nodes WHERE node_key = 'n1'),
                        ARRAY(SELECT id FROM fractality.nodes), 'wide')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 3000);
    let grew = peak_kb(&mut c) - before;
    // 3 000 copies of 12 000 bytes are 35 MB
    assert!(grew < 12 * 1024, "the peak grew by {grew} kB");
    drop(c);
    common::drop_db(db);
}

/// A tenant of `near` nodes of energy `near_atp` at a similarity just below 1 to the source
/// (`expired`: past their expiry) and `far` nodes of energy 1 farther off (similarity about
/// 0.958), all of a 3-dimensional model; keys `near-i`, `far-i`, the source `src`.
fn crowd(admin: &mut Client, tenant: Uuid, near: i32, near_atp: f64, expired: bool, far: i32) {
    admin
        .batch_execute("SELECT fractality.register_model('resonance_crowd_3', 3)")
        .unwrap();
    admin
        .execute(
            "WITH n AS (
                 INSERT INTO fractality.nodes (id, user_id, node_key, atp, expires_at)
                 SELECT gen_random_uuid(), $1::uuid, k, a, x
                   FROM (VALUES ('src', 1.0::float8, NULL::timestamptz)) s(k, a, x)
                 UNION ALL
                 SELECT gen_random_uuid(), $1, 'near-' || i, $3::float8,
                        CASE WHEN $4::bool THEN now() - interval '1 minute' END
                   FROM generate_series(1, $2::int) i
                 UNION ALL
                 SELECT gen_random_uuid(), $1, 'far-' || i, 1.0, NULL
                   FROM generate_series(1, $5::int) i
                 RETURNING id, node_key)
             INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
             SELECT id, $1, 'resonance_crowd_3',
                    CASE WHEN node_key = 'src' THEN '[1,0,0]'::vector
                         WHEN node_key LIKE 'near-%'
                         THEN format('[1,%s,0]', split_part(node_key, '-', 2)::int * 0.00001)::vector
                         ELSE format('[1,0.3,%s]', split_part(node_key, '-', 2)::int * 0.00001)::vector
                    END
               FROM n",
            &[&tenant, &near, &near_atp, &expired, &far],
        )
        .unwrap();
}

/// find_resonant ranks every node within the threshold, not the nearest 2 000 of them: a crowd
/// of nearer nodes (2 000 of energy 0, or 2 000 expired memories) used to take every place, and
/// the nodes of the highest resonance, or every live one, were left out.
#[test]
fn find_resonant_ranks_every_node_within_the_threshold_past_a_crowd_of_nearer_ones() {
    let mut admin = common::db();
    for path in ["exact", "index"] {
        for expired in [false, true] {
            let t = common::tenant();
            // energy 0 near nodes (resonance 0.5), or expired ones of full energy
            crowd(
                &mut admin,
                t,
                2000,
                if expired { 1.0 } else { 0.0 },
                expired,
                50,
            );
            let mut a = common::app("fractality_resonance_crowd", Some(t));
            if path == "index" {
                a.batch_execute("SET fractality.exact_scan_limit = 0")
                    .unwrap();
            }
            let rows = a
                .query(
                    "SELECT node_key, similarity, resonance, atp
                       FROM fractality.find_resonant('src', 0.9, 10, 'resonance_crowd_3')",
                    &[],
                )
                .unwrap();
            assert_eq!(rows.len(), 10, "{path}, expired {expired}");
            for r in &rows {
                let key: String = r.get(0);
                assert!(key.starts_with("far-"), "{path}, expired {expired}: {key}");
                // 0.5 x 0.958 + 0.3 x the energy product, no edge: the source and the far nodes
                // were written at once with energy 1, and have decayed alike since
                let (sim, atp): (f64, f64) = (r.get(1), r.get(3));
                approx::assert_abs_diff_eq!(sim, 1.0 / 1.09f64.sqrt(), epsilon = 1e-4);
                approx::assert_abs_diff_eq!(atp, 1.0, epsilon = 1e-3);
                approx::assert_abs_diff_eq!(
                    r.get::<_, f64>(2),
                    0.5 * sim + 0.3 * atp * atp,
                    epsilon = 1e-9
                );
            }
            // and every live node within the threshold when k allows it
            let n: i64 = a
                .query_one(
                    "SELECT count(*) FROM fractality.find_resonant('src', 0.9, 1000, 'resonance_crowd_3')",
                    &[],
                )
                .unwrap()
                .get(0);
            assert_eq!(
                n,
                if expired { 50 } else { 1000 },
                "{path}, expired {expired}"
            );
            admin
                .execute("DELETE FROM fractality.nodes WHERE user_id = $1", &[&t])
                .unwrap();
        }
    }
}

/// A consensus gathers the 1 000 live nodes nearest its seed, by either path: expired memories
/// nearer than them take no place (they used to fill the exact path's 1 000), and the staged
/// rows and the indexes' rows are merged by distance rather than each adding up to 1 000.
#[test]
fn a_consensus_gathers_the_thousand_nearest_live_nodes_by_either_path() {
    let db = "fractality_consensus_nearest";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    // 1 600 users of one idea at distances growing with g; every third of the first 900 expired,
    // every other of g in 601..1600 staged (as remember_many leaves them)
    c.batch_execute(
        "SELECT fractality.register_model('tiny', 4);
         INSERT INTO fractality.nodes (user_id, node_key, expires_at)
         SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'idea',
                CASE WHEN g <= 900 AND g % 3 = 0 THEN now() - interval '1 minute' END
           FROM generate_series(1, 1600) g;
         INSERT INTO fractality.node_embeddings (user_id, node_id, model, embedding, staged)
         SELECT n.user_id, n.id, 'tiny', format('[1, %s, 0, 0]', n.g / 10000.0)::vector,
                n.g > 600 AND n.g % 2 = 0
           FROM (SELECT n.*, right(n.user_id::text, 12)::int AS g FROM fractality.nodes n) n;
         ANALYZE fractality.node_embeddings;",
    )
    .unwrap();
    // the seed is g = 1; the 1 000 nearest live nodes, by the same distance in plain SQL
    let want: Vec<uuid::Uuid> = c
        .query(
            "SELECT n.user_id FROM fractality.nodes n
               JOIN fractality.node_embeddings e ON e.node_id = n.id AND e.user_id = n.user_id
              WHERE n.expires_at IS NULL
              ORDER BY e.embedding <=> '[1, 0.0001, 0, 0]', n.user_id LIMIT 1000",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(want.len(), 1000);
    for exact_limit in ["10000", "0"] {
        let (made, count) = crystallised_tiny(&mut c, exact_limit, 0.5, 3);
        let mut got: Vec<uuid::Uuid> = c
            .query(
                "SELECT user_id FROM fractality.consensus_links WHERE consensus_id = $1",
                &[&made],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got.len(), 1000, "consensus_exact_limit {exact_limit}");
        assert!(
            got == want,
            "consensus_exact_limit {exact_limit}: not the nearest live"
        );
        assert_eq!(count, 1000, "consensus_exact_limit {exact_limit}");
    }
    drop(c);
    common::drop_db(db);
}

/// find_resonant's ranking equals the same formula computed over the whole tenant in plain SQL,
/// where its reading of candidates a chunk at a time stops early (the source's energy 0: nothing
/// past the first 2 000 can beat the 20th) and where it must not (a node beyond the first 2 000,
/// of full energy and an edge of weight 1 from a source of full energy, beats them all), with
/// the source's edges read whole and with more of them than it reads whole (300).
#[test]
fn find_resonant_ranks_as_the_formula_over_the_whole_tenant() {
    let mut admin = common::db();
    admin
        .batch_execute("SELECT fractality.register_model('resonance_crowd_3', 3)")
        .unwrap();
    for many_edges in [false, true] {
        let t = common::tenant();
        // 2 100 nodes of energy 0 at similarities from 1 down to about 0.43, one node 'x' of
        // energy 1 past them all (similarity 0.437) linked from the source with weight 1
        admin
            .execute(
                "WITH n AS (
                     INSERT INTO fractality.nodes (id, user_id, node_key, atp)
                     SELECT gen_random_uuid(), $1::uuid, 'n-' || i, 0.0 FROM generate_series(1, 2100) i
                     UNION ALL SELECT gen_random_uuid(), $1::uuid, 'x', 1.0
                     UNION ALL SELECT gen_random_uuid(), $1::uuid, 'src', 1.0
                     RETURNING id, node_key)
                 INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
                 SELECT id, $1::uuid, 'resonance_crowd_3',
                        CASE node_key WHEN 'src' THEN '[1,0,0]'::vector
                                      WHEN 'x' THEN '[1,2.06,0]'::vector
                             ELSE format('[1,%s,0]', split_part(node_key, '-', 2)::int * 0.001)::vector END
                   FROM n",
                &[&t],
            )
            .unwrap();
        admin
            .execute(
                "INSERT INTO fractality.edges (from_node, to_node, relationship_type, weight, user_id)
                 SELECT s.id, o.id, 'child', CASE WHEN o.node_key = 'x' THEN 1.0 ELSE 0.01 END, $1
                   FROM fractality.nodes s, fractality.nodes o
                  WHERE s.user_id = $1 AND o.user_id = $1 AND s.node_key = 'src'
                    AND (o.node_key = 'x'
                         OR ($2 AND o.node_key IN (SELECT 'n-' || i FROM generate_series(1701, 2000) i)))",
                &[&t, &many_edges],
            )
            .unwrap();
        let mut a = common::app("fractality_resonance_crowd", Some(t));
        for src_atp in [1.0f64, 0.0] {
            admin
                .execute(
                    "UPDATE fractality.nodes SET atp = $2, atp_at = now()
                      WHERE user_id = $1 AND node_key = 'src'",
                    &[&t, &src_atp],
                )
                .unwrap();
            // the formula over every node of the tenant: energies now, the edge from the source
            let want: Vec<String> = a
                .query(
                    "WITH s AS (SELECT n.node_id, n.atp, e.embedding FROM fractality.node_energy n
                                  JOIN fractality.node_embeddings e
                                    ON e.node_id = n.node_id AND e.user_id = n.user_id
                                 WHERE n.node_key = 'src' AND e.model = 'resonance_crowd_3')
                     SELECT n.node_key
                       FROM s CROSS JOIN fractality.node_energy n
                       JOIN fractality.node_embeddings e
                         ON e.node_id = n.node_id AND e.user_id = n.user_id AND e.model = 'resonance_crowd_3'
                       LEFT JOIN fractality.edges g ON g.from_node = s.node_id AND g.to_node = n.node_id
                      WHERE n.node_key <> 'src' AND 1 - (e.embedding <=> s.embedding) >= 0.3
                      ORDER BY 0.5 * (1 - (e.embedding <=> s.embedding)) + 0.3 * s.atp * n.atp
                               + 0.2 * coalesce(g.weight, 0) DESC
                      LIMIT 20",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(want.len(), 20);
            assert_eq!(
                want[0] == "x",
                src_atp == 1.0,
                "the test's own premise: {want:?}"
            );
            for path in ["exact", "index"] {
                a.batch_execute(if path == "index" {
                    "SET fractality.exact_scan_limit = 0"
                } else {
                    "RESET fractality.exact_scan_limit"
                })
                .unwrap();
                let got: Vec<String> = a
                    .query(
                        "SELECT node_key FROM fractality.find_resonant('src', 0.3, 20, 'resonance_crowd_3')",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                assert_eq!(
                    got, want,
                    "{path} path, source energy {src_atp}, 300 edges {many_edges}"
                );
            }
        }
        admin
            .execute("DELETE FROM fractality.nodes WHERE user_id = $1", &[&t])
            .unwrap();
    }
}
