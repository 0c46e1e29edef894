//! The consciousness_update notification, received by a real client with LISTEN.

mod common;

use std::time::Duration;

#[test]
fn node_changes_are_announced_with_their_payload() {
    let mut listener = common::listener();
    let mut writer = common::db();
    let user = common::tenant();
    let id: uuid::Uuid = writer
        .query_one(
            "INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES ($1, 'spark', 0.75) RETURNING id",
            &[&user],
        )
        .unwrap()
        .get(0);
    writer
        .execute(
            "UPDATE fractality.nodes SET atp = 0.5 WHERE id = $1",
            &[&id],
        )
        .unwrap();
    writer
        .execute("DELETE FROM fractality.nodes WHERE id = $1", &[&id])
        .unwrap();

    let mine: Vec<serde_json::Value> = common::notifications(&mut listener, Duration::from_secs(2))
        .into_iter()
        .filter(|p| p["user_id"] == user.to_string())
        .collect();
    let actions: Vec<&str> = mine.iter().map(|p| p["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["INSERT", "UPDATE", "DELETE"]);
    for p in &mine {
        assert_eq!(p["node_id"], id.to_string());
        assert_eq!(p["node_key"], "spark");
    }
    assert_eq!(mine[0]["atp"], 0.75);
    assert_eq!(mine[1]["atp"], 0.5);
}

#[test]
fn bulk_loads_can_turn_notifications_off() {
    let mut listener = common::listener();
    let mut writer = common::db();
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
        .filter(|p| p["user_id"] == user.to_string())
        .count();
    assert_eq!(
        mine, 0,
        "no notification for a bulk load with fractality.notify = off"
    );
}
