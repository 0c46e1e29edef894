//! Shared set-up of the client-side tests: a database with the extension, reached through the
//! `postgres` crate exactly as an application would reach it.
#![allow(dead_code)]

use postgres::{Client, NoTls};
use std::sync::Once;

pub const DB: &str = "fractality_client";

/// Connection string of the server under test (the README's test command starts it).
pub fn admin_url() -> String {
    std::env::var("FRACTALITY_TEST_URL")
        .unwrap_or_else(|_| "host=localhost port=54331 user=postgres dbname=postgres".into())
}

fn url_for(db: &str, user: &str) -> String {
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
        c.batch_execute("CREATE EXTENSION fractality CASCADE")
            .unwrap();
    });
    Client::connect(&url_for(DB, "postgres"), NoTls).expect("connect to the test database")
}

/// A connection as `role` (a LOGIN role; the server trusts local connections).
pub fn connect_as(role: &str) -> Client {
    Client::connect(&url_for(DB, role), NoTls).expect("connect as role")
}

/// A fresh tenant id for one test, so tests never see each other's rows.
pub fn tenant() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &postgres::Error) -> String {
    err.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}
