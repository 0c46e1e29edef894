//! Concurrency and faults without a crash.
//!
//! A bounded load run: several client connections (threads, each an application role of its
//! own tenant) mix the write operations and reads of OPS for a fixed duration. Afterwards every
//! acknowledged event is present exactly once and no unacknowledged one is, every acknowledged
//! pulse left exactly one stream point, no deadlock happened, no error other than the documented
//! retryable ones (40001 serialization failure, 55P03 lock not available: retried, and reported;
//! none is expected at READ COMMITTED without NOWAIT), there is at most one active policy per
//! state bin and each bin's versions are 1..n without a gap.
//!
//! Faults: pg_terminate_backend of a write_events batch held half way (its events copied, the
//! statement trigger waiting for a lock) and of a materialize_decay half way (it has written,
//! it has not returned); pg_cancel_backend of both; then the same invariants.

mod common;
mod reliability;

use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reliability::vector_text;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

const CLIENTS: usize = 6;
const KEYS: usize = 30;
const BINS: usize = 4;
/// SQLSTATEs a client retries: documented as retryable, counted, expected to stay 0.
const RETRYABLE: &[&str] = &["40001", "55P03"];

/// What one worker knows and acknowledges.
struct Worker {
    id: usize,
    tenant: Uuid,
    nodes: Vec<Uuid>,
    rng: StdRng,
    seq: u64,
    tag: u32,
    /// where the events' timestamps start: SPAN microseconds before the run began
    since_us: i64,
    /// (timestamp, event_id) of every event of an acknowledged write_events call
    events: Vec<(i64, Vec<u8>)>,
    pulses: i64,
    /// rows find_resonant returned (each checked to be the tenant's own)
    resonant: u64,
    /// acknowledged save_policy calls per bin
    saves: BTreeMap<String, i64>,
}

type Op = fn(&mut Client, &mut Worker) -> Result<(), postgres::Error>;

/// The mix: (name, weight, operation). Adding an operation to the load run is one entry here.
/// Archiving needs the owner, so it runs beside the mix in one maintenance connection (see
/// `maintain`).
const OPS: &[(&str, u32, Op)] = &[
    ("write_events(arrays)", 3, op_write_events_arrays),
    (
        "write_events(jsonb) / write_events_json",
        2,
        op_write_events_json,
    ),
    ("pulse", 6, op_pulse),
    ("upsert_node", 4, op_upsert_node),
    ("link", 4, op_link),
    ("find_resonant", 4, op_find_resonant),
    ("materialize_decay", 1, op_materialize_decay),
    ("apply_consciousness_decay", 1, op_decay_tick),
    ("freeze(thaw)", 1, op_freeze_thawed),
    ("save_policy", 3, op_save_policy),
    ("remember", 3, op_remember),
    ("remember_many", 2, op_remember_many),
    ("recall", 3, op_recall),
    ("sample + update_priorities", 3, op_learn),
];

const BATCH: usize = 50;

/// The two tests compare counts of shared tables: they run one after the other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn event_id(w: &mut Worker) -> Vec<u8> {
    w.seq += 1;
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&w.tag.to_be_bytes());
    id.extend_from_slice(&(w.id as u32).to_be_bytes());
    id.extend_from_slice(&w.seq.to_be_bytes());
    id
}

/// The span of the events' timestamps, up to the start of the run: about 58 days, so that
/// batches hit several month partitions and both archive cutoffs (40 and 25 days back) fall
/// inside it, whatever the date.
const SPAN: i64 = 5_000_000_000_000;

fn timestamp(w: &mut Worker) -> i64 {
    w.since_us + w.rng.random_range(0..SPAN)
}

fn op_write_events_arrays(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let ids: Vec<Vec<u8>> = (0..BATCH).map(|_| event_id(w)).collect();
    let ts: Vec<i64> = (0..BATCH).map(|_| timestamp(w)).collect();
    let ep: Vec<i64> = vec![w.id as i64; BATCH];
    let steps: Vec<i32> = (0..BATCH as i32).collect();
    let small: Vec<i16> = vec![1; BATCH];
    let states: Vec<f32> = (0..8 * BATCH).map(|_| w.rng.random::<f32>()).collect();
    let rewards: Vec<f32> = (0..4 * BATCH).map(|_| w.rng.random::<f32>()).collect();
    let ints: Vec<i32> = vec![7; BATCH];
    c.query_one(
        "SELECT fractality.write_events($1::bytea[], $2::bigint[], $3::bigint[], $4::int[], $5::smallint[], $6::smallint[], $7::real[], $8::real[], $9::real[], $10::int[], $11::int[])",
        &[&ids, &ts, &ep, &steps, &small, &small, &states, &states, &rewards, &ints, &ints],
    )?;
    w.events.extend(ts.into_iter().zip(ids));
    Ok(())
}

fn op_write_events_json(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let mut batch = Vec::new();
    let mut acked = Vec::new();
    for i in 0..BATCH {
        let id = event_id(w);
        let ts = timestamp(w);
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut e = serde_json::json!({
            "event_id": hex, "timestamp": ts, "episode_id": w.id, "step_number": i,
            "event_type": 2, "flags": 0, "adna_version_hash": 7, "sequence_number": i,
            "reward_curiosity": 0.25,
        });
        for l in 1..=8 {
            e[format!("state_l{l}")] = serde_json::json!(w.rng.random::<f32>());
            e[format!("action_l{l}")] = serde_json::json!(0.5);
        }
        if i % 10 == 0 {
            e["metadata"] = serde_json::json!({"intent_type": "explore", "executor_id": format!("w{}", w.id), "parameters": {"i": i}});
        }
        batch.push(e);
        acked.push((ts, id));
    }
    // half as jsonb, half as JSON text through write_events_json
    let batch = serde_json::Value::Array(batch);
    if w.rng.random_bool(0.5) {
        c.query_one("SELECT fractality.write_events($1::jsonb)", &[&batch])?;
    } else {
        c.query_one(
            "SELECT fractality.write_events_json($1)",
            &[&batch.to_string()],
        )?;
    }
    w.events.extend(acked);
    Ok(())
}

fn op_pulse(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let node = w.nodes[w.rng.random_range(0..w.nodes.len())];
    let energy = w.rng.random_range(-0.3..0.3f64);
    let atp: f64 = c
        .query_one("SELECT fractality.pulse($1, $2)", &[&node, &energy])?
        .get(0);
    assert!((0.0..=1.0).contains(&atp), "pulse returned {atp}");
    w.pulses += 1;
    Ok(())
}

fn op_upsert_node(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let k = w.rng.random_range(0..KEYS);
    let atp = w.rng.random_range(0.0..1.0f64);
    c.execute(
        "SELECT fractality.upsert_node($1, $2, $3, $4, $5::text::vector)",
        &[
            &format!("load-{k}"),
            &format!("load node {k}"),
            &serde_json::json!({"writer": w.id}),
            &atp,
            &vector_text(2, k, 0.1),
        ],
    )?;
    Ok(())
}

fn op_link(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let a = w.rng.random_range(0..KEYS);
    let b = (a + 1 + w.rng.random_range(0..KEYS - 1)) % KEYS;
    let weight = w.rng.random_range(-1.0..1.0f64);
    c.execute(
        "SELECT fractality.link($1, $2, 'child', $3)",
        &[&format!("load-{a}"), &format!("load-{b}"), &weight],
    )?;
    Ok(())
}

fn op_find_resonant(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let k = w.rng.random_range(0..KEYS);
    let rows = c.query(
        "SELECT node_id FROM fractality.find_resonant($1, 0.5, 20)",
        &[&format!("load-{k}")],
    )?;
    for r in rows {
        let id: Uuid = r.get(0);
        assert!(w.nodes.contains(&id), "find_resonant crossed tenants: {id}");
        w.resonant += 1;
    }
    Ok(())
}

/// A fact of a few dozen, told again and again by the tenant's workers: remember stores it once
/// and then reinforces it (one stream point per reinforcement, counted with the pulses).
fn op_remember(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let k = w.rng.random_range(0..40usize);
    let created: bool = c
        .query_one(
            "SELECT created FROM fractality.remember(NULL, $1, $2::text::vector)",
            &[&format!("load fact {k}"), &vector_text(3 + k % 4, k, 0.5)],
        )?
        .get(0);
    if !created {
        w.pulses += 1;
    }
    Ok(())
}

/// The same facts in a batch of five (remember_many): each one already held, or told twice in
/// the batch, is reinforced (one stream point each, counted with the pulses); the new ones wait
/// outside the HNSW index until the maintenance connection's run_maintenance indexes them. Each
/// batch goes in either form, jsonb or arrays, at random.
fn op_remember_many(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let facts: Vec<(String, String)> = (0..5)
        .map(|_| {
            let k = w.rng.random_range(0..40usize);
            (format!("load fact {k}"), vector_text(3 + k % 4, k, 0.5))
        })
        .collect();
    let rows = if w.rng.random_bool(0.5) {
        let batch: Vec<serde_json::Value> = facts
            .iter()
            .map(|(content, v)| {
                let v: serde_json::Value = serde_json::from_str(v).expect("a JSON array");
                serde_json::json!({"content": content, "embedding": v})
            })
            .collect();
        c.query(
            "SELECT created FROM fractality.remember_many($1::jsonb)",
            &[&serde_json::Value::Array(batch)],
        )?
    } else {
        let (contents, vectors): (Vec<String>, Vec<String>) = facts.into_iter().unzip();
        c.query(
            "SELECT created FROM fractality.remember_many(NULL, $1::text[], $2::text[]::vector[])",
            &[&contents, &vectors],
        )?
    };
    w.pulses += rows.iter().filter(|r| !r.get::<_, bool>(0)).count() as i64;
    Ok(())
}

/// A learner: a sample of the shared replay buffer and its TD errors written back, in one
/// transaction that holds the buffer (as archiving does while it takes archived events out), so
/// that every sampled event is still there for the update.
fn op_learn(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let mut t = c.transaction()?;
    t.execute(
        "SELECT 1 FROM fractality.replay_buffers WHERE name = 'load' FOR UPDATE",
        &[],
    )?;
    let ids: Vec<Vec<u8>> = t
        .query(
            "SELECT event_id FROM fractality.sample_experiences('load', 32)",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let errors: Vec<f64> = ids.iter().map(|_| w.rng.random_range(0.0..5.0)).collect();
    let n: i64 = t
        .query_one(
            "SELECT fractality.update_priorities('load', $1, $2)",
            &[&ids, &errors],
        )?
        .get(0);
    assert!(n as usize <= ids.len());
    t.commit()
}

/// recall with reinforcement: one stream point per memory returned.
fn op_recall(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let k = w.rng.random_range(0..40usize);
    let rows = c.query(
        "SELECT node_key FROM fractality.recall($1::text::vector, 3, reinforce => 0.01)",
        &[&vector_text(3 + k % 4, k, 0.5)],
    )?;
    w.pulses += rows.len() as i64;
    Ok(())
}

fn op_materialize_decay(c: &mut Client, _w: &mut Worker) -> Result<(), postgres::Error> {
    c.execute("SELECT fractality.materialize_decay()", &[])?;
    Ok(())
}

/// An explicit decay tick of the worker's tenant, beside its other worker's links, pulses,
/// recalls and freezes of the same nodes.
fn op_decay_tick(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let rows = c.query(
        "SELECT old_atp, new_atp FROM fractality.apply_consciousness_decay(0.99, 0.05, $1)",
        &[&w.tenant],
    )?;
    for r in rows {
        let (old, new): (f64, f64) = (r.get(0), r.get(1));
        assert!(new <= old && new >= 0.05, "a tick took {old} to {new}");
    }
    Ok(())
}

/// A node thawed and frozen again (its fields, embeddings, edges; its last stream point, which
/// it holds already, adds none).
fn op_freeze_thawed(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let k = w.rng.random_range(0..KEYS);
    c.query_one(
        "SELECT fractality.freeze(fractality.thaw($1, 1))",
        &[&format!("load-{k}")],
    )?;
    Ok(())
}

fn op_save_policy(c: &mut Client, w: &mut Worker) -> Result<(), postgres::Error> {
    let bin = format!("load-bin-{}", w.rng.random_range(0..BINS));
    c.execute(
        "SELECT fractality.save_policy($1, $2, $3)",
        &[
            &bin,
            &format!("rule-w{}", w.id),
            &serde_json::json!({"0": w.rng.random::<f64>()}),
        ],
    )?;
    *w.saves.entry(bin).or_default() += 1;
    Ok(())
}

/// The tenant's KEYS nodes with embeddings (one family, so that find_resonant finds them).
fn seed_tenant(c: &mut Client) -> Vec<Uuid> {
    (0..KEYS)
        .map(|k| {
            c.query_one(
                "SELECT fractality.upsert_node($1, $2, '{}', 0.9, $3::text::vector)",
                &[
                    &format!("load-{k}"),
                    &format!("load node {k}"),
                    &vector_text(2, k, 0.1),
                ],
            )
            .unwrap()
            .get(0)
        })
        .collect()
}

/// The maintenance connection of the load run (the owner, as a pg_cron job would be): until
/// `stop`, archive_old_events with a cutoff 40 or 25 days back (the workers write events over
/// the last two months, so each run moves some of them into the cold tier while writers go on),
/// then maintain() or run_maintenance(), in turn, beside retention policies on both tiers (so
/// that each run takes the tables they need: run_maintenance holds them while its other steps
/// run). Returns (runs, events archived, runs that found a table busy, the steps that failed: a
/// run goes on past a failing step, so a deadlock of one would pass unseen otherwise).
fn maintain(stop: Arc<AtomicBool>) -> (u64, i64, u64, Vec<serde_json::Value>) {
    let mut c = common::db();
    let (mut runs, mut archived, mut busy, mut failed) = (0u64, 0i64, 0u64, Vec::new());
    for days in [40i32, 25].iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let n: i64 = c
            .query_one("SELECT fractality.archive_old_events($1)", &[days])
            .unwrap_or_else(|e| panic!("archive_old_events({days}) failed: {e:?}"))
            .get(0);
        // the procedure (two transactions) and the function (one), in turn
        let call = if runs % 2 == 0 {
            "CALL fractality.maintain()"
        } else {
            "SELECT fractality.run_maintenance()"
        };
        let run: serde_json::Value = c
            .query_one(call, &[])
            .unwrap_or_else(|e| panic!("{call} failed: {e:?}"))
            .get(0);
        if let Some(steps) = run.get("failed").and_then(|f| f.as_array()) {
            failed.extend(steps.iter().cloned());
        }
        busy += u64::from(run.get("busy").is_some());
        runs += 1;
        archived += n;
        thread::sleep(Duration::from_millis(500));
    }
    (runs, archived, busy, failed)
}

/// Every acknowledged event is present exactly once, in the hot or the cold tier; nothing else
/// of this run is.
fn check_events(admin: &mut Client, prefix: &[u8], acked: &[(i64, Vec<u8>)]) {
    let ts: Vec<i64> = acked.iter().map(|e| e.0).collect();
    let ids: Vec<Vec<u8>> = acked.iter().map(|e| e.1.clone()).collect();
    let row = admin
        .query_one(
            "WITH acked AS (SELECT * FROM unnest($1::bigint[], $2::bytea[]) AS a (ts, id)),
                  stored AS (SELECT \"timestamp\" AS ts, event_id AS id FROM fractality.experience_events
                              WHERE substr(event_id, 1, $4) = $3
                             UNION ALL
                             SELECT \"timestamp\", event_id FROM fractality.experience_events_archive
                              WHERE substr(event_id, 1, $4) = $3)
             SELECT (SELECT count(*) FROM acked),
                    (SELECT count(*) FROM stored),
                    (SELECT count(*) FROM (SELECT DISTINCT ts, id FROM stored) d),
                    (SELECT count(*) FROM acked a WHERE NOT EXISTS
                        (SELECT 1 FROM stored s WHERE s.ts = a.ts AND s.id = a.id))",
            &[&ts, &ids, &prefix.to_vec(), &(prefix.len() as i32)],
        )
        .unwrap();
    let (n_acked, stored, distinct, missing): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(missing, 0, "acknowledged events lost");
    assert_eq!(distinct, stored, "an event is stored twice");
    assert_eq!(stored, n_acked, "events stored that no call acknowledged");
}

/// At most one active policy per bin; each bin's versions 1..n without a gap or a repeat.
fn check_policies(admin: &mut Client, prefix: &str) {
    let bad: i64 = admin
        .query_one(
            "SELECT count(*) FROM (
                 SELECT state_bin_id FROM fractality.adna_policies
                  WHERE state_bin_id LIKE $1 || '%'
                  GROUP BY state_bin_id
                 HAVING count(*) FILTER (WHERE is_active) <> 1
                     OR count(DISTINCT version) <> count(*)
                     OR max(version) <> count(*)) b",
            &[&prefix],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        bad, 0,
        "a state bin with other than one active policy, or a version gap"
    );
}

fn is_retryable(e: &postgres::Error) -> Option<String> {
    let state = common::sqlstate(e);
    RETRYABLE.contains(&state.as_str()).then_some(state)
}

#[test]
fn load_run_keeps_every_invariant() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let secs: u64 = std::env::var("FRACTALITY_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut admin = common::db();
    // what README, "Tenants", grants an application role (serial ids of
    // policies need the sequences)
    common::app("fractality_load", None);
    admin
        .batch_execute(
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA fractality TO fractality_load;
             SELECT fractality.drop_replay_buffer('load');
             SELECT fractality.create_replay_buffer('load', backfill => true);
             SELECT fractality.add_retention_policy('fractality.consciousness_streams', '30 days', 'archive');
             SELECT fractality.add_retention_policy('fractality.experience_events', '35 days', 'archive');",
        )
        .unwrap();
    let tag: u32 = rand::rng().random();
    let since_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
        - SPAN;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let stop = stop.clone();
            thread::spawn(move || {
                // two workers per tenant, so that writers of one tenant meet on the same rows
                let tenant =
                    Uuid::from_u128(0x10ad_0000_0000_4000_8000_0000_0000_0000 | (i / 2) as u128);
                let mut c = common::app("fractality_load", Some(tenant));
                let nodes = seed_tenant(&mut c);
                let mut w = Worker {
                    id: i,
                    tenant,
                    nodes,
                    rng: StdRng::seed_from_u64(i as u64),
                    seq: 0,
                    since_us,
                    tag,
                    events: Vec::new(),
                    pulses: 0,
                    resonant: 0,
                    saves: BTreeMap::new(),
                };
                let total: u32 = OPS.iter().map(|o| o.1).sum();
                let mut done: BTreeMap<&str, u64> = BTreeMap::new();
                let mut retried: BTreeMap<String, u64> = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut pick = w.rng.random_range(0..total);
                    let (name, _, op) = OPS
                        .iter()
                        .find(|o| {
                            if pick < o.1 {
                                true
                            } else {
                                pick -= o.1;
                                false
                            }
                        })
                        .unwrap();
                    match op(&mut c, &mut w) {
                        Ok(()) => *done.entry(name).or_default() += 1,
                        Err(e) => match is_retryable(&e) {
                            Some(s) => *retried.entry(s).or_default() += 1,
                            None => panic!(
                                "{name} failed: {} ({})",
                                e.as_db_error()
                                    .map_or(e.to_string(), |d| d.message().to_string()),
                                common::sqlstate(&e)
                            ),
                        },
                    }
                }
                (w, done, retried)
            })
        })
        .collect();
    let maintainer = {
        let stop = stop.clone();
        thread::spawn(move || maintain(stop))
    };
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let (maint_runs, archived, busy, failed) = maintainer
        .join()
        .expect("the maintenance connection failed");
    let mut done: BTreeMap<&str, u64> = BTreeMap::new();
    let mut retried: BTreeMap<String, u64> = BTreeMap::new();
    let mut events = Vec::new();
    let mut pulses: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut saves: BTreeMap<String, i64> = BTreeMap::new();
    let mut resonant = 0;
    for h in handles {
        let (w, d, r) = h.join().expect("a worker failed");
        resonant += w.resonant;
        for (k, v) in d {
            *done.entry(k).or_default() += v;
        }
        for (k, v) in r {
            *retried.entry(k).or_default() += v;
        }
        events.extend(w.events);
        *pulses.entry(w.tenant).or_default() += w.pulses;
        for (k, v) in w.saves {
            *saves.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ops: u64 = done.values().sum();
    reliability::report(&format!(
        "load: {CLIENTS} clients, {elapsed:.1} s, {ops} operations ({:.0}/s), {} events acknowledged; per operation {done:?}; retried {retried:?}; beside them {maint_runs} archive_old_events + maintain / run_maintenance runs ({busy} of them found a table busy), {archived} events archived",
        ops as f64 / elapsed,
        events.len()
    ));
    assert!(ops > 0);
    // the tenant check of find_resonant's rows above checked some
    assert!(
        done.get("find_resonant").is_none_or(|&n| n == 0) || resonant > 0,
        "find_resonant ran {:?} times and never found a node",
        done.get("find_resonant")
    );
    assert!(maint_runs > 0, "no maintenance run during the load");
    assert!(
        failed.is_empty(),
        "steps of run_maintenance failed: {failed:?}"
    );
    // the workers' events span the 58 days before the run, so every run finds some older than
    // its cutoff
    assert!(archived > 0, "the load run archived no event");

    check_events(&mut admin, &tag.to_be_bytes(), &events);
    // one stream point per acknowledged pulse (the tenants' nodes get points from nothing else)
    for (tenant, n) in &pulses {
        let points: i64 = admin
            .query_one(
                "SELECT count(*) FROM fractality.consciousness_streams WHERE user_id = $1",
                &[tenant],
            )
            .unwrap()
            .get(0);
        assert_eq!(points, *n, "stream points of tenant {tenant}");
    }
    // every bin: one active policy, versions 1..n, as many as acknowledged saves
    check_policies(&mut admin, "load-bin-");
    for (bin, n) in &saves {
        let stored: i64 = admin
            .query_one(
                "SELECT count(*) FROM fractality.adna_policies WHERE state_bin_id = $1",
                &[bin],
            )
            .unwrap()
            .get(0);
        assert_eq!(stored, *n, "policies of {bin}");
    }
    let deadlocks: i64 = admin
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deadlocks, 0, "deadlocks during the load run");
    // the learners, the writers and the archiver left the replay buffer's sum tree equal to its
    // items: every level sums to the items' p^alpha, and its size counts them; the priorities
    // still pending folded first, so that the folds of the run and this one are checked too
    let pending: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.replay_pending p
               JOIN fractality.replay_buffers b USING (buffer_id) WHERE b.name = 'load'",
            &[],
        )
        .unwrap()
        .get(0);
    let folded: i64 = admin
        .query_one("SELECT fractality.fold_priorities('load')", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        pending > 0,
        folded > 0,
        "pending rows {pending}, slots folded {folded}"
    );
    let (levels_ok, size_ok): (bool, bool) = {
        let r = admin
            .query_one(
                "SELECT bool_and(abs(l.s - i.s) <= 1e-9 * greatest(1, i.s)), min(b.size) = min(i.n)
                   FROM fractality.replay_buffers b,
                        LATERAL (SELECT t.level, sum(x) AS s FROM fractality.replay_tree t, unnest(t.sums) x
                                  WHERE t.buffer_id = b.buffer_id GROUP BY t.level) l,
                        LATERAL (SELECT coalesce(sum(power(r.priority, b.alpha)), 0) AS s, count(*) AS n
                                   FROM fractality.replay_items r WHERE r.buffer_id = b.buffer_id) i
                  WHERE b.name = 'load'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        levels_ok && size_ok,
        "the replay buffer's tree or size drifted from its items"
    );
    assert!(retried.is_empty(), "retryable errors: {retried:?}");
    admin
        .batch_execute("TRUNCATE fractality.retention_policies")
        .unwrap();
}

fn nodes_digest(admin: &mut Client, tenant: Uuid) -> String {
    admin
        .query_one(
            "SELECT md5(string_agg(id::text || atp::text || atp_at::text, ',' ORDER BY id))
               FROM fractality.nodes WHERE user_id = $1",
            &[&tenant],
        )
        .unwrap()
        .get(0)
}

/// A write_events batch of 20 000 events, held half way (events copied, its statement trigger
/// waiting for a lock on policy_reward_inbox), and a materialize_decay over 100 000 stale nodes
/// half way (it has written, has not returned) are ended with pg_cancel_backend and with
/// pg_terminate_backend: none of the batch is stored, no energy changed, earlier acknowledged
/// events are all there, and the same calls then succeed.
#[test]
fn backends_ended_half_way_leave_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut admin = common::db();
    let tenant = Uuid::from_u128(0xfa17_0000_0000_4000_8000_0000_0000_0001);
    admin
        .execute(
            "INSERT INTO fractality.nodes (user_id, node_key, atp, atp_at)
             SELECT $1, 'fault-' || i, 0.9, now() - interval '3 hours'
               FROM generate_series(1, 100000) i",
            &[&tenant],
        )
        .unwrap();
    admin.batch_execute("ANALYZE fractality.nodes").unwrap();
    // acknowledged before the faults
    let before_events = reliability::events_json(7 << 60, 1000, 6_000_000_000);
    admin
        .execute(
            "SELECT fractality.write_events($1::jsonb)",
            &[&before_events],
        )
        .unwrap();
    let digest = nodes_digest(&mut admin, tenant);
    let counts = reliability::counts(&mut admin);

    for signal in ["pg_cancel_backend", "pg_terminate_backend"] {
        // ---- write_events, held in its statement trigger --------------------------------------
        let mut holder = common::db();
        holder
            .batch_execute("BEGIN; LOCK TABLE fractality.policy_reward_inbox IN SHARE MODE")
            .unwrap();
        let mut victim = common::db();
        let pid = reliability::backend_pid(&mut victim);
        let batch = reliability::events_json(8 << 60, 20_000, 6_100_000_000);
        let call = thread::spawn(move || {
            victim
                .query_one("SELECT fractality.write_events($1::jsonb)", &[&batch])
                .map(|_| ())
        });
        reliability::wait_until_half_way(&mut admin, pid, true);
        admin
            .execute(&format!("SELECT {signal}($1)"), &[&pid])
            .unwrap();
        let e = call.join().unwrap().expect_err("the batch was ended");
        if signal == "pg_cancel_backend" {
            assert_eq!(common::sqlstate(&e), "57014", "{e}");
        }
        holder.batch_execute("ROLLBACK").unwrap();

        // ---- materialize_decay, after its first batches ---------------------------------------
        let mut victim = common::db();
        let pid = reliability::backend_pid(&mut victim);
        let call = thread::spawn(move || {
            victim
                .query_one("SELECT fractality.materialize_decay(100)", &[])
                .map(|_| ())
        });
        reliability::wait_until_half_way(&mut admin, pid, false);
        admin
            .execute(&format!("SELECT {signal}($1)"), &[&pid])
            .unwrap();
        let e = call
            .join()
            .unwrap()
            .expect_err("materialize_decay was ended before it returned");
        if signal == "pg_cancel_backend" {
            assert_eq!(common::sqlstate(&e), "57014", "{e}");
        }

        assert_eq!(reliability::counts(&mut admin), counts, "after {signal}");
        assert_eq!(
            nodes_digest(&mut admin, tenant),
            digest,
            "energy after {signal}"
        );
        check_events(
            &mut admin,
            &(7u64 << 60).to_be_bytes(),
            &acked(&before_events),
        );
    }
    // the server and the same calls work afterwards
    let batch = reliability::events_json(8 << 60, 20_000, 6_100_000_000);
    let n: i64 = admin
        .query_one("SELECT fractality.write_events($1::jsonb)", &[&batch])
        .unwrap()
        .get(0);
    assert_eq!(n, 20_000);
    let written: i64 = admin
        .query_one("SELECT fractality.materialize_decay()", &[])
        .unwrap()
        .get(0);
    assert!(written >= 100_000);
}

/// (timestamp, event_id) of a JSON batch made by reliability::events_json.
fn acked(batch: &serde_json::Value) -> Vec<(i64, Vec<u8>)> {
    batch
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let hex = e["event_id"].as_str().unwrap();
            let id = (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            (e["timestamp"].as_i64().unwrap(), id)
        })
        .collect()
}
