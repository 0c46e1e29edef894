//! Privileges: an application role with the documented grants (USAGE on the schema, the DML
//! privileges on its tables, and, for a curator, EXECUTE on crystallize_consensus) may execute
//! every function of the API and neither the internal helpers nor the owner's maintenance
//! functions, and such a call fails with PostgreSQL's 42501 before the function runs. PUBLIC
//! may execute none of those, nor crystallize_consensus.

mod common;
mod reliability;

/// The internal helpers (sql/security.sql): partition and archive steps, trigger functions, the
/// aggregates' support functions, the replay internals and the consensus part that sees across
/// tenants.
const INTERNAL: &[&str] = &[
    "_archive_events_before",
    "_archive_partition_name",
    "_archive_streams_before",
    "_attach_to_archive",
    "_create_month_partition",
    "_drop_events_before",
    "_drop_partition",
    "_drop_streams_before",
    "_ensure_month_partition",
    "_event_table_as",
    "_index_partition",
    "_new_event_table",
    "_pack_stream_points",
    "_partition_bounds",
    "_protect_partition",
    "_set_event_bound",
    "_us_to_timestamptz",
    "_check_age",
    "_check_read_committed",
    "_lock_for_partitions",
    "_months_to_partition",
    "_lock",
    "_try_lock",
    "_experience_events_identity",
    "_embedding_models_index",
    "_node_embeddings_check",
    "action_metadata_check_event",
    "experience_events_cascade_delete",
    "experience_events_cascade_truncate",
    "experience_events_to_inbox",
    "_experience_events_register",
    "_experience_events_unregister",
    "notify_consciousness_update",
    "touch_updated_at",
    "_node_text_insert",
    "_node_text_update",
    "discounted_return_ffunc",
    "discounted_return_sfunc",
    "discounted_return_steps_ffunc",
    "discounted_return_steps_sfunc",
    "episode_sums_ffunc",
    "episode_sums_sfunc",
    "episode_sums_combine",
    "episode_sums_serial",
    "episode_sums_deserial",
    "discounted_return_steps_combine",
    "discounted_return_steps_serial",
    "discounted_return_steps_deserial",
    "reward_stats_combine",
    "reward_stats_deserial",
    "reward_stats_ffunc",
    "reward_stats_serial",
    "reward_stats_sfunc",
    "_replay_enter",
    "_replay_entered",
    "_replay_leave",
    "_replay_rebuild",
    "_replay_remove",
    "_replay_remove_before",
    "_replay_truncate",
    "_crystallize_consensus",
    "_model_index_ops",
    "_run_maintenance",
    "_maintenance_report",
];

/// Granted to a curator, not to PUBLIC (a consensus tells its caller about other tenants).
const GRANTED: &[&str] = &["crystallize_consensus", "_crystallize_consensus"];

/// The owner's maintenance (partitions, archiving, retention, index builds): not PUBLIC.
const MAINTENANCE: &[&str] = &[
    "ensure_partitions",
    "archive_old_events",
    "archive_streams",
    "run_maintenance",
    "maintain",
    "add_retention_policy",
    "remove_retention_policy",
    "build_model_index",
    "drop_model_index",
    "build_tenant_graphs",
];

#[test]
fn privileges_an_application_role_executes_the_api_and_no_helper() {
    let mut admin = common::db();
    let role = "fractality_privileges_app";
    let mut app = common::app(role, Some(common::tenant()));
    let functions: Vec<(String, String, bool, bool, bool, bool)> = admin
        .query(
            "SELECT p.proname::text, p.oid::regprocedure::text,
                    has_function_privilege('public', p.oid, 'EXECUTE'),
                    has_function_privilege($1, p.oid, 'EXECUTE'),
                    'internal'::regtype = ANY (p.proargtypes::regtype[]) OR p.prorettype = 'trigger'::regtype,
                    p.prosecdef
               FROM pg_proc p
              WHERE p.pronamespace = 'fractality'::regnamespace
              ORDER BY 2",
            &[&role],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert!(functions.len() > 100, "every function of the schema");
    let mut problems = Vec::new();
    let (mut api, mut helpers, mut refused) = (0, 0, 0);
    for (name, signature, public, granted, uncallable, definer) in &functions {
        let internal = INTERNAL.contains(&name.as_str()) || MAINTENANCE.contains(&name.as_str());
        // the lists above are kept by hand: a helper missing from them would be taken for an
        // API function, which PUBLIC must execute. What the catalog says of a function decides
        // too: an internal name, a trigger or aggregate step, a SECURITY DEFINER function are
        // never API
        let listed = internal || GRANTED.contains(&name.as_str());
        if !listed && (name.starts_with('_') || *uncallable || *definer) {
            problems.push(format!(
                "{signature} (internal by its name, type or SECURITY DEFINER) is in no list of this test"
            ));
        }
        if internal || GRANTED.contains(&name.as_str()) {
            if *public {
                problems.push(format!("PUBLIC may execute {signature}"));
            }
        } else if !*public {
            problems.push(format!(
                "PUBLIC may not execute the API function {signature}"
            ));
        }
        if internal && !GRANTED.contains(&name.as_str()) {
            helpers += 1;
            if *granted {
                problems.push(format!("the application role may execute {signature}"));
            }
            if *uncallable {
                continue; // a trigger or an aggregate's step: no SQL call can name it
            }
            // a call with arguments of the helper's types, refused before it runs (not NULLs: a
            // strict function of constant NULLs is folded to NULL without being called)
            let args: String = admin
                .query_one(
                    "SELECT coalesce(string_agg(
                                CASE format_type(t, NULL)
                                    WHEN 'regclass' THEN '''fractality.nodes''::regclass'
                                    WHEN 'date' THEN 'current_date'
                                    WHEN 'timestamp with time zone' THEN 'now()'
                                    WHEN 'text' THEN '''x'''
                                    WHEN 'interval' THEN '''1 day''::interval'
                                    WHEN 'bytea[]' THEN '''{}''::bytea[]'
                                    WHEN 'bigint[]' THEN '''{}''::bigint[]'
                                    WHEN 'regclass[]' THEN '''{}''::regclass[]'
                                    WHEN 'jsonb' THEN '''{}''::jsonb'
                                    ELSE '0::' || format_type(t, NULL) END, ', ' ORDER BY i), '')
                       FROM unnest((SELECT proargtypes::oid[] FROM pg_proc WHERE oid = $1::text::regprocedure))
                            WITH ORDINALITY a(t, i)",
                    &[signature],
                )
                .unwrap()
                .get(0);
            let procedure: bool = admin
                .query_one(
                    "SELECT prokind = 'p' FROM pg_proc WHERE oid = $1::text::regprocedure",
                    &[signature],
                )
                .unwrap()
                .get(0);
            let verb = if procedure { "CALL" } else { "SELECT" };
            let sql = format!("{verb} fractality.{name}({args})");
            match app.batch_execute(&sql) {
                Ok(()) => problems.push(format!("the application role ran {sql}")),
                Err(e) if common::sqlstate(&e) == "42501" => refused += 1,
                Err(e) => {
                    problems.push(format!("{sql}: {} instead of 42501", common::sqlstate(&e)))
                }
            }
        } else {
            api += 1;
            if !*granted {
                problems.push(format!("the application role may not execute {signature}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(refused > 10, "the helpers were called");
    // and the API works for it: a memory written and recalled, an event written
    app.batch_execute(
        "SELECT * FROM fractality.remember(NULL, 'privileges', fractality.normalize_vector(array_fill(1, ARRAY[384])::real[]::vector));
         SELECT count(*) FROM fractality.recall(fractality.normalize_vector(array_fill(1, ARRAY[384])::real[]::vector), 1);",
    )
    .unwrap();
    reliability::report(&format!(
        "privileges: an application role may execute {api} API functions and none of {helpers} internal helpers ({refused} called: 42501 each); PUBLIC may not execute crystallize_consensus"
    ));
}

/// `CREATE EXTENSION` takes a schema named `fractality` that is there already. Its SECURITY
/// DEFINER functions then ran as the superuser in a schema another role controlled: its owner
/// could rename it and plant one of the same name whose tables the triggers reached. The install
/// refuses a schema owned by a role that is not a superuser, one in which such a role may create,
/// and one holding such a role's objects (42501), and creates nothing; a schema a superuser owns,
/// emptied of them, it takes.
#[test]
fn the_install_refuses_a_schema_another_role_controls() {
    let db = "fractality_schema_squatted";
    let mut c = common::fresh_db(
        db,
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fractality_squatter')
                    THEN CREATE ROLE fractality_squatter; END IF; END $$;
         CREATE EXTENSION vector; CREATE EXTENSION btree_gin;
         CREATE SCHEMA fractality AUTHORIZATION fractality_squatter;",
    );
    let refused = |c: &mut postgres::Client, words: &str| {
        let e = c.batch_execute("CREATE EXTENSION fractality").unwrap_err();
        assert_eq!(common::sqlstate(&e), "42501", "{e:?}");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(message.contains(words), "{message}");
        let installed: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = 'fractality'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(installed, 0);
    };
    refused(&mut c, "owned by role fractality_squatter");
    c.batch_execute(
        "ALTER SCHEMA fractality OWNER TO postgres;
         GRANT CREATE ON SCHEMA fractality TO PUBLIC;",
    )
    .unwrap();
    refused(&mut c, "lets PUBLIC create");
    c.batch_execute(
        "SET ROLE fractality_squatter;
         CREATE TABLE fractality.experience_event_ids_planted (event_id bytea);
         RESET ROLE;
         REVOKE CREATE ON SCHEMA fractality FROM PUBLIC;",
    )
    .unwrap();
    refused(&mut c, "holds experience_event_ids_planted");
    c.batch_execute(
        "DROP TABLE fractality.experience_event_ids_planted;
         CREATE EXTENSION fractality;",
    )
    .unwrap();
    let objects: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
              WHERE e.extname = 'fractality' AND d.deptype = 'e'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(objects > 100, "{objects}");
    drop(c);
    common::drop_db(db);
    // 0.4.0 installed into such a schema (it had no check) is not updated in it
    let mut c = common::fresh_db(
        db,
        "CREATE SCHEMA fractality AUTHORIZATION fractality_squatter;
         CREATE EXTENSION fractality VERSION '0.4.0' CASCADE; CREATE EXTENSION IF NOT EXISTS btree_gin;",
    );
    let e = c
        .batch_execute("ALTER EXTENSION fractality UPDATE")
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "42501", "{e:?}");
    let version = common::extversion(&mut c);
    assert_eq!(version, "0.4.0");
    drop(c);
    common::drop_db(db);
}

/// A function of another schema on the caller's path that matches a call's argument types more
/// exactly than pg_catalog's (here hashtextextended(text, integer), which the advisory locks'
/// `0` would have picked) does not run inside fractality's functions: the maintenance and the
/// experience API pin their search_path, and the queries name pg_catalog's types exactly.
/// Before, the owner's run_maintenance (pg_cron's) ran such a function as a superuser.
#[test]
fn a_function_planted_on_the_path_is_not_called() {
    let db = "fractality_planted";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute(
        "CREATE FUNCTION public.hashtextextended(text, integer) RETURNS bigint
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted function called'; END $$;
         SET search_path = \"$user\", public;
         SET fractality.user_id = 'a0000000-0000-4000-8000-0000000000ff';",
    )
    .unwrap();
    for call in [
        "SELECT fractality.run_maintenance()::text",
        "SELECT fractality.forget('nothing')::text",
        "SELECT fractality.save_policy('bin', 'rule', '{\"a\": 1}')::text",
        "SELECT fractality.save_config('component', 'key', '1')::text",
        "SELECT fractality.archive_old_events(30)::text",
        "SELECT fractality.archive_streams('30 days')::text",
        "SELECT count(*)::text FROM fractality.build_tenant_graphs()",
    ] {
        if let Err(e) = c.query_one(call, &[]) {
            panic!("{call}: {e:?}");
        }
    }
    drop(c);
    common::drop_db(db);
}

/// A caller whose search_path leaves out `public` (PostgreSQL's secure schema usage) is not
/// exposed by fractality's calls either: they pinned pgvector's schema (here `public`, where
/// others may create functions) on the path, so that a `public.unnest(text[])`, a better match
/// than pg_catalog's `unnest(anyarray)`, ran inside `remember` as its caller. The calls now pin
/// `pg_catalog, pg_temp` and name pgvector's type and operator with its schema, looked up as
/// they run: pgvector may then move to another schema too.
#[test]
fn a_function_planted_in_pgvectors_schema_is_not_called() {
    let db = "fractality_planted_vector";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    let mut plant = String::new();
    for t in [
        "text",
        "uuid",
        "bigint",
        "integer",
        "real",
        "double precision",
        "jsonb",
    ] {
        plant.push_str(&format!(
            "CREATE FUNCTION public.unnest({t}[]) RETURNS SETOF {t}
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted unnest({t}[]) called'; END $$;"
        ));
    }
    plant.push_str(
        "CREATE FUNCTION public.array_position(uuid[], uuid) RETURNS integer
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted array_position called'; END $$;
         CREATE FUNCTION public.array_positions(uuid[], uuid) RETURNS integer[]
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted array_positions called'; END $$;
         CREATE FUNCTION public.lower(int8range) RETURNS bigint
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted lower(int8range) called'; END $$;
         CREATE FUNCTION public.planted_op(int8range, bigint) RETURNS boolean
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted @> called'; END $$;
         CREATE OPERATOR public.@> (LEFTARG = int8range, RIGHTARG = bigint, FUNCTION = public.planted_op);
         CREATE FUNCTION public.planted_overlap(int8range, int8range) RETURNS boolean
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted && called'; END $$;
         CREATE OPERATOR public.&& (LEFTARG = int8range, RIGHTARG = int8range, FUNCTION = public.planted_overlap);
         CREATE FUNCTION public.planted_cat(bigint[], bigint[]) RETURNS bigint[]
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted || called'; END $$;
         CREATE OPERATOR public.|| (LEFTARG = bigint[], RIGHTARG = bigint[], FUNCTION = public.planted_cat);
         SET search_path = \"$user\";
         SET fractality.user_id = 'a0000000-0000-4000-8000-0000000000fe';",
    );
    c.batch_execute(&plant).unwrap();
    let v = |i: usize| {
        let mut a = vec!["0.01".to_string(); 384];
        a[i] = "1".into();
        format!("'[{}]'::public.vector", a.join(","))
    };
    // two more tenants holding the memory 'a' is near, so that consensus forms (and runs every
    // query: its members, centroid, links)
    for (t, k) in [
        ("a0000000-0000-4000-8000-0000000000fd", "b-other"),
        ("a0000000-0000-4000-8000-0000000000fc", "c-other"),
    ] {
        c.query_one(
            &format!(
                "SELECT fractality.upsert_node_for('{t}', '{k}', '{k}', '{{}}', 0.5, {})::text",
                v(1)
            ),
            &[],
        )
        .unwrap();
    }
    let calls = [
        format!("SELECT count(*)::text FROM fractality.remember('a', 'first', {})", v(1)),
        format!("SELECT count(*)::text FROM fractality.remember(NULL, 'second', {})", v(2)),
        format!(
            "SELECT count(*)::text FROM fractality.remember_many(ARRAY['c', 'd'], ARRAY['third', 'fourth'],
                    ARRAY[{}, {}])",
            v(3),
            v(4)
        ),
        format!(
            "SELECT count(*)::text FROM fractality.remember_many(jsonb_build_array(jsonb_build_object(
                    'content', 'fifth', 'embedding', ({})::text::jsonb)))",
            v(5)
        ),
        format!("SELECT count(*)::text FROM fractality.recall({}, 3)", v(1)),
        format!("SELECT count(*)::text FROM fractality.recall({}, 3, 'first', reinforce => 0.1)", v(1)),
        format!("SELECT count(*)::text FROM fractality.recall_explain({}, 3, 'first')", v(1)),
        "SELECT count(*)::text FROM fractality.find_resonant('a', 0.0, 5)".into(),
        "SELECT count(*)::text FROM fractality.resonance_with(
                (SELECT id FROM fractality.nodes WHERE node_key = 'a'),
                ARRAY(SELECT id FROM fractality.nodes))"
            .into(),
        "SELECT fractality.calculate_resonance(
                (SELECT id FROM fractality.nodes WHERE node_key = 'a'),
                (SELECT id FROM fractality.nodes WHERE node_key = 'c'))::text"
            .into(),
        "SELECT fractality.crystallize_consensus(
                (SELECT id FROM fractality.nodes WHERE node_key = 'a'
                    AND user_id = fractality.current_user_id()))::text"
            .into(),
        "SELECT fractality.index_staged_embeddings()::text".into(),
        "SELECT fractality.materialize_decay()::text".into(),
        "SELECT fractality.run_maintenance()::text".into(),
    ];
    for call in &calls {
        match c.query_one(call.as_str(), &[]) {
            Ok(row) => assert!(row.get::<_, Option<String>>(0).is_some(), "{call}: NULL"),
            Err(e) => panic!("{call}: {e:?}"),
        }
    }
    // with public on the path (PostgreSQL's default), the functions that do not pin theirs name
    // pg_catalog's polymorphic functions in full, and the replay functions pin theirs (their range
    // and array operators)
    // thaw unnests the archived stream points and write_event_with_metadata a batch's metadata
    // (multi-argument unnests: PostgreSQL expands them into pg_catalog's own), and search_nodes
    // names its text search configuration by a literal, which a planted (text, text) function
    // matched better than pg_catalog's (regconfig, text) before the query named both
    c.batch_execute(
        "INSERT INTO fractality.consciousness_archive (node_id, user_id, time_from, time_to, points, times, atp_levels)
         SELECT id, user_id, '2001-01-01', '2001-01-01', 1, ARRAY['2001-01-01'::timestamptz], ARRAY[0.25::real]
           FROM fractality.nodes WHERE node_key = 'a' AND user_id = fractality.current_user_id();
         CREATE FUNCTION public.websearch_to_tsquery(text, text) RETURNS tsquery
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted websearch_to_tsquery called'; END $$;
         CREATE FUNCTION public.unnest(timestamptz[]) RETURNS SETOF timestamptz
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted unnest(timestamptz[]) called'; END $$;
         CREATE FUNCTION public.unnest(bytea[]) RETURNS SETOF bytea
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted unnest(bytea[]) called'; END $$;
         CREATE FUNCTION public.planted_arrow(jsonb, jsonb) RETURNS jsonb
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted -> called'; END $$;
         CREATE OPERATOR public.-> (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = public.planted_arrow);",
    )
    .unwrap();
    c.batch_execute(
        "SET search_path = \"$user\", public;
         SELECT fractality.create_replay_buffer('planted', backfill => true);",
    )
    .unwrap();
    c.query_one(
        "SELECT fractality.write_events($1::jsonb)",
        &[&reliability::events_json(9 << 60, 20, 5_000_000_000)],
    )
    .unwrap();
    let event = reliability::events_json(9 << 60 | 1 << 40, 1, 5_000_000_100)[0].clone();
    c.execute(
        "SELECT fractality.write_event_with_metadata($1::jsonb,
                '{\"intent_type\": \"plant\", \"executor_id\": \"e\"}')",
        &[&event],
    )
    .unwrap_or_else(|e| panic!("write_event_with_metadata: {e:?}"));
    for call in [
        "SELECT count(*)::text FROM fractality.sample_experiences('planted', 5, seed => 1)",
        "SELECT fractality.update_priorities('planted',
                ARRAY(SELECT event_id FROM fractality.replay_items LIMIT 5),
                ARRAY[1, 2, 3, 4, 5]::float8[])::text",
        "SELECT fractality.update_priorities('planted',
                ARRAY(SELECT event_id FROM fractality.replay_items ORDER BY event_id LIMIT 3),
                ARRAY[1, 2, 3]::float8[],
                ARRAY(SELECT event_timestamp FROM fractality.replay_items ORDER BY event_id LIMIT 3))::text",
        "SELECT count(*)::text FROM fractality.replay_batch('planted', 5, seed => 2)",
        "SELECT fractality.fold_priorities('planted')::text",
        "SELECT count(*)::text FROM fractality.traverse(
                (SELECT id FROM fractality.nodes WHERE node_key = 'a'
                    AND user_id = fractality.current_user_id()), 3)",
        // (thaw's expiry: its key was untyped, which the planted ->(jsonb, jsonb) matched better)
        "SELECT (fractality.thaw('a') -> 'stream'::text)::text",
        "SELECT fractality.freeze(fractality.thaw('a') || '{\"node_key\": \"a2\"}')::text",
        "SELECT count(*)::text FROM fractality.search_nodes('first')",
        "SELECT fractality.archive_old_events(0)::text",
        "SELECT fractality.drop_replay_buffer('planted')::text",
        "SELECT fractality.forget('a2')::text",
    ] {
        match c.query_one(call, &[]) {
            Ok(row) => assert!(row.get::<_, Option<String>>(0).is_some(), "{call}: NULL"),
            Err(e) => panic!("{call}: {e:?}"),
        }
    }
    c.batch_execute("SET search_path = \"$user\"").unwrap();
    // pgvector moved to another schema: the calls look its schema up as they run (consensus
    // had it fixed in its SET clause at install, and failed after the move)
    c.batch_execute("CREATE SCHEMA moved; ALTER EXTENSION vector SET SCHEMA moved;")
        .unwrap();
    for call in &calls {
        let call = call.replace("::public.vector", "::moved.vector");
        match c.query_one(call.as_str(), &[]) {
            Ok(row) => assert!(row.get::<_, Option<String>>(0).is_some(), "{call}: NULL"),
            Err(e) => panic!("after the move, {call}: {e:?}"),
        }
    }
    drop(c);
    common::drop_db(db);
}

/// The same for the owner's direct call of fold_priorities (the replay fold's queries unnest
/// bigint[], which a planted unnest(bigint[]) would take over as a better match than
/// pg_catalog's unnest(anyarray)): the call pins its search path, as run_maintenance does.
#[test]
fn a_planted_unnest_is_not_called_by_the_replay_fold() {
    let db = "fractality_planted_fold";
    let mut c = common::fresh_db(db, "CREATE EXTENSION fractality CASCADE");
    c.batch_execute("SELECT fractality.create_replay_buffer('planted')")
        .unwrap();
    c.query_one(
        "SELECT fractality.write_events($1::jsonb)",
        &[&reliability::events_json(7 << 60, 20, 5_000_000_000)],
    )
    .unwrap();
    c.batch_execute(
        "SET fractality.replay_fold_after = 1000000;
         SELECT fractality.update_priorities('planted',
                ARRAY(SELECT event_id FROM fractality.replay_items LIMIT 10),
                ARRAY(SELECT 2.0::float8 FROM generate_series(1, 10)));
         CREATE FUNCTION public.unnest(bigint[]) RETURNS SETOF bigint
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted function called'; END $$;
         SET search_path = \"$user\", public;",
    )
    .unwrap();
    let folded: i64 = c
        .query_one("SELECT fractality.fold_priorities('planted')", &[])
        .unwrap_or_else(|e| panic!("{e:?}"))
        .get(0);
    assert_eq!(folded, 10);
    drop(c);
    common::drop_db(db);
}
