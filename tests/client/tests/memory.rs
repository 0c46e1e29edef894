//! The agent memory API through a real client, as application roles: two sessions telling the
//! same fact at once end with one memory (by content and by similarity under another key);
//! recall's answer equals the score computed over every memory of the tenant (both search
//! paths, with remember_many's embeddings staged, half indexed, all indexed); a read-only recall
//! writes nothing.

mod common;
mod reliability;

use postgres::Client;
use reliability::vector_text;
use std::thread;
use uuid::Uuid;

/// Runs `sql` in a transaction of `c` and holds it open; returns after the statement ran.
fn begin_and(c: &mut Client, sql: &str) {
    c.batch_execute("BEGIN").unwrap();
    c.batch_execute(sql).unwrap();
}

/// Waits until backend `pid` waits for a lock.
fn wait_for_lock(admin: &mut Client, pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting: bool = admin
            .query_one(
                "SELECT coalesce(bool_or(state = 'active' AND wait_event_type = 'Lock'), false)
                   FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{pid} never waited");
        thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn two_sessions_telling_the_same_fact_end_with_one_memory() {
    let tenant = common::tenant();
    let mut admin = common::db();
    for (case, second_key, first_vector, second_vector) in [
        // the same content, no key: the same derived key
        (
            "same content",
            "NULL",
            vector_text(6, 1, 0.0),
            vector_text(6, 1, 0.0),
        ),
        // another key, a near-identical vector: the duplicate check
        (
            "other key",
            "'told-differently'",
            vector_text(7, 1, 0.0),
            vector_text(7, 1, 0.001),
        ),
    ] {
        let mut a = common::app("fractality_memory_a", Some(tenant));
        let mut b = common::app("fractality_memory_a", Some(tenant));
        begin_and(
            &mut a,
            &format!(
                "SELECT fractality.remember(NULL, 'the same fact, {case}', '{first_vector}'::vector)"
            ),
        );
        let b_pid = reliability::backend_pid(&mut b);
        let sql = format!(
            "SELECT created FROM fractality.remember({second_key}, 'the same fact, {case}', '{second_vector}'::vector)"
        );
        let second = thread::spawn(move || -> bool { b.query_one(&sql, &[]).unwrap().get(0) });
        // b waits for a's transaction (the tenant's remember lock) ...
        wait_for_lock(&mut admin, b_pid);
        a.batch_execute("COMMIT").unwrap();
        // ... then finds a's memory and reinforces it
        assert!(
            !second.join().unwrap(),
            "the second telling created a memory"
        );
        let memories: i64 = admin
            .query_one(
                "SELECT count(*) FROM fractality.nodes WHERE user_id = $1 AND label = 'the same fact, ' || $2",
                &[&tenant, &case],
            )
            .unwrap()
            .get(0);
        assert_eq!(memories, 1, "{case}");
    }
}

/// A unit vector near centre `c` of 12 (deterministic for `i`): clusters of cosine about 0.8.
fn clustered(c: usize, i: usize) -> String {
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 20_000) as f32 / 10_000.0 - 1.0
    };
    let v: Vec<f32> = (0..384)
        .map(|d| {
            let centre = if d % 12 == c {
                1.0
            } else {
                ((d * 7 + c * 13) % 11) as f32 / 22.0
            };
            centre + 0.09 * noise()
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let parts: Vec<String> = v.iter().map(|x| format!("{}", x / norm)).collect();
    format!("[{}]", parts.join(","))
}

/// recall's k memories against the same score computed by a full scan of the tenant.
fn exact_top(c: &mut Client, tenant: Uuid, query: &str, k: i64) -> Vec<Uuid> {
    c.query(
        "SELECT n.node_id FROM fractality.node_energy n
           JOIN fractality.node_embeddings e ON e.user_id = n.user_id AND e.node_id = n.node_id AND e.model = 'default'
          WHERE n.user_id = $1
          ORDER BY 0.5 * (1 - (e.embedding <=> $2::text::vector)) + 0.3 * n.atp DESC
          LIMIT $3",
        &[&tenant, &query, &k],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn recall_equals_the_score_over_every_memory_and_a_plain_recall_writes_nothing() {
    let tenant = common::tenant();
    let mut admin = common::db();
    let mut c = common::app("fractality_memory_b", Some(tenant));
    // 1 500 memories in 12 families, energies spread
    c.batch_execute("SET fractality.notify = off").unwrap();
    let batch: Vec<serde_json::Value> = (0..1500)
        .map(|i| {
            serde_json::json!({
                "content": format!("memory {i}"),
                "embedding": serde_json::from_str::<serde_json::Value>(&clustered(i % 12, i)).unwrap(),
            })
        })
        .collect();
    let rows = c
        .query(
            "SELECT * FROM fractality.remember_many($1::jsonb, 'default', 1.0)",
            &[&serde_json::Value::Array(batch)],
        )
        .unwrap();
    assert_eq!(rows.len(), 1500);
    admin
        .execute(
            "UPDATE fractality.nodes SET atp = (abs(hashtext(id::text)) % 1000) / 1000.0 WHERE user_id = $1",
            &[&tenant],
        )
        .unwrap();
    admin
        .batch_execute("ANALYZE fractality.node_embeddings")
        .unwrap();
    let points = |admin: &mut Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM fractality.consciousness_streams WHERE user_id = $1",
                &[&tenant],
            )
            .unwrap()
            .get(0)
    };
    let staged = |admin: &mut Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM fractality.node_embeddings WHERE user_id = $1 AND staged",
                &[&tenant],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(
        staged(&mut admin),
        1500,
        "remember_many stages its embeddings"
    );
    let before = points(&mut admin);
    let (mut hits, mut wanted) = (0usize, 0usize);
    // the embeddings all staged (read exactly on either path), half of them moved into the HNSW
    // index (the index path merges the two), all of them indexed
    for (phase, indexing) in [(0, None), (1, Some(750i64)), (2, None)] {
        if phase > 0 {
            let n: i64 = c
                .query_one(
                    "SELECT fractality.index_staged_embeddings($1)",
                    &[&indexing],
                )
                .unwrap()
                .get(0);
            assert_eq!(n, 750, "phase {phase}");
            admin
                .batch_execute("ANALYZE fractality.node_embeddings")
                .unwrap();
        }
        for limit in ["2000000", "0"] {
            c.batch_execute(&format!("SET fractality.exact_scan_limit = {limit}"))
                .unwrap();
            for q in 0..12 {
                let query = clustered(q, 100_000 + q);
                let exact = exact_top(&mut admin, tenant, &query, 10);
                let got: Vec<Uuid> = c
                    .query(
                        "SELECT node_id FROM fractality.recall($1::text::vector, 10)",
                        &[&query],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                assert_eq!(got.len(), 10);
                // recall reads the details of only the hits that can still be among the k;
                // recall_explain scores every hit read: the same answer, in the same order
                let explained: Vec<Uuid> = c
                    .query(
                        "SELECT node_id FROM fractality.recall_explain($1::text::vector, 10)
                      WHERE returned ORDER BY position",
                        &[&query],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                assert_eq!(got, explained, "recall and recall_explain, limit {limit}");
                wanted += exact.len();
                hits += got.iter().filter(|id| exact.contains(id)).count();
                if limit != "0" || phase == 0 {
                    let mut g = got.clone();
                    let mut e = exact.clone();
                    g.sort();
                    e.sort();
                    assert_eq!(
                        g, e,
                        "the exact path and staged rows give the exact answer (phase {phase})"
                    );
                }
            }
        }
    }
    assert_eq!(staged(&mut admin), 0);
    let recall = hits as f64 / wanted as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
    assert_eq!(
        points(&mut admin),
        before,
        "recall without reinforcement wrote"
    );
    // with reinforcement: one point per memory returned
    c.query(
        "SELECT * FROM fractality.recall($1::text::vector, 5, reinforce => 0.1)",
        &[&clustered(3, 7)],
    )
    .unwrap();
    assert_eq!(points(&mut admin), before + 5);
}

#[test]
fn the_arrays_form_of_remember_many_remembers_as_the_jsonb_form_does() {
    let (ta, tb) = (common::tenant(), common::tenant());
    let mut admin = common::db();
    // 400 memories: in 12 families (cosine about 0.98 within one, under the threshold of 0.995
    // used here), every 10th a copy of the one before under another
    // content (a duplicate by similarity), a third of them under keys that repeat, some contents
    // told twice without a key (the same derived key), metadata and expiries on some
    let n = 400;
    let mut vectors: Vec<String> = Vec::new();
    let (mut keys, mut contents, mut metadata, mut ttls) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        vectors.push(if i % 10 == 9 {
            vectors[i - 1].clone()
        } else {
            clustered(i % 12, i)
        });
        keys.push((i % 3 == 0).then(|| format!("k{}", i % 50)));
        contents.push(if i % 7 == 6 {
            format!("memory {}", i - 1)
        } else {
            format!("memory {i}")
        });
        metadata.push((i % 4 == 0).then(|| serde_json::json!({ "i": i })));
        ttls.push((i % 5 == 0).then_some("1 day"));
    }
    let mut c = common::app("fractality_memory_a", Some(ta));
    c.batch_execute("SET fractality.notify = off").unwrap();
    let batch: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "node_key": keys[i],
                "content": contents[i],
                "embedding": serde_json::from_str::<serde_json::Value>(&vectors[i]).unwrap(),
                "metadata": metadata[i],
                "ttl": ttls[i],
            })
        })
        .collect();
    let created =
        |rows: Vec<postgres::Row>| -> Vec<bool> { rows.iter().map(|r| r.get(1)).collect() };
    let by_json = created(
        c.query(
            "SELECT * FROM fractality.remember_many($1::jsonb, 'default', 0.995)",
            &[&serde_json::Value::Array(batch)],
        )
        .unwrap(),
    );
    common::set_tenant(&mut c, tb);
    let metadata_text: Vec<Option<String>> = metadata
        .iter()
        .map(|m| m.as_ref().map(|m| m.to_string()))
        .collect();
    let arrays = "SELECT * FROM fractality.remember_many($1::text[], $2::text[], $3::text[]::vector[],
                                                       $4::text[]::jsonb[], dedup_threshold => 0.995,
                                                       ttls => $5::text[]::interval[])";
    let by_arrays = created(
        c.query(arrays, &[&keys, &contents, &vectors, &metadata_text, &ttls])
            .unwrap(),
    );
    assert_eq!(by_json.len(), n);
    assert_eq!(by_arrays, by_json, "created, memory by memory");
    let new = by_json.iter().filter(|c| **c).count();
    assert!(
        new > n / 2 && new < n - 40,
        "{new} of {n} created: the batch has duplicates by key, content and similarity"
    );
    // what each tenant holds: the same memories, keys, texts, metadata, expiries, energies and
    // embeddings, all staged
    let held = |admin: &mut Client, t: Uuid| -> Vec<String> {
        admin
            .query(
                "SELECT concat_ws(' | ', n.node_key, n.label, n.metadata::text, n.expires_at IS NOT NULL,
                                  round(n.atp::numeric, 6), e.staged, e.embedding::text)
                   FROM fractality.nodes n
                   JOIN fractality.node_embeddings e ON e.user_id = n.user_id AND e.node_id = n.id
                  WHERE n.user_id = $1 ORDER BY n.node_key",
                &[&t],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let (a, b) = (held(&mut admin, ta), held(&mut admin, tb));
    assert_eq!(a.len(), new);
    assert_eq!(a, b);
    // told again through the arrays form: every one reinforced, none created
    let again = created(
        c.query(arrays, &[&keys, &contents, &vectors, &metadata_text, &ttls])
            .unwrap(),
    );
    assert_eq!(again.len(), n, "a row for every memory told again");
    assert!(
        again.iter().all(|c| !c),
        "a batch told again created a memory"
    );
    assert_eq!(held(&mut admin, tb).len(), new);
}

/// A 384-d unit vector at cosine `c` to the first axis, in the plane of axis `axis`.
fn at_cosine(c: f64, axis: usize) -> String {
    let mut v = vec![0.0f64; 384];
    v[0] = c;
    v[axis] = (1.0 - c * c).sqrt();
    format!(
        "[{}]",
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// A neighbour of the context below min_similarity is not returned, and does not stop the
/// search for those that are: recall(k = 1) returns the one memory above it, as recall_explain
/// and the score over every memory say.
#[test]
fn a_context_neighbour_below_min_similarity_does_not_hide_the_best_memory() {
    let mut c = common::db();
    let tenant = common::tenant();
    c.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    c.batch_execute("SELECT fractality.upsert_node('ctx', 'the context')")
        .unwrap();
    // n: cosine -0.1 to the query, but an edge of weight 1 to the context: score
    // 0.5 x -0.1 + 0.3 x 1 + 0.2 x 1 = 0.45; m: cosine 0.2, no edge: 0.1 + 0.3 = 0.40
    for (key, v) in [("n", at_cosine(-0.1, 1)), ("m", at_cosine(0.2, 2))] {
        c.execute(
            "SELECT * FROM fractality.remember($1, $1, $2::text::vector)",
            &[&key, &v],
        )
        .unwrap();
    }
    c.batch_execute("SELECT fractality.link('ctx', 'n', 'child', 1.0)")
        .unwrap();
    let q = at_cosine(1.0, 1);
    let keys = |c: &mut Client, sql: &str| -> Vec<String> {
        c.query(sql, &[&q])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let recalled = keys(
        &mut c,
        "SELECT node_key FROM fractality.recall($1::text::vector, 1, context => 'ctx')",
    );
    assert_eq!(recalled, vec!["m".to_string()]);
    let explained = keys(
        &mut c,
        "SELECT node_key FROM fractality.recall_explain($1::text::vector, 1, context => 'ctx')
          WHERE returned",
    );
    assert_eq!(explained, recalled, "recall and recall_explain agree");
}

/// An expired memory is left out of the vector ranking: the live one after it ranks first,
/// and its relevance with words is what rank 1 gives.
#[test]
fn expired_memories_take_no_place_in_the_ranking() {
    let mut c = common::db();
    let tenant = common::tenant();
    c.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    for (key, v, ttl) in [
        ("gone", at_cosine(0.99, 1), "1 microsecond"),
        ("live", at_cosine(0.9, 2), "1 day"),
    ] {
        c.execute(
            "SELECT * FROM fractality.remember($1, $1, $2::text::vector, ttl => $3::text::interval)",
            &[&key, &v, &ttl],
        )
        .unwrap();
    }
    c.batch_execute("SELECT pg_sleep(0.01)").unwrap();
    let rows = c
        .query(
            "SELECT node_key, vector_rank FROM fractality.recall_explain($1::text::vector, 5, 'nomatchword')",
            &[&at_cosine(1.0, 1)],
        )
        .unwrap();
    let ranked: Vec<(String, Option<i32>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(ranked, vec![("live".to_string(), Some(1))]);
}

/// A memory told again without metadata is an energy write: its updated_at stays (the column's
/// contract); told again with metadata, it moves.
#[test]
fn a_plain_repeat_leaves_updated_at() {
    let mut c = common::db();
    let tenant = common::tenant();
    c.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    let remember = "SELECT * FROM fractality.remember('kept', 'the kettle whistles', $1::text::vector, $2::text::jsonb)";
    let v = at_cosine(0.5, 3);
    let updated_at = |c: &mut Client| -> String {
        c.query_one(
            "SELECT updated_at::text FROM fractality.nodes
              WHERE node_key = 'kept' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let none = serde_json::json!({}).to_string();
    c.execute(remember, &[&v, &none]).unwrap();
    let first = updated_at(&mut c);
    c.batch_execute("SELECT pg_sleep(0.01)").unwrap();
    c.execute(remember, &[&v, &none]).unwrap();
    assert_eq!(updated_at(&mut c), first, "a plain repeat");
    let some = serde_json::json!({"room": "kitchen"}).to_string();
    c.execute(remember, &[&v, &some]).unwrap();
    assert_ne!(updated_at(&mut c), first, "a repeat with metadata");
}

/// Metadata that jsonb holds, a number beyond float8 and nesting deeper than serde's 128, comes
/// back whole from recall and thaw (before: an internal error for the whole recall); the arrays
/// form of remember_many stores the number as written and refuses the nesting with 22023, as the
/// jsonb form does.
#[test]
fn metadata_beyond_serde_is_read_back_or_refused_cleanly() {
    let mut c = common::db();
    let tenant = common::tenant();
    c.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    let v = at_cosine(0.9, 4);
    c.execute(
        "SELECT * FROM fractality.remember('huge', 'a number too large', $1::text::vector)",
        &[&v],
    )
    .unwrap();
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    c.execute(
        "UPDATE fractality.nodes SET metadata = jsonb_build_object('x', 1e400::numeric, 'deep', $1::text::jsonb)
          WHERE node_key = 'huge' AND user_id = fractality.current_user_id()",
        &[&deep],
    )
    .unwrap();
    let recalled: String = c
        .query_one(
            "SELECT metadata::text FROM fractality.recall($1::text::vector, 1)",
            &[&v],
        )
        .unwrap()
        .get(0);
    assert!(
        recalled.contains("1e400") || recalled.contains("10000000000"),
        "{}",
        &recalled[..80]
    );
    let same: bool = c
        .query_one(
            "SELECT (fractality.thaw('huge') -> 'metadata') = metadata FROM fractality.nodes
              WHERE node_key = 'huge' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(same, "thaw gives the metadata whole");
    c.execute(
        "SELECT count(*) FROM fractality.remember_many(ARRAY['beyond'], ARRAY['too large'], ARRAY[$1::text::vector],
                                                      ARRAY['{\"x\": 1e400}'::jsonb], dedup_threshold => 1)",
        &[&at_cosine(0.2, 4)],
    )
    .unwrap();
    let kept: bool = c
        .query_one(
            "SELECT metadata = '{\"x\": 1e400}'::jsonb FROM fractality.nodes
              WHERE node_key = 'beyond' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(kept, "a number beyond float8 stored as written");
    let err = c
        .query_one(
            "SELECT count(*) FROM fractality.remember_many(NULL, ARRAY['too deep'], ARRAY[$1::text::vector],
                                                         ARRAY[$2::text::jsonb])",
            &[&v, &format!("{{\"deep\": {deep}}}")],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
}

/// An empty query_text is no words: recall ranks as with NULL (before, a text search that
/// matched nothing turned the ranking into a fusion capped at 0.5 relevance).
#[test]
fn an_empty_query_text_ranks_as_none() {
    let mut c = common::db();
    let tenant = common::tenant();
    c.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    for (key, cos, axis) in [("near", 0.95, 5), ("far", 0.3, 6)] {
        c.execute(
            "SELECT * FROM fractality.remember($1, $1, $2::text::vector)",
            &[&key, &at_cosine(cos, axis)],
        )
        .unwrap();
    }
    let ranked = |c: &mut Client, words: Option<&str>| -> Vec<(String, f64)> {
        c.query(
            "SELECT node_key, score FROM fractality.recall($1::text::vector, 2, $2)",
            &[&at_cosine(1.0, 5), &words],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let none = ranked(&mut c, None);
    for empty in ["", "   "] {
        let got = ranked(&mut c, Some(empty));
        assert_eq!(got.len(), none.len(), "{empty:?}");
        for ((k1, s1), (k2, s2)) in got.iter().zip(&none) {
            assert_eq!(k1, k2);
            approx::assert_relative_eq!(*s1, *s2, epsilon = 1e-6);
        }
    }
}

/// remember against another session's forget of the same memory: remember waits for the forget
/// and stores the memory anew (before: it returned created = false and no memory was left).
/// Against another session's upsert_node of the same new key: 40001, a retry reinforces it
/// (before: 23505).
#[test]
fn remember_against_a_concurrent_forget_or_upsert() {
    let tenant = common::tenant();
    let set = format!("SET fractality.user_id = '{tenant}'");
    let mut a = common::db();
    let mut b = common::db();
    a.batch_execute(&set).unwrap();
    b.batch_execute(&set).unwrap();
    let v = at_cosine(0.8, 7);
    let remember =
        "SELECT created FROM fractality.remember('raced', 'the tide turns', $1::text::vector)";
    a.query_one(remember, &[&v]).unwrap();
    b.batch_execute("BEGIN").unwrap();
    b.batch_execute("SELECT fractality.forget('raced')")
        .unwrap();
    let told = {
        let v = v.clone();
        let set = set.clone();
        std::thread::spawn(move || {
            let mut a = common::db();
            a.batch_execute(&set).unwrap();
            a.query_one(remember, &[&v]).map(|r| r.get::<_, bool>(0))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(400));
    b.batch_execute("COMMIT").unwrap();
    let created = told.join().unwrap().unwrap();
    let count: i64 = a
        .query_one(
            "SELECT count(*) FROM fractality.nodes
              WHERE node_key = 'raced' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        (created, count),
        (true, 1),
        "remembered again after the forget"
    );

    b.batch_execute("BEGIN").unwrap();
    b.batch_execute("SELECT fractality.upsert_node('raced-new')")
        .unwrap();
    let told = {
        let v = at_cosine(0.8, 8);
        let set = set.clone();
        std::thread::spawn(move || {
            let mut a = common::db();
            a.batch_execute(&set).unwrap();
            a.query_one(
                "SELECT created FROM fractality.remember('raced-new', 'the tide turns again', $1::text::vector)",
                &[&v],
            )
            .map(|r| r.get::<_, bool>(0))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(400));
    b.batch_execute("COMMIT").unwrap();
    let err = told.join().unwrap().unwrap_err();
    assert_eq!(common::sqlstate(&err), "40001", "{err}");
    let created: bool = a
        .query_one(
            "SELECT created FROM fractality.remember('raced-new', 'the tide turns again', $1::text::vector)",
            &[&at_cosine(0.8, 8)],
        )
        .unwrap()
        .get(0);
    assert!(!created, "the retry tells the node upsert_node made");
}

/// An expired memory is not found by its words either: `search_nodes` returns the live one only.
#[test]
fn search_nodes_leaves_expired_memories_out() {
    let mut c = common::db();
    let tenant = common::tenant();
    c.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    for (key, ttl) in [("gone", "1 microsecond"), ("live", "1 day")] {
        c.execute(
            "SELECT * FROM fractality.remember($1, 'a heron by the ' || $1 || ' pond', $2::text::vector,
                                                ttl => $3::text::interval)",
            &[&key, &at_cosine(0.5, if key == "gone" { 1 } else { 2 }), &ttl],
        )
        .unwrap();
    }
    c.batch_execute("SELECT pg_sleep(0.01)").unwrap();
    let found: Vec<String> = c
        .query(
            "SELECT node_key FROM fractality.search_nodes('heron') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(found, vec!["live".to_string()]);
}

/// A memory told again after it expired is a new, live memory: created, recalled, and kept by
/// run_maintenance; the expired one is gone (in every form of remember).
#[test]
fn an_expired_memory_told_again_is_a_new_live_one() {
    let mut c = common::db();
    let tenant = common::tenant();
    c.batch_execute(&format!("SET fractality.user_id = '{tenant}'"))
        .unwrap();
    let forms = [
        "SELECT created FROM fractality.remember(NULL, $1, $2::text::vector, ttl => $3::text::interval)",
        "SELECT created FROM fractality.remember_many(jsonb_build_array(jsonb_build_object(
             'content', $1::text, 'embedding', $2::text::vector::real[], 'ttl', $3::text)))",
        "SELECT created FROM fractality.remember_many(ARRAY[NULL]::text[], ARRAY[$1::text],
             ARRAY[$2::text::vector], ttls => ARRAY[$3::text::interval])",
    ];
    for (i, form) in forms.iter().enumerate() {
        // each form its own fact, far from the others' (no near duplicate among them)
        let v = at_cosine(0.5, 3 + i);
        let content = format!("The meeting is on Tuesday, form {i}");
        let told = |c: &mut Client, ttl: &str| -> bool {
            c.query_one(*form, &[&content, &v, &ttl]).unwrap().get(0)
        };
        assert!(
            told(&mut c, "1 microsecond"),
            "form {i}: the first telling creates"
        );
        c.batch_execute("SELECT pg_sleep(0.01)").unwrap();
        // the content is the memory's label
        let old: Uuid = c
            .query_one(
                "SELECT id FROM fractality.nodes WHERE label = $1",
                &[&content],
            )
            .unwrap()
            .get(0);
        assert!(
            told(&mut c, "1 day"),
            "form {i}: told again after it expired, a new memory"
        );
        let alive: i64 = c
            .query_one(
                "SELECT count(*) FROM fractality.recall($1::text::vector, 50) WHERE content = $2",
                &[&v, &content],
            )
            .unwrap()
            .get(0);
        assert_eq!(alive, 1, "form {i}: recalled");
        let stale: i64 = c
            .query_one(
                "SELECT count(*) FROM fractality.nodes WHERE id = $1",
                &[&old],
            )
            .unwrap()
            .get(0);
        assert_eq!(stale, 0, "form {i}: the expired memory is gone");
        assert!(
            !told(&mut c, "1 day"),
            "form {i}: a third telling reinforces"
        );
    }
}

/// Two memories of `tenant` remembered with `keys` (vectors on axes `axes`), as (lower id,
/// higher id).
fn two_memories(
    admin: &mut Client,
    tenant: Uuid,
    keys: [&str; 2],
    axes: [usize; 2],
) -> (Uuid, Uuid) {
    let mut setup = common::app("fractality_memory_a", Some(tenant));
    for (key, axis) in keys.iter().zip(axes) {
        setup
            .batch_execute(&format!(
                "SELECT fractality.remember('{key}', 'memory {key}', '{}'::vector)",
                vector_text(axis, 1, 0.0)
            ))
            .unwrap();
    }
    let ids: Vec<Uuid> = admin
        .query(
            "SELECT id FROM fractality.nodes WHERE user_id = $1 AND node_key = ANY($2) ORDER BY id",
            &[&tenant, &keys.to_vec()],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (ids[0], ids[1])
}

/// `sql` (a remember_many of `tenant`, one count back) while another session holds memory
/// `first`: once the call waits for it, that session takes memory `second` too and commits. The
/// call's count; a deadlock (either side) fails the test.
fn remember_many_between_locks(
    admin: &mut Client,
    tenant: Uuid,
    first: Uuid,
    second: Uuid,
    sql: String,
) -> i64 {
    let mut holder = common::db();
    begin_and(
        &mut holder,
        &format!("SELECT 1 FROM fractality.nodes WHERE id = '{first}' FOR UPDATE"),
    );
    let mut teller = common::app("fractality_memory_a", Some(tenant));
    let teller_pid = reliability::backend_pid(&mut teller);
    let told = thread::spawn(move || teller.query_one(&sql, &[]).map(|r| r.get::<_, i64>(0)));
    // remember_many waits for the first, before it has taken the second ...
    wait_for_lock(admin, teller_pid);
    // ... so the holder takes the second at once, and commits
    holder
        .batch_execute("SET LOCAL lock_timeout = '20s'")
        .unwrap();
    holder
        .batch_execute(&format!(
            "SELECT 1 FROM fractality.nodes WHERE id = '{second}' FOR UPDATE"
        ))
        .unwrap_or_else(|e| panic!("the second memory: {e:?}"));
    holder.batch_execute("COMMIT").unwrap();
    told.join()
        .unwrap()
        .unwrap_or_else(|e| panic!("remember_many: {e:?}"))
}

/// remember_many deletes the expired memories it is told again in the order of their ids, as
/// run_maintenance locks the expired memories it deletes: a session holding the lower one and
/// then asking for the higher (run_maintenance's order) no longer meets remember_many holding
/// the higher and asking for the lower (it went by key, and a deadlock rolled one back).
#[test]
fn remember_many_and_maintenance_delete_expired_memories_in_one_order() {
    let tenant = common::tenant();
    let mut admin = common::db();
    let (low, high) = two_memories(&mut admin, tenant, ["exp-1", "exp-2"], [11, 12]);
    // the key that sorts first names the memory of the higher id
    admin
        .execute(
            "UPDATE fractality.nodes SET node_key = CASE id WHEN $2 THEN 'exp-b' ELSE 'exp-a' END,
                    expires_at = now() - interval '1 minute'
              WHERE user_id = $1 AND id IN ($2, $3)",
            &[&tenant, &low, &high],
        )
        .unwrap();
    // a maintenance-like session holds the lower memory, then the higher
    let sql = format!(
        "SELECT count(*) FROM fractality.remember_many(ARRAY['exp-a', 'exp-b'],
                ARRAY['told again a', 'told again b'], ARRAY['{}'::vector, '{}'::vector])",
        vector_text(13, 1, 0.0),
        vector_text(14, 1, 0.0)
    );
    let told = remember_many_between_locks(&mut admin, tenant, low, high, sql);
    assert_eq!(told, 2);
    let fresh: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = $1
                AND node_key IN ('exp-a', 'exp-b') AND expires_at IS NULL AND label LIKE 'told again%'",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    assert_eq!(fresh, 2, "both stored anew");
}

/// remember_many locks the stored memories it deletes (expired, told again) and reinforces in one
/// pass in the order of their ids, as a decay tick or a reinforcement locks several: a session
/// holding a live memory of a lower id and then asking for an expired one of a higher id no
/// longer meets remember_many holding the expired one (deleted first) and asking for the live
/// one (reinforced after), which ended in a deadlock.
#[test]
fn remember_many_locks_what_it_deletes_and_reinforces_in_one_order() {
    let tenant = common::tenant();
    let mut admin = common::db();
    let (live, expired) = two_memories(&mut admin, tenant, ["mix-1", "mix-2"], [15, 16]);
    admin
        .execute(
            "UPDATE fractality.nodes SET node_key = CASE id WHEN $2 THEN 'mix-live' ELSE 'mix-expired' END,
                    expires_at = CASE id WHEN $2 THEN NULL ELSE now() - interval '1 minute' END
              WHERE user_id = $1 AND id IN ($2, $3)",
            &[&tenant, &live, &expired],
        )
        .unwrap();
    // the live one told again (by key: reinforced), the expired one told again (deleted, new)
    let sql = format!(
        "SELECT count(*) FILTER (WHERE created) FROM fractality.remember_many(ARRAY['mix-live', 'mix-expired'],
                ARRAY['memory mix-1', 'two of two, again'], ARRAY['{}'::vector, '{}'::vector])",
        vector_text(15, 1, 0.0),
        vector_text(17, 1, 0.0)
    );
    let created = remember_many_between_locks(&mut admin, tenant, live, expired, sql);
    assert_eq!(
        created, 1,
        "the expired one stored anew, the live one reinforced"
    );
}

/// An expired memory that another session writes again (upsert_node deletes it and writes the
/// node anew, without an expiry) while remember_many, told it again, waits for it: remember_many
/// does not delete the live node it finds once it holds the key (before: the other session's
/// committed write was deleted, with the node's edges and stream points, and a new memory
/// stored). It fails with 40001, and a retry reinforces the live node.
#[test]
fn remember_many_keeps_an_expired_memory_another_session_made_live_meanwhile() {
    let tenant = common::tenant();
    let mut admin = common::db();
    two_memories(&mut admin, tenant, ["revived", "revived-other"], [18, 19]);
    let expired: Uuid = admin
        .query_one(
            "UPDATE fractality.nodes SET expires_at = now() - interval '1 minute'
              WHERE user_id = $1 AND node_key = 'revived' RETURNING id",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    // the other session writes the expired memory again, and holds it
    let mut writer = common::app("fractality_memory_a", Some(tenant));
    writer.batch_execute("BEGIN").unwrap();
    let written: Uuid = writer
        .query_one(
            "SELECT fractality.upsert_node('revived', label => 'written again')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_ne!(written, expired, "written anew");
    let sql = format!(
        "SELECT count(*) FILTER (WHERE created) FROM fractality.remember_many(ARRAY['revived'],
                ARRAY['told again'], ARRAY['{}'::vector])",
        vector_text(20, 1, 0.0)
    );
    let mut teller = common::app("fractality_memory_a", Some(tenant));
    let teller_pid = reliability::backend_pid(&mut teller);
    let told = thread::spawn(move || {
        let first = teller.query_one(&sql, &[]).map(|r| r.get::<_, i64>(0));
        let again = teller.query_one(&sql, &[]).map(|r| r.get::<_, i64>(0));
        (first, again)
    });
    // remember_many read the memory as expired and waits for the writer; the writer commits
    wait_for_lock(&mut admin, teller_pid);
    writer.batch_execute("COMMIT").unwrap();
    let (first, again) = told.join().unwrap();
    let err = first.expect_err("the memory changed under remember_many");
    assert_eq!(common::sqlstate(&err), "40001", "{err:?}");
    assert_eq!(again.unwrap(), 0, "the retry reinforces the live memory");
    let row = admin
        .query_one(
            "SELECT id, label, expires_at IS NULL FROM fractality.nodes
              WHERE user_id = $1 AND node_key = 'revived'",
            &[&tenant],
        )
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), written, "the other session's node");
    assert_eq!(
        row.get::<_, String>(1),
        "written again",
        "the other write kept"
    );
    assert!(row.get::<_, bool>(2), "live");
}

/// remember_many locks a memory it reinforces as the reinforcement needs (FOR NO KEY UPDATE, as
/// recall and a decay tick do), not as a delete: a session holding the memory's key (what a
/// link, an embedding or a consensus link to it takes, FOR KEY SHARE) does not hold it up
/// (before: it waited for that session's commit, and could deadlock with a consensus linking
/// members in another order).
#[test]
fn remember_many_reinforcing_a_memory_does_not_wait_for_a_reference_to_it() {
    let tenant = common::tenant();
    let mut admin = common::db();
    let (low, _) = two_memories(&mut admin, tenant, ["keyed-1", "keyed-2"], [21, 22]);
    let (key, axis): (String, i32) = {
        let r = admin
            .query_one(
                "SELECT node_key FROM fractality.nodes WHERE id = $1",
                &[&low],
            )
            .unwrap();
        let key: String = r.get(0);
        let axis = if key == "keyed-1" { 21 } else { 22 };
        (key, axis)
    };
    let mut referrer = common::db();
    begin_and(
        &mut referrer,
        &format!("SELECT 1 FROM fractality.nodes WHERE id = '{low}' FOR KEY SHARE"),
    );
    let sql = format!(
        "SELECT count(*) FILTER (WHERE created) FROM fractality.remember_many(ARRAY['{key}'],
                ARRAY['memory {key}'], ARRAY['{}'::vector])",
        vector_text(axis as usize, 1, 0.0)
    );
    let mut teller = common::app("fractality_memory_a", Some(tenant));
    let teller_pid = reliability::backend_pid(&mut teller);
    let told = thread::spawn(move || teller.query_one(&sql, &[]).map(|r| r.get::<_, i64>(0)));
    let waited = common::waits_for_a_lock(&mut admin, teller_pid, &told);
    referrer.batch_execute("COMMIT").unwrap();
    assert_eq!(told.join().unwrap().unwrap(), 0, "reinforced");
    assert!(
        !waited,
        "remember_many waited for a reference to the memory it reinforces"
    );
}

/// Metadata comes back as it was written, number for number: an integer beyond 64 bits, a
/// decimal beyond 17 digits, one beyond float8's range and trailing zeros were rounded through
/// f64 on their way in (`{"big": 123456789012345680000000000000, ...}`), in every function that
/// takes metadata: upsert_node, remember, remember_many in both forms, freeze, and an event's
/// action metadata through write_event_with_metadata and write_events (jsonb and text). An
/// object under the key serde_json hands a number over with stays an object.
#[test]
fn metadata_numbers_are_kept_as_written() {
    let mut c = common::db();
    let meta = r#"{"big": 123456789012345678901234567890, "dec": 0.12345678901234567890123, "e": 1e400, "z": 1.10, "arr": [2.50, -7],
                   "tok": {"$serde_json::private::Number": "7"}, "tok2": {"$serde_json::private::Number": [1], "z": 0}}"#;
    c.batch_execute("SET fractality.user_id = 'feed0000-0000-4000-8000-00000000000a'")
        .unwrap();
    let v = |i: usize| vector_text(384, i, 0.05);
    c.execute(
        "SELECT fractality.upsert_node('meta-upsert', 'l', $1::text::jsonb)",
        &[&meta],
    )
    .unwrap();
    c.execute(
        "SELECT * FROM fractality.remember('meta-remember', 'c1', $1::text::vector, $2::text::jsonb)",
        &[&v(1), &meta],
    )
    .unwrap();
    c.execute(
        "SELECT * FROM fractality.remember_many(ARRAY['meta-arrays'], ARRAY['c2'], ARRAY[$1::text::vector], ARRAY[$2::text::jsonb],
                                                   dedup_threshold => 1)",
        &[&v(2), &meta],
    )
    .unwrap();
    c.execute(
        "SELECT * FROM fractality.remember_many(jsonb_build_array(jsonb_build_object(
             'node_key', 'meta-jsonb', 'content', 'c3', 'embedding', $1::text::vector::real[], 'metadata', $2::text::jsonb)),
             dedup_threshold => 1)",
        &[&v(3), &meta],
    )
    .unwrap();
    c.execute(
        "SELECT fractality.freeze(fractality.thaw('meta-upsert') || '{\"node_key\": \"meta-freeze\"}')",
        &[],
    )
    .unwrap();
    let keys = [
        "meta-upsert",
        "meta-remember",
        "meta-arrays",
        "meta-jsonb",
        "meta-freeze",
    ];
    for key in keys {
        let same: bool = c
            .query_one(
                "SELECT metadata = $2::text::jsonb AND metadata::text = ($2::text::jsonb)::text
                   FROM fractality.nodes WHERE node_key = $1 AND user_id = fractality.current_user_id()",
                &[&key, &meta],
            )
            .unwrap()
            .get(0);
        assert!(same, "{key}: metadata changed");
    }
    // events' action metadata: its parameters
    // (the JSON is written as text around the metadata's own text: no JSON library of this
    // client reads its numbers)
    let mut events = reliability::events_json(0xfeed_000a, 3, 7_000_000);
    for (i, e) in events.as_array_mut().unwrap().iter_mut().enumerate() {
        e["event_id"] = serde_json::json!(format!("{:032x}", 0xfeed_0a00 + i));
    }
    let md = format!(r#"{{"intent_type": "t", "executor_id": "x", "parameters": {meta}}}"#);
    let with_md = |e: &serde_json::Value| {
        let t = e.to_string();
        format!("[{}, \"metadata\": {md}}}]", &t[..t.len() - 1])
    };
    c.execute(
        "SELECT fractality.write_events($1::text::jsonb)",
        &[&with_md(&events[0])],
    )
    .unwrap();
    c.execute(
        "SELECT fractality.write_events_json($1::text)",
        &[&with_md(&events[1])],
    )
    .unwrap();
    c.execute(
        "SELECT fractality.write_event_with_metadata($1::text::jsonb, $2::text::jsonb)",
        &[&events[2].to_string(), &md],
    )
    .unwrap();
    let kept: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.action_metadata
              WHERE event_timestamp BETWEEN 7000000 AND 7000002
                AND parameters = $1::text::jsonb AND parameters::text = ($1::text::jsonb)::text",
            &[&meta],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, 3, "events' parameters changed");
}

/// remember_many moves a tenant's staged embeddings into the index (past
/// `fractality.staged_limit`) locking them in the order of their keys, as
/// `index_staged_embeddings` (run_maintenance) does: a session holding the lowest and then
/// asking for the others no longer meets remember_many holding one of them (it locked them in
/// the order it read them, and a deadlock rolled one side back).
#[test]
fn remember_many_and_index_staged_embeddings_lock_staged_rows_in_one_order() {
    let tenant = common::tenant();
    let mut admin = common::db();
    let mut setup = common::app("fractality_memory_a", Some(tenant));
    for i in 0..3 {
        setup
            .batch_execute(&format!(
                "SELECT count(*) FROM fractality.remember_many(NULL, ARRAY['staged {i}'], ARRAY['{}'::vector])",
                vector_text(20 + i, 1, 0.0)
            ))
            .unwrap();
    }
    let staged = |admin: &mut Client, order: &str| -> Vec<Uuid> {
        admin
            .query(
                &format!(
                    "SELECT node_id FROM fractality.node_embeddings
                      WHERE user_id = $1 AND staged ORDER BY {order}"
                ),
                &[&tenant],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let by_key = staged(&mut admin, "node_id");
    assert_eq!(by_key.len(), 3);
    // the lowest written again: read last of the three in the table's order
    admin
        .execute(
            "UPDATE fractality.node_embeddings SET staged = false WHERE user_id = $1 AND node_id = $2;",
            &[&tenant, &by_key[0]],
        )
        .unwrap();
    admin
        .execute(
            "UPDATE fractality.node_embeddings SET staged = true WHERE user_id = $1 AND node_id = $2;",
            &[&tenant, &by_key[0]],
        )
        .unwrap();
    assert_eq!(
        staged(&mut admin, "ctid DESC")[0],
        by_key[0],
        "the lowest key read last"
    );
    let mut holder = common::db();
    begin_and(
        &mut holder,
        &format!(
            "SELECT 1 FROM fractality.node_embeddings WHERE user_id = '{tenant}' AND node_id = '{}'
                FOR NO KEY UPDATE",
            by_key[0]
        ),
    );
    let mut teller = common::app("fractality_memory_a", Some(tenant));
    teller
        .batch_execute("SET fractality.staged_limit = 1")
        .unwrap();
    let teller_pid = reliability::backend_pid(&mut teller);
    let sql = format!(
        "SELECT count(*) FROM fractality.remember_many(NULL, ARRAY['staged 3'], ARRAY['{}'::vector])",
        vector_text(23, 1, 0.0)
    );
    let told = thread::spawn(move || teller.query_one(&sql, &[]).map(|r| r.get::<_, i64>(0)));
    wait_for_lock(&mut admin, teller_pid);
    // the holder, in index_staged_embeddings' order, asks for the others
    holder
        .batch_execute("SET LOCAL lock_timeout = '20s'")
        .unwrap();
    holder
        .batch_execute(&format!(
            "SELECT 1 FROM fractality.node_embeddings WHERE user_id = '{tenant}' AND staged
              ORDER BY node_id FOR NO KEY UPDATE"
        ))
        .unwrap_or_else(|e| panic!("the others: {e:?}"));
    holder.batch_execute("COMMIT").unwrap();
    let n = told
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("remember_many: {e:?}"));
    assert_eq!(n, 1);
    assert!(staged(&mut admin, "node_id").is_empty(), "all indexed");
}

/// remember giving a stored memory its first embedding of a model writes it once the memory is
/// locked: a memory another session deletes meanwhile (run_maintenance's expiry, a DELETE) is
/// a concurrent change (40001, run it again), as it is for the model the memory has; it was a
/// foreign key failing (23503), which clients do not retry.
#[test]
fn remember_giving_a_deleted_memory_a_new_models_embedding_is_a_concurrent_change() {
    let tenant = common::tenant();
    let mut admin = common::db();
    admin
        .batch_execute("SELECT fractality.register_model('raced8', 8)")
        .unwrap();
    let mut a = common::app("fractality_memory_a", Some(tenant));
    a.batch_execute(&format!(
        "SELECT fractality.remember('raced-8', 'the tide turns', '{}'::vector)",
        vector_text(30, 1, 0.0)
    ))
    .unwrap();
    let mut holder = common::db();
    begin_and(
        &mut holder,
        &format!(
            "DELETE FROM fractality.nodes WHERE user_id = '{tenant}' AND node_key = 'raced-8'"
        ),
    );
    let pid = reliability::backend_pid(&mut a);
    let told = thread::spawn(move || {
        a.query_one(
            "SELECT created FROM fractality.remember('raced-8', 'the tide turns',
                    '[1,0,0,0,0,0,0,0]'::vector, model => 'raced8')",
            &[],
        )
        .map(|r| r.get::<_, bool>(0))
    });
    wait_for_lock(&mut admin, pid);
    holder.batch_execute("COMMIT").unwrap();
    let err = told.join().unwrap().unwrap_err();
    assert_eq!(common::sqlstate(&err), "40001", "{err:?}");
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM fractality.node_embeddings WHERE user_id = $1",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// Words that match no memory (stop words alone: "what is it?"; a typo) are no words: recall
/// ranks by the vector as without them (they turned the ranking into a fusion with an empty text
/// ranking, and the nearest memory fell out of the two returned).
#[test]
fn words_that_match_no_memory_are_no_words() {
    let tenant = common::tenant();
    let mut c = common::app("fractality_memory_a", Some(tenant));
    for (i, fact) in ["Paris is in France", "The Seine flows", "Meet on Tuesday"]
        .iter()
        .enumerate()
    {
        c.batch_execute(&format!(
            "SELECT fractality.remember(NULL, '{fact}', '{}'::vector)",
            vector_text(40 + i, 1, 0.0)
        ))
        .unwrap();
    }
    let recall = |c: &mut Client, words: &str| -> Vec<(String, f64)> {
        c.query(
            &format!("SELECT content, score FROM fractality.recall($1::text::vector, 2{words})"),
            &[&at_cosine(0.9, 40)],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let plain = recall(&mut c, "");
    assert_eq!(plain[0].0, "Paris is in France");
    for words in [
        ", 'what is it?'",
        ", 'the'",
        ", '!!!'",
        ", 'xyzzy'",
        ", 'where is xyzzy?'",
    ] {
        let got = recall(&mut c, words);
        assert_eq!(got.len(), plain.len(), "{words}");
        for (g, p) in got.iter().zip(&plain) {
            assert_eq!(g.0, p.0, "{words}");
            // (the energies decay a little between the calls)
            approx::assert_relative_eq!(g.1, p.1, max_relative = 1e-4);
        }
    }
    // a word that is one still fuses the two rankings
    let fused = recall(&mut c, ", 'Seine'");
    assert_eq!(fused[0].0, "The Seine flows");
}

/// A ttl told by a similar fact (another key) never makes a memory that does not expire expire,
/// nor brings an expiry nearer; it moves one later. Told by the memory's own key, it sets the
/// expiry. (A similar fact's ttl of one second made a standing memory expire, and once it was
/// gone, its key stored anew lost its metadata.)
#[test]
fn a_similar_facts_ttl_does_not_make_a_standing_memory_expire() {
    let tenant = common::tenant();
    let mut c = common::app("fractality_memory_a", Some(tenant));
    let expiry = |c: &mut Client, key: &str| -> Option<f64> {
        c.query_one(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM fractality.nodes
              WHERE node_key = $1 AND user_id = fractality.current_user_id()",
            &[&key],
        )
        .unwrap()
        .get(0)
    };
    let tell = |c: &mut Client, key: &str, axis: usize, ttl: &str| -> bool {
        c.query_one(
            &format!(
                "SELECT created FROM fractality.remember({key}, 'told ' || gen_random_uuid(), '{}'::vector,
                                                         ttl => {ttl})",
                vector_text(axis, 1, 0.0)
            ),
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert!(tell(&mut c, "'tea'", 50, "NULL"));
    assert!(!tell(&mut c, "NULL", 50, "'1 second'"), "merged into tea");
    assert_eq!(expiry(&mut c, "tea"), None, "tea still does not expire");
    assert!(tell(&mut c, "'note'", 51, "'1 hour'"));
    assert!(!tell(&mut c, "NULL", 51, "'1 day'"));
    let later = expiry(&mut c, "note").unwrap();
    assert!(later > 23.0 * 3600.0, "moved later: {later}");
    assert!(!tell(&mut c, "NULL", 51, "'1 minute'"));
    assert_eq!(
        expiry(&mut c, "note").map(|s| s > 23.0 * 3600.0),
        Some(true),
        "not nearer"
    );
    // by its key, the ttl is the memory's own
    assert!(!tell(&mut c, "'note'", 51, "'1 minute'"));
    let set = expiry(&mut c, "note").unwrap();
    assert!(set > 0.0 && set <= 60.0, "set by the key: {set}");
}

/// dedup_threshold 1 takes a memory told again with the same vector in `remember_many` as in
/// `remember` (its pool compared it with a copy rounded to single precision, at similarity just
/// under 1, and stored 17 of 20 again).
#[test]
fn a_threshold_of_one_takes_the_same_vector_in_both_forms() {
    let tenant = common::tenant();
    let mut c = common::app("fractality_memory_a", Some(tenant));
    c.batch_execute(
        "CREATE TEMP TABLE same_v AS
         SELECT g, ('[' || (SELECT string_agg((sin(g * 7 + d) * 0.5 + 0.01 * d)::text, ',')
                              FROM generate_series(1, 384) d) || ']')::vector AS v
           FROM generate_series(1, 20) g;
         SELECT count(*) FROM same_v, fractality.remember('a' || g, 'one ' || g, v, dedup_threshold => 1);",
    )
    .unwrap();
    let created: i64 = c
        .query_one(
            "SELECT count(*) FILTER (WHERE created) FROM fractality.remember_many(
                 (SELECT array_agg('b' || g ORDER BY g) FROM same_v),
                 (SELECT array_agg('two ' || g ORDER BY g) FROM same_v),
                 (SELECT array_agg(v ORDER BY g) FROM same_v),
                 dedup_threshold => 1)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(created, 0, "every one told again");
    let single: i64 = c
        .query_one(
            "SELECT count(*) FILTER (WHERE created)
               FROM same_v, fractality.remember('c' || g, 'three ' || g, v, dedup_threshold => 1)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(single, 0);
}

/// The content of the memory `recall` brings back first for `v`.
fn nearest_content(c: &mut Client, v: &str) -> Option<String> {
    c.query_one(
        "SELECT content FROM fractality.recall($1::text::vector, 1)",
        &[&v],
    )
    .unwrap()
    .get(0)
}

/// A memory told by the key of a graph node with no text (one `upsert_node` made) takes the
/// content: recall returns it and its words find it. A memory's text told again stays as it was
/// first told. Before, the content was dropped and the memory had no text.
#[test]
fn a_graph_node_told_as_a_memory_takes_its_content() {
    let mut c = common::db();
    let tenant = common::tenant();
    common::set_tenant(&mut c, tenant);
    c.batch_execute("SELECT fractality.upsert_node('tea-fact')")
        .unwrap();
    let v = at_cosine(1.0, 7);
    let created: bool = c
        .query_one(
            "SELECT created FROM fractality.remember('tea-fact', 'Alice drinks green tea', $1::text::vector)",
            &[&v],
        )
        .unwrap()
        .get(0);
    assert!(!created, "the node's key: told again, not created");
    let recalled: Vec<(String, Option<String>)> = c
        .query(
            "SELECT node_key, content FROM fractality.recall($1::text::vector, 1)",
            &[&v],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        recalled,
        vec![(
            "tea-fact".to_string(),
            Some("Alice drinks green tea".to_string())
        )]
    );
    let found: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.search_nodes('green tea') WHERE node_key = 'tea-fact'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(found, 1, "its words find it");
    // told again with other words: the text stays as first told
    c.execute(
        "SELECT * FROM fractality.remember('tea-fact', 'Alice drinks coffee', $1::text::vector)",
        &[&v],
    )
    .unwrap();
    let content = nearest_content(&mut c, &v);
    assert_eq!(content.as_deref(), Some("Alice drinks green tea"));
}

/// A fact told under another key that repeats a graph node with no text (by similarity, within
/// `dedup_threshold`) reinforces that node, and the node takes the fact's content, as it does
/// when told by its key (API.md, `remember`).
#[test]
fn a_graph_node_a_fact_repeats_takes_its_content() {
    let mut c = common::db();
    let tenant = common::tenant();
    common::set_tenant(&mut c, tenant);
    let v = at_cosine(1.0, 9);
    c.execute(
        "SELECT fractality.upsert_node('entity-alice', embedding => $1::text::vector)",
        &[&v],
    )
    .unwrap();
    let (key, created): (String, bool) = {
        let r = c
            .query_one(
                "SELECT n.node_key, r.created
                   FROM fractality.remember('alice-fact', 'Alice likes tea', $1::text::vector) r
                   JOIN fractality.nodes n ON n.id = r.node_id",
                &[&at_cosine(0.999, 9)],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((key.as_str(), created), ("entity-alice", false));
    let content = nearest_content(&mut c, &v);
    assert_eq!(content.as_deref(), Some("Alice likes tea"));
}

/// A graph node whose label is blank ('' or spaces) takes the content a memory tells of it, as
/// one without a label does: its blank label stayed, and its words were never found (found by a
/// review).
#[test]
fn a_graph_node_of_a_blank_label_told_as_a_memory_takes_its_content() {
    let mut c = common::db();
    common::set_tenant(&mut c, common::tenant());
    for (key, label, axis) in [("blank-empty", "", 11), ("blank-spaces", "  ", 12)] {
        c.execute("SELECT fractality.upsert_node($1, $2)", &[&key, &label])
            .unwrap();
        let v = at_cosine(1.0, axis);
        c.execute(
            "SELECT created FROM fractality.remember($1, 'walruses sleep on the ice', $2::text::vector)",
            &[&key, &v],
        )
        .unwrap();
        let found: i64 = c
            .query_one(
                "SELECT count(*) FROM fractality.search_nodes('walruses ice') WHERE node_key = $1",
                &[&key],
            )
            .unwrap()
            .get(0);
        assert_eq!(found, 1, "{key}: its words find it");
    }
}

/// A ttl is judged by the least time it can add, not by the sign of each part: '7 days' - '1
/// hour' (a deadline less a margin) is a positive ttl; '1 mon -28 days', no time at all in
/// February, is not (found by a review: the first was refused as "not positive").
#[test]
fn a_ttl_of_parts_of_both_signs_is_judged_by_the_least_time_it_adds() {
    let mut c = common::db();
    common::set_tenant(&mut c, common::tenant());
    let v = at_cosine(1.0, 13);
    c.execute(
        "SELECT fractality.remember('ttl-margin', 'the meeting moved', $1::text::vector,
                                    ttl => interval '7 days' - interval '1 hour')",
        &[&v],
    )
    .unwrap();
    let left: f64 = c
        .query_one(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM fractality.nodes
              WHERE node_key = 'ttl-margin' AND user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    approx::assert_abs_diff_eq!(left, 7.0 * 86_400.0 - 3_600.0, epsilon = 5.0);
    for ttl in ["1 mon -28 days", "1 day -25 hours", "-1 day 23:00:00"] {
        let e = c
            .execute(
                "SELECT fractality.remember('ttl-bad', 'never stored', $1::text::vector, ttl => $2::text::interval)",
                &[&at_cosine(1.0, 14), &ttl],
            )
            .unwrap_err();
        assert_eq!(common::sqlstate(&e), "22023", "{ttl}: {e}");
    }
}

/// A tenant's memory lock is taken once a transaction (its key's entries would otherwise pile up
/// in the index for every later call to step over), but again after the savepoint that took it
/// rolled back, which released it: a second session telling a memory then waits for the first
/// one's commit.
#[test]
fn a_memory_lock_released_with_its_savepoint_is_taken_again() {
    let tenant = common::tenant();
    let mut admin = common::db();
    let mut first = common::app("fractality_memory_a", Some(tenant));
    let remember = |key: &str, family: usize| {
        format!(
            "SELECT created FROM fractality.remember('{key}', 'fact {key}', '{}')",
            vector_text(family, 0, 0.0)
        )
    };
    first.batch_execute("BEGIN; SAVEPOINT a").unwrap();
    first.query_one(&remember("sp-1", 1), &[]).unwrap();
    first.batch_execute("ROLLBACK TO SAVEPOINT a").unwrap();
    first.query_one(&remember("sp-2", 2), &[]).unwrap();
    let mut second = common::app("fractality_memory_a", Some(tenant));
    let second_pid = reliability::backend_pid(&mut second);
    let sql = remember("sp-3", 3);
    let told = thread::spawn(move || second.query_one(&sql, &[]).map(|r| r.get::<_, bool>(0)));
    // the second session waits for the first one's lock, taken again after the rollback
    wait_for_lock(&mut admin, second_pid);
    first.batch_execute("COMMIT").unwrap();
    assert!(
        told.join().unwrap().unwrap(),
        "stored once the first committed"
    );
    let keys: Vec<String> = admin
        .query(
            "SELECT node_key FROM fractality.nodes WHERE user_id = $1 ORDER BY 1",
            &[&tenant],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["sp-2", "sp-3"]);
}
