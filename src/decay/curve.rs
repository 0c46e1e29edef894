//! The decay curve as plain Rust, tested without a server: `max(floor, atp * rate ^ (elapsed /
//! tick))` ([`decay`]), the checks of its arguments, seconds of an interval as PostgreSQL counts
//! them, and the setting `fractality.decay_tick` parsed ([`parse_tick`]).

use crate::errors::{finite, in_range, FractalityError};

const USECS_PER_SEC: f64 = 1_000_000.0;
const SECS_PER_DAY: f64 = 86_400.0;

/// Seconds in an interval, as PostgreSQL's `date_part('epoch', interval)` counts them: a year of
/// months is 365.25 days, a remaining month 30 days, a day 24 hours.
pub fn interval_secs(months: i32, days: i32, micros: i64) -> f64 {
    let years = f64::from(months / 12);
    let rest = f64::from(months % 12);
    years * 365.25 * SECS_PER_DAY
        + rest * 30.0 * SECS_PER_DAY
        + f64::from(days) * SECS_PER_DAY
        + micros as f64 / USECS_PER_SEC
}

/// `max(floor, atp * rate ^ (elapsed / tick))`, and `atp` itself where it is already below the
/// floor. The arguments are assumed valid (see [`check_curve`]); `elapsed` and `tick` share a unit.
#[inline]
pub fn decay(atp: f64, elapsed: f64, rate: f64, tick: f64, floor: f64) -> f64 {
    if atp <= floor || elapsed <= 0.0 || rate >= 1.0 {
        return atp;
    }
    (atp * rate.powf(elapsed / tick)).max(floor)
}

/// One tick of the explicit decay: `energy` keeps `rate` of itself, never below `floor`. In f64,
/// a product too small for a double is 0 (SQL's `*` raises 22003 "underflow" there, which a node
/// of energy 5e-324 made every tick raise).
pub fn tick(energy: f64, rate: f64, floor: f64) -> f64 {
    (energy * rate).max(floor)
}

/// A rate in (0, 1].
pub fn check_rate(name: &'static str, rate: f64) -> Result<f64, FractalityError> {
    let rate = finite(name, rate)?;
    if rate > 0.0 && rate <= 1.0 {
        Ok(rate)
    } else {
        Err(FractalityError::invalid(
            name,
            rate,
            "A decay rate is the fraction kept per tick: a number in (0, 1].",
        ))
    }
}

/// An energy level in [0, 1] (ATP, or a floor).
pub fn check_level(name: &'static str, value: f64) -> Result<f64, FractalityError> {
    const HINT: &str = "Energy levels (ATP and its floor) lie in [0, 1].";
    in_range(name, value, 0.0, 1.0, HINT)
}

/// Validates the arguments of a decay curve; `elapsed` and `tick` in seconds, `shown` renders
/// them for the message.
pub fn check_curve(
    atp: f64,
    elapsed: f64,
    rate: f64,
    tick: f64,
    floor: f64,
    shown: impl Fn(&'static str) -> String,
) -> Result<(), FractalityError> {
    check_level("atp", atp)?;
    if elapsed < 0.0 {
        return Err(FractalityError::invalid(
            "elapsed",
            shown("elapsed"),
            "Elapsed time cannot be negative.",
        ));
    }
    check_rate("rate", rate)?;
    if tick <= 0.0 {
        return Err(FractalityError::invalid(
            "tick",
            shown("tick"),
            "The tick (the time one decay step takes) must be positive.",
        ));
    }
    check_level("floor", floor)?;
    Ok(())
}

/// Parses the setting `fractality.decay_tick` into microseconds: a positive duration written as
/// number-unit pairs (`1 hour`, `90 minutes`, `1h 30min`, `2.5 days`, `1 week`), `[+-]HH:MM[:SS]`,
/// pairs or a number of days then a clock (`1 day 02:00:00`, `1 day -01:00:00`, `1 2:00:00`), or
/// a bare number of seconds; also as PostgreSQL prints an interval in every `IntervalStyle`
/// (`@ 1 day 2 hours`, `P1DT2H`). Units: us, ms, s, min, h, d, w and their long forms. Months and
/// years are refused: they have no fixed length.
pub fn parse_tick(text: &str) -> Result<i64, String> {
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err("the tick is empty".into());
    }
    let mut seen = 0u8;
    let micros: i128 = if s.starts_with('p') {
        iso_micros(text, &s, &mut seen)?
    } else {
        // postgres_verbose: "@ 1 day 2 hours", "@ 2 hours ago"
        let s = s.strip_prefix('@').unwrap_or(&s).trim();
        // sql_standard prints years-months first where the signs are mixed: "+0-0 +1 -1:00:00"
        let mut kept = Vec::new();
        for token in s.split_whitespace() {
            match years_months(token) {
                Some(false) => {}
                Some(true) => {
                    return Err(format!(
                        "\"{text}\": months and years have no fixed length; use days"
                    ))
                }
                None => kept.push(token),
            }
        }
        let joined = kept.join(" ");
        let s = joined.as_str();
        let (s, sign) = match s.strip_suffix("ago") {
            Some(head) if head.ends_with(char::is_whitespace) => (head.trim(), -1),
            _ => (s, 1),
        };
        // a clock comes last: "1 day 02:00:00"
        let (pairs, clock) = match s.rsplit_once(char::is_whitespace) {
            Some((head, last)) if last.contains(':') => (head, last),
            _ if s.contains(':') => ("", s),
            _ => (s, ""),
        };
        let alone = clock.is_empty();
        let clock = clock_micros(text, clock, &mut seen)?;
        sign * (clock + pair_micros(text, pairs, alone, &mut seen)?)
    };
    if micros <= 0 {
        return Err(format!("\"{text}\" is not a positive duration"));
    }
    if micros > 100_000_000_000_000_000 {
        return Err(format!(
            "\"{text}\" is out of range (1 microsecond to about 3000 years)"
        ));
    }
    Ok(micros as i64)
}

/// The fields a duration sets, as PostgreSQL tracks them: each once.
const HOUR: u8 = 1;
const MINUTE: u8 = 2;
const SECOND: u8 = 4;
const MILLISECOND: u8 = 8;
const MICROSECOND: u8 = 16;
const DAY: u8 = 32;
const WEEK: u8 = 64;

/// Marks `fields` set, or the error of a field given twice.
fn set_fields(text: &str, seen: &mut u8, fields: u8) -> Result<(), String> {
    if *seen & fields != 0 {
        return Err(format!("\"{text}\": a unit given twice"));
    }
    *seen |= fields;
    Ok(())
}

/// The microseconds of `number` (a decimal, signed or not) of a unit of `scale` microseconds, as
/// PostgreSQL adds a field: its integer part exactly, its fraction rounded to the microsecond
/// (a half down); None for no number.
fn field_micros(number: &str, scale: i128) -> Option<i128> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let numeric = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !numeric(int) || !numeric(frac) {
        return None;
    }
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let part: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    let x = part * scale as f64;
    let mut us = x.trunc() as i128;
    if x - x.trunc() > 0.5 {
        us += 1;
    }
    let total = whole.checked_mul(scale)?.checked_add(us)?;
    Some(if negative { -total } else { total })
}

/// Whether a `[+-]Y-M` token (sql_standard's years and months) holds any; None for another
/// token. (Only whether: no arithmetic on digits of any length.)
fn years_months(token: &str) -> Option<bool> {
    let unsigned = token.trim_start_matches(['+', '-']);
    let (y, m) = unsigned.split_once('-')?;
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    let zero = |p: &str| p.chars().all(|c| c == '0');
    (token.len() - unsigned.len() <= 1 && digits(y) && digits(m)).then(|| !(zero(y) && zero(m)))
}

/// The microseconds of an ISO 8601 duration (`s`, lower case: `p1dt2h`, `pt-1h30m`, `p1w`), a
/// form of the tick `text`. Years and months (before the `t`) are refused.
fn iso_micros(text: &str, s: &str, seen: &mut u8) -> Result<i128, String> {
    let bad = || format!("\"{text}\" is not an ISO 8601 duration such as 'PT1H'");
    let mut total = 0i128;
    let mut time = false;
    let mut rest = &s[1..];
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('t') {
            if time {
                return Err(bad());
            }
            time = true;
            rest = r;
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .ok_or_else(bad)?;
        let (scale, fields) = match (rest[end..].chars().next(), time) {
            (Some('w'), false) => (7 * 86_400_000_000, WEEK),
            (Some('d'), false) => (86_400_000_000, DAY),
            (Some('y' | 'm'), false) => {
                return Err(format!(
                    "\"{text}\": months and years have no fixed length; use days"
                ))
            }
            (Some('h'), true) => (3_600_000_000, HOUR),
            (Some('m'), true) => (60_000_000, MINUTE),
            (Some('s'), true) => (1_000_000, SECOND),
            _ => return Err(bad()),
        };
        set_fields(text, seen, fields)?;
        total += field_micros(&rest[..end], scale).ok_or_else(bad)?;
        rest = &rest[end + 1..];
    }
    Ok(total)
}

/// The microseconds of `[+-]HH:MM[:SS[.f]]` or `MM:SS.f` (0 for none), a part of the tick
/// `text`, as PostgreSQL reads a time: a sign before the hours applies to the whole clock
/// (`1 day -01:00:00`), minutes and seconds below 60 (a second may be 60), the fraction of the
/// seconds rounded to the microsecond.
fn clock_micros(text: &str, clock: &str, seen: &mut u8) -> Result<i128, String> {
    if clock.is_empty() {
        return Ok(0);
    }
    let (sign, clock) = match clock.as_bytes()[0] {
        b'-' => (-1, &clock[1..]),
        b'+' => (1, &clock[1..]),
        _ => (1, clock),
    };
    let bad = || format!("\"{text}\" is not HH:MM[:SS]");
    let out_of_range = || format!("\"{text}\": a field of the clock is out of range");
    let parts: Vec<&str> = clock.split(':').collect();
    let whole = |p: &str| -> Result<i128, String> {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<i128>().map_err(|_| bad())
    };
    let seconds = |p: &str| -> Result<i128, String> {
        let (int, frac) = p.split_once('.').unwrap_or((p, ""));
        let s = whole(int)?;
        if s > 60 || (s == 60 && !frac.is_empty() && frac.chars().any(|c| c != '0')) {
            return Err(out_of_range());
        }
        let f: f64 = if frac.is_empty() {
            0.0
        } else if frac.chars().all(|c| c.is_ascii_digit()) {
            format!("0.{frac}").parse().map_err(|_| bad())?
        } else {
            return Err(bad());
        };
        Ok(s * 1_000_000 + (f * 1e6).round_ties_even() as i128)
    };
    let minutes = |p: &str| -> Result<i128, String> {
        let m = whole(p)?;
        if m >= 60 {
            return Err(out_of_range());
        }
        Ok(m * 60_000_000)
    };
    let micros = match parts.as_slice() {
        [m, s] if s.contains('.') => minutes(m)? + seconds(s)?,
        [h, m] => whole(h)?.checked_mul(3_600_000_000).ok_or_else(bad)? + minutes(m)?,
        [h, m, s] => {
            whole(h)?.checked_mul(3_600_000_000).ok_or_else(bad)? + minutes(m)? + seconds(s)?
        }
        _ => return Err(bad()),
    };
    set_fields(
        text,
        seen,
        HOUR | MINUTE | SECOND | MILLISECOND | MICROSECOND,
    )?;
    Ok(sign * micros)
}

/// The microseconds of number-unit pairs (0 for none), a part of the tick `text`; `alone`:
/// nothing follows them, so a bare number is seconds (before a clock it is days, as PostgreSQL
/// reads it).
fn pair_micros(text: &str, pairs: &str, alone: bool, seen: &mut u8) -> Result<i128, String> {
    let mut total = 0i128;
    let mut rest = pairs;
    let mut n = 0;
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(rest.len());
        let number = &rest[..end];
        rest = rest[end..].trim_start();
        let uend = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..uend];
        rest = &rest[uend..];
        let fraction = number
            .split_once('.')
            .is_some_and(|(_, f)| f.chars().any(|c| c != '0'));
        let (scale, fields): (i128, u8) = match unit {
            "" if alone && n == 0 && rest.trim().is_empty() => (1_000_000, SECOND), // seconds
            // before a clock a bare number is days, as PostgreSQL reads (and sql_standard
            // prints) "1 2:00:00"
            "" if !alone && n == 0 && rest.trim().is_empty() => (86_400_000_000, DAY),
            "us" | "usec" | "usecs" | "microsecond" | "microseconds" => (1, MICROSECOND),
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => (1_000, MILLISECOND),
            // a second's fraction fills the milliseconds and microseconds too
            "s" | "sec" | "secs" | "second" | "seconds" => (
                1_000_000,
                if fraction {
                    SECOND | MILLISECOND | MICROSECOND
                } else {
                    SECOND
                },
            ),
            "m" | "min" | "mins" | "minute" | "minutes" => (60_000_000, MINUTE),
            "h" | "hr" | "hrs" | "hour" | "hours" => (3_600_000_000, HOUR),
            "d" | "day" | "days" => (86_400_000_000, DAY),
            "w" | "week" | "weeks" => (7 * 86_400_000_000, WEEK),
            "mon" | "mons" | "month" | "months" | "y" | "year" | "years" => {
                return Err(format!(
                    "\"{text}\": months and years have no fixed length; use days"
                ))
            }
            other => return Err(format!("\"{text}\": unknown unit \"{other}\"")),
        };
        set_fields(text, seen, fields)?;
        total += field_micros(number, scale)
            .ok_or_else(|| format!("\"{text}\" is not a duration such as '1 hour'"))?;
        n += 1;
    }
    Ok(total)
}

/// The batches of `materialize_decay`: ranges [from, to) of a table's `blocks` blocks, each of
/// about `batch` rows at `per_block` rows a block as the statistics last saw them (no statistics,
/// 0: the tightest packing an 8 kB page allows a node, 60 rows), at least one block each.
pub fn block_ranges(blocks: i64, per_block: f64, batch: i64) -> Vec<(i64, i64)> {
    let step = if per_block >= 1.0 {
        ((batch as f64 / per_block).floor() as i64).max(1)
    } else {
        (batch / 60).max(1)
    };
    (0..blocks.max(0))
        .step_by(step as usize)
        .map(|from| (from, (from + step).min(blocks)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::{Rng, SeedableRng};

    const HOUR: f64 = 3600.0;

    #[test]
    fn one_tick_keeps_the_rate() {
        assert_relative_eq!(decay(0.8, HOUR, 0.95, HOUR, 0.1), 0.76);
        assert_relative_eq!(decay(0.8, 2.0 * HOUR, 0.5, HOUR, 0.1), 0.2);
        assert_relative_eq!(decay(0.8, 0.5 * HOUR, 0.25, HOUR, 0.0), 0.4);
    }

    #[test]
    fn the_floor_clamps_and_values_below_it_stay() {
        assert_eq!(decay(0.8, 100.0 * HOUR, 0.5, HOUR, 0.1), 0.1);
        assert_eq!(decay(0.05, 10.0 * HOUR, 0.5, HOUR, 0.1), 0.05);
        assert_eq!(decay(0.1, 10.0 * HOUR, 0.5, HOUR, 0.1), 0.1);
        assert_eq!(decay(0.7, 0.0, 0.5, HOUR, 0.1), 0.7);
        assert_eq!(decay(0.7, 5.0 * HOUR, 1.0, HOUR, 0.1), 0.7);
    }

    #[test]
    fn decay_composes_over_many_random_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..100_000 {
            let atp: f64 = rng.random_range(0.0..=1.0);
            let rate: f64 = rng.random_range(0.01..=1.0);
            let floor: f64 = rng.random_range(0.0..=1.0);
            let tick: f64 = rng.random_range(1.0..100_000.0);
            let t1: f64 = rng.random_range(0.0..1_000_000.0);
            let t2: f64 = rng.random_range(0.0..1_000_000.0);
            let direct = decay(atp, t1 + t2, rate, tick, floor);
            let stepwise = decay(decay(atp, t1, rate, tick, floor), t2, rate, tick, floor);
            assert_relative_eq!(direct, stepwise, max_relative = 1e-9, epsilon = 1e-300);
            assert!(direct >= floor.min(atp) && direct <= atp);
        }
    }

    #[test]
    fn intervals_count_seconds_like_date_part_epoch() {
        assert_relative_eq!(
            interval_secs(0, 0, 3_600_000_000),
            3600.0,
            max_relative = 1e-12
        );
        assert_relative_eq!(interval_secs(0, 1, 0), 86_400.0, max_relative = 1e-12);
        assert_relative_eq!(
            interval_secs(1, 0, 0),
            30.0 * 86_400.0,
            max_relative = 1e-12
        );
        assert_relative_eq!(
            interval_secs(12, 0, 0),
            365.25 * 86_400.0,
            max_relative = 1e-12
        );
        assert_relative_eq!(interval_secs(0, 0, -1_000_000), -1.0, max_relative = 1e-12);
    }

    #[test]
    fn ticks_parse_in_many_spellings() {
        let h = 3_600_000_000;
        assert_eq!(parse_tick("1 hour"), Ok(h));
        assert_eq!(parse_tick(" 1 HOUR "), Ok(h));
        assert_eq!(parse_tick("60 minutes"), Ok(h));
        assert_eq!(parse_tick("1h"), Ok(h));
        assert_eq!(parse_tick("1h 30min"), Ok(h + h / 2));
        assert_eq!(parse_tick("01:30:00"), Ok(h + h / 2));
        assert_eq!(parse_tick("3600"), Ok(h));
        assert_eq!(parse_tick("2.5 days"), Ok(60 * h));
        assert_eq!(parse_tick("1 week"), Ok(168 * h));
        assert_eq!(parse_tick("500 ms"), Ok(500_000));
        // PostgreSQL's output of an interval: days, then a clock
        assert_eq!(parse_tick("1 day 02:00:00"), Ok(26 * h));
        assert_eq!(
            parse_tick("2 days 00:30:00.5"),
            Ok(48 * h + h / 2 + 500_000)
        );
        assert_eq!(parse_tick("1 week 01:00"), Ok(169 * h));
        // and in every other IntervalStyle: sql_standard, postgres_verbose, iso_8601
        assert_eq!(parse_tick("1 2:00:00"), Ok(26 * h));
        assert_eq!(parse_tick("1 day -01:00:00"), Ok(23 * h));
        assert_eq!(parse_tick("+1:00"), Ok(h));
        assert_eq!(parse_tick("@ 1 day 2 hours"), Ok(26 * h));
        assert_eq!(parse_tick("@ 1 day -1 hours"), Ok(23 * h));
        assert_eq!(parse_tick("@ 0.5 secs"), Ok(500_000));
        assert_eq!(parse_tick("PT2H"), Ok(2 * h));
        assert_eq!(parse_tick("P1DT2H"), Ok(26 * h));
        assert_eq!(parse_tick("P1DT-1H"), Ok(23 * h));
        assert_eq!(parse_tick("P1W"), Ok(168 * h));
        assert_eq!(parse_tick("pt1h30m0.5s"), Ok(h + h / 2 + 500_000));
        assert_eq!(parse_tick("+0-0 +1 -1:00:00"), Ok(23 * h));
        assert!(parse_tick("+0-1 +1 -1:00:00").is_err());
        assert!(parse_tick("1-0 1:00:00").is_err());
        assert!(parse_tick("99999999999999999999-1 1").is_err());
        // as PostgreSQL reads them: MM:SS.f, one microsecond written with mixed signs
        assert_eq!(parse_tick("1:30.5"), Ok(90_500_000));
        assert_eq!(parse_tick("1 day -23:59:59.999999"), Ok(1));
        assert_eq!(parse_tick("P1DT-23H-59M-59.999999S"), Ok(1));
        for bad in [
            "1 hour 1 hour",
            "00:90",
            "1.5:00",
            "1:60:00",
            "1 day 2 days",
        ] {
            assert!(parse_tick(bad).is_err(), "{bad:?} should be refused");
        }
        // a field's fraction of a microsecond as PostgreSQL rounds it (a half down), and the
        // fields a clock or a second's fraction sets given once
        assert_eq!(parse_tick("1.5 us"), Ok(1));
        assert_eq!(parse_tick("2.5 us"), Ok(2));
        assert_eq!(parse_tick("0.0000015 s"), Ok(1));
        assert_eq!(parse_tick("0.0000005 min"), Ok(30));
        assert_eq!(parse_tick("1 week 1 day"), Ok(192 * 3_600_000_000));
        for bad in [
            "0.5 us",
            "00:00:00.0000005",
            "PT0.0000005S",
            "60:00.5",
            "1 hour 00:30:00",
            "30 min 01:00",
            "1 s 00:00:01",
            "1.5 s 500 ms",
            "PT1H1H",
        ] {
            assert!(parse_tick(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_tick("9223372036854775807-1 1").is_err());
        for bad in [
            "",
            "0",
            "@ 2 hours ago",
            "P1M",
            "P1Y",
            "P",
            "PT",
            "PT1X",
            "P1DT2H3",
            "PT1HT2M",
            "P1H",
            "1 day -1:-00",
            "1 2 02:00:00",
            "-1 days +02:00:00",
            "1 day 02:00 hours",
            "1 day 1:2:3:4",
            "-1 hour",
            "1 fortnight",
            "1 month",
            "hour",
            "1:2:3:4",
            "-0:30",
            "0:-30",
            "abc",
        ] {
            assert!(parse_tick(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn bad_curves_are_refused_naming_the_value() {
        let show = |w: &'static str| w.to_string();
        let e = check_curve(0.5, 1.0, 1.5, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for rate: 1.5");
        let e = check_curve(0.5, 1.0, 0.0, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for rate: 0");
        let e = check_curve(f64::NAN, 1.0, 0.5, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for atp: NaN");
        let e = check_curve(0.5, -1.0, 0.5, 1.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for elapsed: elapsed");
        let e = check_curve(0.5, 1.0, 0.5, 0.0, 0.1, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for tick: tick");
        let e = check_curve(0.5, 1.0, 0.5, 1.0, f64::INFINITY, show).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for floor: Infinity");
        assert!(check_curve(0.5, 0.0, 1.0, 1.0, 0.0, show).is_ok());
    }

    #[test]
    fn batches_cover_every_block_once() {
        // 100 rows a block, batches of 1 000 rows: ten blocks a batch, the last one short
        let r = block_ranges(95, 100.0, 1_000);
        assert_eq!(r.len(), 10);
        assert_eq!(r[0], (0, 10));
        assert_eq!(r[9], (90, 95));
        assert!(r.windows(2).all(|w| w[0].1 == w[1].0));
        // a batch smaller than a block still moves a block at a time
        assert_eq!(block_ranges(3, 100.0, 10), vec![(0, 1), (1, 2), (2, 3)]);
        // no statistics: 60 rows a block assumed
        assert_eq!(block_ranges(5, 0.0, 120), vec![(0, 2), (2, 4), (4, 5)]);
        assert!(block_ranges(0, 100.0, 1_000).is_empty());
    }

    #[test]
    fn a_tick_of_the_smallest_energy_is_zero_or_the_floor_not_an_error() {
        assert_eq!(tick(5e-324, 0.5, 0.0), 0.0);
        assert_eq!(tick(0.5, 5e-324, 0.0), 0.0);
        assert_eq!(tick(5e-324, 0.5, 0.1), 0.1);
        assert_relative_eq!(tick(0.8, 0.95, 0.1), 0.76);
        assert_eq!(tick(0.05, 0.95, 0.1), 0.1);
    }
}
