//! The consciousness_update notification, received by a real client with LISTEN: off by
//! default (any session may LISTEN, whatever its role), sent while a session turns it on.

mod common;

use std::time::Duration;

/// A node of `user` inserted by `insert` (returning its id), changed by `update` (its id as $1),
/// then deleted, by a session with the notification on: its energy as `node_energy` read it
/// after the update, and the payloads for `user` that a listener opened before heard (checked:
/// one each for the insert, the update and the delete, naming the node).
fn insert_update_delete(
    user: uuid::Uuid,
    insert: &str,
    update: &str,
) -> (f64, Vec<serde_json::Value>) {
    let mut listener = common::listener();
    let mut writer = common::db();
    writer.batch_execute("SET fractality.notify = on").unwrap();
    let id: uuid::Uuid = writer.query_one(insert, &[&user]).unwrap().get(0);
    writer.execute(update, &[&id]).unwrap();
    let now: f64 = writer
        .query_one(
            "SELECT atp FROM fractality.node_energy WHERE node_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    writer
        .execute("DELETE FROM fractality.nodes WHERE id = $1", &[&id])
        .unwrap();
    let mine: Vec<serde_json::Value> = common::notifications(&mut listener, Duration::from_secs(2))
        .into_iter()
        .filter(|p| p["tenant"] == common::digest(user))
        .collect();
    let actions: Vec<&str> = mine.iter().map(|p| p["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["INSERT", "UPDATE", "DELETE"]);
    // never the tenant's id, which a session sets to act as the tenant
    for p in &mine {
        assert!(!p.to_string().contains(&user.to_string()), "{p}");
    }
    for p in &mine {
        assert_eq!(p["node_id"], id.to_string());
    }
    (now, mine)
}

#[test]
fn node_changes_are_announced_with_their_payload() {
    let (_, mine) = insert_update_delete(
        common::tenant(),
        "INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES ($1, 'spark', 0.75) RETURNING id",
        "UPDATE fractality.nodes SET atp = 0.5, atp_at = now() WHERE id = $1",
    );
    for p in &mine {
        assert_eq!(p["node_key"], "spark");
    }
    // exact on purpose: written with atp_at = now(), the energy of now is the value written
    // (the decay returns its input unchanged when no time has passed, no pow of 0 in between)
    assert_eq!(mine[0]["atp"], 0.75);
    assert_eq!(mine[1]["atp"], 0.5);
}

/// The payload's energy is the node's energy now, as `node_energy` reads it: for a node whose
/// energy was stored two hours ago and whose label changes, the decayed value, not the stored one.
#[test]
fn a_payload_carries_the_energy_of_now() {
    let (now, mine) = insert_update_delete(
        common::tenant(),
        "INSERT INTO fractality.nodes (user_id, node_key, atp, atp_at)
         VALUES ($1, 'ember', 0.8, now() - interval '2 hours') RETURNING id",
        "UPDATE fractality.nodes SET label = 'renamed' WHERE id = $1",
    );
    // 0.8 x 0.95^2 under the default settings (the statements run milliseconds apart)
    approx::assert_relative_eq!(now, 0.722, max_relative = 1e-6);
    for p in &mine {
        let atp = p["atp"].as_f64().unwrap();
        approx::assert_relative_eq!(atp, now, max_relative = 1e-6);
    }
}

#[test]
fn bulk_loads_can_turn_notifications_off() {
    let mut listener = common::listener();
    let mut writer = common::db();
    writer.batch_execute("SET fractality.notify = on").unwrap();
    let user = common::tenant();
    let mut tx = writer.transaction().unwrap();
    tx.batch_execute("SET LOCAL fractality.notify = off")
        .unwrap();
    tx.execute(
        "INSERT INTO fractality.nodes (user_id, node_key)
         SELECT $1, 'bulk-' || i FROM generate_series(1, 1000) i",
        &[&user],
    )
    .unwrap();
    tx.commit().unwrap();
    let mine = common::notifications(&mut listener, Duration::from_millis(500))
        .into_iter()
        .filter(|p| p["tenant"] == common::digest(user))
        .count();
    assert_eq!(
        mine, 0,
        "no notification for a bulk load with fractality.notify = off"
    );
    // the session's own setting is back after the transaction: the next write is announced
    writer
        .execute(
            "INSERT INTO fractality.nodes (user_id, node_key) VALUES ($1, 'after-bulk')",
            &[&user],
        )
        .unwrap();
    let mine = common::notifications(&mut listener, Duration::from_secs(2))
        .into_iter()
        .filter(|p| p["tenant"] == common::digest(user))
        .count();
    assert_eq!(mine, 1);
}

/// A tenant's writes send nothing under the default settings, though any role may LISTEN: the
/// channel is the database's, row-level security does not reach it, and a payload names the
/// tenant, key and energy.
#[test]
fn notifications_are_off_unless_a_session_turns_them_on() {
    let mut listener = common::app("fr_notify_listener", None);
    listener
        .batch_execute("LISTEN consciousness_update")
        .unwrap();
    let user = common::tenant();
    let mut writer = common::app("fr_notify_writer", Some(user));
    let on: bool = writer
        .query_one("SELECT fractality.notify_enabled()", &[])
        .unwrap()
        .get(0);
    assert!(!on, "fractality.notify is on by default");
    // two memories far apart (cosine 0), so that the second is not taken for the first
    let write = |c: &mut postgres::Client, key: &str, sign: f64| {
        c.query_one(
            "SELECT node_id FROM fractality.remember($1, 'a secret of ' || $1,
                    (array_fill(0.5::float8, ARRAY[192]) || array_fill($2::float8 * 0.5, ARRAY[192]))::vector)",
            &[&key, &sign],
        )
        .unwrap();
    };
    write(&mut writer, "quiet", 1.0);
    let heard = common::notifications(&mut listener, Duration::from_millis(700))
        .into_iter()
        .filter(|p| p["tenant"] == common::digest(user))
        .count();
    assert_eq!(
        heard, 0,
        "a tenant's write announced under the default settings"
    );
    // turned on, the same write reaches a listener of another role
    writer.batch_execute("SET fractality.notify = on").unwrap();
    write(&mut writer, "loud", -1.0);
    let heard: Vec<serde_json::Value> =
        common::notifications(&mut listener, Duration::from_secs(2))
            .into_iter()
            .filter(|p| p["tenant"] == common::digest(user))
            .collect();
    assert!(!heard.is_empty());
    assert!(heard.iter().all(|p| p["node_key"] == "loud"), "{heard:?}");
}
