//! The experience store through a real client: JSON and typed-array batches, refusals with
//! their SQLSTATE and nothing written, concurrent policy saves, reward aggregates and sampling.

mod common;

use std::sync::Mutex;

use approx::assert_relative_eq;
use postgres::Client;
use serde_json::{json, Value};

/// The tests of this file share the experience tables: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn event(ts: i64, id: u128, episode: i64, step: i32, goal: f32) -> Value {
    let mut e = json!({
        "event_id": format!("{id:032x}"), "timestamp": ts, "episode_id": episode,
        "step_number": step, "event_type": 1, "flags": 0,
        "reward_homeostasis": 0.1, "reward_goal": goal,
        "adna_version_hash": 555, "sequence_number": step
    });
    for k in 1..=8 {
        e[format!("state_l{k}")] = json!(0.5);
        e[format!("action_l{k}")] = json!(-0.25);
    }
    e
}

fn count(c: &mut Client, from: i64, to: i64) -> i64 {
    c.query_one(
        "SELECT count(*) FROM fractality.experience_events WHERE \"timestamp\" >= $1 AND \"timestamp\" < $2",
        &[&from, &to],
    )
    .unwrap()
    .get(0)
}

#[test]
fn experience_json_and_array_batches_round_trip() {
    let _g = lock();
    let mut c = common::db();
    let base = 7_000_000_000i64;
    let batch = Value::Array(
        (0..500)
            .map(|i| event(base + i, 0xabc000 + i as u128, 70, i as i32, 0.0))
            .collect(),
    );
    let n: i64 = c
        .query_one("SELECT fractality.write_events($1)", &[&batch])
        .unwrap()
        .get(0);
    assert_eq!(n, 500);

    // typed arrays, as a client that sends arrays would
    let m = 300usize;
    let ids: Vec<Vec<u8>> = (0..m)
        .map(|i| (0xdef000u128 + i as u128).to_be_bytes().to_vec())
        .collect();
    let ts: Vec<i64> = (0..m as i64).map(|i| base + 1000 + i).collect();
    let eps: Vec<i64> = vec![71; m];
    let steps: Vec<i32> = (0..m as i32).collect();
    let zeros: Vec<i16> = vec![0; m];
    let states: Vec<f32> = vec![0.5; 8 * m];
    let rewards: Vec<f32> = (0..m).flat_map(|_| [0.25f32, 0.0, 0.0, 0.0]).collect();
    let hashes: Vec<i32> = vec![555; m];
    let n: i64 = c
        .query_one(
            "SELECT fractality.write_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &ids, &ts, &eps, &steps, &zeros, &zeros, &states, &states, &rewards, &hashes,
                &steps,
            ],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, m as i64);
    assert_eq!(count(&mut c, base, base + 2000), 800);

    let rows = c
        .query(
            "SELECT event_id, total_reward, state FROM fractality.query_events($1, $2, 1000)",
            &[&(base + 1000), &(base + 2000)],
        )
        .unwrap();
    assert_eq!(rows.len(), m);
    let first: Vec<u8> = rows[0].get(0);
    assert_eq!(first, ids[0]);
    assert_relative_eq!(rows[0].get::<_, f32>(1), 0.25);
    assert_eq!(rows[0].get::<_, Vec<f32>>(2), vec![0.5; 8]);

    // episode returns over what was written
    let r = c
        .query_one(
            "SELECT steps, total, discounted FROM fractality.episode_returns($1, $2, 0.9) WHERE episode_id = 71",
            &[&base, &(base + 2000)],
        )
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), m as i64);
    assert_relative_eq!(r.get::<_, f64>(1), 0.25 * m as f64, epsilon = 1e-9);
    let expected: f64 = (0..m as i32).map(|k| 0.25 * 0.9f64.powi(k)).sum();
    assert_relative_eq!(r.get::<_, f64>(2), expected, epsilon = 1e-9);
}

#[test]
fn experience_bad_batches_are_refused_whole_with_sqlstate() {
    let _g = lock();
    let mut c = common::db();
    let base = 8_000_000_000i64;
    let good = |i: i64| event(base + i, 0xbad000 + i as u128, 80, i as i32, 0.0);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            {
                let mut e = good(3);
                e.as_object_mut().unwrap().remove("flags");
                json!([good(1), good(2), e])
            },
            "22023",
            "element 2, field \"flags\": missing",
        ),
        (
            {
                let mut e = good(2);
                e["event_id"] = json!("0102030405060708090a0b0c0d0e0f");
                json!([good(1), e])
            },
            "22023",
            "element 1, field \"event_id\"",
        ),
        (
            {
                let mut e = good(2);
                e["reward_curiosity"] = json!("NaN");
                json!([good(1), e])
            },
            "22023",
            "element 1, field \"reward_curiosity\": expected a number",
        ),
        (
            {
                let mut e = good(2);
                e["episode_id"] = json!(1.5);
                json!([good(1), e])
            },
            "22023",
            "element 1, field \"episode_id\": expected an integer",
        ),
        (
            json!([good(1), good(2), good(1)]),
            "23505",
            "elements 0 and 2",
        ),
    ];
    for (batch, state, message) in cases {
        let err = c
            .query_one("SELECT fractality.write_events($1)", &[&batch])
            .unwrap_err();
        assert_eq!(common::sqlstate(&err), state, "{err}");
        let text = err.as_db_error().unwrap().message().to_string();
        assert!(text.contains(message), "{text} should contain {message}");
        assert_eq!(count(&mut c, base, base + 100), 0, "nothing written");
    }
    // a duplicate of a stored event refuses the batch that carries it
    c.query_one("SELECT fractality.write_events($1)", &[&json!([good(10)])])
        .unwrap();
    let err = c
        .query_one(
            "SELECT fractality.write_events($1)",
            &[&json!([good(11), good(10)])],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "23505");
    assert_eq!(count(&mut c, base, base + 100), 1);
    // metadata given twice, differently: refused, not one of them dropped; the same twice is one
    let mut own = good(20);
    own["metadata"] = json!({"intent_type": "recall", "executor_id": "a"});
    let other = json!({"intent_type": "remember", "executor_id": "b"});
    let err = c
        .query_one(
            "SELECT fractality.write_event_with_metadata($1, $2)",
            &[&own, &other],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("field \"metadata\""));
    assert_eq!(count(&mut c, base, base + 100), 1);
    let same = own["metadata"].clone();
    c.query_one(
        "SELECT fractality.write_event_with_metadata($1, $2)",
        &[&own, &same],
    )
    .unwrap();
    assert_eq!(count(&mut c, base, base + 100), 2);
    // other functions: bad arguments, clear SQLSTATEs
    for (sql, state) in [
        ("SELECT * FROM fractality.query_events(10, 1, 5)", "22023"),
        ("SELECT * FROM fractality.query_events(1, 10, -5)", "22023"),
        (
            "SELECT * FROM fractality.episode_returns(0, 10, 'NaN')",
            "22023",
        ),
        (
            "SELECT * FROM fractality.sample_experiences(10, -1.0)",
            "22023",
        ),
        ("SELECT fractality.save_policy('b', 'r', '\"x\"')", "22023"),
        ("SELECT * FROM fractality.policy_lineage(-42)", "P0002"),
        ("SELECT fractality.save_config('c', 'k', NULL)", "22004"),
    ] {
        let err = c.query(sql, &[]).unwrap_err();
        assert_eq!(common::sqlstate(&err), state, "{sql}: {err}");
    }
}

#[test]
fn experience_concurrent_policy_saves_leave_one_active() {
    let _g = lock();
    let bin = format!("concurrent-{}", common::tenant());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let bin = bin.clone();
            std::thread::spawn(move || {
                let mut c = common::db();
                for k in 0..5 {
                    c.query_one(
                        "SELECT fractality.save_policy($1, $2, '{\"0\": 1}')",
                        &[&bin, &format!("rule-{t}-{k}")],
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = common::db();
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE is_active), count(*), count(DISTINCT version), max(version)
               FROM fractality.adna_policies WHERE state_bin_id = $1",
            &[&bin],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "exactly one active policy");
    assert_eq!(row.get::<_, i64>(1), 40);
    assert_eq!(row.get::<_, i64>(2), 40, "versions are distinct");
    assert_eq!(row.get::<_, i32>(3), 40);
    // the lineage of the active one runs through all 40 versions
    let depth: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.policy_lineage(
                 (SELECT policy_id FROM fractality.adna_policies WHERE state_bin_id = $1 AND is_active))",
            &[&bin],
        )
        .unwrap()
        .get(0);
    assert_eq!(depth, 40);
}

/// Two saves of other state bins whose first versions hash alike (`hashtext` of bin, rule,
/// version and weights: 'cb11490' and 'cb158446' with rule 'r' and {"0": 1}), at once: the second
/// waits for the first's hash and takes the next one, so each event names one policy. Both took
/// the same hash before, and `refresh_policy_rewards` credited an event to both.
#[test]
fn two_saves_of_bins_whose_hashes_collide_at_once_keep_the_hashes_apart() {
    const DB: &str = "fractality_policy_hash";
    let mut first = common::fresh_db(DB, "CREATE EXTENSION fractality CASCADE");
    let collide: bool = first
        .query_one(
            "SELECT hashtext(concat_ws(E'\\x1f', 'cb11490', 'r', 1, '{\"0\": 1}'::jsonb::text))
                  = hashtext(concat_ws(E'\\x1f', 'cb158446', 'r', 1, '{\"0\": 1}'::jsonb::text))",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(collide, "the two bins' first versions hash alike");
    let mut tx = first.transaction().unwrap();
    tx.query_one(
        "SELECT fractality.save_policy('cb11490', 'r', '{\"0\": 1}')",
        &[],
    )
    .unwrap();
    let mut second = postgres::Client::connect(&common::url_of(DB), postgres::NoTls).unwrap();
    let pid: i32 = second
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let call = std::thread::spawn(move || {
        second
            .query_one(
                "SELECT fractality.save_policy('cb158446', 'r', '{\"0\": 1}')",
                &[],
            )
            .map(|_| ())
    });
    let mut admin = postgres::Client::connect(&common::url_of(DB), postgres::NoTls).unwrap();
    assert!(
        common::waits_for_a_lock(&mut admin, pid, &call),
        "the second save waits for the first's hash"
    );
    tx.commit().unwrap();
    call.join().unwrap().unwrap();
    let hashes: Vec<(String, i32, i32)> = admin
        .query(
            "SELECT state_bin_id::text, version, version_hash FROM fractality.adna_policies
              ORDER BY policy_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_eq!((hashes[0].1, hashes[1].1), (1, 1));
    assert_ne!(hashes[0].2, hashes[1].2, "{hashes:?}");
    drop(admin);
    drop(first);
    common::drop_db(DB);
}

/// A save at REPEATABLE READ whose snapshot predates the first version another session saved
/// meanwhile is a serialization failure (40001: run it again), as it is when a version existed
/// before; it was a unique violation (23505) of the one active version. Then it saves.
#[test]
fn a_first_version_saved_meanwhile_is_a_serialization_failure_at_repeatable_read() {
    let _g = lock();
    let bin = format!("rr-{}", common::tenant());
    let mut late = common::db();
    let mut other = common::db();
    for (first, second) in [
        (
            "SELECT fractality.save_policy($1, 'r1', '{\"0\": 0.5}')::text",
            "SELECT fractality.save_policy($1, 'r2', '{\"0\": 0.7}')::text",
        ),
        (
            "SELECT fractality.save_config('rr', $1, '1')::text",
            "SELECT fractality.save_config('rr', $1, '2')::text",
        ),
    ] {
        let mut tx = late
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .unwrap();
        tx.batch_execute("SELECT 1").unwrap(); // the snapshot
        other.query_one(first, &[&bin]).unwrap();
        let err = tx.query_one(second, &[&bin]).expect_err(second);
        assert_eq!(common::sqlstate(&err), "40001", "{second}: {err:?}");
        tx.rollback().unwrap();
        // run again, it saves the second version
        late.query_one(second, &[&bin]).unwrap();
    }
    let versions: Vec<(i32, bool)> = late
        .query(
            "SELECT version, is_active FROM fractality.adna_policies WHERE state_bin_id = $1
             UNION ALL
             SELECT version, is_active FROM fractality.configuration_store
              WHERE component_name = 'rr' AND config_key = $1
             ORDER BY 1, 2",
            &[&bin],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(versions, [(1, false), (1, false), (2, true), (2, true)]);
}

#[test]
fn experience_sampling_frequencies_follow_priorities() {
    let _g = lock();
    let mut c = common::db();
    // take the hot events out of the way inside a transaction, rolled back at the end
    let mut tx = c.transaction().unwrap();
    tx.batch_execute("DELETE FROM fractality.experience_events")
        .unwrap();
    let goals = [0.9f32, 0.1, 0.0, 1.9, 4.9];
    let batch = Value::Array(
        goals
            .iter()
            .enumerate()
            .map(|(i, g)| {
                event(
                    9_000_000_000 + i as i64,
                    0x5a0000 + i as u128,
                    90,
                    i as i32,
                    *g,
                )
            })
            .collect(),
    );
    tx.query_one("SELECT fractality.write_events($1)", &[&batch])
        .unwrap();
    let draws = 50_000i32;
    let rows = tx
        .query(
            "SELECT sequence_number, count(*)::float8 / $1
               FROM fractality.sample_experiences($1, alpha => 0.5, seed => 11) s
               JOIN fractality.experience_events e USING (event_id)
              GROUP BY 1 ORDER BY 1",
            &[&draws],
        )
        .unwrap();
    // totals are 0.1 + goal: 1.0, 0.2, 0.1, 2.0, 5.0; priority sqrt(total) + 1e-6
    let priorities: Vec<f64> = goals
        .iter()
        .map(|g| (0.1f64 + f64::from(*g)).sqrt() + 1e-6)
        .collect();
    let sum: f64 = priorities.iter().sum();
    assert_eq!(rows.len(), 5);
    for r in rows {
        let i = r.get::<_, i32>(0) as usize;
        let share: f64 = r.get(1);
        assert!(
            (share - priorities[i] / sum).abs() < 0.01,
            "event {i}: share {share}, expected {}",
            priorities[i] / sum
        );
    }
    tx.rollback().unwrap();
}

/// Two transactions writing batches that carry the same event id (at different timestamps) at
/// once: the second waits for the first and, once it commits, fails with 23505; one event is
/// stored. Against a stored event the id is refused whatever the timestamp, naming it; deleting
/// the event frees its id.
#[test]
fn experience_concurrent_batches_with_one_id_cannot_both_commit() {
    let _l = lock();
    let mut admin = common::db();
    let id: u128 = 0x0c0c_0000_0000_0000_0000_0000_0000_0001;
    let (t1, t2) = (7_100_000_000_000_000i64, 7_200_000_000_000_000i64);
    admin
        .execute(
            "DELETE FROM fractality.experience_events WHERE event_id = $1",
            &[&id.to_be_bytes().to_vec()],
        )
        .unwrap();
    let mut a = common::db();
    let mut b = common::db();
    let batch_a = json!([event(t1, id, 71, 0, 0.5), event(t1 + 1, id + 1, 71, 1, 0.5)]);
    let batch_b = json!([event(t2, id + 2, 72, 0, 0.5), event(t2 + 1, id, 72, 1, 0.5)]);
    a.batch_execute("BEGIN").unwrap();
    a.execute("SELECT fractality.write_events($1::jsonb)", &[&batch_a])
        .unwrap();
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let writer = std::thread::spawn(move || {
        let r = b.execute("SELECT fractality.write_events($1::jsonb)", &[&batch_b]);
        (r.map_err(|e| common::sqlstate(&e)), b)
    });
    // b waits for a's transaction (the id's registry entry)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: bool = admin
            .query_one(
                "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1",
                &[&b_pid],
            )
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second writer never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    a.batch_execute("COMMIT").unwrap();
    let (outcome, _b) = writer.join().unwrap();
    assert_eq!(
        outcome,
        Err("23505".to_string()),
        "the second batch is refused"
    );
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.experience_events WHERE event_id = $1",
            &[&id.to_be_bytes().to_vec()],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "one event holds the id");
    assert_eq!(
        count(&mut admin, t2, t2 + 2),
        0,
        "nothing of the second batch"
    );
    // against the stored event, at yet another timestamp: refused up front, naming the id
    let e = admin
        .execute(
            "SELECT fractality.write_events($1::jsonb)",
            &[&json!([event(t2 + 5, id, 73, 0, 0.5)])],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "23505");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("{id:032x}")),
        "the message names the id: {message}"
    );
    // a deleted event frees its id
    admin
        .execute(
            "DELETE FROM fractality.experience_events WHERE event_id = ANY($1)",
            &[&vec![
                id.to_be_bytes().to_vec(),
                (id + 1).to_be_bytes().to_vec(),
            ]],
        )
        .unwrap();
    admin
        .execute(
            "SELECT fractality.write_events($1::jsonb)",
            &[&json!([event(t2 + 9, id, 74, 0, 0.5)])],
        )
        .unwrap();
    admin
        .execute(
            "DELETE FROM fractality.experience_events WHERE event_id = $1",
            &[&id.to_be_bytes().to_vec()],
        )
        .unwrap();
}

/// A learner's session keeps a copy of the buffer's pending priorities between samples and
/// reads only the writes made since (src/replay/pending.rs, `Seen`): its draws at a seed are,
/// bit for bit, those of a session that reads every pending write, after each write back, after
/// a write back rolled back in its own transaction, and after a fold.
#[test]
fn replay_a_learners_copy_of_pending_priorities_draws_as_a_new_session() {
    let _g = lock();
    let mut setup = common::db();
    let batch = Value::Array(
        (0..600)
            .map(|i| {
                let mut e = event(
                    9_500_000_000 + i as i64,
                    0x5e_e000 + i as u128,
                    95,
                    i,
                    (i % 7) as f32,
                );
                e["adna_version_hash"] = json!(7771);
                e
            })
            .collect(),
    );
    setup
        .batch_execute(
            "SELECT fractality.create_replay_buffer('seen_copy', alpha => 0.7, policy_version => 7771)",
        )
        .unwrap();
    setup
        .query_one("SELECT fractality.write_events($1)", &[&batch])
        .unwrap();
    type Draw = (Vec<u8>, f64, f64, f64);
    let draws = |c: &mut Client| -> Vec<Draw> {
        c.query(
            "SELECT event_id, priority, probability, weight
               FROM fractality.sample_experiences('seen_copy', 300, seed => 99)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    };
    let mut learner = common::db();
    learner
        .batch_execute("SET fractality.replay_fold_after = 1000000")
        .unwrap();
    let write_back = |c: &mut Client, round: usize| {
        let ids: Vec<Vec<u8>> = c
            .query(
                "SELECT event_id FROM fractality.sample_experiences('seen_copy', 40, seed => $1)",
                &[&(round as i64)],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let errors: Vec<f64> = (0..ids.len())
            .map(|i| ((i * 7 + round * 3) % 11) as f64 / 2.0)
            .collect();
        c.query_one(
            "SELECT fractality.update_priorities('seen_copy', $1, $2)",
            &[&ids, &errors],
        )
        .unwrap();
    };
    let pending = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM fractality.replay_pending p
               JOIN fractality.replay_buffers b USING (buffer_id) WHERE b.name = 'seen_copy'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    // (assert! rather than assert_eq!: a failure need not print 300 draws twice)
    let same = |a: &mut Client| draws(a) == draws(&mut common::db());
    assert!(same(&mut learner), "nothing pending");
    for round in 0..5 {
        write_back(&mut learner, round);
        assert!(same(&mut learner), "after write back {round}");
    }
    assert_eq!(pending(&mut learner), 5);
    // a write back and a sample in a transaction rolled back
    learner.batch_execute("BEGIN").unwrap();
    write_back(&mut learner, 5);
    let inside = draws(&mut learner);
    learner.batch_execute("ROLLBACK").unwrap();
    let after = draws(&mut learner);
    assert!(inside != after, "the rolled-back write changed the draws");
    assert!(after == draws(&mut common::db()), "after a rollback");
    // another session writes back, then a fold
    write_back(&mut common::db(), 6);
    assert!(same(&mut learner), "another's write");
    learner
        .query_one("SELECT fractality.fold_priorities('seen_copy')", &[])
        .unwrap();
    assert_eq!(pending(&mut learner), 0);
    assert!(same(&mut learner), "after a fold");
    write_back(&mut learner, 7);
    assert!(same(&mut learner), "after the fold, a write");
    setup
        .batch_execute(
            "SELECT fractality.drop_replay_buffer('seen_copy');
             DELETE FROM fractality.experience_events WHERE adna_version_hash = 7771",
        )
        .unwrap();
}

/// update_priorities finds an item at the slot its session drew it from (checked against the
/// item there) and otherwise through the event's timestamp in the event-id registry: an event
/// drawn and since overwritten (capacity), or deleted, is not in the buffer any more, whatever
/// the slot the session remembers, and is skipped (as Reverb skips it: the batch's others are
/// written); an event the session never drew is found all the same; and with the events'
/// timestamps (the four-argument form), by them.
#[test]
fn replay_update_priorities_finds_drawn_overwritten_and_never_drawn_events() {
    let _g = lock();
    let mut setup = common::db();
    let base: u128 = 0x5f_f000;
    let id = |i: u128| (base + i).to_be_bytes().to_vec();
    let batch = |from: u128, n: u128| {
        Value::Array(
            (from..from + n)
                .map(|i| {
                    let mut e = event(9_600_000_000 + i as i64, base + i, 96, i as i32, 1.0);
                    e["adna_version_hash"] = json!(7772);
                    e
                })
                .collect(),
        )
    };
    setup
        .batch_execute(
            "SELECT fractality.create_replay_buffer('found_by', capacity => 50, epsilon => 0.001,
                                                     policy_version => 7772)",
        )
        .unwrap();
    setup
        .query_one("SELECT fractality.write_events($1)", &[&batch(0, 50)])
        .unwrap();
    let mut learner = common::db();
    let drawn: std::collections::BTreeSet<Vec<u8>> = learner
        .query(
            "SELECT event_id FROM fractality.sample_experiences('found_by', 600, seed => 5)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(drawn.len(), 50, "every item drawn at this seed");
    // events 50..59 take the slots of 0..9 (the oldest go)
    setup
        .query_one("SELECT fractality.write_events($1)", &[&batch(50, 10)])
        .unwrap();
    // event 30 deleted: it leaves the buffer
    setup
        .execute(
            "DELETE FROM fractality.experience_events WHERE event_id = $1",
            &[&id(30)],
        )
        .unwrap();
    let update = |c: &mut Client, ids: &[Vec<u8>], ps: &[f64]| {
        c.query_one(
            "SELECT fractality.update_priorities('found_by', $1, $2)",
            &[&ids, &ps],
        )
        .map(|r| r.get::<_, i64>(0))
    };
    // events 0 and 9 left the buffer since they were drawn (their slots are 50's and 59's): a
    // learner's batch holding them writes the rest (as Reverb does; it failed whole, and the
    // learner could not write that batch back at all)
    for gone in [0, 9] {
        assert_eq!(
            update(&mut learner, &[id(20), id(gone)], &[1.0, 1.0]).unwrap(),
            1,
            "event {gone} skipped"
        );
    }
    // so are a deleted event (30) and an id never written
    for none in [30, 0xdead] {
        assert_eq!(
            update(&mut learner, &[id(20), id(none)], &[1.5, 1.0]).unwrap(),
            1,
            "event {none} skipped"
        );
    }
    // drawn (20, 40), never drawn by the learner (50, 59), from a session that drew nothing (21)
    assert_eq!(
        update(
            &mut learner,
            &[id(20), id(50), id(40), id(59)],
            &[2.0, 3.0, 4.0, 5.0]
        )
        .unwrap(),
        4
    );
    assert_eq!(update(&mut common::db(), &[id(21)], &[6.0]).unwrap(), 1);
    let priority = |c: &mut Client, i: u128| -> (i64, f64) {
        let r = c
            .query_one(
                "SELECT v.slot, v.priority FROM fractality.replay_priorities v
                   JOIN fractality.replay_buffers b USING (buffer_id)
                  WHERE b.name = 'found_by' AND v.event_id = $1",
                &[&id(i)],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    // with the timestamps sample_experiences returns: found by them, from any session
    let at = |c: &mut Client, ids: &[u128], ts: &[Option<i64>], ps: &[f64]| {
        let ids: Vec<Vec<u8>> = ids.iter().map(|i| id(*i)).collect();
        c.query_one(
            "SELECT fractality.update_priorities('found_by', $1, $2, $3)",
            &[&ids, &ps, &ts],
        )
        .map(|r| r.get::<_, i64>(0))
    };
    let ts = |i: u128| Some(9_600_000_000 + i as i64);
    assert_eq!(
        at(&mut common::db(), &[22, 51], &[ts(22), ts(51)], &[7.0, 8.0]).unwrap(),
        2
    );
    // event 0 left the buffer (its slot is event 50's): skipped
    assert_eq!(
        at(&mut learner, &[0, 51], &[ts(0), ts(51)], &[1.0, 8.0]).unwrap(),
        1
    );
    // event 23 is not at event 24's timestamp: no item there, skipped
    assert_eq!(
        at(&mut learner, &[22, 23], &[ts(22), ts(24)], &[7.0, 1.0]).unwrap(),
        1
    );
    for (ids, stamps, code) in [
        (vec![22], vec![ts(22), ts(23)], "22023"),
        (vec![22], vec![None], "22004"),
    ] {
        let err = at(&mut learner, &ids, &stamps, &vec![1.0; ids.len()]).unwrap_err();
        let db = err.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), code, "{ids:?} at {stamps:?}: {db:?}");
    }
    for (i, slot, p) in [
        (20, 20, 2.0),
        (50, 0, 3.0),
        (40, 40, 4.0),
        (59, 9, 5.0),
        (21, 21, 6.0),
        (22, 22, 7.0),
        (51, 1, 8.0),
    ] {
        let (at, got) = priority(&mut setup, i);
        assert_eq!(at, slot, "event {i}'s slot");
        assert_relative_eq!(got, p + 0.001, epsilon = 1e-12);
    }
    setup
        .batch_execute(
            "SELECT fractality.drop_replay_buffer('found_by');
             DELETE FROM fractality.experience_events WHERE adna_version_hash = 7772",
        )
        .unwrap();
}

/// A first batch that makes the sum tree grow by several levels at once (20 000 items: three
/// levels over one) counts every item: the draws reach the items past the first 14 400 as
/// often as their share says. So does the first batch after a TRUNCATE, whose slots start where
/// the emptied buffer's ended.
#[test]
fn replay_a_tree_grown_by_several_levels_at_once_draws_every_item() {
    let _g = lock();
    let mut c = common::db();
    c.batch_execute("SELECT fractality.create_replay_buffer('grown', policy_version => 4242)")
        .unwrap();
    let ts0 = 9_700_000_000i64;
    let batch = |n: usize, ts0: i64, id0: u128| {
        Value::Array(
            (0..n)
                .map(|i| {
                    let mut e = event(ts0 + i as i64, id0 + i as u128, 97, i as i32, 0.5);
                    e["adna_version_hash"] = json!(4242);
                    e
                })
                .collect(),
        )
    };
    let n = 20_000usize;
    c.query_one(
        "SELECT fractality.write_events($1)",
        &[&batch(n, ts0, 0x97_0000_0000)],
    )
    .unwrap();
    let (late, drawn): (i64, i64) = c
        .query_one(
            "SELECT count(*) FILTER (WHERE event_timestamp >= $1), count(*)
               FROM fractality.sample_experiences('grown', 20000, seed => 7)",
            &[&(ts0 + 14_400)],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(drawn, 20_000);
    // 5 600 of 20 000 items, all of one priority: 28 % of the draws
    let share = late as f64 / drawn as f64;
    assert!(
        (0.25..0.31).contains(&share),
        "draws past the 14 400th item: {share}"
    );
    // emptied, then 50 items at slots 20 000 and on
    c.batch_execute("TRUNCATE fractality.experience_events CASCADE")
        .unwrap();
    c.query_one(
        "SELECT fractality.write_events($1)",
        &[&batch(50, ts0 + 100_000, 0x97_1000_0000)],
    )
    .unwrap();
    let drawn: i64 = c
        .query_one(
            "SELECT count(DISTINCT event_id) FROM fractality.sample_experiences('grown', 2000, seed => 7)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(drawn, 50, "after a TRUNCATE every new item is drawn");
    // a learner's batch with a window as long as intervals go: each draw with its next step
    let (rows, with_next): (i64, i64) = c
        .query_one(
            "SELECT count(*), count(next_state)
               FROM fractality.replay_batch('grown', 4, seed => 1, next_within => '300000 years')",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(rows, 4);
    assert!(
        with_next >= 3,
        "the next steps within the window: {with_next}"
    );
}

/// The integer limits of an event (found by a review, 2026-12-07): bigint's largest timestamp
/// is refused by every writer (22023, naming it) and by the table, and nothing is written (it was
/// written, then failed every replay buffer with a bare "bigint out of range" and no time range
/// could read it); integer's largest step, and a timestamp a microsecond below bigint's largest,
/// go through a buffer and replay_batch, which gives them no next state (its step + 1 and its
/// window's end overflowed).
#[test]
fn events_at_the_integer_limits() {
    let _g = lock();
    let mut c = common::db();
    c.batch_execute("SELECT fractality.create_replay_buffer('limits', policy_version => 4343)")
        .unwrap();
    let with_policy = |mut e: Value| {
        e["adna_version_hash"] = json!(4343);
        e
    };
    let top = i64::MAX;
    let before = count(&mut c, 0, top);
    let json = Value::Array(vec![with_policy(event(top, 0x43_0001, 43, 0, 0.5))]);
    for (sql, arg) in [
        ("SELECT fractality.write_events($1::jsonb)", json.clone()),
        (
            "SELECT fractality.write_events_json($1::jsonb::text)",
            json.clone(),
        ),
    ] {
        let err = c.query_one(sql, &[&arg]).unwrap_err();
        assert_eq!(common::sqlstate(&err), "22023", "{sql}: {err}");
        let message = err.as_db_error().map(|d| d.message().to_string());
        assert!(
            message.is_some_and(|m| m.contains("9223372036854775807")),
            "{err:?}"
        );
    }
    let err = c
        .query_one(
            "SELECT fractality.write_event(decode(lpad('430002', 32, '0'), 'hex'), $1, 43, 0, 1::smallint, 0::smallint,
                    array_fill(0.5::real, ARRAY[8]), array_fill(0.5::real, ARRAY[8]), 4343, 0)",
            &[&top],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    let err = c
        .batch_execute(&format!(
            "INSERT INTO fractality.experience_events (\"timestamp\", episode_id, step_number, event_type, flags,
                 state_l1, state_l2, state_l3, state_l4, state_l5, state_l6, state_l7, state_l8,
                 action_l1, action_l2, action_l3, action_l4, action_l5, action_l6, action_l7, action_l8,
                 adna_version_hash, sequence_number, event_id)
             VALUES ({top}, 43, 0, 1, 0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 4343, 0,
                     decode(lpad('430003', 32, '0'), 'hex'))"
        ))
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "23514", "{err}");
    assert_eq!(count(&mut c, 0, top), before, "nothing written");
    // the limits that are events: the last step of integer's range, a microsecond below the top
    let last = Value::Array(vec![
        with_policy(event(top - 1, 0x43_0004, 44, i32::MAX, 0.5)),
        with_policy(event(9_430_000_000, 0x43_0005, 45, i32::MAX, 0.5)),
    ]);
    c.query_one("SELECT fractality.write_events($1)", &[&last])
        .unwrap();
    let (rows, with_next): (i64, i64) = c
        .query_one(
            "SELECT count(*), count(next_state)
               FROM fractality.replay_batch('limits', 20, seed => 3, next_within => '300000 years')",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(rows, 20);
    assert_eq!(with_next, 0, "a last step has no next one");
    c.batch_execute(
        "SELECT fractality.drop_replay_buffer('limits');
         DELETE FROM fractality.experience_events WHERE episode_id IN (44, 45) AND adna_version_hash = 4343;",
    )
    .unwrap();
}

/// Three events of episode 98 and policy version `policy` (steps 0-2, timestamps from `ts0`, ids
/// from `id0`), as a batch.
fn three_events(policy: i32, ts0: i64, id0: u128) -> Value {
    Value::Array(
        (0..3)
            .map(|i| {
                let mut e = event(ts0 + i, id0 + i as u128, 98, i as i32, 5.0);
                e["adna_version_hash"] = json!(policy);
                e
            })
            .collect(),
    )
}

/// Three events of episode 98 and policy version `policy` (steps 0-2, timestamps from `ts0`, ids
/// from `id0`), written; their ids in id order.
fn three_events_of_policy(c: &mut Client, policy: i32, ts0: i64, id0: u128) -> Vec<Vec<u8>> {
    c.query_one(
        "SELECT fractality.write_events($1)",
        &[&three_events(policy, ts0, id0)],
    )
    .unwrap();
    c.query(
        "SELECT event_id FROM fractality.experience_events WHERE adna_version_hash = $1
          ORDER BY event_id",
        &[&policy],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A priority whose power the sum tree could not hold is refused (22023), nothing written; one
/// it can hold is taken. The 0.4.0 sampler refuses an alpha whose powers overflow (22003).
#[test]
fn replay_priorities_past_what_the_tree_holds_are_refused() {
    let _g = lock();
    let mut c = common::db();
    c.batch_execute(
        "SELECT fractality.create_replay_buffer('steep', alpha => 10, policy_version => 4343)",
    )
    .unwrap();
    let id = three_events_of_policy(&mut c, 4343, 9_800_000_000, 0x98_0000_0000).remove(0);
    let pending = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT pending FROM fractality.replay_buffers WHERE name = 'steep'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = pending(&mut c);
    let e = c
        .query_one(
            "SELECT fractality.update_priorities('steep', ARRAY[$1::bytea], ARRAY[1e31::float8])",
            &[&id],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "22023", "{e}");
    assert_eq!(pending(&mut c), before, "nothing written");
    // an id that no event can have (16 bytes each) is refused, not skipped as an unknown one
    // (found by a review: it returned 0)
    let e = c
        .query_one(
            "SELECT fractality.update_priorities('steep', ARRAY[$1::bytea, '\\x01'::bytea], ARRAY[1.0, 1.0])",
            &[&id],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "22023", "{e}");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert_eq!(
        message.as_deref(),
        Some("invalid value for event_ids: 1 bytes at position 2")
    );
    assert_eq!(pending(&mut c), before, "nothing written");
    let taken: i64 = c
        .query_one(
            "SELECT fractality.update_priorities('steep', ARRAY[$1::bytea], ARRAY[1e20::float8])",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(taken, 1);
    // 1e200 of 1e200 + two small ones: every draw is that event
    let draws: Vec<Vec<u8>> = c
        .query(
            "SELECT event_id FROM fractality.sample_experiences('steep', 20, seed => 3)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(draws.len() == 20 && draws.iter().all(|d| *d == id));
    let e = c
        .query_one(
            "SELECT count(*) FROM fractality.sample_experiences(10, alpha => 1000)",
            &[],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "22003", "{e}");
}

/// A priority written far down after it was folded: the tree's sums above the leaves held
/// 1e17 + 1 + 1 = 1e17, so the write, left pending, brought them to 0 (or to rounding's
/// leftovers) and the sample came back empty or skewed. It is folded at once, and the three
/// events are drawn by what they hold.
#[test]
fn replay_a_priority_written_far_down_is_drawn_by_what_is_left() {
    let _g = lock();
    let mut c = common::db();
    // 1 000 slots: a tree with a level above its leaves
    c.batch_execute(
        "SELECT fractality.create_replay_buffer('plunge', alpha => 1, epsilon => 1e-300,
                                                capacity => 1000, policy_version => 4344)",
    )
    .unwrap();
    let ids = three_events_of_policy(&mut c, 4344, 9_810_000_000, 0x98_1000_0000);
    assert_eq!(ids.len(), 3);
    c.query_one(
        "SELECT fractality.update_priorities('plunge', $1, ARRAY[1e17, 1, 1]::float8[])",
        &[&ids],
    )
    .unwrap();
    c.batch_execute("SELECT fractality.fold_priorities('plunge')")
        .unwrap();
    c.query_one(
        "SELECT fractality.update_priorities('plunge', ARRAY[$1::bytea], ARRAY[2::float8])",
        &[&ids[0]],
    )
    .unwrap();
    let pending: i64 = c
        .query_one(
            "SELECT pending FROM fractality.replay_buffers WHERE name = 'plunge'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "folded at once");
    let rows = c
        .query(
            "SELECT event_id, probability, weight
               FROM fractality.sample_experiences('plunge', 60, beta => 1, seed => 3)",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 60);
    let mut drawn = std::collections::BTreeSet::new();
    for r in &rows {
        let id: Vec<u8> = r.get(0);
        let (p, w): (f64, f64) = (r.get(1), r.get(2));
        if id == ids[0] {
            assert_relative_eq!(p, 0.5, max_relative = 1e-12);
            assert_relative_eq!(w, 0.5, max_relative = 1e-12); // (0.25 / 0.5) ^ 1
        } else {
            assert_relative_eq!(p, 0.25, max_relative = 1e-12);
            assert_relative_eq!(w, 1.0);
        }
        drawn.insert(id);
    }
    assert_eq!(drawn.len(), 3);
    c.batch_execute("SELECT fractality.drop_replay_buffer('plunge')")
        .unwrap();
}

/// An event's id and timestamp do not change (23001, nothing written): an id changed would let
/// a second event take the old one's place in the registry, a timestamp changed would orphan
/// its action metadata. Other columns may be updated. A reward sum beyond a real is refused at
/// the write, naming the event (22023), not later by the reward inbox.
#[test]
fn an_events_identity_does_not_change() {
    let _g = lock();
    let mut c = common::db();
    let ts = 9_900_000_000i64;
    let e = event(ts, 0x99_0000_0001, 99, 0, 0.5);
    c.query_one(
        "SELECT fractality.write_events($1)",
        &[&Value::Array(vec![e])],
    )
    .unwrap();
    for sql in [
        format!("UPDATE fractality.experience_events SET event_id = '\\x00000000000000000000000000990002'::bytea WHERE \"timestamp\" = {ts}"),
        format!("UPDATE fractality.experience_events SET \"timestamp\" = {} WHERE \"timestamp\" = {ts}", ts + 1),
    ] {
        let err = c.batch_execute(&sql).unwrap_err();
        assert_eq!(common::sqlstate(&err), "23001", "{sql}: {err}");
    }
    assert_eq!(count(&mut c, ts, ts + 1), 1);
    c.batch_execute(&format!(
        "UPDATE fractality.experience_events SET flags = 1 WHERE \"timestamp\" = {ts}"
    ))
    .unwrap();
    // rewards whose sum is beyond a real: refused at the UPDATE as at a write, so that the
    // readers, which sum them, keep reading the event
    let err = c
        .batch_execute(&format!(
            "UPDATE fractality.experience_events SET reward_curiosity = 3e38, reward_goal = 3e38 WHERE \"timestamp\" = {ts}"
        ))
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22003", "{err}");
    let goal: f32 = c
        .query_one(
            "SELECT total_reward FROM fractality.query_events($1, $2)",
            &[&ts, &(ts + 1)],
        )
        .unwrap()
        .get(0);
    assert_relative_eq!(goal, 0.6, epsilon = 1e-6);
    c.batch_execute(&format!(
        "UPDATE fractality.experience_events SET reward_goal = 2 WHERE \"timestamp\" = {ts}"
    ))
    .unwrap();
    let mut big = event(ts + 10, 0x99_0000_0003, 99, 1, 3e38);
    big["reward_curiosity"] = json!(3e38);
    let err = c
        .query_one(
            "SELECT fractality.write_events($1)",
            &[&Value::Array(vec![big])],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains("field \"rewards\": their sum"),
        "{message}"
    );
    assert_eq!(count(&mut c, ts + 10, ts + 11), 0);
}

/// The event writers insert by COPY FROM; they check what a client's COPY FROM checks: INSERT on
/// every column written (a grant on one column is not enough) and no row-level security on the
/// table (COPY FROM does not apply policies, so it refuses such a table).
#[test]
fn the_event_writers_check_what_copy_from_checks() {
    let _g = lock();
    let mut admin = common::db();
    let role = "fr_events_column_writer";
    let mut w = common::app(role, None);
    let ts = 9_910_000_000i64;
    admin
        .execute(
            "DELETE FROM fractality.experience_events WHERE \"timestamp\" = $1",
            &[&ts],
        )
        .unwrap();
    let write = |c: &mut Client, id: u128| {
        c.query_one(
            "SELECT fractality.write_events($1)",
            &[&Value::Array(vec![event(ts, id, 991, 0, 0.5)])],
        )
    };
    admin
        .batch_execute(&format!(
            "REVOKE INSERT ON fractality.experience_events FROM {role};
             GRANT INSERT (created_at) ON fractality.experience_events TO {role};"
        ))
        .unwrap();
    let err = write(&mut w, 0x991_0001).unwrap_err();
    let restore = format!("GRANT INSERT ON fractality.experience_events TO {role}");
    admin.batch_execute(&restore).unwrap();
    assert_eq!(common::sqlstate(&err), "42501", "{err}");
    assert_eq!(count(&mut admin, ts, ts + 1), 0);

    admin
        .batch_execute("ALTER TABLE fractality.experience_events ENABLE ROW LEVEL SECURITY")
        .unwrap();
    let err = write(&mut w, 0x991_0002).unwrap_err();
    admin
        .batch_execute("ALTER TABLE fractality.experience_events DISABLE ROW LEVEL SECURITY")
        .unwrap();
    assert_eq!(common::sqlstate(&err), "0A000", "{err}");
    assert_eq!(count(&mut admin, ts, ts + 1), 0);

    // with the table's grant and no policy in the way, the same role writes
    write(&mut w, 0x991_0003).unwrap();
    assert_eq!(count(&mut admin, ts, ts + 1), 1);
}

/// One call writes at most 1 000 000 events, in every form: a larger batch is refused (22023,
/// naming its size) before it is read, and nothing is written.
#[test]
fn a_batch_beyond_a_million_events_is_refused_before_it_is_read() {
    let _g = lock();
    let mut c = common::db();
    let before = count(&mut c, 0, i64::MAX);
    for sql in [
        "SELECT fractality.write_events(array_fill('\\x00'::bytea, ARRAY[1000001]), '{}'::bigint[],
                '{}'::bigint[], '{}'::integer[], '{}'::smallint[], '{}'::smallint[], '{}'::real[],
                '{}'::real[], '{}'::real[], '{}'::integer[], '{}'::integer[])",
        "SELECT fractality.write_events((SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 1000001)))",
        "SELECT fractality.write_events_json((SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 1000001))::text)",
    ] {
        let err = c.batch_execute(sql).unwrap_err();
        assert_eq!(common::sqlstate(&err), "22023", "{sql}: {err}");
        let message = err
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert_eq!(message, "invalid value for events: 1000001 events", "{sql}");
    }
    assert_eq!(count(&mut c, 0, i64::MAX), before);
}

/// Two policies never share a version_hash, though their hash inputs are the same text (the
/// separator inside the names): the second gets the next candidate, and the reward refresh
/// credits the policy an event names, not both.
#[test]
fn policies_never_share_a_version_hash() {
    let _g = lock();
    let mut c = common::db();
    let ids: Vec<i32> = [
        "SELECT fractality.save_policy(E'vh\\x1fb', 'c', '{\"0\": 1}')",
        "SELECT fractality.save_policy('vh', E'b\\x1fc', '{\"0\": 1}')",
    ]
    .iter()
    .map(|sql| c.query_one(*sql, &[]).unwrap().get(0))
    .collect();
    let hash = |c: &mut Client, id: i32| -> i32 {
        c.query_one(
            "SELECT version_hash FROM fractality.adna_policies WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
    };
    let (a, b) = (hash(&mut c, ids[0]), hash(&mut c, ids[1]));
    let plain: i32 = c
        .query_one(
            "SELECT hashtext(concat_ws(E'\\x1f', 'vh', E'b\\x1fc', 1, '{\"0\": 1}'::jsonb::text))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(a, plain, "the first keeps the plain hash");
    assert_ne!(a, b);
    let mut e = event(9_920_000_000, 0x992_0001, 992, 0, 1.0);
    e["adna_version_hash"] = json!(a);
    c.query_one(
        "SELECT fractality.write_events($1)",
        &[&Value::Array(vec![e])],
    )
    .unwrap();
    c.query_one("SELECT fractality.refresh_policy_rewards()", &[])
        .unwrap();
    let runs = |c: &mut Client, id: i32| -> i64 {
        c.query_one(
            "SELECT total_executions::bigint FROM fractality.adna_policies WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!((runs(&mut c, ids[0]), runs(&mut c, ids[1])), (1, 0));
}

/// The reward aggregates raise 22003 when their sums go beyond a double, as PostgreSQL's own
/// `sum` and `avg` of float8 do (before: -Infinity, NaN or Infinity as an answer).
#[test]
fn reward_aggregates_refuse_an_overflow() {
    let mut c = common::db();
    for sql in [
        "SELECT ((fractality.reward_stats(x)).mean)::text FROM unnest('{1e308,-1e308}'::float8[]) x",
        "SELECT fractality.discounted_return(r, 1.0 ORDER BY r)::text FROM unnest('{1e308,1e308}'::float8[]) r",
        "SELECT fractality.discounted_return(r, 1.0, s)::text
           FROM unnest('{1e308,1e308}'::float8[], '{1,2}'::int[]) AS t(r, s)",
    ] {
        let err = c.query_one(sql, &[]).unwrap_err();
        assert_eq!(common::sqlstate(&err), "22003", "{sql}: {err}");
    }
    // finite sums stay answers
    let mean: f64 = c
        .query_one(
            "SELECT (fractality.reward_stats(x)).mean FROM unnest('{1e150,3e150}'::float8[]) x",
            &[],
        )
        .unwrap()
        .get(0);
    approx::assert_relative_eq!(mean, 2e150, max_relative = 1e-12);
}

/// A buffer made with backfill takes an event written meanwhile by another session: it waits
/// for the writer and then reads it (before: the event, invisible to the backfill and written
/// before the buffer existed, entered neither way).
#[test]
fn a_backfilled_buffer_takes_an_event_written_meanwhile() {
    let _g = lock();
    let mut w = common::db();
    w.batch_execute("SELECT fractality.drop_replay_buffer('meanwhile') WHERE EXISTS (SELECT 1 FROM fractality.replay_buffers WHERE name = 'meanwhile')")
        .unwrap();
    let mut e = event(9_100_000_000, 0x9191_0001, 91, 1, 0.5);
    e["adna_version_hash"] = json!(919191);
    w.batch_execute("BEGIN").unwrap();
    w.query_one(
        "SELECT fractality.write_events($1)",
        &[&Value::Array(vec![e])],
    )
    .unwrap();
    let made = std::thread::spawn(|| {
        let mut c = common::db();
        c.query_one(
            "SELECT fractality.create_replay_buffer('meanwhile', policy_version => 919191, backfill => true)",
            &[],
        )
        .map(|r| r.get::<_, i32>(0))
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    w.batch_execute("COMMIT").unwrap();
    made.join().unwrap().unwrap();
    let size: i64 = w
        .query_one(
            "SELECT size FROM fractality.replay_buffers WHERE name = 'meanwhile'",
            &[],
        )
        .unwrap()
        .get(0);
    w.batch_execute("SELECT fractality.drop_replay_buffer('meanwhile')")
        .unwrap();
    assert_eq!(size, 1);
    // a snapshot older than the lock would miss such an event: refused
    w.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .unwrap();
    let err = w
        .batch_execute("SELECT fractality.create_replay_buffer('meanwhile', backfill => true)")
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "55000", "{err}");
    w.batch_execute("ROLLBACK").unwrap();
}

/// Two transactions writing batches of two buffers' events in opposite orders do not deadlock:
/// a transaction's first batch locks every buffer, in the order of their ids, so the second
/// transaction waits for the first at its own first batch (a batch that locked only the buffers
/// it enters left the two holding one buffer each and asking for the other's).
#[test]
fn replay_writers_of_two_buffers_in_opposite_orders_do_not_deadlock() {
    let _g = lock();
    let mut c = common::db();
    c.batch_execute(
        "SELECT fractality.create_replay_buffer('order_a', policy_version => 6161);
         SELECT fractality.create_replay_buffer('order_b', policy_version => 6262);",
    )
    .unwrap();
    let mut first = common::db();
    first.batch_execute("BEGIN").unwrap();
    three_events_of_policy(&mut first, 6262, 9_940_000_000, 0x9a_0000_0000);
    let mut second = common::db();
    let pid: i32 = second
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let other = std::thread::spawn(move || {
        second.batch_execute("BEGIN")?;
        for (policy, ts, id) in [
            (6161, 9_950_000_000, 0x9a_1000_0000u128),
            (6262, 9_960_000_000, 0x9a_2000_0000),
        ] {
            second.query_one(
                "SELECT fractality.write_events($1)",
                &[&three_events(policy, ts, id)],
            )?;
        }
        second.batch_execute("COMMIT")
    });
    common::waits_for_a_lock(&mut c, pid, &other);
    // the first transaction's batch of the other buffer
    let events = three_events(6161, 9_970_000_000, 0x9a_3000_0000);
    let mine = first
        .query_one("SELECT fractality.write_events($1)", &[&events])
        .map_err(|e| common::sqlstate(&e));
    first.batch_execute("COMMIT").unwrap();
    let theirs = other.join().unwrap().map_err(|e| common::sqlstate(&e));
    assert_eq!(
        (mine.map(|_| ()), theirs),
        (Ok(()), Ok(())),
        "neither deadlocked"
    );
    let written: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.experience_events WHERE adna_version_hash IN (6161, 6262)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(written, 12);
    c.batch_execute(
        "SELECT fractality.drop_replay_buffer('order_a'), fractality.drop_replay_buffer('order_b')",
    )
    .unwrap();
}

/// The backend's anonymous resident memory, in kB (Linux; the test runs as a superuser).
fn rss_anon_kb(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                              'RssAnon:[[:space:]]+([0-9]+)'))[1]::bigint",
        &[],
    )
    .unwrap()
    .get(0)
}

/// A large document gives its memory back, refused or not, at the latest with the next call that
/// may allocate much: the Rust side reads it into many small allocations, which glibc kept in
/// the backend after the call (a pooled backend held 381 MB after a `freeze` of 8 100 000 values
/// refused with 54000, and each such call more). What PostgreSQL frees after the call (the
/// document's text) goes back with that next call.
#[test]
fn a_large_document_leaves_no_memory_behind_in_the_backend() {
    let _l = lock();
    let mut c = common::db();
    c.batch_execute("SET fractality.user_id = '7e110000-0000-4000-8000-000000000001'")
        .unwrap();
    c.batch_execute(
        "CREATE TEMP TABLE large_doc AS
         SELECT jsonb_build_object('node_key', 'large', 'stream',
                                   (SELECT jsonb_agg(g) FROM generate_series(1, 8100000) g)) AS d",
    )
    .unwrap();
    let before = rss_anon_kb(&mut c);
    let e = c
        .query_one("SELECT fractality.freeze((SELECT d FROM large_doc))", &[])
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "54000", "{e}");
    c.batch_execute("SELECT fractality.freeze('{\"node_key\": \"small\"}')")
        .unwrap();
    let after = rss_anon_kb(&mut c);
    assert!(
        after - before < 24 * 1024,
        "the backend kept {} kB after the document ({before} kB before)",
        after - before
    );
}

/// Action metadata's reference check finds its event by its id, not by reading the partition:
/// with the BRIN over "timestamp" alone, every page written since the last VACUUM matched, so
/// each row's check at commit read them all (a batch of 8 000 events with metadata took 6.8 s to
/// commit, 0.3 s without; 16 000, 139 s). Counted here in the partition's heap blocks that one
/// event's write and its check (made immediate) fetch in their transaction, after 40 000 events
/// not yet summarised.
#[test]
fn a_metadata_check_reads_its_event_not_the_partition() {
    let db = "fractality_metadata_check";
    let mut c = common::fresh_db(
        db,
        "CREATE EXTENSION fractality CASCADE; SELECT fractality.ensure_partitions(1);",
    );
    // an hour into this month (UTC), so that the events are in its partition on any day
    let start: i64 = c
        .query_one(
            "SELECT fractality.epoch_us(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') + 3600000000",
            &[],
        )
        .unwrap()
        .get(0);
    let n = 40_000i64;
    let ids: Vec<Vec<u8>> = (0..n)
        .map(|i| (0x5e00_0000u128 + i as u128).to_be_bytes().to_vec())
        .collect();
    let ts: Vec<i64> = (0..n).map(|i| start + i).collect();
    let zeros = vec![0f32; 8 * n as usize];
    let rewards = vec![0f32; 4 * n as usize];
    let small = vec![0i16; n as usize];
    let ints = vec![0i32; n as usize];
    let episodes = vec![7i64; n as usize];
    c.query_one(
        "SELECT fractality.write_events($1::bytea[], $2::int8[], $3::int8[], $4::int4[], $5::int2[], $6::int2[], $7::real[], $8::real[], $9::real[], $10::int4[], $11::int4[])",
        &[&ids, &ts, &episodes, &ints, &small, &small, &zeros, &zeros, &rewards, &ints, &ints],
    )
    .unwrap();
    let part: String = c
        .query_one(
            "SELECT tableoid::regclass::text FROM fractality.experience_events WHERE \"timestamp\" = $1",
            &[&start],
        )
        .unwrap()
        .get(0);
    let pages: i32 = c
        .query_one(
            "SELECT (pg_relation_size($1::text::regclass) / current_setting('block_size')::int)::int",
            &[&part],
        )
        .unwrap()
        .get(0);
    assert!(pages > 500, "{part}: {pages} pages");
    // the partition's blocks this transaction fetched (this backend's own count: no other
    // session, autovacuum included, adds to it), with the deferred check made to run at once
    let mut tx = c.transaction().unwrap();
    let fetched = |tx: &mut postgres::Transaction| -> i64 {
        tx.query_one(
            "SELECT pg_stat_get_xact_blocks_fetched($1::text::regclass)",
            &[&part],
        )
        .unwrap()
        .get(0)
    };
    let before = fetched(&mut tx);
    let id = (0x5eff_0001u128).to_be_bytes().to_vec();
    let one_ts = start + n + 1;
    tx.query_one(
        "SELECT fractality.write_event($1, $2, 7, 0, 0::int2, 0::int2, '{0,0,0,0,0,0,0,0}', '{0,0,0,0,0,0,0,0}', 0, 0,
                metadata => '{\"intent_type\": \"probe\", \"executor_id\": \"test\"}')",
        &[&id, &one_ts],
    )
    .unwrap();
    tx.batch_execute("SET CONSTRAINTS fractality.action_metadata_event IMMEDIATE")
        .unwrap();
    let after = fetched(&mut tx);
    tx.commit().unwrap();
    let stored: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.action_metadata WHERE event_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    assert!(
        after - before < 50,
        "the write and its check read {} of {part}'s {pages} pages",
        after - before
    );
    drop(c);
    common::drop_db(db);
}

/// Two batches sharing two event ids in other orders, written at once, do not deadlock: the id
/// registry takes a batch's ids in their order, so the second batch waits for the first and then
/// fails with 23505 naming the id, not with 40P01 (found by a review: 3 of 3 runs of two batches
/// of 300 000 events deadlocked). A trigger of this test's own database sleeps before each id
/// the registry takes, so that the two statements interleave every time.
#[test]
fn two_batches_sharing_ids_in_other_orders_wait_rather_than_deadlock() {
    let db = "fractality_event_id_order";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute(
        "CREATE FUNCTION public.slow_registry() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON fractality.experience_event_ids
             FOR EACH ROW EXECUTE FUNCTION public.slow_registry();",
    )
    .unwrap();
    let (a, b) = (0xAAA1_u128, 0xAAA2_u128);
    let batches = [
        json!([event(1_000, b, 1, 0, 0.5), event(1_001, a, 1, 1, 0.5)]),
        json!([event(2_000, a, 2, 0, 0.5), event(2_001, b, 2, 1, 0.5)]),
    ];
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let writers: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let start = start.clone();
            let url = common::url_of(db);
            std::thread::spawn(move || {
                let mut w = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                start.wait();
                w.query_one("SELECT fractality.write_events($1::jsonb)", &[&batch])
                    .map(|r| r.get::<_, i64>(0))
            })
        })
        .collect();
    let results: Vec<Result<i64, postgres::Error>> =
        writers.into_iter().map(|w| w.join().unwrap()).collect();
    let written: Vec<&i64> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(written, vec![&2], "one batch written whole: {results:?}");
    let e = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(common::sqlstate(e), "23505", "{e}");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(
        msg.contains(&format!("event_id \\x{a:032x}")) && msg.contains("already stored"),
        "{msg}"
    );
    let stored: i64 = c
        .query_one("SELECT count(*) FROM fractality.experience_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 2);
    drop(c);
    common::drop_db(db);
}
