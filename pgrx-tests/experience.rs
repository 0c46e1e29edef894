//! The experience store inside the server: ingest, queries, policies, configuration, reward
//! aggregates against values computed here independently, prioritised sampling.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use approx::assert_relative_eq;
    use pgrx::prelude::*;

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql)
            .expect("query runs")
            .expect("not null")
    }

    /// 3 episodes x `steps` events at timestamps from `t0`, rewards a function of (episode,
    /// step); written through the typed-array write_events. Returns the rewards as
    /// (episode, step, [h, c, e, g]).
    fn seed_events(t0: i64, steps: i32) -> Vec<(i64, i32, [f32; 4])> {
        let mut out = Vec::new();
        for ep in 1..=3i64 {
            for st in 0..steps {
                let x = (ep * 31 + i64::from(st) * 7) % 17;
                out.push((
                    ep,
                    st,
                    [
                        x as f32 / 17.0 - 0.5,
                        0.1 * ep as f32,
                        -0.01 * st as f32,
                        if st == steps - 1 { 1.0 } else { 0.0 },
                    ],
                ));
            }
        }
        let n = out.len();
        let ids: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&(t0 + i as i64).to_be_bytes());
                id[15] = 0xee;
                id.to_vec()
            })
            .collect();
        let ts: Vec<i64> = (0..n).map(|i| t0 + 1000 * i as i64).collect();
        let eps: Vec<i64> = out.iter().map(|e| e.0).collect();
        let steps_v: Vec<i32> = out.iter().map(|e| e.1).collect();
        let zeros16: Vec<i16> = vec![0; n];
        let reals: Vec<f32> = vec![0.5; 8 * n];
        let rewards: Vec<f32> = out.iter().flat_map(|e| e.2).collect();
        let hashes: Vec<i32> = vec![4242; n];
        let seqs: Vec<i32> = (0..n as i32).collect();
        let written = Spi::get_one_with_args::<i64>(
            "SELECT fractality.write_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                ids.into(),
                ts.into(),
                eps.into(),
                steps_v.into(),
                zeros16.clone().into(),
                zeros16.into(),
                reals.clone().into(),
                reals.into(),
                rewards.into(),
                hashes.into(),
                seqs.into(),
            ],
        )
        .expect("write_events runs");
        assert_eq!(written, Some(n as i64));
        out
    }

    #[pg_test]
    fn exp_write_events_json_with_metadata_and_query_back() {
        let batch = r#"[
          {"event_id": "000102030405060708090a0b0c0d0e0f", "timestamp": 5000, "episode_id": 9,
           "step_number": 0, "event_type": 1, "flags": 2,
           "state_l1": 0.1, "state_l2": 0.2, "state_l3": 0.3, "state_l4": 0.4,
           "state_l5": 0.5, "state_l6": 0.6, "state_l7": 0.7, "state_l8": 0.8,
           "action_l1": -0.1, "action_l2": -0.2, "action_l3": -0.3, "action_l4": -0.4,
           "action_l5": -0.5, "action_l6": -0.6, "action_l7": -0.7, "action_l8": -0.8,
           "reward_homeostasis": 0.25, "reward_goal": 1, "adna_version_hash": 11, "sequence_number": 1,
           "metadata": {"intent_type": "explore", "executor_id": "agent-1", "parameters": {"depth": 2}}},
          {"event_id": "00010203-0405-0607-0809-0a0b0c0d0e1f", "timestamp": 6000, "episode_id": 9,
           "step_number": 1, "event_type": 0, "flags": 0,
           "state_l1": 0, "state_l2": 0, "state_l3": 0, "state_l4": 0,
           "state_l5": 0, "state_l6": 0, "state_l7": 0, "state_l8": 0,
           "action_l1": 0, "action_l2": 0, "action_l3": 0, "action_l4": 0,
           "action_l5": 0, "action_l6": 0, "action_l7": 0, "action_l8": 0,
           "adna_version_hash": 11, "sequence_number": 2}
        ]"#;
        let n = Spi::get_one_with_args::<i64>(
            "SELECT fractality.write_events($1::text::jsonb)",
            &[batch.into()],
        )
        .unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.query_events(0, 10000, 10)"),
            2
        );
        assert_eq!(
            one::<String>(
                "SELECT intent_type || '/' || executor_id || '/' || (parameters->>'depth')
                   FROM fractality.query_events(0, 10000, 10, with_metadata => true)
                  WHERE step_number = 0"
            ),
            "explore/agent-1/2"
        );
        // without metadata the columns stay NULL
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.query_events(0, 10000, 10) WHERE intent_type IS NULL"
            ),
            2
        );
        assert_relative_eq!(
            one::<f32>(
                "SELECT total_reward FROM fractality.query_events(0, 10000, 10) WHERE step_number = 0"
            ),
            1.25
        );
        assert_relative_eq!(
            one::<Vec<f32>>("SELECT state FROM fractality.query_events(5000, 5001, 1)")[..],
            [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8][..],
            max_relative = 1e-6
        );
        // [start, end): the end is excluded, limit holds
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.query_events(5000, 6000, 10)"),
            1
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.query_events(0, 10000, 1)"),
            1
        );
        // high-reward retrieval: only the first event passes 0.5
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.high_reward_events(0, 0.5)"),
            1
        );
    }

    /// 'same' when write_events' in-place jsonb reader gives what serde over the JSON text
    /// gives (the same events, or the same error message); otherwise both, for the message.
    #[pg_extern(immutable, strict)]
    fn exp_jsonb_reader_agrees(batch: crate::jsonb::JsonbArg<'_>) -> String {
        let fast = crate::experience::parse_batch_jsonb(&batch).map_err(|e| e.to_string());
        let slow = crate::experience::parse_batch("write_events", &batch.to_serde().unwrap())
            .map_err(|e| e.to_string());
        if fast == slow {
            "same".into()
        } else {
            format!("jsonb reader: {fast:?}\nserde: {slow:?}")
        }
    }

    /// 'same' when the text reader over `text` (the text and json forms) gives what the jsonb
    /// reader over the same batch as jsonb gives: the same events, or the same error message
    /// but for the function it names (`write_events_json` against `write_events`).
    #[pg_extern(immutable, strict)]
    fn exp_text_reader_agrees(text: &str, batch: crate::jsonb::JsonbArg<'_>) -> String {
        let by_text = crate::experience::parse_batch_text(text).map_err(|e| {
            let e = e.to_string();
            match e.strip_prefix("write_events_json") {
                Some(rest) => format!("write_events{rest}"),
                None => e,
            }
        });
        let by_jsonb = crate::experience::parse_batch_jsonb(&batch).map_err(|e| e.to_string());
        if by_text == by_jsonb {
            "same".into()
        } else {
            format!("text reader: {by_text:?}\njsonb reader: {by_jsonb:?}")
        }
    }

    #[pg_test]
    fn exp_write_events_jsonb_reader_equals_serde() {
        // random well-formed batches: floats of many magnitudes and digit counts, integers at
        // their bounds, ids as hex or UUID, rewards present or not, some with metadata
        let events = "
            SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                     'event_id', CASE WHEN i % 2 = 0 THEN md5(i::text || SEED)
                                      ELSE md5(i::text || SEED)::uuid::text END,
                     'timestamp', CASE WHEN i = 1 THEN 9223372036854775807 ELSE 1700000000000000 + i * 977 END,
                     'episode_id', CASE WHEN i = 2 THEN -9223372036854775808 ELSE i / 7 END,
                     'step_number', CASE WHEN i = 3 THEN 2147483647 ELSE i % 7 END,
                     'event_type', CASE WHEN i = 4 THEN -32768 ELSE i % 3 END,
                     'flags', 0, 'adna_version_hash', -2147483648 + i, 'sequence_number', i,
                     'state_l1', random(), 'state_l2', (random() * 1e6)::real,
                     'state_l3', (random() * 1e-6)::real, 'state_l4', -random()::real,
                     'state_l5', round((random() * 100)::numeric, (i % 12)),
                     'state_l6', (random() * 1e-30)::float8, 'state_l7', (random() * 3e38)::real,
                     'state_l8', i,
                     'action_l1', 0, 'action_l2', -0.0, 'action_l3', 1e-45::float8,
                     'action_l4', 12345678901234567890::numeric, 'action_l5', 0.1,
                     'action_l6', random() - 0.5, 'action_l7', (random() * 10)::numeric(20, 15),
                     'action_l8', 2.5e-7,
                     'reward_homeostasis', CASE WHEN i % 3 = 0 THEN NULL ELSE random() END,
                     'reward_curiosity', (random() - 0.5)::real,
                     'reward_efficiency', CASE WHEN i % 5 = 0 THEN NULL ELSE 1 END,
                     'reward_goal', random() * 1000,
                     'metadata', CASE WHEN i % 4 = 0 THEN jsonb_build_object(
                         'intent_type', 'move', 'executor_id', 'x' || i,
                         'parameters', jsonb_build_object('speed', random())) END)))
              FROM generate_series(1, 400) i";
        for s in 0..5 {
            Spi::run(&format!("SELECT setseed(0.{s})")).unwrap();
            let got: String = one(&format!(
                "SELECT tests.exp_jsonb_reader_agrees(b) || ' ' || tests.exp_text_reader_agrees(b::text, b)
                   FROM ({}) x(b)",
                events.replace("SEED", &format!("'{s}'"))
            ));
            assert_eq!(got, "same same");
        }
        // malformed batches: the same message, naming the element and field
        let event = r#"{"event_id": "000102030405060708090a0b0c0d0e0f", "timestamp": 1,
            "episode_id": 1, "step_number": 0, "event_type": 0, "flags": 0,
            "adna_version_hash": 0, "sequence_number": 0,
            "state_l1": 0, "state_l2": 0, "state_l3": 0, "state_l4": 0, "state_l5": 0,
            "state_l6": 0, "state_l7": 0, "state_l8": 0, "action_l1": 0, "action_l2": 0,
            "action_l3": 0, "action_l4": 0, "action_l5": 0, "action_l6": 0, "action_l7": 0,
            "action_l8": 0}"#;
        let with = |k: &str, v: &str| format!(r#"{}, "{k}": {v}}}"#, &event[..event.len() - 1]);
        let without = |k: &str| {
            let mut o: serde_json::Value = serde_json::from_str(event).unwrap();
            o.as_object_mut().unwrap().remove(k);
            o.to_string()
        };
        let cases = [
            "{}".to_string(),
            "42".to_string(),
            r#""text""#.to_string(),
            "[]".to_string(),
            format!("[{event}, 7]"),
            format!("[{event}, {}]", without("state_l3")),
            format!("[{}]", with("timestamp", "-1")),
            format!("[{}]", with("timestamp", "1.5")),
            format!("[{}]", with("step_number", "2147483648")),
            format!("[{}]", with("flags", r#""1""#)),
            format!("[{}]", with("state_l1", "1e39")),
            format!("[{}]", with("state_l1", "null")),
            format!("[{}]", with("reward_goal", "true")),
            format!("[{}]", with("event_id", r#""0001""#)),
            format!("[{}]", with("event_id", "17")),
            format!("[{}]", with("surprise", "1")),
            format!("[{}]", with("metadata", "[]")),
            format!("[{}]", with("metadata", r#"{"intent_type": "x"}"#)),
            format!("[{event}, {event}]"),
        ];
        for c in &cases {
            let c = c.replace('\'', "''");
            let got: String = one(&format!(
                "SELECT tests.exp_jsonb_reader_agrees('{c}'::jsonb) || ' '
                        || tests.exp_text_reader_agrees('{c}', '{c}'::jsonb)"
            ));
            assert_eq!(got, "same same", "{c}");
        }
    }

    #[pg_test]
    fn exp_write_events_text_json_and_jsonb_store_the_same_events() {
        let batch = |base: i64| {
            format!(
                "SELECT json_agg(json_build_object(
                     'event_id', md5(({base} + i)::text), 'timestamp', {base} + i, 'episode_id', i / 3,
                     'step_number', i % 3, 'event_type', 1, 'flags', 0,
                     'adna_version_hash', 5, 'sequence_number', i,
                     'state_l1', i * 0.1, 'state_l2', -1.5e-3, 'state_l3', 1e10, 'state_l4', 0,
                     'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 1.0 / 3,
                     'action_l1', 0.1, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
                     'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', -2,
                     'reward_goal', i * 0.25,
                     'metadata', CASE WHEN i % 2 = 0 THEN json_build_object(
                         'intent_type', 'move', 'executor_id', 'x' || i,
                         'parameters', json_build_object('speed', i)) END))
                   FROM generate_series(1, 50) i"
            )
        };
        let n: i64 = one(&format!(
            "SELECT fractality.write_events_json(({})::text)
                  + fractality.write_events_json(({})::json)
                  + fractality.write_events(({})::jsonb)",
            batch(0),
            batch(1000),
            batch(2000)
        ));
        assert_eq!(n, 150);
        // each form's rows, moved back to the first form's timestamps, are the same rows, with
        // their metadata (the first form's 50 rows all present: nothing filtered away)
        let differ: i64 = one(
            "WITH e AS (
                 SELECT \"timestamp\" / 1000 AS form, \"timestamp\" % 1000 AS t, *
                   FROM fractality.query_events(0, 3000, 1000, true))
             SELECT count(*) FROM (
                 (SELECT COLS FROM e WHERE form = 0 EXCEPT ALL SELECT COLS FROM e WHERE form = 1)
                 UNION ALL
                 (SELECT COLS FROM e WHERE form = 2 EXCEPT ALL SELECT COLS FROM e WHERE form = 1)) d"
                .replace("COLS", "t, episode_id, step_number, event_type, flags, state, action, reward_homeostasis, reward_curiosity, reward_efficiency, reward_goal, adna_version_hash, sequence_number, intent_type, executor_id, parameters::text")
                .as_str(),
        );
        assert_eq!(differ, 0);
        // (action_metadata's key is the event id alone: each form's events have ids of their own)
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.query_events(0, 3000, 1000)
                  WHERE event_id = decode(md5(\"timestamp\"::text), 'hex')"
            ),
            150
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.query_events(0, 1000, 1000, true) WHERE intent_type = 'move'"),
            25
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata"),
            75
        );
    }

    /// An installation whose library is newer than its catalog (before `ALTER EXTENSION
    /// fractality UPDATE`) still calls the C symbols of 0.1.0-0.4.0: `write_events_json_wrapper`
    /// was `write_events(jsonb)`'s (a jsonb argument), `write_events_text_wrapper` the text form's.
    #[pg_test]
    fn exp_the_symbols_of_earlier_catalogs_still_write() {
        Spi::run(
            "CREATE FUNCTION public.old_write_events(jsonb) RETURNS bigint STRICT
                 LANGUAGE c AS '$libdir/fractality', 'write_events_json_wrapper';
             CREATE FUNCTION public.old_write_events_json(text) RETURNS bigint STRICT
                 LANGUAGE c AS '$libdir/fractality', 'write_events_text_wrapper'",
        )
        .unwrap();
        let batch = |base: i64| {
            format!(
                "SELECT json_agg(json_build_object(
                     'event_id', md5(({base} + i)::text), 'timestamp', {base} + i, 'episode_id', 1,
                     'step_number', i, 'event_type', 1, 'flags', 0, 'adna_version_hash', 5,
                     'sequence_number', i, 'state_l1', i * 0.5, 'state_l2', 0, 'state_l3', 0,
                     'state_l4', 0, 'state_l5', 0, 'state_l6', 0, 'state_l7', 0, 'state_l8', 0,
                     'action_l1', 1, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
                     'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 0,
                     'reward_goal', i,
                     'metadata', json_build_object('intent_type', 'old', 'executor_id', 'x')))
                   FROM generate_series(1, 20) i"
            )
        };
        let n: i64 = one(&format!(
            "SELECT public.old_write_events(({})::jsonb) + public.old_write_events_json(({})::text)",
            batch(0),
            batch(1000)
        ));
        assert_eq!(n, 40);
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.query_events(0, 2000, 1000, true)
                  WHERE intent_type = 'old' AND state[1] = step_number * 0.5::real
                    AND reward_goal = step_number"
            ),
            40
        );
    }

    #[pg_test(error = "write_events_json: invalid JSON: expected value at line 1 column 2")]
    fn exp_write_events_text_refuses_invalid_json() {
        Spi::run("SELECT fractality.write_events_json('[,]')").unwrap();
    }

    #[pg_test(
        error = "write_events: element 1, field \"event_id\": expected 16 bytes (32 hex digits or a UUID), got \"000102030405060708090a0b0c0d0e\" (30 hex digits, 15 bytes)"
    )]
    fn exp_write_events_names_the_bad_element() {
        let good = r#"{"event_id": "000102030405060708090a0b0c0d0e0f", "timestamp": 1, "episode_id": 1, "step_number": 0, "event_type": 0, "flags": 0, "state_l1": 0, "state_l2": 0, "state_l3": 0, "state_l4": 0, "state_l5": 0, "state_l6": 0, "state_l7": 0, "state_l8": 0, "action_l1": 0, "action_l2": 0, "action_l3": 0, "action_l4": 0, "action_l5": 0, "action_l6": 0, "action_l7": 0, "action_l8": 0, "adna_version_hash": 1, "sequence_number": 1}"#;
        let bad = good.replace(
            "000102030405060708090a0b0c0d0e0f",
            "000102030405060708090a0b0c0d0e",
        );
        Spi::run_with_args(
            "SELECT fractality.write_events($1::text::jsonb)",
            &[format!("[{good}, {bad}]").into()],
        )
        .unwrap();
    }

    #[pg_test(error = "write_events: element 0, field \"reward_goal\": NaN is not a finite real")]
    fn exp_write_events_arrays_refuse_nan() {
        Spi::run(
            "SELECT fractality.write_events(ARRAY['\\x000102030405060708090a0b0c0d0e0f'::bytea], ARRAY[1::bigint],
                 ARRAY[1::bigint], ARRAY[0], ARRAY[0::smallint], ARRAY[0::smallint],
                 array_fill(0::real, ARRAY[8]), array_fill(0::real, ARRAY[8]),
                 ARRAY[0, 0, 0, 'NaN']::real[], ARRAY[1], ARRAY[1])",
        )
        .unwrap();
    }

    #[pg_test]
    fn exp_episode_returns_match_independent_sums() {
        let gamma = 0.9f64;
        let events = seed_events(1_000_000, 40);
        let rows = Spi::connect(|c| {
            c.select(
                "SELECT episode_id, steps, total, discounted, mean, homeostasis, curiosity, efficiency, goal
                   FROM fractality.episode_returns(0, 10000000000, 0.9)",
                None,
                &[],
            )
            .unwrap()
            .map(|r| {
                (
                    r.get::<i64>(1).unwrap().unwrap(),
                    r.get::<i64>(2).unwrap().unwrap(),
                    (3..=9)
                        .map(|k| r.get::<f64>(k).unwrap().unwrap())
                        .collect::<Vec<f64>>(),
                )
            })
            .collect::<Vec<_>>()
        });
        assert_eq!(rows.len(), 3);
        for (ep, steps, v) in rows {
            let mine: Vec<&(i64, i32, [f32; 4])> = events.iter().filter(|e| e.0 == ep).collect();
            assert_eq!(steps, mine.len() as i64);
            let comp = |k: usize| mine.iter().map(|e| f64::from(e.2[k])).sum::<f64>();
            let total: f64 = (0..4).map(comp).sum();
            let discounted: f64 = mine
                .iter()
                .map(|e| {
                    let r: f64 = e.2.iter().map(|&x| f64::from(x)).sum();
                    gamma.powi(e.1) * r
                })
                .sum();
            assert_relative_eq!(v[0], total, epsilon = 1e-9);
            assert_relative_eq!(v[1], discounted, epsilon = 1e-9);
            assert_relative_eq!(v[2], total / steps as f64, epsilon = 1e-9);
            for k in 0..4 {
                assert_relative_eq!(v[3 + k], comp(k), epsilon = 1e-9);
            }
        }
        // the ORDER BY form of discounted_return agrees with the step form
        assert_relative_eq!(
            one::<f64>(
                "SELECT fractality.discounted_return(reward_homeostasis::float8 + reward_curiosity::float8
                        + reward_efficiency::float8 + reward_goal::float8, 0.9 ORDER BY step_number)
                   FROM fractality.experience_events WHERE episode_id = 2"
            ),
            one::<f64>(
                "SELECT discounted FROM fractality.episode_returns(0, 10000000000, 0.9) WHERE episode_id = 2"
            ),
            epsilon = 1e-9
        );
    }

    #[pg_test]
    fn exp_discounted_return_in_order() {
        // 1 + 0.5 * 2 + 0.25 * 3
        assert_relative_eq!(
            one::<f64>(
                "SELECT fractality.discounted_return(r, 0.5 ORDER BY s)
                   FROM (VALUES (2, 2.0), (1, 1.0), (3, 3.0)) v(s, r)"
            ),
            2.75
        );
        assert_relative_eq!(
            one::<f64>(
                "SELECT fractality.discounted_return(r, 0.5 ORDER BY s DESC)
                   FROM (VALUES (2, 2.0), (1, 1.0), (3, 3.0)) v(s, r)"
            ),
            3.0 + 1.0 + 0.25
        );
        assert!(
            Spi::get_one::<f64>("SELECT fractality.discounted_return(1.0, 0.5) WHERE false")
                .unwrap()
                .is_none()
        );
    }

    #[pg_test(error = "invalid value for gamma: 1.5")]
    fn exp_discounted_return_refuses_gamma_above_one() {
        Spi::run("SELECT fractality.discounted_return(1.0, 1.5 ORDER BY 1)").unwrap();
    }

    #[pg_test]
    fn exp_episode_sums_and_discounted_return_parallel_equal_serial() {
        // 500 episodes of 400 steps, rows in a shuffled order
        Spi::run(
            "CREATE TABLE tests.episodes AS
                 SELECT (g % 500)::bigint AS episode_id, (g / 500)::integer AS step,
                        (((g * 31) % 97) / 97.0)::real AS h, (((g * 17) % 13) / 13.0 - 0.5)::real AS c
                   FROM generate_series(0::bigint, 199999) g ORDER BY (g * 104729) % 200000;
             ANALYZE tests.episodes;",
        )
        .unwrap();
        let sums = |settings: &str| -> Vec<(i64, Vec<f64>, f64)> {
            Spi::run(settings).unwrap();
            Spi::connect(|c| {
                c.select(
                    "SELECT episode_id, fractality.episode_sums(step, h, c, 0, 0, 0.99),
                            fractality.discounted_return((h + c)::float8, 0.99, step)
                       FROM tests.episodes GROUP BY episode_id ORDER BY episode_id",
                    None,
                    &[],
                )
                .unwrap()
                .map(|r| {
                    (
                        r.get::<i64>(1).unwrap().unwrap(),
                        r.get::<Vec<f64>>(2).unwrap().unwrap(),
                        r.get::<f64>(3).unwrap().unwrap(),
                    )
                })
                .collect()
            })
        };
        let serial = sums("SET LOCAL max_parallel_workers_per_gather = 0");
        let parallel_settings =
            "SET LOCAL max_parallel_workers_per_gather = 2; SET LOCAL parallel_setup_cost = 0;
             SET LOCAL parallel_tuple_cost = 0; SET LOCAL min_parallel_table_scan_size = 0";
        let parallel = sums(parallel_settings);
        let plan = Spi::explain(
            "SELECT episode_id, fractality.episode_sums(step, h, c, 0, 0, 0.99),
                    fractality.discounted_return((h + c)::float8, 0.99, step)
               FROM tests.episodes GROUP BY episode_id",
        )
        .unwrap()
        .0
        .to_string();
        assert!(
            plan.contains("Partial"),
            "a partial aggregate is planned: {plan}"
        );
        assert_eq!(serial.len(), 500);
        assert_eq!(parallel.len(), serial.len());
        for (p, s) in parallel.iter().zip(&serial) {
            assert_eq!(p.0, s.0);
            assert_eq!(p.1[0], 400.0, "steps of episode {}", p.0);
            assert_eq!(p.1[0], s.1[0]);
            for (a, b) in p.1.iter().zip(&s.1) {
                assert_relative_eq!(*a, *b, max_relative = 1e-9, epsilon = 1e-9);
            }
            assert_relative_eq!(p.2, s.2, max_relative = 1e-9, epsilon = 1e-9);
            // the episode's discounted return, as episode_sums counts it too
            assert_relative_eq!(p.1[5], p.2, max_relative = 1e-6, epsilon = 1e-6);
        }
        // and the discounted return by step is sum g^k r_k over the steps in order
        let ordered: f64 = one(
            "SELECT fractality.discounted_return((h + c)::float8, 0.99 ORDER BY step)
               FROM tests.episodes WHERE episode_id = 7",
        );
        assert_relative_eq!(serial[7].2, ordered, max_relative = 1e-9);
    }

    #[pg_test]
    fn exp_reward_stats_parallel_equals_serial_and_two_pass() {
        Spi::run(
            "CREATE TABLE tests.stats_input AS
                 SELECT (((g * 7919) % 1000) / 100.0 - 5.0)::float8 AS x FROM generate_series(1, 200000) g;
             ANALYZE tests.stats_input;",
        )
        .unwrap();
        let stats = |settings: &str| -> (i64, f64, f64, f64, f64) {
            Spi::run(settings).unwrap();
            Spi::connect(|c| {
                let r = c
                    .select(
                        "SELECT (s).n, (s).mean, (s).stddev, (s).min, (s).max
                           FROM (SELECT fractality.reward_stats(x) s FROM tests.stats_input) q",
                        None,
                        &[],
                    )
                    .unwrap()
                    .first();
                (
                    r.get::<i64>(1).unwrap().unwrap(),
                    r.get::<f64>(2).unwrap().unwrap(),
                    r.get::<f64>(3).unwrap().unwrap(),
                    r.get::<f64>(4).unwrap().unwrap(),
                    r.get::<f64>(5).unwrap().unwrap(),
                )
            })
        };
        let serial = stats("SET LOCAL max_parallel_workers_per_gather = 0");
        let parallel = stats(
            "SET LOCAL max_parallel_workers_per_gather = 2; SET LOCAL parallel_setup_cost = 0;
             SET LOCAL parallel_tuple_cost = 0; SET LOCAL min_parallel_table_scan_size = 0",
        );
        let plan = Spi::explain("SELECT fractality.reward_stats(x) FROM tests.stats_input")
            .unwrap()
            .0
            .to_string();
        assert!(
            plan.contains("Partial"),
            "a partial aggregate is planned: {plan}"
        );
        assert_eq!(serial.0, 200_000);
        assert_eq!(parallel.0, serial.0);
        assert_relative_eq!(parallel.1, serial.1, epsilon = 1e-9);
        assert_relative_eq!(parallel.2, serial.2, epsilon = 1e-9);
        assert_eq!((parallel.3, parallel.4), (serial.3, serial.4));
        // and both agree with PostgreSQL's own avg and stddev_samp
        assert_relative_eq!(
            serial.1,
            one::<f64>("SELECT avg(x) FROM tests.stats_input"),
            epsilon = 1e-9
        );
        assert_relative_eq!(
            serial.2,
            one::<f64>("SELECT stddev_samp(x) FROM tests.stats_input"),
            epsilon = 1e-9
        );
        assert_eq!(serial.3, -5.0);
        assert_relative_eq!(serial.4, 4.99);
        // no rows: n = 0, the rest NULL
        assert_eq!(
            one::<String>(
                "SELECT fractality.reward_stats(x)::text FROM tests.stats_input WHERE false"
            ),
            "(0,,,,)"
        );
    }

    #[pg_test]
    fn exp_policy_lineage_after_several_saves() {
        let ids: Vec<i32> = (1..=4)
            .map(|v| {
                one::<i32>(&format!(
                    "SELECT fractality.save_policy('exp-bin', 'rule-{v}', '{{\"0\": 0.{v}}}')"
                ))
            })
            .collect();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.adna_policies WHERE state_bin_id = 'exp-bin' AND is_active"),
            1
        );
        let lineage: Vec<(i32, i32)> = Spi::connect(|c| {
            c.select(
                "SELECT ancestor_id, version FROM fractality.policy_lineage($1) ORDER BY depth",
                None,
                &[ids[3].into()],
            )
            .unwrap()
            .map(|r| (r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap()))
            .collect()
        });
        assert_eq!(
            lineage,
            vec![(ids[3], 4), (ids[2], 3), (ids[1], 2), (ids[0], 1)]
        );
        assert_eq!(
            one::<String>("SELECT fractality.load_policy('exp-bin') ->> 'rule_id'"),
            "rule-4"
        );
        assert!(
            Spi::get_one::<pgrx::JsonB>("SELECT fractality.load_policy('no-such-bin')")
                .unwrap()
                .is_none()
        );
        // version hashes differ between versions
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT version_hash) FROM fractality.adna_policies WHERE state_bin_id = 'exp-bin'"),
            4
        );
    }

    #[pg_test(error = "policy 987654 does not exist")]
    fn exp_policy_lineage_of_a_missing_policy() {
        Spi::run("SELECT * FROM fractality.policy_lineage(987654)").unwrap();
    }

    #[pg_test]
    fn exp_config_versions() {
        for v in ["0.1", "0.2", "0.3"] {
            Spi::run(&format!(
                "SELECT fractality.save_config('action_controller', 'exploration_rate', '{v}')"
            ))
            .unwrap();
        }
        assert_eq!(
            one::<String>(
                "SELECT fractality.load_config('action_controller', 'exploration_rate')::text"
            ),
            "0.3"
        );
        assert_eq!(
            one::<String>(
                "SELECT string_agg(version || ':' || config_value::text || ':' || is_active, ' ')
                   FROM fractality.config_history('action_controller', 'exploration_rate')"
            ),
            "3:0.3:true 2:0.2:false 1:0.1:false"
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.configuration_store c
                   JOIN fractality.configuration_store p ON p.config_id = c.parent_config_id
                  WHERE c.component_name = 'action_controller' AND p.version = c.version - 1"
            ),
            2
        );
    }

    #[pg_test]
    fn exp_refresh_policy_rewards_counts_each_event_once() {
        Spi::run("DELETE FROM fractality.policy_reward_inbox").unwrap();
        let pid = one::<i32>("SELECT fractality.save_policy('exp-reward-bin', 'r', '{\"0\": 1}')");
        Spi::run_with_args(
            "UPDATE fractality.adna_policies SET version_hash = 4242 WHERE policy_id = $1",
            &[pid.into()],
        )
        .unwrap();
        let events = seed_events(2_000_000, 10);
        let mean = events
            .iter()
            .map(|e| f64::from(e.2[0] + e.2[1] + e.2[2] + e.2[3]))
            .sum::<f64>()
            / events.len() as f64;
        assert_eq!(one::<i32>("SELECT fractality.refresh_policy_rewards()"), 30);
        assert_eq!(one::<i32>("SELECT fractality.refresh_policy_rewards()"), 0);
        let (n, avg) = Spi::get_two_with_args::<i64, f32>(
            "SELECT total_executions, avg_reward FROM fractality.adna_policies WHERE policy_id = $1",
            &[pid.into()],
        )
        .unwrap();
        assert_eq!(n, Some(30));
        assert_relative_eq!(f64::from(avg.unwrap()), mean, epsilon = 1e-6);
        // more events later: only they are added
        seed_events(3_000_000, 2);
        assert_eq!(one::<i32>("SELECT fractality.refresh_policy_rewards()"), 6);
        assert_eq!(
            one::<i64>(&format!(
                "SELECT total_executions FROM fractality.adna_policies WHERE policy_id = {pid}"
            )),
            36
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.learning_metrics WHERE metric_type = 'reward_trend'"
            ),
            2
        );
    }

    #[pg_test]
    fn exp_sampling_follows_priorities_and_seed() {
        // four events with total rewards 1, 0, 3, -2
        for (i, r) in [1.0f32, 0.0, 3.0, -2.0].iter().enumerate() {
            Spi::run_with_args(
                "SELECT fractality.write_event($1, $2, 1, $3, 0::smallint, 0::smallint,
                     array_fill(0::real, ARRAY[8]), array_fill(0::real, ARRAY[8]), 1, $3,
                     reward_goal => $4)",
                &[
                    vec![i as u8 + 1; 16].into(),
                    (100 + i as i64).into(),
                    (i as i32).into(),
                    (*r).into(),
                ],
            )
            .unwrap();
        }
        let draws = 40_000;
        let counts: Vec<(Vec<u8>, i64, f64)> = Spi::connect(|c| {
            c.select(
                "SELECT event_id, count(*), max(weight) FROM fractality.sample_experiences($1, alpha => 1.0, seed => 42)
                  GROUP BY event_id ORDER BY event_id",
                None,
                &[draws.into()],
            )
            .unwrap()
            .map(|r| {
                (
                    r.get(1).unwrap().unwrap(),
                    r.get(2).unwrap().unwrap(),
                    r.get(3).unwrap().unwrap(),
                )
            })
            .collect()
        });
        let total = 6.0 + 4.0 * crate::reward::PRIORITY_EPSILON;
        let expected = [1.0, 0.0, 3.0, 2.0];
        for (id, n, _) in &counts {
            let k = usize::from(id[0]) - 1;
            let p = (expected[k] + crate::reward::PRIORITY_EPSILON) / total;
            assert!(
                (*n as f64 / f64::from(draws) - p).abs() < 0.01,
                "event {k}: {n} draws, expected share {p}"
            );
        }
        // the lowest priority drawn gets the largest weight, 1
        let max_w = counts.iter().map(|c| c.2).fold(0.0, f64::max);
        assert_relative_eq!(max_w, 1.0);
        let same = |seed: &str| {
            one::<String>(&format!(
                "SELECT string_agg(encode(event_id, 'hex'), ',') FROM fractality.sample_experiences(50, seed => {seed})"
            ))
        };
        assert_eq!(same("7"), same("7"));
        assert_ne!(same("7"), same("8"));
    }

    #[pg_test(error = "invalid value for alpha: NaN")]
    fn exp_sampling_refuses_nan_alpha() {
        Spi::run("SELECT * FROM fractality.sample_experiences(5, 'NaN')").unwrap();
    }

    #[pg_test]
    fn exp_metadata_reference_is_kept() {
        seed_events(4_000_000, 1);
        Spi::run(
            "INSERT INTO fractality.action_metadata (event_id, event_timestamp, intent_type, executor_id)
             SELECT event_id, \"timestamp\", 'i', 'x' FROM fractality.experience_events",
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata"),
            3
        );
        Spi::run("DELETE FROM fractality.experience_events WHERE episode_id = 1").unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata"),
            2
        );
    }

    #[pg_test(
        error = "insert or update on table \"action_metadata\" violates the reference \"action_metadata_event\": no event (1, \\x000102030405060708090a0b0c0d0e0f)"
    )]
    fn exp_metadata_needs_its_event() {
        // checked at commit, or at once with the constraint set IMMEDIATE
        Spi::run(
            "INSERT INTO fractality.action_metadata (event_id, event_timestamp, intent_type, executor_id)
             VALUES ('\\x000102030405060708090a0b0c0d0e0f', 1, 'i', 'x')",
        )
        .unwrap();
        Spi::run("SET CONSTRAINTS fractality.action_metadata_event IMMEDIATE").unwrap();
    }
}
