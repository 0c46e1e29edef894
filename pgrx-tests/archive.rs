//! Archiving and retention inside the server: events move into the cold tier (whole partitions
//! without being rewritten) and read back bit for bit; stream points pack losslessly; partitions
//! ahead; retention policies; run_maintenance; bad input moves nothing.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql)
            .expect("query runs")
            .expect("not null")
    }

    /// The tests of this file move partitions (ACCESS EXCLUSIVE locks held to the end of each
    /// test's transaction): one at a time, as the client suite runs them, so that two of them
    /// never wait for each other's locks.
    fn serial() {
        Spi::run("SELECT pg_advisory_xact_lock(hashtextextended('fractality archive tests', 0))")
            .unwrap();
    }

    /// The SQLSTATE and the message a statement fails with ("ok" when it does not, and ""); its
    /// effects are undone.
    fn failure_of(sql: &str) -> (String, String) {
        Spi::run(
            "CREATE OR REPLACE FUNCTION pg_temp.failure_of(q text, OUT state text, OUT message text)
             LANGUAGE plpgsql AS $$
             BEGIN EXECUTE q; state := 'ok'; message := '';
             EXCEPTION WHEN OTHERS THEN state := SQLSTATE; message := SQLERRM; END $$",
        )
        .unwrap();
        Spi::get_two_with_args::<String, String>(
            "SELECT state, message FROM pg_temp.failure_of($1)",
            &[sql.into()],
        )
        .map(|(s, m)| (s.unwrap(), m.unwrap()))
        .unwrap()
    }

    /// The SQLSTATE a statement fails with ("ok" when it does not).
    fn state_of(sql: &str) -> String {
        failure_of(sql).0
    }

    /// The message a statement fails with ("" when it does not).
    fn message_of(sql: &str) -> String {
        failure_of(sql).1
    }

    /// 401 events, one every 6 hours back from now (100 days), with awkward reals, and metadata
    /// on every fifth; partitions for the months 40 and 70 days back made first, those of the
    /// other months by ensure_partitions from the rows the default partition caught (whatever
    /// the date, every month of the span ends up with its partition).
    fn seed_events() {
        Spi::run(
            "SELECT fractality._create_month_partition('fractality.experience_events', (now() - interval '40 days')::date);
             SELECT fractality._create_month_partition('fractality.experience_events', (now() - interval '70 days')::date);
             SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
                 'event_id', 'a0' || lpad(to_hex(g), 30, '0'),
                 'timestamp', fractality.epoch_us(now() - g * interval '6 hours') - 1,
                 'episode_id', g / 10, 'step_number', g % 10, 'event_type', g % 5, 'flags', g % 3,
                 'state_l1', CASE g % 4 WHEN 0 THEN -0.0 WHEN 1 THEN 1e-45 WHEN 2 THEN 3.4e38 ELSE 1.0 / 3 END,
                 'state_l2', g * 0.1, 'state_l3', 0.5, 'state_l4', 0.5, 'state_l5', 0.5,
                 'state_l6', 0.5, 'state_l7', 0.5, 'state_l8', 2.0 / 3,
                 'action_l1', -1, 'action_l2', 0, 'action_l3', 0, 'action_l4', 0,
                 'action_l5', 0, 'action_l6', 0, 'action_l7', 0, 'action_l8', 1e-7 * g,
                 'reward_homeostasis', (g % 3) * 0.25, 'reward_goal', 1.0 / 7,
                 'adna_version_hash', 77, 'sequence_number', g))
               FROM generate_series(0, 400) g));
             INSERT INTO fractality.action_metadata (event_timestamp, event_id, intent_type, executor_id, parameters)
             SELECT \"timestamp\", event_id, 'explore', 'agent-' || sequence_number,
                    jsonb_build_object('g', sequence_number, 'x', 1.0 / 3)
               FROM fractality.experience_events WHERE sequence_number % 5 = 0;
             SELECT fractality.ensure_partitions(1);",
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_events_default"),
            0
        );
    }

    /// Every column of query_events but "archived", as text that keeps every bit of a real.
    const IMAGE: &str = "SELECT \"timestamp\", event_id, episode_id, step_number, event_type, flags,
                                state::text, action::text, reward_homeostasis::text, reward_curiosity::text,
                                reward_efficiency::text, reward_goal::text, total_reward::text,
                                adna_version_hash, sequence_number, intent_type, executor_id, parameters
                           FROM fractality.query_events(0, 9223372036854775807, 1000000, true, true)";

    #[pg_test]
    fn archive_old_events_moves_partitions_and_reads_back() {
        serial();
        Spi::run("SET LOCAL extra_float_digits = 3").unwrap();
        seed_events();
        Spi::run(&format!("CREATE TEMP TABLE ev_before AS {IMAGE}")).unwrap();
        let old: i64 = one("SELECT count(*) FROM fractality.experience_events
              WHERE \"timestamp\" < fractality.epoch_us(now() - interval '7 days')");
        let old_meta: i64 = one("SELECT count(*) FROM fractality.action_metadata
              WHERE event_timestamp < fractality.epoch_us(now() - interval '7 days')");
        assert!(old > 300 && old_meta > 50);
        // the partition of 70 days back: its file must end up in the cold tier untouched
        let file: i64 = one(
            "SELECT c.relfilenode::bigint FROM pg_class c
              WHERE c.oid = format('fractality.experience_events_%s',
                                   to_char((now() - interval '70 days') AT TIME ZONE 'UTC', 'YYYY_MM'))::regclass",
        );

        assert_eq!(one::<i64>("SELECT fractality.archive_old_events(7)"), old);
        assert_eq!(one::<i64>("SELECT fractality.archive_old_events(7)"), 0);

        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_events_archive"),
            old
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_events") + old,
            401
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.experience_events
                  WHERE \"timestamp\" < fractality.epoch_us(now() - interval '7 days')"
            ),
            0
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata_archive"),
            old_meta
        );
        assert!(one::<bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                             WHERE i.inhparent = 'fractality.experience_events_archive'::regclass
                               AND c.relfilenode = {file})"
        )));

        // bit for bit, metadata included
        Spi::run(&format!("CREATE TEMP TABLE ev_after AS {IMAGE}")).unwrap();
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM ((TABLE ev_before EXCEPT ALL TABLE ev_after)
                                      UNION ALL (TABLE ev_after EXCEPT ALL TABLE ev_before)) d"
            ),
            0
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM ev_after"), 401);
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.query_events(0, 9223372036854775807, 1000000, true, true)
                  WHERE archived"
            ),
            old
        );
        // without include_archived, only the hot tier
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.query_events(0, 9223372036854775807, 1000000)"
            ),
            401 - old
        );

        // a later cutoff splits the current hot partition again; everything still once
        let more: i64 = one("SELECT fractality.archive_old_events(2)");
        assert!(more > 0);
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM fractality.experience_events)
                      + (SELECT count(*) FROM fractality.experience_events_archive)"
            ),
            401
        );
        assert_eq!(
            one::<i64>("SELECT fractality.archive_old_events(0)"),
            401 - old - more
        );
        Spi::run(&format!("CREATE TEMP TABLE ev_all_cold AS {IMAGE}")).unwrap();
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM ((TABLE ev_before EXCEPT ALL TABLE ev_all_cold)
                                      UNION ALL (TABLE ev_all_cold EXCEPT ALL TABLE ev_before)) d"
            ),
            0
        );
    }

    #[pg_test]
    fn archive_late_events_of_archived_months() {
        serial();
        seed_events();
        let first: i64 = one("SELECT fractality.archive_old_events(7)");
        // a late event of an archived month lands in the hot default partition, then goes cold
        Spi::run(
            "SELECT fractality.write_event('\\xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
                     fractality.epoch_us(now() - interval '65 days'), 1, 1, 0::smallint, 0::smallint,
                     array_fill(0.25::real, ARRAY[8]), array_fill(0::real, ARRAY[8]), 77, 11)",
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_events_default"),
            1
        );
        assert_eq!(one::<i64>("SELECT fractality.archive_old_events(7)"), 1);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_events_archive"),
            first + 1
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.query_events(
                        fractality.epoch_us(now() - interval '66 days'),
                        fractality.epoch_us(now() - interval '64 days'), 100, false, true)
                  WHERE event_id = '\\xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'"
            ),
            1
        );
    }

    /// An age is checked as it is applied, in UTC: in Kiritimati (UTC+14) an age reaching just
    /// before the earliest timestamp passed the check, and every run_maintenance after failed
    /// with 22008.
    #[pg_test]
    fn an_age_reaching_before_the_earliest_time_is_refused_in_any_time_zone() {
        serial();
        Spi::run("SET LOCAL TimeZone = 'Pacific/Kiritimati'").unwrap();
        let n = one::<i32>(
            "SELECT ceil(extract(epoch FROM now() - '4714-11-24 00:00:00+00 BC'::timestamptz) / 86400)::int",
        );
        assert_eq!(
            state_of(&format!(
                "SELECT fractality.add_retention_policy('fractality.experience_events', make_interval(days => {n}), 'drop')"
            )),
            "22023"
        );
        // and its message prints the age in PostgreSQL's style whatever the session's
        Spi::run("SET LOCAL IntervalStyle = 'iso_8601'").unwrap();
        assert_eq!(
            message_of("SELECT fractality.archive_streams('-1 days')"),
            "invalid value for older_than: -1 days"
        );
    }

    /// Microseconds and times convert exactly both ways, also beyond 2^53 microseconds (June
    /// 2255), where float8 rounded: an event of the last microsecond of February 2400 made
    /// ensure_partitions create March's partition and stay in the default one for good. (Such a
    /// month now gets no partition at all, being more than 24 months ahead: its month is the one
    /// the partitioning would compute.)
    #[pg_test]
    fn microseconds_convert_exactly_beyond_float8() {
        serial();
        Spi::run("SET LOCAL TimeZone = 'Australia/Lord_Howe'").unwrap();
        assert_eq!(
            one::<i64>("SELECT fractality.epoch_us('2400-02-29 23:59:59.999999+00')"),
            13574649599999999
        );
        assert!(one::<bool>(
            "SELECT fractality._us_to_timestamptz(13574649599999999) = '2400-02-29 23:59:59.999999+00'"
        ));
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM generate_series(0, 2000) i,
                        LATERAL (SELECT (i::numeric * 4000000000000007::numeric + i)::bigint AS us) u
                  WHERE fractality.epoch_us(fractality._us_to_timestamptz(u.us)) <> u.us"
            ),
            0
        );
        assert_eq!(
            one::<String>(
                "SELECT to_char(date_trunc('month', fractality._us_to_timestamptz(13574649599999999) AT TIME ZONE 'UTC'), 'YYYY_MM')"
            ),
            "2400_02"
        );
        Spi::run(
            "SELECT fractality.write_event('\\x000000000000000000000000000009a1', 13574649599999999, 1, 1,
                     1::smallint, 0::smallint, array_fill(0::real, ARRAY[8]), array_fill(0::real, ARRAY[8]), 1, 1);
             SELECT fractality.ensure_partitions(0);",
        )
        .unwrap();
        assert_eq!(
            one::<String>(
                "SELECT tableoid::regclass::text FROM fractality.experience_events
                  WHERE event_id = '\\x000000000000000000000000000009a1'"
            ),
            "fractality.experience_events_default"
        );
    }

    #[pg_test(
        error = "duplicate event (timestamp 86400000000, event_id \\xdddddddddddddddddddddddddddddddd): already stored at timestamp 86400000000"
    )]
    fn archived_events_still_refuse_duplicates() {
        serial();
        let write = "SELECT fractality.write_event('\\xdddddddddddddddddddddddddddddddd', 86400000000, 1, 1,
                             0::smallint, 0::smallint, array_fill(0.25::real, ARRAY[8]),
                             array_fill(0::real, ARRAY[8]), 77, 11)";
        Spi::run(write).unwrap();
        assert_eq!(one::<i64>("SELECT fractality.archive_old_events(7)"), 1);
        Spi::run(write).unwrap();
    }

    /// An erasure in the cold tier (a DELETE or TRUNCATE by hand) takes the events' metadata with
    /// them and frees their ids, as one in the hot tier does: the metadata of an archived event
    /// outlived its deletion, and its id could not be written again.
    #[pg_test]
    fn erasing_archived_events_takes_their_metadata_and_frees_their_ids() {
        serial();
        seed_events();
        assert!(one::<i64>("SELECT fractality.archive_old_events(7)") > 0);
        let cold_metadata = one::<i64>("SELECT count(*) FROM fractality.action_metadata_archive");
        // episode 30: events 300 to 309, 75 to 77 days back, two of them with metadata
        let erased = one::<i64>(
            "WITH d AS (DELETE FROM fractality.experience_events_archive WHERE episode_id = 30
                        RETURNING 1)
             SELECT count(*) FROM d",
        );
        assert_eq!(erased, 10);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata_archive"),
            cold_metadata - 2
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.action_metadata_archive
                  WHERE (parameters ->> 'g')::int BETWEEN 300 AND 309"
            ),
            0
        );
        let ids_of_episode = "SELECT count(*) FROM fractality.experience_event_ids
                               WHERE event_id IN (SELECT decode('a0' || lpad(to_hex(g), 30, '0'), 'hex')
                                                    FROM generate_series(300, 309) g)";
        assert_eq!(one::<i64>(ids_of_episode), 0);
        // an erased id may be written again
        Spi::run(
            "SELECT fractality.write_event(decode('a0' || lpad(to_hex(300), 30, '0'), 'hex'),
                     fractality.epoch_us(now()), 1, 1, 0::smallint, 0::smallint,
                     array_fill(0.25::real, ARRAY[8]), array_fill(0::real, ARRAY[8]), 77, 11)",
        )
        .unwrap();
        assert_eq!(one::<i64>(ids_of_episode), 1);
        // the whole cold tier truncated: its metadata and ids go, the hot tier's stay
        let hot_metadata = one::<i64>("SELECT count(*) FROM fractality.action_metadata");
        assert!(hot_metadata > 0);
        Spi::run("TRUNCATE fractality.experience_events_archive").unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata_archive"),
            0
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata"),
            hot_metadata
        );
        assert!(one::<bool>(
            "SELECT (SELECT count(*) FROM fractality.experience_event_ids)
                  = (SELECT count(*) FROM fractality.experience_events)"
        ));
        // a tier truncated in one statement with its metadata table (its trigger truncated that
        // table again, which the statement held: 55006)
        // (the metadata's reference checks, deferred to commit, fire first: PostgreSQL truncates no
        // table with trigger events pending)
        Spi::run(
            "SET CONSTRAINTS ALL IMMEDIATE;
             TRUNCATE fractality.experience_events, fractality.action_metadata",
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_event_ids"),
            0
        );
    }

    /// Metadata written without its event and archived in the same transaction (the archivers
    /// move metadata by its timestamp) is still checked at commit, against the cold tier: the
    /// check skipped a row no longer in the hot tier, and let the orphan into the archive.
    #[pg_test(
        error = "insert or update on table \"action_metadata\" violates the reference \"action_metadata_event\": no event (86400000000, \\xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee)"
    )]
    fn metadata_archived_before_its_check_is_checked_in_the_cold_tier() {
        serial();
        Spi::run(
            "INSERT INTO fractality.action_metadata (event_timestamp, event_id, intent_type, executor_id)
             VALUES (86400000000, '\\xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'explore', 'agent');
             SELECT fractality.archive_old_events(7);",
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.action_metadata_archive"),
            1
        );
        Spi::run("SET CONSTRAINTS ALL IMMEDIATE").unwrap();
    }

    fn seed_stream_points() {
        Spi::run(
            "SET LOCAL fractality.notify = off;
             INSERT INTO fractality.nodes (id, user_id, node_key, label) VALUES
                 ('00000000-0000-0000-0000-0000000000a1', '11111111-1111-1111-1111-111111111111', 'arch-a', 'A'),
                 ('00000000-0000-0000-0000-0000000000b1', '22222222-2222-2222-2222-222222222222', 'arch-b', 'B');
             SELECT fractality._create_month_partition('fractality.consciousness_streams', ((now() - interval '5 months') AT TIME ZONE 'UTC')::date);
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level, attention_score, resonance_vector)
             SELECT now() - g * interval '1 hour',
                    CASE WHEN g % 3 = 0 THEN '00000000-0000-0000-0000-0000000000b1'::uuid ELSE '00000000-0000-0000-0000-0000000000a1' END,
                    CASE WHEN g % 3 = 0 THEN '22222222-2222-2222-2222-222222222222'::uuid ELSE '11111111-1111-1111-1111-111111111111' END,
                    (g % 100) / 100.0 + 1e-12 * g,
                    CASE WHEN g % 7 = 0 THEN NULL ELSE g / 3.0 END,
                    CASE g % 6 WHEN 0 THEN ARRAY[g / 7.0, -0.0, 'NaN', NULL, 1e-45]::real[]
                               WHEN 1 THEN '[0:1]={1.5,2.5}'::real[]
                               WHEN 2 THEN '{{1,2},{3,4}}'::real[]
                               WHEN 3 THEN '{}'::real[] END
               FROM generate_series(0, 6000) g;
             -- two points at the same instant
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             VALUES (now() - interval '200 days', '00000000-0000-0000-0000-0000000000a1', '11111111-1111-1111-1111-111111111111', 0.25),
                    (now() - interval '200 days', '00000000-0000-0000-0000-0000000000a1', '11111111-1111-1111-1111-111111111111', 0.75);",
        )
        .unwrap();
    }

    const HISTORY: &str =
        "SELECT n.id, h.time, h.atp_level, h.attention_score, h.resonance_vector::text,
                                  array_dims(h.resonance_vector)
                             FROM fractality.nodes n,
                                  fractality.stream_history(n.id, '-infinity', 'infinity') h
                            WHERE n.node_key IN ('arch-a', 'arch-b')";

    #[pg_test]
    fn archive_streams_packs_losslessly() {
        serial();
        Spi::run("SET LOCAL extra_float_digits = 3").unwrap();
        seed_stream_points();
        Spi::run(&format!("CREATE TEMP TABLE st_before AS {HISTORY}")).unwrap();
        let total: i64 = one("SELECT count(*) FROM st_before");
        assert_eq!(total, 6003);
        let old: i64 = one(
            "SELECT count(*) FROM fractality.consciousness_streams WHERE time < now() - interval '1 day'",
        );
        assert_eq!(
            one::<i64>("SELECT fractality.archive_streams('1 day')"),
            old
        );
        assert_eq!(one::<i64>("SELECT fractality.archive_streams('1 day')"), 0);
        // the partition of 5 months back was read once and dropped
        assert!(!one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_class
                             WHERE relname = format('consciousness_streams_%s',
                                   to_char((now() - interval '5 months') AT TIME ZONE 'UTC', 'YYYY_MM')))"
        ));
        assert_eq!(
            one::<i64>("SELECT sum(points)::bigint FROM fractality.consciousness_archive"),
            old
        );
        // packed: at most 1000 points a row, in time order
        assert!(one::<bool>(
            "SELECT bool_and(points <= 1000 AND times[1] = time_from AND times[points] = time_to
                             AND times = (SELECT array_agg(t ORDER BY t) FROM unnest(times) t))
               FROM fractality.consciousness_archive"
        ));
        assert!(one::<i64>("SELECT count(*) FROM fractality.consciousness_archive") < old / 500);

        Spi::run(&format!("CREATE TEMP TABLE st_after AS {HISTORY}")).unwrap();
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM ((TABLE st_before EXCEPT ALL TABLE st_after)
                                      UNION ALL (TABLE st_after EXCEPT ALL TABLE st_before)) d"
            ),
            0
        );
        // and whatever the caller's array_nulls (the archive keeps vectors as text: with it off,
        // a NULL element had read as the word NULL, 22P02)
        Spi::run("SET LOCAL fractality.user_id = '22222222-2222-2222-2222-222222222222'").unwrap();
        let thawed: String = one("SELECT fractality.thaw('arch-b', 10000)::text");
        Spi::run(&format!(
            "SET LOCAL array_nulls = off; CREATE TEMP TABLE st_nulls_off AS {HISTORY}"
        ))
        .unwrap();
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM ((TABLE st_before EXCEPT ALL TABLE st_nulls_off)
                                      UNION ALL (TABLE st_nulls_off EXCEPT ALL TABLE st_before)) d"
            ),
            0
        );
        assert_eq!(
            one::<String>("SELECT fractality.thaw('arch-b', 10000)::text"),
            thawed
        );
        Spi::run("SET LOCAL array_nulls = on; SET LOCAL fractality.user_id = ''").unwrap();
        // in time order across tiers, the archived flag on the cold points
        assert!(one::<bool>(
            "SELECT bool_and(ok) FROM (
                 SELECT time >= lag(time) OVER () OR lag(time) OVER () IS NULL AS ok
                   FROM fractality.stream_history('00000000-0000-0000-0000-0000000000a1', '-infinity', 'infinity')) s"
        ));
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.stream_history('00000000-0000-0000-0000-0000000000a1',
                                                                '-infinity', 'infinity') WHERE archived"
            ),
            one::<i64>(
                "SELECT sum(points)::bigint FROM fractality.consciousness_archive
                  WHERE node_id = '00000000-0000-0000-0000-0000000000a1'"
            )
        );
        // a window inside one packed row
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.stream_history('00000000-0000-0000-0000-0000000000a1',
                        now() - interval '100 hours', now() - interval '90 hours')"
            ),
            one::<i64>(
                "SELECT count(*) FROM st_before
                  WHERE id = '00000000-0000-0000-0000-0000000000a1'
                    AND time >= now() - interval '100 hours' AND time < now() - interval '90 hours'"
            )
        );
        // deleting a node deletes its archived points
        Spi::run("DELETE FROM fractality.nodes WHERE node_key = 'arch-b'").unwrap();
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.consciousness_archive
                  WHERE node_id = '00000000-0000-0000-0000-0000000000b1'"
            ),
            0
        );
    }

    #[pg_test]
    fn archive_bad_input_moves_nothing() {
        serial();
        seed_events();
        seed_stream_points();
        let counts = "SELECT (SELECT count(*) FROM fractality.experience_events) * 1000000
                           + (SELECT count(*) FROM fractality.consciousness_streams)";
        let before: i64 = one(counts);
        for (sql, state) in [
            ("SELECT fractality.archive_old_events(NULL)", "22004"),
            ("SELECT fractality.archive_old_events(-1)", "22023"),
            ("SELECT fractality.archive_streams(NULL)", "22004"),
            ("SELECT fractality.archive_streams('-1 day')", "22023"),
            ("SELECT fractality.archive_streams('1 month -40 days')", "22023"),
            ("SELECT fractality.archive_streams('NaN')", "22007"),
            ("SELECT fractality.ensure_partitions(-1)", "22023"),
            ("SELECT fractality.ensure_partitions(NULL)", "22004"),
            ("SELECT fractality.add_retention_policy('fractality.nodes', '1 day', 'archive')", "22023"),
            ("SELECT fractality.add_retention_policy('fractality.no_such_table', '1 day', 'drop')", "42P01"),
            ("SELECT fractality.add_retention_policy('fractality.experience_events', '0 days', 'drop')", "22023"),
            ("SELECT fractality.add_retention_policy('fractality.experience_events', '-3 days', 'drop')", "22023"),
            ("SELECT fractality.add_retention_policy('fractality.experience_events', NULL, 'drop')", "22004"),
            ("SELECT fractality.add_retention_policy('fractality.experience_events', '1 day', 'shred')", "22023"),
            ("SELECT fractality.remove_retention_policy(NULL)", "22004"),
            ("SELECT fractality.stream_history(NULL, now(), now())", "22004"),
            ("SELECT fractality.stream_history('00000000-0000-0000-0000-0000000000a1', now(), now() - interval '1 day')", "22023"),
            ("SELECT fractality.stream_history('00000000-0000-0000-0000-00000000ffff', '-infinity', 'infinity')", "P0002"),
        ] {
            assert_eq!(state_of(sql), state, "{sql}");
        }
        assert_eq!(one::<i64>(counts), before);
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM fractality.experience_events_archive)
                      + (SELECT count(*) FROM fractality.consciousness_archive)
                      + (SELECT count(*) FROM fractality.retention_policies)"
            ),
            0
        );
    }

    /// Rows spread over 30 months the partitions do not cover (every third month back, within the
    /// 120 months maintenance partitions): one call makes the partitions of the 24 nearest the
    /// current month, the next call the other 6; no row is lost or moved twice.
    #[pg_test]
    fn ensure_partitions_takes_at_most_24_months_a_call() {
        serial();
        Spi::run(
            "SET LOCAL fractality.notify = off;
             INSERT INTO fractality.nodes (id, user_id, node_key, label) VALUES
                 ('00000000-0000-0000-0000-0000000000c3', '11111111-1111-1111-1111-111111111111', 'far', 'F');
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             SELECT now() - g * interval '3 months', '00000000-0000-0000-0000-0000000000c3',
                    '11111111-1111-1111-1111-111111111111', g / 100.0
               FROM generate_series(1, 30) g;
             SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
                 'event_id', 'e1' || lpad(to_hex(g), 30, '0'),
                 'timestamp', fractality.epoch_us(now() - g * interval '3 months'),
                 'episode_id', g, 'step_number', 0, 'event_type', 1, 'flags', 0,
                 'state_l1', 0, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0, 'state_l5', 0,
                 'state_l6', 0, 'state_l7', 0, 'state_l8', 0, 'action_l1', 0, 'action_l2', 0,
                 'action_l3', 0, 'action_l4', 0, 'action_l5', 0, 'action_l6', 0, 'action_l7', 0,
                 'action_l8', 0, 'adna_version_hash', 1, 'sequence_number', g))
               FROM generate_series(1, 30) g));",
        )
        .unwrap();
        let in_default = || -> (i64, i64) {
            (
                one("SELECT count(*) FROM fractality.consciousness_streams_default"),
                one("SELECT count(*) FROM fractality.experience_events_default"),
            )
        };
        assert_eq!(in_default(), (30, 30));
        let first: i32 = one("SELECT fractality.ensure_partitions(0)");
        assert!((48..=50).contains(&first), "{first}");
        assert_eq!(in_default(), (6, 6));
        // the 24 nearest went first: what is left is the farthest
        assert!(one::<bool>(
            "SELECT bool_and(time < now() - interval '73 months') FROM fractality.consciousness_streams_default"
        ));
        assert_eq!(one::<i32>("SELECT fractality.ensure_partitions(0)"), 12);
        assert_eq!(in_default(), (0, 0));
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM fractality.consciousness_streams s
                          WHERE s.node_id = '00000000-0000-0000-0000-0000000000c3')
                      + (SELECT count(*) FROM fractality.experience_events e
                          WHERE substr(e.event_id, 1, 1) = '\\xe1'::bytea)"
            ),
            60
        );
    }

    /// History imported after install: events and stream points of past months without a
    /// partition land in the default partitions; ensure_partitions moves them into monthly
    /// partitions (metadata untouched), so that archiving then moves whole partitions. A month
    /// the cold tier already holds keeps its late events in the default partition.
    #[pg_test]
    fn ensure_partitions_moves_history_out_of_default() {
        serial();
        Spi::run("SET LOCAL extra_float_digits = 3").unwrap();
        Spi::run(
            "SET LOCAL fractality.notify = off;
             INSERT INTO fractality.nodes (id, user_id, node_key, label) VALUES
                 ('00000000-0000-0000-0000-0000000000c2', '11111111-1111-1111-1111-111111111111', 'hist', 'H');
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             SELECT now() - g * interval '10 days', '00000000-0000-0000-0000-0000000000c2',
                    '11111111-1111-1111-1111-111111111111', g / 100.0
               FROM generate_series(5, 40) g;
             SELECT fractality.write_events((SELECT jsonb_agg(jsonb_build_object(
                 'event_id', 'e0' || lpad(to_hex(g), 30, '0'),
                 'timestamp', fractality.epoch_us(now() - g * interval '5 days') + 7,
                 'episode_id', g, 'step_number', 0, 'event_type', 1, 'flags', 0,
                 'state_l1', 1.0 / 3, 'state_l2', 0, 'state_l3', 0, 'state_l4', 0, 'state_l5', 0,
                 'state_l6', 0, 'state_l7', 0, 'state_l8', 0, 'action_l1', 0, 'action_l2', 0,
                 'action_l3', 0, 'action_l4', 0, 'action_l5', 0, 'action_l6', 0, 'action_l7', 0,
                 'action_l8', 0, 'reward_goal', g, 'adna_version_hash', 1, 'sequence_number', g))
               FROM generate_series(10, 80) g));
             INSERT INTO fractality.action_metadata (event_timestamp, event_id, intent_type, executor_id)
             SELECT \"timestamp\", event_id, 'recall', 'agent' FROM fractality.experience_events;",
        )
        .unwrap();
        Spi::run(&format!("CREATE TEMP TABLE hist_before AS {IMAGE}")).unwrap();
        let caught: i64 = one("SELECT count(*) FROM fractality.experience_events_default");
        assert!(caught > 0);
        let months: i64 = one(
            "SELECT count(DISTINCT to_char(fractality._us_to_timestamptz(\"timestamp\") AT TIME ZONE 'UTC', 'YYYY_MM'))
               FROM fractality.experience_events_default",
        );
        assert!(one::<i32>("SELECT fractality.ensure_partitions(0)") as i64 >= months);
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM fractality.experience_events_default)
                      + (SELECT count(*) FROM fractality.consciousness_streams_default)"
            ),
            0
        );
        // every event in the partition named after its month, every stream point too
        assert!(one::<bool>(
            "SELECT bool_and(e.tableoid = format('fractality.experience_events_%s',
                        to_char(fractality._us_to_timestamptz(e.\"timestamp\") AT TIME ZONE 'UTC', 'YYYY_MM'))::regclass)
               FROM fractality.experience_events e"
        ));
        assert!(one::<bool>(
            "SELECT bool_and(s.tableoid = format('fractality.consciousness_streams_%s',
                        to_char(s.time AT TIME ZONE 'UTC', 'YYYY_MM'))::regclass
                        AND (SELECT relrowsecurity FROM pg_class WHERE oid = s.tableoid))
               FROM fractality.consciousness_streams s"
        ));
        assert_eq!(one::<i32>("SELECT fractality.ensure_partitions(0)"), 0);
        Spi::run(&format!("CREATE TEMP TABLE hist_after AS {IMAGE}")).unwrap();
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM ((TABLE hist_before EXCEPT ALL TABLE hist_after)
                                      UNION ALL (TABLE hist_after EXCEPT ALL TABLE hist_before)) d"
            ),
            0
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM hist_after"), 71);

        // archiving now moves the wholly old months as they lie (their files go cold untouched)
        Spi::run(
            "CREATE TEMP TABLE old_files AS
             SELECT c.relfilenode FROM fractality._partition_bounds('fractality.experience_events') p
               JOIN pg_class c ON c.oid = p.part
              WHERE p.hi IS NOT NULL AND p.hi::bigint <= fractality.epoch_us(now() - interval '7 days')",
        )
        .unwrap();
        assert!(one::<i64>("SELECT count(*) FROM old_files") >= 2);
        assert_eq!(one::<i64>("SELECT fractality.archive_old_events(7)"), 71);
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM old_files o
                  WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                     WHERE i.inhparent = 'fractality.experience_events_archive'::regclass
                                       AND c.relfilenode = o.relfilenode)"
            ),
            0
        );
        // a late event of an archived month stays in the default partition for the cold tier
        Spi::run(
            "SELECT fractality.write_event('\\xe1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1',
                     fractality.epoch_us(now() - interval '200 days'), 1, 1, 0::smallint, 0::smallint,
                     array_fill(0.25::real, ARRAY[8]), array_fill(0::real, ARRAY[8]), 77, 11)",
        )
        .unwrap();
        assert_eq!(one::<i32>("SELECT fractality.ensure_partitions(0)"), 0);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_events_default"),
            1
        );
        assert_eq!(one::<i64>("SELECT fractality.archive_old_events(7)"), 1);
    }

    #[pg_test]
    fn ensure_partitions_moves_rows_out_of_default() {
        serial();
        // rows of month +5 caught by the default partitions
        Spi::run(
            "SET LOCAL fractality.notify = off;
             INSERT INTO fractality.nodes (id, user_id, node_key, label) VALUES
                 ('00000000-0000-0000-0000-0000000000c1', '11111111-1111-1111-1111-111111111111', 'ens', 'E');
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             VALUES ((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '5 months 3 days') AT TIME ZONE 'UTC', '00000000-0000-0000-0000-0000000000c1',
                     '11111111-1111-1111-1111-111111111111', 0.5);
             SELECT fractality.write_event('\\xcccccccccccccccccccccccccccccccc',
                     fractality.epoch_us((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '5 months 3 days') AT TIME ZONE 'UTC'),
                     1, 1, 0::smallint, 0::smallint,
                     array_fill(0.25::real, ARRAY[8]), array_fill(0::real, ARRAY[8]), 77, 11);",
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.consciousness_streams_default"),
            1
        );
        let expected: i64 = one(
            "SELECT count(*) FROM (VALUES ('consciousness_streams'), ('experience_events')) t(p),
                    (SELECT g FROM generate_series(0, 1) g UNION SELECT 5) m
              WHERE NOT EXISTS (SELECT 1 FROM pg_class c
                                 WHERE c.relname = t.p || '_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC')
                                                                        + make_interval(months => m.g), 'YYYY_MM'))",
        );
        assert_eq!(
            one::<i32>("SELECT fractality.ensure_partitions(1)"),
            expected as i32
        );
        assert_eq!(one::<i32>("SELECT fractality.ensure_partitions(1)"), 0);
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM fractality.consciousness_streams_default)
                      + (SELECT count(*) FROM fractality.experience_events_default)"
            ),
            0
        );
        let month = "to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '5 months', 'YYYY_MM')";
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM fractality.consciousness_streams s
                  WHERE s.tableoid = format('fractality.consciousness_streams_%s', {month})::regclass"
            )),
            1
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM fractality.experience_events e
                  WHERE e.tableoid = format('fractality.experience_events_%s', {month})::regclass"
            )),
            1
        );
        // the new stream partition has row-level security like the others
        assert!(one::<bool>(&format!(
            "SELECT relrowsecurity FROM pg_class
              WHERE oid = format('fractality.consciousness_streams_%s', {month})::regclass"
        )));
        // months 2 and 3 ahead: one partition made for each of them a table lacks, and only once
        let missing: i64 = one(
            "SELECT count(*) FROM (VALUES ('consciousness_streams'), ('experience_events')) t(p),
                    generate_series(0, 3) m(g)
              WHERE NOT EXISTS (SELECT 1 FROM pg_class c
                                 WHERE c.relname = t.p || '_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC')
                                                                        + make_interval(months => m.g), 'YYYY_MM'))",
        );
        assert!(
            missing <= 4,
            "{missing} partitions missing beside months 0 and 1"
        );
        assert_eq!(
            one::<i32>("SELECT fractality.ensure_partitions(3)"),
            missing as i32
        );
        assert_eq!(one::<i32>("SELECT fractality.ensure_partitions(3)"), 0);
        assert!(one::<bool>(
            "SELECT bool_and(EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = 'experience_events_'
                     || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => g), 'YYYY_MM')))
               FROM generate_series(0, 3) g"
        ));
    }

    #[pg_test]
    fn retention_policies_and_run_maintenance() {
        serial();
        seed_events();
        seed_stream_points();
        Spi::run(
            "SELECT fractality.add_retention_policy('fractality.experience_events', '10 days', 'archive');
             SELECT fractality.add_retention_policy('fractality.experience_events', '20 days', 'drop');
             SELECT fractality.add_retention_policy('fractality.consciousness_streams', '30 days', 'archive');",
        )
        .unwrap();
        // the second call replaced the first
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.retention_policies"),
            2
        );
        let dropped: i64 = one("SELECT count(*) FROM fractality.experience_events
              WHERE \"timestamp\" < fractality.epoch_us(now() - interval '20 days')");
        let packed: i64 = one(
            "SELECT count(*) FROM fractality.consciousness_streams WHERE time < now() - interval '30 days'",
        );
        let events: i64 = one("SELECT count(*) FROM fractality.experience_events");
        let report: pgrx::JsonB = one("SELECT fractality.run_maintenance()");
        let r = &report.0;
        assert_eq!(r["skipped"], false);
        let retention = r["retention"].as_array().unwrap();
        assert_eq!(retention.len(), 2);
        assert_eq!(retention[0]["relation"], "fractality.consciousness_streams");
        assert_eq!(retention[0]["rows"], packed);
        assert_eq!(retention[1]["relation"], "fractality.experience_events");
        assert_eq!(retention[1]["action"], "drop");
        assert_eq!(retention[1]["rows"], dropped);
        assert!(r["decay_materialized"].as_i64().is_some());
        assert_eq!(
            one::<i64>("SELECT count(*) FROM fractality.experience_events"),
            events - dropped
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM fractality.action_metadata
                  WHERE event_timestamp < fractality.epoch_us(now() - interval '20 days')"
            ),
            0
        );
        assert_eq!(
            one::<i64>(
                "SELECT last_result FROM fractality.retention_policies
                  WHERE relation = 'fractality.consciousness_streams'::regclass AND last_run IS NOT NULL"
            ),
            packed
        );
        // idempotent
        let again: pgrx::JsonB = one("SELECT fractality.run_maintenance()");
        assert_eq!(again.0["partitions_created"], 0);
        assert!(again.0["retention"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["rows"] == 0));
        assert!(one::<bool>(
            "SELECT fractality.remove_retention_policy('fractality.experience_events')"
        ));
        assert!(!one::<bool>(
            "SELECT fractality.remove_retention_policy('fractality.experience_events')"
        ));
    }
}
