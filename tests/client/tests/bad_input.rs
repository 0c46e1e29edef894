//! Bad input, every function: a table-driven suite. For each function a valid call is the base;
//! each argument in turn is replaced by NULL and by the hostile values of its type (NaN,
//! infinities, negative and huge sizes, empty arrays and JSON, wrong vector dimensions, text with
//! quotes and semicolons, ...). Every call must either succeed or raise an ERROR with a
//! documented SQLSTATE; after every call the backend is the same process (it never crashed), and
//! after every failed call the row count of every fractality table is unchanged. Then 10k-event
//! batches with one bad element, in every form of write_events (jsonb, typed arrays) and in write_events_json.

mod common;
mod reliability;

use postgres::Client;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The tests of this file compare row counts: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Text with quotes, semicolons and a comment, as an SQL literal.
const QUOTES: &str = "$q$it's \"quoted\"; DROP TABLE fractality.nodes; -- '); SELECT 1; $q$";

/// SQLSTATEs a call may end with: the documented ones (22023 invalid value, 22004 NULL not
/// allowed, 22000 dimensions, P0002 not found, 23505 duplicate event, 42710 a replay buffer's
/// name taken, 42501 the policy refusing a row, 54000 a JSON document past the values read
/// whole), and those PostgreSQL raises while reading a literal, before the function runs
/// (22P02 / 22007 / 22008 / 22003 bad or out-of-range input, 42P01 unknown relation name).
const ALLOWED: &[&str] = &[
    "22023", "22004", "22000", "P0002", "23505", "42710", "42501", "22P02", "22007", "22008",
    "22003", "42P01", "54000",
];

/// The hostile values of an SQL type, as SQL expressions.
fn variants(ty: &str) -> Vec<String> {
    let mut v: Vec<String> = vec!["NULL".into()];
    let more: &[&str] = match ty {
        "float8" => &[
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "-1",
            "0",
            "1e308",
            "-1e308",
        ],
        "real" => &["'NaN'", "'Infinity'", "'-Infinity'", "-1", "3.4e38"],
        "integer" => &["-1", "0", "2147483647", "-2147483648"],
        "bigint" => &["-1", "0", "9223372036854775807", "-9223372036854775808"],
        "smallint" => &["-1", "32767", "-32768"],
        "text" => &["''", QUOTES, "repeat('x', 10000)", "E'\\\\x00 \\t\\n'"],
        "jsonb" => &[
            "'{}'",
            "'[]'",
            "'null'",
            "'\"s\"'",
            "'[1, 2]'",
            "'{\"node_key\": 1e999}'",
            "(repeat('[', 200) || repeat(']', 200))::jsonb",
            "to_jsonb(QUOTES::text)",
            "jsonb_build_object('node_key', QUOTES, 'label', QUOTES, 'event_id', QUOTES)",
        ],
        "json" => &[
            "'{}'",
            "'[]'",
            "'null'",
            "'[1, 2]'",
            "'[{\"event_id\": 1e999}]'",
            "'[{\"a\": \"\\u0000\"}]'",
            "(repeat('[', 200) || repeat(']', 200))::json",
            "to_json(QUOTES::text)",
            "json_build_array(json_build_object('event_id', QUOTES, 'metadata', QUOTES))",
            // past the most values a document read whole may hold (54000)
            "('{\"x\": [' || repeat('0,', 8000000) || '0]}')::json",
            "('[{\"metadata\": {\"parameters\": [' || repeat('0,', 8000000) || '0]}}]')::json",
        ],
        "vector" => &[
            "'[1,2,3]'",
            "array_fill(0, ARRAY[384])::vector",
            "array_fill(1e30, ARRAY[384])::vector",
            "array_fill(1, ARRAY[16000])::vector",
        ],
        "uuid" => &["'00000000-0000-0000-0000-00000000dead'"],
        "uuid[]" => &[
            "'{}'",
            "'{NULL}'",
            "ARRAY['00000000-0000-0000-0000-00000000dead']::uuid[]",
        ],
        "bytea" => &["'\\x'", "'\\x00'", "decode(repeat('ab', 10000), 'hex')"],
        "real[]" => &[
            "'{}'",
            "'{NULL}'",
            "'{NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN}'",
            "'{{1,2},{3,4}}'",
        ],
        "bytea[]" | "bigint[]" | "integer[]" | "smallint[]" => &["'{}'", "'{NULL}'"],
        "text[]" => &[
            "'{}'",
            "'{NULL}'",
            "'{{a,b},{c,d}}'",
            "ARRAY[QUOTES, QUOTES]",
        ],
        "vector[]" => &[
            "'{}'",
            "'{NULL}'",
            "ARRAY['[1,2,3]'::vector, '[1,2,3]'::vector]",
            "ARRAY[array_fill(0, ARRAY[384])::vector, array_fill(0, ARRAY[384])::vector]",
            "ARRAY[[array_fill(0.1, ARRAY[384])::vector], [array_fill(0.2, ARRAY[384])::vector]]",
        ],
        "jsonb[]" => &["'{}'", "'{NULL}'", "ARRAY['[1]'::jsonb, 'null'::jsonb]"],
        "interval[]" => &[
            "'{}'",
            "'{NULL}'",
            "ARRAY['-1 hour'::interval, '0'::interval]",
        ],
        "float8[]" => &["'{}'", "'{NULL}'", "'{NaN}'", "'{-1}'", "'{1, 2}'"],
        "boolean" => &["true"],
        "date" => &["'infinity'", "'-infinity'", "'4713-01-01 BC'"],
        "timestamptz" => &["'infinity'", "'-infinity'", "'4713-01-01 00:00 BC'"],
        "interval" => &["'-1 hour'", "'0'", "'100000000 hours'", "'1 month'"],
        "regclass" => &["'pg_class'", "'fractality.nodes'"],
        _ => &[],
    };
    v.extend(more.iter().map(|s| s.replace("QUOTES", QUOTES)));
    v
}

/// One function: how to call it (`{}` stands for the argument list, or `{0}`, `{1}`, ... for
/// each argument) and a valid value and the SQL type of each argument.
struct Func {
    call: &'static str,
    args: &'static [(&'static str, &'static str)],
}

const V384: &str = "array_fill(0.05, ARRAY[384])::vector";

fn functions() -> Vec<Func> {
    vec![
        Func { call: "fractality.cosine_similarity", args: &[("'[1,2,3]'", "vector"), ("'[3,2,1]'", "vector")] },
        Func { call: "fractality.normalize_vector", args: &[("'[3,4]'", "vector")] },
        Func { call: "fractality.vector_dims_native", args: &[("'[1,2,3]'", "vector")] },
        Func { call: "fractality.current_user_id", args: &[] },
        Func { call: "fractality.epoch_us", args: &[("now()", "timestamptz")] },
        Func {
            call: "fractality.decay_atp",
            args: &[("0.8", "float8"), ("'1 hour'", "interval"), ("0.95", "float8"), ("'1 hour'", "interval"), ("0.1", "float8")],
        },
        Func {
            call: "fractality.current_atp",
            args: &[("0.8", "float8"), ("now() - interval '1 hour'", "timestamptz"), ("now()", "timestamptz")],
        },
        Func {
            call: "fractality.apply_consciousness_decay",
            args: &[("0.99", "float8"), ("0.1", "float8"), ("fractality.current_user_id()", "uuid")],
        },
        Func { call: "fractality.materialize_decay", args: &[("10000", "integer")] },
        Func { call: "fractality.pulse", args: &[("'{ROOT}'", "uuid"), ("0.01", "float8")] },
        Func {
            call: "fractality._create_month_partition",
            args: &[("'fractality.consciousness_streams'", "regclass"), ("current_date", "date")],
        },
        Func {
            call: "fractality.resonance_score",
            args: &[("0.5", "float8"), ("0.5", "float8"), ("0.5", "float8"), ("0.5", "float8"), ("0.5", "float8"), ("0.3", "float8"), ("0.2", "float8")],
        },
        Func {
            call: "fractality.calculate_resonance",
            args: &[("'{ROOT}'", "uuid"), ("'{CHILD}'", "uuid"), ("'default'", "text")],
        },
        Func {
            call: "fractality.resonance_with",
            args: &[("'{ROOT}'", "uuid"), ("ARRAY['{CHILD}', '{LEAF}']::uuid[]", "uuid[]"), ("'default'", "text")],
        },
        Func {
            call: "fractality.find_resonant",
            args: &[("'{ROOT}'", "uuid"), ("0.7", "float8"), ("20", "integer"), ("'default'", "text")],
        },
        Func {
            call: "fractality.find_resonant",
            args: &[("'root'", "text"), ("0.7", "float8"), ("20", "integer"), ("'default'", "text")],
        },
        Func {
            call: "fractality.crystallize_consensus",
            args: &[("'{ROOT}'", "uuid"), ("0.7", "float8"), ("3", "integer"), ("'default'", "text")],
        },
        Func { call: "fractality.register_model", args: &[("'default'", "text"), ("384", "integer")] },
        // the owner's index builders, on the suite's own model (registered by the set-up): the
        // valid calls drop its index and build it again
        Func { call: "fractality.drop_model_index", args: &[("'bad_m4'", "text")] },
        Func { call: "fractality.build_model_index", args: &[("'bad_m4'", "text")] },
        Func { call: "fractality.build_tenant_graphs", args: &[("'bad_m4'", "text"), ("500", "bigint")] },
        Func {
            call: "fractality.remember",
            args: &[
                ("'k-remember'", "text"),
                ("'a fact'", "text"),
                (V384, "vector"),
                ("'{\"a\": 1}'", "jsonb"),
                ("'default'", "text"),
                ("0.95", "float8"),
                ("'7 days'", "interval"),
            ],
        },
        Func {
            call: "fractality.remember_many",
            args: &[
                ("jsonb_build_array(jsonb_build_object('content', 'batch fact', 'embedding', (array_fill(0.07, ARRAY[384]))))", "jsonb"),
                ("'default'", "text"),
                ("0.95", "float8"),
            ],
        },
        Func {
            call: "fractality.remember_many",
            args: &[
                ("ARRAY['k-arrays', NULL]", "text[]"),
                ("ARRAY['arrays fact', 'another arrays fact']", "text[]"),
                ("ARRAY[array_fill(0.08, ARRAY[384])::vector, array_fill(-0.08, ARRAY[384])::vector]", "vector[]"),
                ("ARRAY['{\"a\": 1}'::jsonb, NULL]", "jsonb[]"),
                ("'default'", "text"),
                ("0.95", "float8"),
                ("ARRAY['7 days'::interval, NULL]", "interval[]"),
            ],
        },
        Func {
            call: "fractality.recall",
            args: &[
                (V384, "vector"),
                ("10", "integer"),
                ("'root'", "text"),
                ("'root'", "text"),
                ("'default'", "text"),
                ("0", "float8"),
                ("0.1", "float8"),
                ("0.5", "float8"),
                ("0.3", "float8"),
                ("0.2", "float8"),
            ],
        },
        Func {
            call: "fractality.recall_explain",
            args: &[
                (V384, "vector"),
                ("10", "integer"),
                ("'root'", "text"),
                ("'root'", "text"),
                ("'default'", "text"),
                ("0", "float8"),
                ("0.5", "float8"),
                ("0.3", "float8"),
                ("0.2", "float8"),
            ],
        },
        Func { call: "fractality.forget", args: &[("'k-never-there'", "text")] },
        Func {
            call: "fractality.create_replay_buffer",
            args: &[
                ("'bad-input-buffer'", "text"),
                ("0.6", "float8"),
                ("0.4", "float8"),
                ("1e-6", "float8"),
                ("1000", "bigint"),
                ("1", "smallint"),
                ("7", "integer"),
                ("false", "boolean"),
            ],
        },
        Func {
            call: "fractality.sample_experiences",
            args: &[("'bad-input-buffer'", "text"), ("8", "integer"), ("0.4", "float8"), ("1", "bigint")],
        },
        Func {
            call: "fractality.replay_batch",
            args: &[
                ("'bad-input-buffer'", "text"),
                ("8", "integer"),
                ("0.4", "float8"),
                ("1", "bigint"),
                ("'1 hour'", "interval"),
            ],
        },
        Func {
            call: "fractality.update_priorities",
            args: &[("'bad-input-buffer'", "text"), ("'{}'", "bytea[]"), ("'{}'", "float8[]")],
        },
        Func {
            call: "fractality.update_priorities",
            args: &[
                ("'bad-input-buffer'", "text"),
                ("'{}'", "bytea[]"),
                ("'{}'", "float8[]"),
                ("'{}'", "bigint[]"),
            ],
        },
        Func { call: "fractality.fold_priorities", args: &[("'bad-input-buffer'", "text")] },
        Func { call: "fractality.index_staged_embeddings", args: &[("NULL", "bigint")] },
        Func { call: "fractality.drop_replay_buffer", args: &[("'bad-input-buffer-never'", "text")] },
        Func { call: "fractality.consensus_tree", args: &[("0.8", "float8"), ("5", "integer")] },
        Func {
            call: "fractality.upsert_node",
            args: &[("'k-upsert'", "text"), ("'label'", "text"), ("'{\"a\": 1}'", "jsonb"), ("0.5", "float8"), (V384, "vector"), ("'idea'", "text"), ("'default'", "text")],
        },
        Func {
            call: "fractality.upsert_node_for",
            args: &[("fractality.current_user_id()", "uuid"), ("'k-for'", "text"), ("'label'", "text"), ("'{}'", "jsonb"), ("0.5", "float8"), (V384, "vector"), ("'idea'", "text"), ("'default'", "text")],
        },
        Func {
            call: "fractality.link",
            args: &[("'root'", "text"), ("'leaf'", "text"), ("'cross'", "text"), ("0.5", "float8")],
        },
        Func { call: "fractality.unlink", args: &[("'root'", "text"), ("'leaf'", "text"), ("'cross'", "text")] },
        Func { call: "fractality.children", args: &[("'root'", "text"), ("'child'", "text")] },
        Func { call: "fractality.parents", args: &[("'child'", "text"), ("'child'", "text")] },
        Func { call: "fractality.traverse", args: &[("'{ROOT}'", "uuid"), ("5", "integer"), ("'child'", "text")] },
        Func {
            call: "fractality.consciousness_path",
            args: &[("'{ROOT}'", "uuid"), ("'{LEAF}'", "uuid"), ("100", "float8")],
        },
        Func {
            call: "fractality.thaw",
            args: &[("'root'", "text"), ("10", "integer"), ("'default'", "text")],
        },
        Func {
            call: "fractality.freeze",
            args: &[
                ("'{\"node_key\": \"frozen\", \"label\": \"f\", \"atp\": 0.5}'", "jsonb"),
                ("'default'", "text"),
            ],
        },
        Func { call: "fractality.search_nodes", args: &[("'root'", "text"), ("20", "integer")] },
        Func { call: "fractality.write_events", args: &[("'[]'", "jsonb")] },
        Func { call: "fractality.write_events_json", args: &[("'[]'", "text")] },
        Func { call: "fractality.write_events_json", args: &[("'[]'", "json")] },
        Func {
            call: "fractality.write_events",
            args: &[
                ("ARRAY['\\x000000000000000000000000000000aa'::bytea]", "bytea[]"),
                ("'{1000}'", "bigint[]"),
                ("'{1}'", "bigint[]"),
                ("'{0}'", "integer[]"),
                ("'{1}'", "smallint[]"),
                ("'{0}'", "smallint[]"),
                ("'{1,2,3,4,5,6,7,8}'", "real[]"),
                ("'{1,2,3,4,5,6,7,8}'", "real[]"),
                ("'{0,0,0,1}'", "real[]"),
                ("'{7}'", "integer[]"),
                ("'{1}'", "integer[]"),
            ],
        },
        Func {
            call: "fractality.write_event",
            args: &[
                ("'\\x000000000000000000000000000000bb'", "bytea"),
                ("2000", "bigint"),
                ("1", "bigint"),
                ("0", "integer"),
                ("1", "smallint"),
                ("0", "smallint"),
                ("'{1,2,3,4,5,6,7,8}'", "real[]"),
                ("'{1,2,3,4,5,6,7,8}'", "real[]"),
                ("7", "integer"),
                ("1", "integer"),
                ("0", "real"),
                ("0", "real"),
                ("0", "real"),
                ("1", "real"),
                ("'{\"intent_type\": \"i\", \"executor_id\": \"e\", \"parameters\": {}}'", "jsonb"),
            ],
        },
        Func {
            call: "fractality.write_event_with_metadata",
            args: &[
                ("'{\"event_id\": \"000000000000000000000000000000cc\", \"timestamp\": 3000, \"episode_id\": 1, \"step_number\": 0, \"event_type\": 1, \"flags\": 0, \"state_l1\": 0, \"state_l2\": 0, \"state_l3\": 0, \"state_l4\": 0, \"state_l5\": 0, \"state_l6\": 0, \"state_l7\": 0, \"state_l8\": 0, \"action_l1\": 0, \"action_l2\": 0, \"action_l3\": 0, \"action_l4\": 0, \"action_l5\": 0, \"action_l6\": 0, \"action_l7\": 0, \"action_l8\": 0, \"adna_version_hash\": 7, \"sequence_number\": 0}'", "jsonb"),
                ("'{\"intent_type\": \"i\", \"executor_id\": \"e\", \"parameters\": {}}'", "jsonb"),
            ],
        },
        Func {
            call: "fractality.query_events",
            args: &[("0", "bigint"), ("1000000000000000", "bigint"), ("1000", "integer"), ("true", "boolean"), ("false", "boolean")],
        },
        Func { call: "fractality.high_reward_events", args: &[("0", "bigint"), ("0.5", "real"), ("1000", "integer")] },
        Func {
            call: "fractality.save_policy",
            args: &[("'bin'", "text"), ("'rule'", "text"), ("'{\"0\": 1}'", "jsonb"), ("'{}'", "jsonb")],
        },
        Func { call: "fractality.load_policy", args: &[("'bin'", "text")] },
        Func { call: "fractality.policy_lineage", args: &[("(SELECT min(policy_id) FROM fractality.adna_policies)", "integer")] },
        Func { call: "fractality.save_config", args: &[("'comp'", "text"), ("'key'", "text"), ("'{\"v\": 1}'", "jsonb")] },
        Func { call: "fractality.load_config", args: &[("'comp'", "text"), ("'key'", "text")] },
        Func { call: "fractality.config_history", args: &[("'comp'", "text"), ("'key'", "text")] },
        Func {
            call: "fractality.total_reward",
            args: &[("1", "real"), ("2", "real"), ("3", "real"), ("4", "real")],
        },
        Func {
            call: "SELECT fractality.discounted_return({0}, {1} ORDER BY s) FROM generate_series(1, 3) s",
            args: &[("s::float8", "float8"), ("0.9", "float8")],
        },
        Func {
            call: "SELECT fractality.discounted_return({0}, {1}, {2}) FROM generate_series(1, 3) s",
            args: &[("s::float8", "float8"), ("0.9", "float8"), ("s", "integer")],
        },
        Func {
            call: "SELECT (fractality.reward_stats({0})).* FROM generate_series(1, 3) s",
            args: &[("s::float8", "float8")],
        },
        Func {
            call: "fractality.episode_returns",
            args: &[("0", "bigint"), ("1000000000000000", "bigint"), ("0.99", "float8")],
        },
        Func { call: "fractality.refresh_policy_rewards", args: &[] },
        Func {
            call: "fractality.sample_experiences",
            args: &[("10", "integer"), ("0.6", "float8"), ("0.4", "float8"), ("42", "bigint")],
        },
        Func { call: "fractality.statement_times", args: &[] },
        Func { call: "SELECT count(*) FROM fractality.database_health", args: &[] },
        // archiving and retention (the archivers move rows on success: a failed call moves none)
        Func {
            call: "fractality.stream_history",
            args: &[("'{ROOT}'", "uuid"), ("now() - interval '1 day'", "timestamptz"), ("now()", "timestamptz")],
        },
        Func { call: "fractality.ensure_partitions", args: &[("3", "integer")] },
        Func {
            call: "fractality.add_retention_policy",
            args: &[("'fractality.consciousness_streams'", "regclass"), ("'3 months'", "interval"), ("'archive'", "text")],
        },
        Func {
            call: "fractality.remove_retention_policy",
            args: &[("'fractality.consciousness_streams'", "regclass")],
        },
        Func { call: "fractality.archive_streams", args: &[("'36500 days'", "interval")] },
        Func { call: "fractality.archive_old_events", args: &[("36500", "integer")] },
        Func { call: "fractality.run_maintenance", args: &[] },
    ]
}

fn render(f: &Func, values: &[String]) -> String {
    let cast: Vec<String> = values
        .iter()
        .zip(f.args)
        .map(|(v, (_, ty))| format!("({v})::{ty}"))
        .collect();
    if f.call.contains('{') {
        let mut sql = f.call.to_string();
        for (i, c) in cast.iter().enumerate() {
            sql = sql.replace(&format!("{{{i}}}"), c);
        }
        sql
    } else if f.call.starts_with("SELECT") {
        f.call.to_string()
    } else {
        format!("SELECT * FROM {}({})", f.call, cast.join(", "))
    }
}

/// One statement whose row counts of every table, as one query.
fn counts_sql(c: &mut Client) -> String {
    let parts: Vec<String> = reliability::tables(c)
        .iter()
        .map(|t| format!("(SELECT count(*) FROM fractality.{t})"))
        .collect();
    format!("SELECT ARRAY[{}]::bigint[]", parts.join(", "))
}

struct Run {
    sql: String,
    outcome: Result<(), String>,
}

/// Runs one call; checks the backend survived it and that a failed call wrote nothing.
fn run(c: &mut Client, counts: &str, pid: i32, sql: String, failures: &mut Vec<String>) -> Run {
    let before: Vec<i64> = c.query_one(counts, &[]).unwrap().get(0);
    let outcome = c.batch_execute(&sql).map_err(|e| {
        // a message repeats at most a cut of a caller's value (it goes to the server's log too)
        if let Some(db) = e.as_db_error() {
            let said = db.message().chars().count() + db.detail().map_or(0, |d| d.chars().count());
            if said > 1000 {
                failures.push(format!("a message of {said} characters: {sql:.300}"));
            }
        }
        common::sqlstate(&e)
    });
    match c.query_one("SELECT pg_backend_pid()", &[]) {
        Ok(r) if r.get::<_, i32>(0) == pid => {}
        other => panic!("the backend did not survive {sql}: {other:?}"),
    }
    if outcome.is_err() {
        let after: Vec<i64> = c.query_one(counts, &[]).unwrap().get(0);
        if before != after {
            failures.push(format!("failed call wrote rows: {sql}"));
        }
    }
    if let Err(state) = &outcome {
        if !ALLOWED.contains(&state.as_str()) {
            failures.push(format!("SQLSTATE {state}: {sql}"));
        }
    }
    Run { sql, outcome }
}

/// (function, argument) pairs where NaN or an infinity is a documented, valid input:
/// high_reward_events' min_reward is a threshold (-Infinity: every event, Infinity: none), NaN
/// refused.
const NON_FINITE_OK: &[(&str, usize)] = &[("fractality.high_reward_events", 1)];

/// (function, argument) pairs whose number is an id looked up: one that names nothing is P0002.
const ID_ARGS: &[(&str, usize)] = &[("fractality.policy_lineage", 0)];

#[test]
fn every_function_refuses_bad_input_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    c.batch_execute(
        "SET fractality.user_id = 'bad1bad1-0000-4000-8000-000000000001';
         SET statement_timeout = '30s';
         SELECT fractality.upsert_node('root', 'root', '{}', 0.9, array_fill(0.05, ARRAY[384])::vector);
         SELECT fractality.upsert_node('child', 'child', '{}', 0.8, array_fill(0.06, ARRAY[384])::vector);
         SELECT fractality.upsert_node('leaf', 'leaf', '{}', 0.7);
         SELECT fractality.link('root', 'child'); SELECT fractality.link('child', 'leaf');
         SELECT fractality.save_policy('bin', 'rule', '{\"0\": 1}');
         SELECT fractality.register_model('bad_m4', 4);",
    )
    .unwrap();
    let ids: BTreeMap<String, String> = c
        .query("SELECT node_key, id::text FROM fractality.nodes", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0).to_uppercase(), r.get(1)))
        .collect();
    let fill = |s: &str| {
        let mut s = s.to_string();
        for (k, v) in &ids {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    };
    let counts = counts_sql(&mut c);
    let pid = reliability::backend_pid(&mut c);
    let mut failures = Vec::new();
    let mut runs = Vec::new();
    for f in functions() {
        let base: Vec<String> = f.args.iter().map(|(v, _)| fill(v)).collect();
        let r = run(&mut c, &counts, pid, render(&f, &base), &mut failures);
        // the valid call itself works (a duplicate event on a second run is 23505, a replay
        // buffer's name taken 42710)
        if let Err(s) = &r.outcome {
            if s != "23505" && s != "42710" {
                failures.push(format!("valid call failed with {s}: {}", r.sql));
            }
        }
        runs.push(r);
        for (i, (_, ty)) in f.args.iter().enumerate() {
            for v in variants(ty) {
                let mut values = base.clone();
                values[i] = v.clone();
                let r = run(&mut c, &counts, pid, render(&f, &values), &mut failures);
                // a NULL for an argument: NULL back (STRICT), what the NULL means, or 22004
                if v == "NULL" {
                    if let Err(s) = &r.outcome {
                        // 23505, 42710: the NULL's meaning made the valid call (the same event,
                        // the same buffer name again)
                        if s != "22004" && s != "23505" && s != "42710" {
                            failures.push(format!("a NULL refused with {s}, not 22004: {}", r.sql));
                        }
                    }
                }
                let non_finite = v.contains("NaN") || v.contains("Infinity");
                if non_finite
                    && (*ty == "float8" || *ty == "real")
                    && r.outcome.is_ok()
                    && !NON_FINITE_OK.contains(&(f.call, i))
                {
                    failures.push(format!("accepted {v}: {}", r.sql));
                }
                // a number refused is refused as a bad value (22023, or 22003 out of range), not
                // with whatever else the list allows (a policy's 42501, a lookup's P0002 but for
                // an argument that is an id); 23505 and 42710 are the valid call's own outcome
                // again (the value taken, the event or buffer already there)
                if let Err(s) = &r.outcome {
                    let number = ["float8", "real", "integer", "bigint", "smallint"].contains(ty);
                    let as_value = ["22023", "22003", "23505", "42710"].contains(&s.as_str())
                        || (s == "P0002" && ID_ARGS.contains(&(f.call, i)));
                    if number && v != "NULL" && !as_value {
                        failures.push(format!("{v} refused with {s}, not as a value: {}", r.sql));
                    }
                }
                runs.push(r);
            }
        }
    }
    let errors = runs.iter().filter(|r| r.outcome.is_err()).count();
    reliability::report(&format!(
        "bad input: {} calls of {} functions, {} refused with an ERROR, {} succeeded; backend pid {pid} throughout",
        runs.len(),
        functions().len(),
        errors,
        runs.len() - errors
    ));
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A 10k-event batch with one bad element is refused whole, in both forms; the same batch
/// without it is written whole.
#[test]
fn ten_thousand_event_batches_with_one_bad_element() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    let pid = reliability::backend_pid(&mut c);
    let total = |c: &mut Client| -> i64 {
        c.query_one("SELECT count(*) FROM fractality.experience_events WHERE \"timestamp\" >= 5000000000 AND \"timestamp\" < 6000000000", &[])
            .unwrap()
            .get(0)
    };
    let n = 10_000usize;
    // JSON: one element with a string state, one with a 15-byte id, one duplicated
    let good = reliability::events_json(1 << 40, n, 5_000_000_000);
    let mut cases: Vec<(serde_json::Value, &str)> = Vec::new();
    let mut bad = good.clone();
    bad[5000]["state_l3"] = serde_json::json!("x");
    cases.push((bad, "22023"));
    let mut bad = good.clone();
    bad[9999]["event_id"] = serde_json::json!("000000000000000000000000000000");
    cases.push((bad, "22023"));
    let mut bad = good.clone();
    bad[7000] = bad[10].clone();
    cases.push((bad, "23505"));
    let mut bad = good.clone();
    bad[0]["reward_goal"] = serde_json::json!(1e300);
    cases.push((bad, "22023"));
    for (batch, state) in &cases {
        let e = c
            .query_one("SELECT fractality.write_events($1::jsonb)", &[batch])
            .unwrap_err();
        assert_eq!(common::sqlstate(&e), *state, "{e}");
        // the same batch as JSON text, in the text and json forms: the same refusal, naming
        // the function called
        let message = e.as_db_error().unwrap().message();
        let as_text = match message.strip_prefix("write_events: ") {
            Some(rest) => format!("write_events_json: {rest}"),
            None => message.to_string(),
        };
        for sql in [
            "SELECT fractality.write_events_json($1)",
            "SELECT fractality.write_events_json($1::text::json)",
        ] {
            let t = c.query_one(sql, &[&batch.to_string()]).unwrap_err();
            assert_eq!(common::sqlstate(&t), *state, "{sql}: {t}");
            assert_eq!(
                t.as_db_error().map(|d| d.message()),
                Some(&*as_text),
                "{sql}"
            );
        }
        assert_eq!(total(&mut c), 0);
    }
    // text cut short half way through the batch: 22P02, nothing written
    let text = good.to_string();
    let e = c
        .query_one(
            "SELECT fractality.write_events_json($1)",
            &[&&text[..text.len() / 2]],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "22P02", "{e}");
    assert_eq!(total(&mut c), 0);
    // typed arrays: one NaN reward, one short id, a state array one value short
    let ids: Vec<Vec<u8>> = (0..n)
        .map(|i| ((2u128 << 100) + i as u128).to_be_bytes().to_vec())
        .collect();
    let ts: Vec<i64> = (0..n as i64).map(|i| 5_500_000_000 + i).collect();
    let ep: Vec<i64> = vec![1; n];
    let steps: Vec<i32> = (0..n as i32).collect();
    let small: Vec<i16> = vec![1; n];
    let states: Vec<f32> = vec![0.5; 8 * n];
    let rewards: Vec<f32> = vec![0.25; 4 * n];
    let ints: Vec<i32> = vec![7; n];
    let sql = "SELECT fractality.write_events($1::bytea[], $2::bigint[], $3::bigint[], $4::int[], $5::smallint[], $6::smallint[], $7::real[], $8::real[], $9::real[], $10::int[], $11::int[])";
    let write = |c: &mut Client, ids: &Vec<Vec<u8>>, states: &Vec<f32>, rewards: &Vec<f32>| {
        c.query_one(
            sql,
            &[
                ids, &ts, &ep, &steps, &small, &small, states, states, rewards, &ints, &ints,
            ],
        )
    };
    let mut nan = rewards.clone();
    nan[4 * 5000 + 2] = f32::NAN;
    let mut short_id = ids.clone();
    short_id[3000].pop();
    let mut short_states = states.clone();
    short_states.pop();
    for (ids_, states_, rewards_) in [
        (&ids, &states, &nan),
        (&short_id, &states, &rewards),
        (&ids, &short_states, &rewards),
    ] {
        let e = write(&mut c, ids_, states_, rewards_).unwrap_err();
        assert_eq!(common::sqlstate(&e), "22023", "{e}");
        assert_eq!(total(&mut c), 0);
    }
    let written: i64 = write(&mut c, &ids, &states, &rewards).unwrap().get(0);
    assert_eq!(written, n as i64);
    let written: i64 = c
        .query_one("SELECT fractality.write_events($1::jsonb)", &[&good])
        .unwrap()
        .get(0);
    assert_eq!(written, n as i64);
    assert_eq!(total(&mut c), 2 * n as i64);
    assert_eq!(reliability::backend_pid(&mut c), pid);
}

/// The model errors of every function that takes a model, from a client: a model that is not
/// registered is 22023 with its name in the message, an embedding of another dimension than its
/// model's 22000 with both numbers, and neither writes anything (every table's row count, the
/// models' indexes and tenant graphs unchanged).
#[test]
fn model_errors_name_the_model_and_write_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    let tenant = "bad1bad1-0000-4000-8000-000000000002";
    c.batch_execute(&format!(
        "SET fractality.user_id = '{tenant}';
         SELECT fractality.register_model('bad_m4', 4);
         SELECT fractality.upsert_node('m-root', 'm root', '{{}}', 0.9, '[1,0,0,0]'::vector, NULL, 'bad_m4');
         SELECT fractality.upsert_node('m-child', 'm child', '{{}}', 0.8, '[0.9,0.1,0,0]'::vector, NULL, 'bad_m4');
         SELECT fractality.upsert_node('m-root', NULL, NULL, NULL, array_fill(0.05, ARRAY[384])::vector);
         SELECT fractality.link('m-root', 'm-child');"
    ))
    .unwrap();
    let id = |c: &mut Client, key: &str| -> String {
        c.query_one(
            "SELECT id::text FROM fractality.nodes WHERE node_key = $1",
            &[&key],
        )
        .unwrap()
        .get(0)
    };
    let (root, child) = (id(&mut c, "m-root"), id(&mut c, "m-child"));
    let counts = counts_sql(&mut c);
    // every index of node_embeddings, the models' and the tenant graphs', by name
    let indexes = "SELECT string_agg(c.relname, ',' ORDER BY c.relname)
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                     JOIN pg_class t ON t.oid = i.indrelid
                    WHERE t.relname LIKE 'node_embeddings%'";
    let pid = reliability::backend_pid(&mut c);
    let v4 = "'[1,2,3,4]'::vector";
    let v3 = "'[1,2,3]'::vector";
    let with_model = |m: &str, v: &str| -> Vec<String> {
        vec![
            format!("SELECT fractality.upsert_node('m-new', NULL, NULL, NULL, {v}, NULL, '{m}')"),
            format!("SELECT fractality.upsert_node_for('{tenant}', 'm-new', NULL, NULL, NULL, {v}, NULL, '{m}')"),
            format!("SELECT fractality.freeze(jsonb_build_object('node_key', 'm-frozen', 'embedding', {v}::real[]), '{m}')"),
            format!("SELECT fractality.freeze(jsonb_build_object('node_key', 'm-frozen', 'embeddings', jsonb_build_object('{m}', {v}::real[])))"),
            format!("SELECT * FROM fractality.remember('m-rem', 'a memory', {v}, '{{}}', '{m}')"),
            format!("SELECT * FROM fractality.remember_many(jsonb_build_array(jsonb_build_object('content', 'a batch memory', 'embedding', {v}::real[])), '{m}')"),
            format!("SELECT * FROM fractality.remember_many(ARRAY[NULL]::text[], ARRAY['an array memory'], ARRAY[{v}], model => '{m}')"),
            format!("SELECT * FROM fractality.recall({v}, 10, model => '{m}')"),
            format!("SELECT * FROM fractality.recall_explain({v}, 10, model => '{m}')"),
        ]
    };
    // (call, SQLSTATE, words the message must hold)
    let mut cases: Vec<(String, &str, Vec<String>)> = Vec::new();
    let unknown = vec!["'no_such_model'".to_string()];
    for sql in with_model("no_such_model", v4) {
        cases.push((sql, "22023", unknown.clone()));
    }
    for sql in [
        "SELECT fractality.thaw('m-root', 10, 'no_such_model')".to_string(),
        format!("SELECT * FROM fractality.find_resonant('{root}'::uuid, 0.7, 20, 'no_such_model')"),
        "SELECT * FROM fractality.find_resonant('m-root', 0.7, 20, 'no_such_model')".to_string(),
        format!("SELECT fractality.calculate_resonance('{root}', '{child}', 'no_such_model')"),
        format!("SELECT * FROM fractality.resonance_with('{root}', ARRAY['{child}']::uuid[], 'no_such_model')"),
        format!("SELECT fractality.crystallize_consensus('{root}', 0.7, 3, 'no_such_model')"),
        // a model named without an embedding of it must exist all the same
        "SELECT fractality.upsert_node('m-bare', 'no embedding', model => 'no_such_model')".to_string(),
        format!("SELECT fractality.upsert_node_for('{tenant}', 'm-bare', model => 'no_such_model')"),
        "SELECT fractality.freeze('{\"node_key\": \"m-bare\"}', 'no_such_model')".to_string(),
        "SELECT * FROM fractality.build_tenant_graphs('no_such_model', 1)".to_string(),
        "SELECT * FROM fractality.build_model_index('no_such_model')".to_string(),
        "SELECT fractality.drop_model_index('no_such_model')".to_string(),
    ] {
        cases.push((sql, "22023", unknown.clone()));
    }
    let dims = vec![
        "3 dimensions".to_string(),
        "4 dimensions".to_string(),
        "'bad_m4'".to_string(),
    ];
    for sql in with_model("bad_m4", v3) {
        cases.push((sql, "22000", dims.clone()));
    }
    // an entry of `embeddings` that `embedding` overrides is checked all the same (it was skipped)
    cases.push((
        format!("SELECT fractality.freeze(jsonb_build_object('node_key', 'm-frozen', 'embedding', {v4}::real[], 'embeddings', jsonb_build_object('bad_m4', {v3}::real[])), 'bad_m4')"),
        "22000",
        dims.clone(),
    ));
    // elements beyond a real (infinite as a vector's) in the JSON forms
    for sql in [
        "SELECT * FROM fractality.remember_many('[{\"content\": \"far\", \"embedding\": [1e39, 0, 0, 0]}]'::jsonb, 'bad_m4')",
        "SELECT * FROM fractality.remember_many('[{\"content\": \"far\", \"embedding\": [1e999, 0, 0, 0]}]'::jsonb, 'bad_m4')",
        "SELECT fractality.freeze('{\"node_key\": \"m-far\", \"embeddings\": {\"bad_m4\": [1e39, 0, 0, 0]}}')",
        "SELECT fractality.freeze('{\"node_key\": \"m-far\", \"embedding\": [0, 1e39, 0, 0]}', 'bad_m4')",
    ] {
        cases.push((sql.to_string(), "22023", Vec::new()));
    }
    // a dimension no model may have
    for d in ["-5", "0", "4001"] {
        cases.push((
            format!("SELECT fractality.model_index_type({d})"),
            "22023",
            vec![d.to_string()],
        ));
    }
    // a frozen stream point at no finite time
    cases.push((
        "SELECT fractality.freeze('{\"node_key\": \"m-inf\", \"stream\": [{\"time\": \"infinity\", \"atp_level\": 0.5}]}')".into(),
        "22023",
        vec!["infinity".into()],
    ));
    // a model name that is not a plain identifier, and a model already registered at another
    // dimension
    cases.push((
        "SELECT fractality.register_model('Bad-Model', 4)".into(),
        "22023",
        vec!["Bad-Model".into()],
    ));
    cases.push((
        "SELECT fractality.register_model('bad_m4', 8)".into(),
        "22023",
        vec!["bad_m4".into(), "4".into(), "8".into()],
    ));

    let rows_before: Vec<i64> = c.query_one(&counts, &[]).unwrap().get(0);
    let indexes_before: Option<String> = c.query_one(indexes, &[]).unwrap().get(0);
    let mut failures = Vec::new();
    for (sql, state, words) in &cases {
        match c.batch_execute(sql) {
            Ok(()) => failures.push(format!("succeeded, expected {state}: {sql}")),
            Err(e) => {
                let got = common::sqlstate(&e);
                let message = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default();
                if got != *state {
                    failures.push(format!("{got} ({message}), expected {state}: {sql}"));
                }
                for w in words {
                    if !message.contains(w.as_str()) {
                        failures.push(format!("message '{message}' does not name {w}: {sql}"));
                    }
                }
            }
        }
        assert_eq!(
            reliability::backend_pid(&mut c),
            pid,
            "the backend survived {sql}"
        );
        let rows: Vec<i64> = c.query_one(&counts, &[]).unwrap().get(0);
        if rows != rows_before {
            failures.push(format!("a failed call wrote rows: {sql}"));
        }
    }
    let indexes_after: Option<String> = c.query_one(indexes, &[]).unwrap().get(0);
    assert_eq!(
        indexes_before, indexes_after,
        "a failed call made or dropped an index"
    );
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // the same calls with the model's own dimension work (the failures above were the model's)
    for sql in with_model("bad_m4", v4) {
        c.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The dimension check reads a model's dimension afresh in every transaction: a model
/// registered again at another dimension (it held no rows then) is checked at its new one by a
/// session that checked it before, even when both inserts are their transaction's first command
/// (whose transaction id is not assigned yet when the check runs).
#[test]
fn a_model_registered_again_is_checked_at_its_new_dimension() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = common::db();
    let mut admin = common::db();
    let tenant = uuid::Uuid::from_u128(0xbad1_bad1_0000_4000_8000_0000_0000_0004);
    admin
        .batch_execute("SELECT fractality.register_model('again_m', 4)")
        .unwrap();
    let node: uuid::Uuid = s
        .query_one(
            "INSERT INTO fractality.nodes (user_id, node_key) VALUES ($1, 'again') RETURNING id",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    let insert = format!(
        "INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding, staged)
         VALUES ('{node}', '{tenant}', 'again_m', '[1,2,3,4]', true)"
    );
    s.batch_execute(&insert).unwrap();
    s.batch_execute("DELETE FROM fractality.node_embeddings WHERE model = 'again_m'")
        .unwrap();
    admin
        .batch_execute("SELECT fractality.register_model('again_m', 8)")
        .unwrap();
    let e = s.batch_execute(&insert).unwrap_err();
    assert_eq!(common::sqlstate(&e), "22000", "{e}");
}

/// A dimension changed in a part rolled back to a savepoint is not the model's afterwards: the
/// check that read it in a command that failed (which leaves the command id where it was) does
/// not answer from it for the next command.
#[test]
fn a_dimension_rolled_back_to_a_savepoint_is_not_kept() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = common::db();
    let tenant = uuid::Uuid::from_u128(0xbad1_bad1_0000_4000_8000_0000_0000_0005);
    s.batch_execute("SELECT fractality.register_model('savepoint_m', 3)")
        .unwrap();
    let node: uuid::Uuid = s
        .query_one(
            "INSERT INTO fractality.nodes (user_id, node_key) VALUES ($1, 'savepoint') RETURNING id",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    let insert = |v: &str| {
        format!(
            "INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding, staged)
             VALUES ('{node}', '{tenant}', 'savepoint_m', '{v}', true)"
        )
    };
    s.batch_execute("BEGIN; SAVEPOINT a; SELECT fractality.register_model('savepoint_m', 4)")
        .unwrap();
    let e = s.batch_execute(&insert("[1,2,3]")).unwrap_err();
    assert_eq!(common::sqlstate(&e), "22000", "{e}");
    s.batch_execute("ROLLBACK TO SAVEPOINT a").unwrap();
    // the model is at 3 again: 4 numbers are refused, 3 stored
    let e = s.batch_execute(&insert("[1,2,3,4]")).unwrap_err();
    assert_eq!(common::sqlstate(&e), "22000", "{e}");
    s.batch_execute("ROLLBACK TO SAVEPOINT a").unwrap();
    s.batch_execute(&insert("[1,2,3]")).unwrap();
    s.batch_execute("COMMIT").unwrap();
    let dims: i32 = s
        .query_one(
            "SELECT vector_dims(embedding) FROM fractality.node_embeddings WHERE model = 'savepoint_m'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dims, 3);
    s.batch_execute(
        "DELETE FROM fractality.node_embeddings WHERE model = 'savepoint_m';
         DELETE FROM fractality.nodes WHERE node_key = 'savepoint'",
    )
    .unwrap();
}

/// An array argument of more than 1 000 000 elements is refused (22023, naming the argument and
/// its length) before its elements are copied out: pgrx copied every element of an array
/// argument into the process's own memory before the function ran (24 bytes for a NULL
/// element, 1 bit of input), so `array_fill(NULL::text, ARRAY[134217727])`, 17 MB, asked for
/// 3 GB beyond PostgreSQL's memory contexts. Nothing is written.
#[test]
fn arrays_past_a_million_elements_are_refused_before_they_are_read() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    c.batch_execute(
        "SET fractality.user_id = 'bad1bad1-0000-4000-8000-000000000003';
         SELECT fractality.upsert_node('arr-src', 'arr', '{}', 0.5, array_fill(0.05, ARRAY[384])::vector);
         SELECT fractality.create_replay_buffer('arrays_cap');",
    )
    .unwrap();
    let big = "array_fill(NULL::{t}, ARRAY[1000001])";
    let of = |t: &str| big.replace("{t}", t);
    let v = "array_fill(0.05, ARRAY[384])::vector";
    for (call, arg) in [
        (
            format!(
                "SELECT count(*) FROM fractality.resonance_with(
                    (SELECT id FROM fractality.nodes WHERE node_key = 'arr-src'), {})",
                of("uuid")
            ),
            "others",
        ),
        (
            format!(
                "SELECT count(*) FROM fractality.remember_many({}, ARRAY['x'], ARRAY[{v}])",
                of("text")
            ),
            "node_keys",
        ),
        (
            format!(
                "SELECT count(*) FROM fractality.remember_many(NULL, {}, ARRAY[{v}])",
                of("text")
            ),
            "contents",
        ),
        (
            format!(
                "SELECT count(*) FROM fractality.remember_many(NULL, ARRAY['x'], {})",
                of("vector")
            ),
            "embeddings",
        ),
        (
            format!(
                "SELECT count(*) FROM fractality.remember_many(NULL, ARRAY['x'], ARRAY[{v}], {})",
                of("jsonb")
            ),
            "metadata",
        ),
        (
            format!(
                "SELECT count(*) FROM fractality.remember_many(NULL, ARRAY['x'], ARRAY[{v}],
                    ttls => {})",
                of("interval")
            ),
            "ttls",
        ),
        (
            format!(
                "SELECT fractality.update_priorities('arrays_cap', {}, ARRAY[1]::float8[])",
                of("bytea")
            ),
            "event_ids",
        ),
        (
            format!(
                "SELECT fractality.update_priorities('arrays_cap', ARRAY['\\x00'::bytea], {})",
                of("float8")
            ),
            "priorities",
        ),
        (
            format!(
                "SELECT fractality.update_priorities('arrays_cap', ARRAY['\\x00'::bytea],
                    ARRAY[1]::float8[], {})",
                of("bigint")
            ),
            "event_timestamps",
        ),
        (
            format!(
                "SELECT fractality.write_event('\\x00000000000000000000000000000001', 1, 1, 1, 1::smallint,
                    0::smallint, {}, array_fill(0, ARRAY[8])::real[], 1, 1)",
                of("real")
            ),
            "state",
        ),
    ] {
        let err = c.query_one(call.as_str(), &[]).unwrap_err();
        let db = err.as_db_error().unwrap_or_else(|| panic!("{call}: {err}"));
        assert_eq!(common::sqlstate(&err), "22023", "{call}: {err}");
        assert_eq!(
            db.message(),
            format!("invalid value for {arg}: an array of 1000001 elements"),
            "{call}"
        );
    }
    // search_nodes holds its rows (labels whole) until it returns them: at most 1000
    let err = c
        .query_one(
            "SELECT count(*) FROM fractality.search_nodes('arr', 1001)",
            &[],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    let found: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.search_nodes('arr', 1000)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    let written: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(written, 1, "only arr-src");
    c.batch_execute("SELECT fractality.drop_replay_buffer('arrays_cap')")
        .unwrap();
}

/// A memory of a remember_many batch that fails a check of its content (a zero embedding, an
/// embedding of another dimension, a ttl that is no duration) is named by its place in the batch,
/// with the check's own SQLSTATE, in both forms; nothing is written.
#[test]
fn remember_many_names_the_memory_that_fails_a_check() {
    let mut c = common::db();
    c.batch_execute("SET fractality.user_id = 'bad1bad1-0000-4000-8000-000000000077'")
        .unwrap();
    let good = "array_fill(0.05, ARRAY[384])::vector";
    let cases = [
        (
            format!(
                "SELECT * FROM fractality.remember_many(jsonb_build_array(
                     jsonb_build_object('content', 'one', 'embedding', {good}::real[]),
                     jsonb_build_object('content', 'two', 'embedding', {good}::real[]),
                     jsonb_build_object('content', 'three', 'embedding', array_fill(0, ARRAY[384]))))"
            ),
            "22023",
            "memory 3",
        ),
        (
            format!(
                "SELECT * FROM fractality.remember_many(ARRAY['a', 'b'], ARRAY['one', 'two'],
                     ARRAY[{good}, array_fill(0.05, ARRAY[385])::vector])"
            ),
            "22000",
            "memory 2",
        ),
        (
            format!(
                "SELECT * FROM fractality.remember_many(ARRAY['a', 'b'], ARRAY['one', 'two'],
                     ARRAY[{good}, {good}], ttls => ARRAY['-1 hour'::interval, '1 hour'])"
            ),
            "22023",
            "memory 1",
        ),
    ];
    let before: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    for (sql, state, place) in &cases {
        let e = c.batch_execute(sql).unwrap_err();
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert_eq!(common::sqlstate(&e), *state, "{message}: {sql}");
        assert!(
            message.starts_with(place),
            "'{message}' names {place}: {sql}"
        );
    }
    let after: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = fractality.current_user_id()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(after, before, "nothing written");
}

/// Numbers at the edges of what the storage and pgvector compute with are refused (22023, naming
/// the value), not turned into wrong answers, and nothing is written:
/// - a vector whose squared length single precision cannot hold (pgvector's `<=>` sums in
///   single precision, so a vector of 1e-23s compared as infinitely short, at similarity 1 to
///   everything, and `remember` merged a new memory into it; one of 1e19s as infinitely long);
/// - a replay buffer whose epsilon^alpha underflows (items of priority 0 could not be drawn: a
///   sample came back empty);
/// - an event's real below the smallest real (stored as 0; PostgreSQL's own real input refuses
///   it).
#[test]
fn numbers_beyond_single_precision_are_refused() {
    // the other tests count every table's rows around their calls: this one writes
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    c.batch_execute(
        "SET fractality.user_id = 'bad1bad1-0000-4000-8000-000000000078';
         SELECT fractality.upsert_node('edge-n', 'edge n', '{}', 0.5, array_fill(0.05, ARRAY[384])::vector);",
    )
    .unwrap();
    let tiny = "array_fill(1e-23::real, ARRAY[384])::vector";
    let huge = "array_fill(1e19::real, ARRAY[384])::vector";
    let one = "('[1' || repeat(',0', 383) || ']')::vector";
    let event = |field: &str, value: &str| {
        let mut e = reliability::events_json(0x0bad_0078, 1, 4_000_000)[0].clone();
        e[field] = serde_json::from_str(value).unwrap();
        serde_json::Value::Array(vec![e]).to_string()
    };
    let mut cases: Vec<(String, &str)> = Vec::new();
    for v in [tiny, huge] {
        cases.push((
            format!("SELECT * FROM fractality.remember('k', 'c', {v})"),
            "squared length",
        ));
        cases.push((
            format!("SELECT * FROM fractality.remember_many(ARRAY['k'], ARRAY['c'], ARRAY[{v}])"),
            "squared length",
        ));
        cases.push((
            format!("SELECT * FROM fractality.remember_many(jsonb_build_array(jsonb_build_object('content', 'c', 'embedding', {v}::real[])))"),
            "squared length",
        ));
        cases.push((
            format!("SELECT fractality.upsert_node('k2', 'c', '{{}}', 0.5, {v})"),
            "squared length",
        ));
        cases.push((
            format!("SELECT * FROM fractality.recall({v}, 3)"),
            "squared length",
        ));
        cases.push((
            format!("SELECT fractality.freeze(jsonb_set(fractality.thaw('edge-n'), '{{embedding}}', {v}::text::jsonb) || '{{\"node_key\": \"k3\"}}')"),
            "squared length",
        ));
    }
    cases.push((
        "SELECT fractality.create_replay_buffer('edge-b', alpha => 10, epsilon => 1e-40)".into(),
        "underflows",
    ));
    for field in ["reward_goal", "state_l3"] {
        // 1e-400 is below float8 too (0.0 once read as one): its text tells; the batch is
        // written as text around the number (no JSON library of this client reads it)
        for tiny in [
            "1e-50",
            "1e-400",
            "-0.0000000000000000000000000000000000000000000001",
        ] {
            let batch = event(field, "7")
                .replace(&format!("\"{field}\":7"), &format!("\"{field}\":{tiny}"));
            assert!(batch.contains(tiny), "{batch}");
            cases.push((
                format!("SELECT fractality.write_events('{batch}'::jsonb)"),
                "too close to 0",
            ));
            cases.push((
                format!("SELECT fractality.write_events_json('{batch}'::text)"),
                "too close to 0",
            ));
        }
    }
    let counts = reliability::counts(&mut c);
    for (sql, words) in &cases {
        let e = c.batch_execute(sql).expect_err(&format!("refused: {sql}"));
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert_eq!(common::sqlstate(&e), "22023", "{message}: {sql}");
        assert!(message.contains(words), "'{message}' says {words}: {sql}");
    }
    assert_eq!(reliability::counts(&mut c), counts, "nothing written");
    // the bounds themselves are taken: a unit vector, a real at the smallest normal, and the
    // largest alpha with an epsilon whose power stays normal
    c.batch_execute(&format!(
        "SELECT * FROM fractality.remember('unit', 'unit', {one});
         SELECT fractality.write_events('{}'::jsonb);
         SELECT fractality.create_replay_buffer('edge-ok', alpha => 10, epsilon => 1e-30);
         SELECT fractality.drop_replay_buffer('edge-ok');",
        event("reward_goal", "1.2e-38")
    ))
    .unwrap();
}

/// A NULL never passes without a word. No function of the API is STRICT and returns void: a
/// NULL would skip it, and the caller could not tell the call did nothing
/// (`write_event_with_metadata(event, NULL)` was, and wrote no event). The flags of
/// `query_events` are refused NULL (22004) like its other arguments; they read as false before.
#[test]
fn a_null_argument_is_never_swallowed_without_a_word() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    let silent: Vec<String> = c
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
              WHERE p.pronamespace = 'fractality'::regnamespace AND p.proisstrict
                AND p.prorettype = 'void'::regtype AND p.proname NOT LIKE '\\_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(silent.is_empty(), "STRICT and void: {silent:?}");
    let event = r#"'{"event_id": "0000000000000000000000000000bad5", "timestamp": 4000, "episode_id": 1, "step_number": 0, "event_type": 1, "flags": 0, "state_l1": 0, "state_l2": 0, "state_l3": 0, "state_l4": 0, "state_l5": 0, "state_l6": 0, "state_l7": 0, "state_l8": 0, "action_l1": 0, "action_l2": 0, "action_l3": 0, "action_l4": 0, "action_l5": 0, "action_l6": 0, "action_l7": 0, "action_l8": 0, "adna_version_hash": 7, "sequence_number": 0}'::jsonb"#;
    let metadata = r#"'{"intent_type": "i", "executor_id": "e", "parameters": {}}'::jsonb"#;
    let written = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM fractality.experience_events
              WHERE event_id = '\\x0000000000000000000000000000bad5'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    for (sql, argument) in [
        (
            format!("SELECT fractality.write_event_with_metadata({event}, NULL)"),
            "metadata",
        ),
        (
            format!("SELECT fractality.write_event_with_metadata(NULL, {metadata})"),
            "event",
        ),
        (
            "SELECT count(*) FROM fractality.query_events(0, 10000, 10, NULL)".to_string(),
            "with_metadata",
        ),
        (
            "SELECT count(*) FROM fractality.query_events(0, 10000, 10, false, NULL)".to_string(),
            "include_archived",
        ),
    ] {
        let err = c.batch_execute(&sql).expect_err(&sql);
        assert_eq!(common::sqlstate(&err), "22004", "{sql}");
        let message = err.as_db_error().unwrap().message().to_string();
        assert!(message.contains(argument), "{sql}: {message}");
        assert_eq!(written(&mut c), 0, "{sql}");
    }
    c.batch_execute(&format!(
        "SELECT fractality.write_event_with_metadata({event}, {metadata})"
    ))
    .unwrap();
    assert_eq!(written(&mut c), 1);
    c.batch_execute(
        "DELETE FROM fractality.experience_events WHERE event_id = '\\x0000000000000000000000000000bad5'",
    )
    .unwrap();
}

/// A node key outside 1 to 255 characters is a bad value (22023, naming the argument) in every
/// function that takes one, not a node looked for and not found (P0002), and nothing is written.
#[test]
fn a_key_out_of_bounds_is_a_bad_value_in_every_function() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    let user = common::tenant();
    common::set_tenant(&mut c, user);
    c.batch_execute("SELECT fractality.upsert_node('kb-real')")
        .unwrap();
    let v = format!("'[{}]'::vector", vec!["0.1"; 384].join(","));
    for key in ["''", "repeat('k', 256)"] {
        for (sql, argument) in [
            (format!("SELECT fractality.thaw({key})"), "node_key"),
            (
                format!("SELECT * FROM fractality.children({key})"),
                "node_key",
            ),
            (
                format!("SELECT * FROM fractality.parents({key})"),
                "node_key",
            ),
            (
                format!("SELECT * FROM fractality.find_resonant({key}::text)"),
                "node_key",
            ),
            (
                format!("SELECT fractality.unlink({key}, 'kb-real')"),
                "from_key",
            ),
            (
                format!("SELECT fractality.unlink('kb-real', {key})"),
                "to_key",
            ),
            (
                format!("SELECT fractality.link({key}, 'kb-real')"),
                "from_key",
            ),
            (format!("SELECT fractality.forget({key})"), "node_key"),
            (format!("SELECT fractality.upsert_node({key})"), "node_key"),
            (
                format!("SELECT * FROM fractality.recall({v}, context => {key})"),
                "context",
            ),
            (
                format!("SELECT * FROM fractality.recall({v}, 1, 'w', {key}, reinforce => 0.5)"),
                "context",
            ),
            (
                format!("SELECT * FROM fractality.recall_explain({v}, context => {key})"),
                "context",
            ),
        ] {
            let err = c.batch_execute(&sql).expect_err(&sql);
            assert_eq!(common::sqlstate(&err), "22023", "{sql}: {err:?}");
            let message = err.as_db_error().unwrap().message().to_string();
            assert!(message.contains(argument), "{sql}: {message}");
        }
    }
    let nodes: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.nodes WHERE user_id = $1",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert_eq!(nodes, 1);
}

/// An array argument of one value an item refuses more than one dimension (22023 naming it, and
/// nothing written): PostgreSQL takes `'{{1,2},{3,4}}'` for any `T[]`, and its elements read in
/// a row passed for a list (write_event stored a 2 x 4 state as its 8 values). States, actions
/// and rewards may come as rows of an event's values, as a client's list of lists arrives: the
/// same values, one event after another.
#[test]
fn multi_dimensional_arrays_are_refused_where_a_list_is_taken() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = common::db();
    c.batch_execute(
        "SET fractality.user_id = 'bad1bad1-0000-4000-8000-000000000007';
         SELECT fractality.upsert_node('md-src', 'md', '{}', 0.5, array_fill(0.05, ARRAY[384])::vector);
         SELECT fractality.create_replay_buffer('md_buffer');",
    )
    .unwrap();
    let counts = counts_sql(&mut c);
    let v = "array_fill(0.05, ARRAY[384])::vector";
    let id = "'\\x0000000000000000000000000000d001'::bytea";
    let z8 = "array_fill(0::real, ARRAY[8])";
    let two_d = "array_fill(0::real, ARRAY[2, 4])";
    let src = "(SELECT id FROM fractality.nodes WHERE node_key = 'md-src')";
    let event = |state: &str, action: &str| {
        format!("SELECT fractality.write_event({id}, 2000, 1, 0, 1::smallint, 0::smallint, {state}, {action}, 7, 1)")
    };
    let events = |ids: &str, states: &str, rewards: &str| {
        format!(
            "SELECT fractality.write_events({ids}, '{{1000}}', '{{1}}', '{{0}}', '{{1}}', '{{0}}',
                    {states}, {z8}, {rewards}, '{{7}}', '{{1}}')"
        )
    };
    for (sql, arg) in [
        (event(two_d, z8), "state"),
        (event(z8, two_d), "action"),
        (events(&format!("ARRAY[[{id}]]"), z8, "'{0,0,0,1}'"), "event_ids"),
        (events(&format!("ARRAY[{id}]"), two_d, "'{0,0,0,1}'"), "states"),
        (
            events(&format!("ARRAY[{id}]"), z8, "array_fill(0::real, ARRAY[2, 2])"),
            "rewards",
        ),
        (
            format!("SELECT fractality.update_priorities('md_buffer', ARRAY[[{id}]], '{{1}}')"),
            "event_ids",
        ),
        (
            format!("SELECT fractality.update_priorities('md_buffer', ARRAY[{id}], '{{{{1}}}}')"),
            "priorities",
        ),
        (
            format!("SELECT fractality.update_priorities('md_buffer', ARRAY[{id}], '{{1}}', '{{{{5}}}}')"),
            "event_timestamps",
        ),
        (
            format!("SELECT count(*) FROM fractality.resonance_with({src}, ARRAY[[{src}]])"),
            "others",
        ),
        (
            format!("SELECT count(*) FROM fractality.remember_many(ARRAY[['a', 'b']], ARRAY['x', 'y'], ARRAY[{v}, {v}])"),
            "node_keys",
        ),
        (
            format!("SELECT count(*) FROM fractality.remember_many(NULL, ARRAY[['x', 'y']], ARRAY[{v}, {v}])"),
            "contents",
        ),
        (
            format!("SELECT count(*) FROM fractality.remember_many(NULL, ARRAY['x', 'y'], ARRAY[{v}, {v}],
                                                                  ttls => ARRAY[['1 hour', '1 hour']]::interval[])"),
            "ttls",
        ),
    ] {
        let before: Vec<i64> = c.query_one(counts.as_str(), &[]).unwrap().get(0);
        let e = c.query(sql.as_str(), &[]).unwrap_err();
        assert_eq!(common::sqlstate(&e), "22023", "{sql}: {e}");
        let db = e.as_db_error().expect("a server error");
        assert!(
            db.message().starts_with(&format!("invalid value for {arg}: an array of")),
            "{sql}: {}",
            db.message()
        );
        let after: Vec<i64> = c.query_one(counts.as_str(), &[]).unwrap().get(0);
        assert_eq!(before, after, "{sql} wrote something");
    }
    // two events' states and rewards as rows: the same values as one after another
    let n: i64 = c
        .query_one(
            "SELECT fractality.write_events(
                    ARRAY['\\x0000000000000000000000000000d002', '\\x0000000000000000000000000000d003']::bytea[],
                    '{1000, 1001}', '{1, 1}', '{0, 1}', '{1, 1}', '{0, 0}',
                    ARRAY[[1,2,3,4,5,6,7,8], [9,10,11,12,13,14,15,16]]::real[],
                    array_fill(0::real, ARRAY[2, 8]), ARRAY[[0,0,0,1], [0,0,0,2]]::real[], '{7, 7}', '{1, 2}')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let rows: Vec<(f32, f32, f32)> = c
        .query(
            "SELECT state_l1, state_l8, reward_goal FROM fractality.experience_events
              WHERE event_id IN ('\\x0000000000000000000000000000d002', '\\x0000000000000000000000000000d003')
              ORDER BY step_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows.len(), 2);
    for (got, want) in rows.iter().zip([(1.0, 8.0, 1.0), (9.0, 16.0, 2.0)]) {
        approx::assert_relative_eq!(got.0, want.0);
        approx::assert_relative_eq!(got.1, want.1);
        approx::assert_relative_eq!(got.2, want.2);
    }
}
