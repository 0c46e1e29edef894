//! Consciousness decay inside the server: the curve, the settings, lazy reads, the explicit tick,
//! materialisation, pulses, and the views reading decayed energy.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use approx::assert_relative_eq;
    use pgrx::prelude::*;

    fn f(sql: &str) -> f64 {
        Spi::get_one::<f64>(sql)
            .expect("query runs")
            .expect("not null")
    }

    fn i(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql)
            .expect("query runs")
            .expect("not null")
    }

    /// A node of tenant ...d1 with `atp` as of `ago` before now; returns its id as text.
    fn node(key: &str, atp: f64, ago: &str) -> String {
        Spi::get_one::<String>(&format!(
            "INSERT INTO fractality.nodes (user_id, node_key, atp, atp_at)
             VALUES ('00000000-0000-0000-0000-0000000000d1', '{key}', {atp}, now() - interval '{ago}')
             RETURNING id::text"
        ))
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn decay_atp_follows_the_curve_and_the_floor() {
        assert_relative_eq!(
            f("SELECT fractality.decay_atp(0.8, '1 hour', 0.95, '1 hour', 0.1)"),
            0.76
        );
        assert_relative_eq!(
            f("SELECT fractality.decay_atp(0.8, '90 minutes', 0.5, '30 minutes', 0.0)"),
            0.1
        );
        assert_eq!(
            f("SELECT fractality.decay_atp(0.8, '1000 hours', 0.5, '1 hour', 0.1)"),
            0.1
        );
        // already below the floor: stays
        assert_eq!(
            f("SELECT fractality.decay_atp(0.05, '10 hours', 0.5, '1 hour', 0.1)"),
            0.05
        );
        // a day counts 24 hours, as date_part('epoch', ...) counts it
        assert_relative_eq!(
            f("SELECT fractality.decay_atp(1, '1 day', 0.5, '12 hours', 0)"),
            0.25
        );
        let attrs = Spi::get_one::<String>(
            "SELECT provolatile::text || proparallel::text || proisstrict::text
               FROM pg_proc WHERE oid = 'fractality.decay_atp'::regproc",
        )
        .unwrap()
        .unwrap();
        assert_eq!(attrs, "istrue");
    }

    #[pg_test(error = "invalid value for rate: 1.5")]
    fn decay_atp_refuses_a_rate_above_one() {
        f("SELECT fractality.decay_atp(0.5, '1 hour', 1.5, '1 hour', 0.1)");
    }

    #[pg_test(error = "invalid value for elapsed: -01:00:00")]
    fn decay_atp_refuses_negative_elapsed_time() {
        f("SELECT fractality.decay_atp(0.5, '-1 hour', 0.9, '1 hour', 0.1)");
    }

    #[pg_test(error = "invalid value for atp: NaN")]
    fn decay_atp_refuses_nan() {
        f("SELECT fractality.decay_atp('NaN', '1 hour', 0.9, '1 hour', 0.1)");
    }

    #[pg_test(error = "invalid value for tick: 00:00:00")]
    fn decay_atp_refuses_a_zero_tick() {
        f("SELECT fractality.decay_atp(0.5, '1 hour', 0.9, '0', 0.1)");
    }

    #[pg_test]
    fn decay_settings_have_defaults_and_drive_current_atp() {
        let shown = Spi::get_one::<String>(
            "SELECT current_setting('fractality.decay_rate') || ' ' ||
                    current_setting('fractality.decay_tick') || ' ' ||
                    current_setting('fractality.atp_floor')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(shown, "0.95 1 hour 0.1");
        // two hours ago at 0.8: two ticks
        assert_relative_eq!(
            f("SELECT fractality.current_atp(0.8, now() - interval '2 hours')"),
            0.8 * 0.95 * 0.95,
            max_relative = 1e-12
        );
        Spi::run(
            "SET LOCAL fractality.decay_tick = '30 min'; SET LOCAL fractality.decay_rate = 0.5",
        )
        .unwrap();
        assert_relative_eq!(
            f("SELECT fractality.current_atp(0.8, now() - interval '1 hour')"),
            0.2,
            max_relative = 1e-12
        );
        Spi::run("SET LOCAL fractality.atp_floor = 0.3").unwrap();
        assert_eq!(
            f("SELECT fractality.current_atp(0.8, now() - interval '1 hour')"),
            0.3
        );
        // an explicit instant; a future atp_at reads as stored
        assert_relative_eq!(
            f("SELECT fractality.current_atp(0.8, '2026-01-01 00:00+00', '2026-01-01 00:30+00')"),
            0.4
        );
        assert_eq!(
            f("SELECT fractality.current_atp(0.8, now() + interval '1 hour')"),
            0.8
        );
    }

    /// The tick takes an interval as PostgreSQL prints it in every IntervalStyle: `PT2H`, `@ 2
    /// hours`, `1 2:00:00` and `1 day -01:00:00` were refused when set in a session (and a value
    /// set before the library loaded fell back to 1 hour with a warning).
    #[pg_test]
    fn the_tick_takes_an_interval_as_every_style_prints_it() {
        for style in ["postgres", "postgres_verbose", "sql_standard", "iso_8601"] {
            for iv in [
                "26 hours",
                "1 day -1 hour",
                "90 minutes",
                "0.5 seconds",
                "2 weeks 3 days 00:00:01.25",
            ] {
                Spi::run_with_args(
                    "SELECT set_config('IntervalStyle', $1, true)",
                    &[style.into()],
                )
                .unwrap();
                let text =
                    Spi::get_one_with_args::<String>("SELECT $1::interval::text", &[iv.into()])
                        .unwrap()
                        .unwrap();
                let us = Spi::get_one_with_args::<i64>(
                    "SELECT (extract(epoch FROM $1::interval) * 1000000)::bigint",
                    &[iv.into()],
                )
                .unwrap()
                .unwrap();
                Spi::run_with_args(
                    "SELECT set_config('fractality.decay_tick', $1, true)",
                    &[text.as_str().into()],
                )
                .unwrap_or_else(|e| panic!("{style}: {text}: {e}"));
                assert_eq!(crate::gucs::decay_tick_us(), us, "{style}: {text}");
            }
        }
        Spi::run("SET LOCAL IntervalStyle = 'postgres'").unwrap();
    }

    /// Messages print an interval as PostgreSQL's default style does, whatever the session's.
    #[pg_test]
    fn messages_print_intervals_as_postgresql_does() {
        Spi::run("SET IntervalStyle = 'iso_8601'").unwrap();
        for text in [
            "-1 day",
            "1 day",
            "-1 mon",
            "2 mons",
            "-1 year",
            "1 year 1 mon 1 day 00:00:01.5",
            "-01:00:00",
            "0",
            "1 day -01:00:00",
            "-3 years -2 mons -1 days -00:00:00.000001",
            "26:00:00",
            "123456789 days",
            "-1 days 2 hours",
            "-11 mons 1 day",
            "1 year -1 mon 3 days",
            "-1 day -02:00:00",
        ] {
            let iv = Spi::get_one_with_args::<pgrx::datum::Interval>(
                "SELECT $1::interval",
                &[text.into()],
            )
            .unwrap()
            .unwrap();
            let postgres = Spi::get_one_with_args::<String>(
                "SELECT set_config('IntervalStyle', 'postgres', true) || $1::interval::text",
                &[text.into()],
            )
            .unwrap()
            .unwrap()
            .trim_start_matches("postgres")
            .to_string();
            assert_eq!(crate::errors::pg_interval(&iv), postgres, "{text}");
        }
    }

    #[pg_test(error = "invalid value for parameter \"fractality.decay_rate\": 0")]
    fn decay_rate_setting_refuses_zero() {
        Spi::run("SET fractality.decay_rate = 0").unwrap();
    }

    #[pg_test(error = "invalid value for parameter \"fractality.decay_tick\": \"-1 hour\"")]
    fn decay_tick_setting_refuses_a_negative_tick() {
        Spi::run("SET fractality.decay_tick = '-1 hour'").unwrap();
    }

    #[pg_test(
        error = "1.5 is outside the valid range for parameter \"fractality.atp_floor\" (0 .. 1)"
    )]
    fn decay_floor_setting_refuses_more_than_one() {
        Spi::run("SET fractality.atp_floor = 1.5").unwrap();
    }

    #[pg_test]
    fn decay_apply_reports_exact_old_values_and_touches_only_changed_rows() {
        let high = node("high", 0.9, "0");
        let clamp = node("clamp", 0.105, "0");
        let low = node("low", 0.05, "0");
        let at_floor = node("floor", 0.1, "0");
        let xmin_before = Spi::get_one::<String>(&format!(
            "SELECT string_agg(xmin::text, ',' ORDER BY node_key) FROM fractality.nodes
              WHERE id IN ('{low}', '{at_floor}')"
        ))
        .unwrap()
        .unwrap();
        Spi::connect(|c| {
            let rows = c
                .select(
                    "SELECT node_id::text, old_atp, new_atp
                       FROM fractality.apply_consciousness_decay() ORDER BY old_atp DESC",
                    None,
                    &[],
                )
                .unwrap();
            let got: Vec<(String, f64, f64)> = rows
                .map(|r| {
                    (
                        r.get::<String>(1).unwrap().unwrap(),
                        r.get::<f64>(2).unwrap().unwrap(),
                        r.get::<f64>(3).unwrap().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].0, high);
            assert_eq!(got[0].1, 0.9);
            assert_relative_eq!(got[0].2, 0.855);
            // clamped at the floor: the old value is the real one, not new / rate
            assert_eq!(got[1].0, clamp);
            assert_eq!(got[1].1, 0.105);
            assert_eq!(got[1].2, 0.1);
        });
        let xmin_after = Spi::get_one::<String>(&format!(
            "SELECT string_agg(xmin::text, ',' ORDER BY node_key) FROM fractality.nodes
              WHERE id IN ('{low}', '{at_floor}')"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            xmin_before, xmin_after,
            "rows that do not change are not written"
        );
        // one tenant only
        node("other", 0.9, "0");
        Spi::run(
            "UPDATE fractality.nodes SET user_id = '00000000-0000-0000-0000-0000000000d2'
              WHERE node_key = 'other'",
        )
        .unwrap();
        assert_eq!(
            i(
                "SELECT count(*) FROM fractality.apply_consciousness_decay(0.5, 0.1,
                   '00000000-0000-0000-0000-0000000000d2')"
            ),
            1
        );
        assert_relative_eq!(
            f("SELECT atp FROM fractality.nodes WHERE node_key = 'other'"),
            0.45,
            max_relative = 1e-12
        );
        // a rate of 1 changes nothing, so it writes nothing
        assert_eq!(
            i("SELECT count(*) FROM fractality.apply_consciousness_decay(1.0)"),
            0
        );
    }

    #[pg_test]
    fn one_tick_is_clamped_and_reports_the_value_it_decayed_from() {
        // the per-row step is greatest(atp * rate, floor), and the old value is the exact one
        let high = node("tick-high", 0.9, "0");
        let low = node("tick-low", 0.15, "0");
        assert_eq!(
            i(&format!(
                "SELECT count(*) FROM fractality.apply_consciousness_decay(0.5, 0.1)
                  WHERE (node_id = '{high}' AND old_atp = 0.9 AND abs(new_atp - 0.45) < 1e-12)
                     OR (node_id = '{low}' AND old_atp = 0.15 AND new_atp = 0.1)"
            )),
            2
        );
        // the internal step of 0.4.0 is gone
        assert_eq!(
            i("SELECT count(*) FROM pg_proc WHERE proname = 'decay_tick'
                 AND pronamespace = 'fractality'::regnamespace"),
            0
        );
        // two ticks in one transaction: each reports the value it decayed from
        assert_eq!(
            i(
                "SELECT count(*) FROM fractality.apply_consciousness_decay(0.5, 0.1)
                WHERE abs(old_atp - 0.45) < 1e-12 AND abs(new_atp - 0.225) < 1e-12"
            ),
            1
        );
    }

    #[pg_test]
    fn decay_energy_writes_leave_updated_at_and_content_writes_set_it() {
        // no BEFORE UPDATE row trigger on nodes: it would lock every row an energy write touches
        assert_eq!(
            i("SELECT count(*) FROM pg_trigger
                WHERE tgrelid = 'fractality.nodes'::regclass AND NOT tgisinternal
                  AND tgtype & 2 = 2 AND tgtype & 16 = 16"),
            0
        );
        let id = node("touched", 0.9, "0");
        Spi::run(&format!(
            "UPDATE fractality.nodes SET updated_at = '2000-01-01' WHERE id = '{id}'"
        ))
        .unwrap();
        Spi::run("SELECT count(*) FROM fractality.apply_consciousness_decay(0.5)").unwrap();
        Spi::run(&format!("SELECT fractality.pulse('{id}', 0.1)")).unwrap();
        assert_eq!(
            i(&format!(
                "SELECT count(*) FROM fractality.nodes
                  WHERE id = '{id}' AND updated_at = '2000-01-01'"
            )),
            1
        );
        Spi::run(
            "SELECT fractality.upsert_node_for('00000000-0000-0000-0000-0000000000d1', 'touched',
                                               'Touched again')",
        )
        .unwrap();
        assert_eq!(
            i(&format!(
                "SELECT count(*) FROM fractality.nodes
                  WHERE id = '{id}' AND updated_at = now() AND label = 'Touched again'"
            )),
            1
        );
    }

    #[pg_test(error = "invalid value for decay_rate: 0")]
    fn decay_apply_refuses_a_zero_rate() {
        i("SELECT count(*) FROM fractality.apply_consciousness_decay(0)");
    }

    #[pg_test]
    fn decay_materialize_writes_back_what_readers_already_see() {
        for k in 0..50 {
            node(
                &format!("m{k}"),
                0.2 + 0.015 * k as f64,
                &format!("{k} hours"),
            );
        }
        node("fresh-low", 0.05, "5 hours"); // below the floor: nothing to write
        let before = f("SELECT sum(atp) FROM fractality.node_energy");
        let written = i("SELECT fractality.materialize_decay(7)");
        // k = 0 was written now: its value is current already
        assert_eq!(written, 49);
        let after = f("SELECT sum(atp) FROM fractality.node_energy");
        assert_relative_eq!(before, after, max_relative = 1e-12);
        let stored = f("SELECT sum(stored_atp) FROM fractality.node_energy");
        assert_relative_eq!(stored, after, max_relative = 1e-12);
        // m0 was written now already; the other 49 are now as of now
        assert_eq!(
            i("SELECT count(*) FROM fractality.nodes WHERE atp_at = now() AND node_key LIKE 'm%'"),
            50
        );
        // nothing left to write
        assert_eq!(i("SELECT fractality.materialize_decay()"), 0);
    }

    #[pg_test(error = "invalid value for batch_size: 0")]
    fn decay_materialize_refuses_an_empty_batch() {
        i("SELECT fractality.materialize_decay(0)");
    }

    #[pg_test]
    fn decay_pulse_adds_energy_caps_at_one_and_records_a_point() {
        let id = node("pulsed", 0.5, "2 hours");
        let got = f(&format!("SELECT fractality.pulse('{id}', 0.25)"));
        assert_relative_eq!(got, 0.5 * 0.95 * 0.95 + 0.25, max_relative = 1e-12);
        assert_eq!(
            i(&format!(
                "SELECT count(*) FROM fractality.nodes WHERE id = '{id}' AND atp_at = now()"
            )),
            1
        );
        assert_eq!(f(&format!("SELECT fractality.pulse('{id}', 5)")), 1.0);
        assert_eq!(f(&format!("SELECT fractality.pulse('{id}', -7)")), 0.0);
        let points = Spi::get_one::<String>(&format!(
            "SELECT string_agg(atp_level::text, ',' ORDER BY atp_level DESC)
               FROM fractality.consciousness_streams WHERE node_id = '{id}'"
        ))
        .unwrap()
        .unwrap();
        assert!(points.starts_with("1,0.7"), "{points}");
        assert!(points.ends_with(",0"), "{points}");
    }

    #[pg_test(error = "node 00000000-0000-0000-0000-000000000000 does not exist or is not visible")]
    fn decay_pulse_refuses_a_missing_node() {
        f("SELECT fractality.pulse('00000000-0000-0000-0000-000000000000', 0.1)");
    }

    #[pg_test(error = "invalid value for energy: Infinity")]
    fn decay_pulse_refuses_infinite_energy() {
        let id = node("inf", 0.5, "0");
        f(&format!("SELECT fractality.pulse('{id}', 'Infinity')"));
    }

    #[pg_test]
    fn decay_active_consciousness_shows_decayed_energy() {
        node("bright", 0.9, "0");
        node("faded", 0.9, "20 hours"); // 0.9 * 0.95^20 = 0.32
        let keys = Spi::get_one::<String>(
            "SELECT string_agg(node_key, ',' ORDER BY node_key) FROM fractality.active_consciousness",
        )
        .unwrap()
        .unwrap();
        assert_eq!(keys, "bright");
        assert_relative_eq!(
            f("SELECT atp FROM fractality.node_energy WHERE node_key = 'faded'"),
            0.9 * 0.95f64.powi(20),
            max_relative = 1e-9
        );
    }
}
