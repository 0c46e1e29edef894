//! Shared set-up of the client-side tests: a database with the extension, reached through the
//! `postgres` crate exactly as an application would reach it.
#![allow(dead_code)]

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::collections::HashSet;
use std::sync::{Mutex, Once};
use std::time::Duration;

pub const DB: &str = "fractality_client";

/// Two memories of the session's tenant far apart ('sea', 'sky'), linked, each pulsed once: rows
/// in nodes, embeddings, full text, edges and stream points.
pub const TWO_LINKED_MEMORIES: &str = "
    SELECT count(*) FROM fractality.remember('sea', 'the sea is salty', array_fill(0.5, ARRAY[384])::vector);
    SELECT count(*) FROM fractality.remember('sky', 'the sky is blue', array_fill(-0.5, ARRAY[384])::vector);
    SELECT fractality.link('sea', 'sky');
    SELECT fractality.pulse(id, 0.1) FROM fractality.nodes;";

/// Connection string of the server under test (the README's test command starts it).
pub fn admin_url() -> String {
    std::env::var("FRACTALITY_TEST_URL")
        .unwrap_or_else(|_| "host=localhost port=54331 user=postgres dbname=postgres".into())
}

pub fn url_for(db: &str, user: &str) -> String {
    let base: Vec<String> = admin_url()
        .split_whitespace()
        .filter(|kv| !kv.starts_with("dbname=") && !kv.starts_with("user="))
        .map(str::to_string)
        .collect();
    format!("{} dbname={db} user={user}", base.join(" "))
}

static SETUP: Once = Once::new();

/// A superuser connection to the test database, created once with `CREATE EXTENSION fractality CASCADE`.
pub fn db() -> Client {
    SETUP.call_once(|| {
        let mut admin = Client::connect(&admin_url(), NoTls).expect("connect to the test server");
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB])
            .unwrap()
            .is_some();
        if exists {
            admin
                .batch_execute(&format!("DROP DATABASE {DB} WITH (FORCE)"))
                .unwrap();
        }
        admin
            .batch_execute(&format!("CREATE DATABASE {DB}"))
            .unwrap();
        let mut c = Client::connect(&url_for(DB, "postgres"), NoTls).unwrap();
        // monthly partitions come from maintenance, as in a deployment: this month's and the next
        c.batch_execute(
            "CREATE EXTENSION fractality CASCADE; SELECT fractality.ensure_partitions(1);",
        )
        .unwrap();
    });
    Client::connect(&url_for(DB, "postgres"), NoTls).expect("connect to the test database")
}

/// The connection string of database `name` on the test server, as its superuser.
pub fn url_of(name: &str) -> String {
    url_for(name, "postgres")
}

/// A database of one test's own, `name`, made afresh, with `create` run in it; a superuser
/// connection to it. [`drop_db`] drops it.
pub fn fresh_db(name: &str, create: &str) -> Client {
    let mut admin = Client::connect(&admin_url(), NoTls).expect("connect to the test server");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let mut c = Client::connect(&url_of(name), NoTls).unwrap();
    c.batch_execute(create).unwrap();
    c
}

/// Drops database `name` (a [`fresh_db`]), whoever is still connected to it.
pub fn drop_db(name: &str) {
    let mut admin = Client::connect(&admin_url(), NoTls).expect("connect to the test server");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

/// A connection as `role` (a LOGIN role; the server trusts local connections).
pub fn connect_as(role: &str) -> Client {
    Client::connect(&url_for(DB, role), NoTls).expect("connect as role")
}

/// A fresh tenant id for one test, so tests never see each other's rows.
/// How a notification names tenant `user`: the md5 of its id's text (the id itself acts as the
/// tenant, and a payload reaches every listener), computed by the server.
pub fn digest(user: uuid::Uuid) -> String {
    static DIGESTS: Mutex<Option<std::collections::HashMap<uuid::Uuid, String>>> = Mutex::new(None);
    let mut known = DIGESTS.lock().unwrap_or_else(|e| e.into_inner());
    known
        .get_or_insert_with(Default::default)
        .entry(user)
        .or_insert_with(|| {
            db().query_one("SELECT md5($1::uuid::text)", &[&user])
                .unwrap()
                .get(0)
        })
        .clone()
}

pub fn tenant() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &postgres::Error) -> String {
    err.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}

static ROLES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// A connection as login role `role`: neither owner nor BYPASSRLS, granted what an application
/// role needs (created on first use; the GRANTs of one test process run one at a time, since
/// concurrent GRANTs on the same objects collide). With `tenant`, `fractality.user_id` is set.
pub fn app(role: &str, tenant: Option<uuid::Uuid>) -> Client {
    {
        let mut done = ROLES.lock().unwrap_or_else(|e| e.into_inner());
        let done = done.get_or_insert_with(HashSet::new);
        if !done.contains(role) {
            let mut admin = db();
            let create: Option<String> = admin
                .query_one(
                    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text)
                                 THEN format('CREATE ROLE %I LOGIN', $1::text) END",
                    &[&role],
                )
                .unwrap()
                .get(0);
            if let Some(sql) = create {
                admin.batch_execute(&sql).unwrap();
            }
            let grants: String = admin
                .query_one(
                    "SELECT format('GRANT USAGE ON SCHEMA fractality TO %1$I;
                                    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO %1$I;
                                    GRANT EXECUTE ON FUNCTION fractality.crystallize_consensus(uuid, float8, integer, text),
                                        fractality._crystallize_consensus(uuid, vector, float8, integer, text) TO %1$I;', $1::text)",
                    &[&role],
                )
                .unwrap()
                .get(0);
            admin.batch_execute(&grants).unwrap();
            done.insert(role.to_string());
        }
    }
    let mut c = connect_as(role);
    if let Some(t) = tenant {
        set_tenant(&mut c, t);
    }
    c
}

/// `fractality.user_id` of this session.
pub fn set_tenant(c: &mut Client, tenant: uuid::Uuid) {
    c.execute(
        "SELECT set_config('fractality.user_id', $1, false)",
        &[&tenant.to_string()],
    )
    .unwrap();
}

/// A connection listening on the consciousness_update channel.
pub fn listener() -> Client {
    let mut c = db();
    c.batch_execute("LISTEN consciousness_update").unwrap();
    c
}

/// The consciousness_update payloads that arrive within `wait`, parsed.
pub fn notifications(c: &mut Client, wait: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut n = c.notifications();
    let mut it = n.timeout_iter(wait);
    while let Some(msg) = it.next().unwrap() {
        assert_eq!(msg.channel(), "consciousness_update");
        out.push(serde_json::from_str(msg.payload()).expect("payload is JSON"));
    }
    out
}

/// Waits, up to a minute, until a statement whose text is LIKE `pattern` waits for a lock.
pub fn wait_for_a_lock(admin: &mut Client, pattern: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: bool = admin
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity
                  WHERE query LIKE $1 AND wait_event_type = 'Lock'",
                &[&pattern],
            )
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pattern} never waited for a lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits, up to a minute, until the call running in `call` ends or backend `pid` (its session)
/// waits for a lock; true when it waits.
pub fn waits_for_a_lock<T>(
    admin: &mut Client,
    pid: i32,
    call: &std::thread::JoinHandle<T>,
) -> bool {
    let started = std::time::Instant::now();
    loop {
        if call.is_finished() {
            return false;
        }
        let waits: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)",
                &[&pid],
            )
            .unwrap()
            .get(0);
        if waits {
            return true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "backend {pid} neither ended nor waited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The version of fractality installed in the database of `c`.
pub fn extversion(c: &mut Client) -> String {
    c.query_one(
        "SELECT extversion FROM pg_extension WHERE extname = 'fractality'",
        &[],
    )
    .unwrap()
    .get(0)
}
