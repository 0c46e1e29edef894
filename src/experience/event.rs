//! An event as the store holds it ([`Event`], [`Metadata`]) and the reference reader of a batch
//! given as JSON ([`parse_batch`], [`parse_event`], [`parse_metadata`]): every check of a field,
//! with the messages that name the element and the field. The fast readers (`super::fast`) and
//! the typed arrays (`super::arrays`) give the same events and the same errors.

use serde_json::{Map, Value};

use crate::errors::{EventForm, FractalityError};

/// One event, column for column as in experience_events.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub timestamp: i64,
    pub event_id: [u8; 16],
    pub episode_id: i64,
    pub step_number: i32,
    pub event_type: i16,
    pub flags: i16,
    pub state: [f32; 8],
    pub action: [f32; 8],
    /// homeostasis, curiosity, efficiency, goal.
    pub rewards: [f32; 4],
    pub adna_version_hash: i32,
    pub sequence_number: i32,
    pub metadata: Option<Metadata>,
}

/// One action_metadata row.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub intent_type: String,
    pub executor_id: String,
    pub parameters: Value,
}

pub const REWARD_FIELDS: [&str; 4] = [
    "reward_homeostasis",
    "reward_curiosity",
    "reward_efficiency",
    "reward_goal",
];
pub(super) const STATE_FIELDS: [&str; 8] = [
    "state_l1", "state_l2", "state_l3", "state_l4", "state_l5", "state_l6", "state_l7", "state_l8",
];
pub(super) const ACTION_FIELDS: [&str; 8] = [
    "action_l1",
    "action_l2",
    "action_l3",
    "action_l4",
    "action_l5",
    "action_l6",
    "action_l7",
    "action_l8",
];

/// The most events one call writes: its working memory (the parsed events and the COPY buffer,
/// about 0.5 KB an event) is the process's own, beyond PostgreSQL's memory contexts, so it is
/// bounded here rather than left to fail an allocation.
pub const MAX_EVENTS: usize = 1_000_000;

/// A batch of `n` events: 22023 above [`MAX_EVENTS`], before anything of it is read.
pub fn check_batch_size(n: usize) -> Result<(), FractalityError> {
    if n > MAX_EVENTS {
        return Err(FractalityError::invalid(
            "events",
            format!("{n} events"),
            "One call writes at most 1 000 000 events: split the batch into calls of that size or less.",
        ));
    }
    Ok(())
}

/// A malformed field of an event: 22023 naming the element (`context`) and the field.
pub(super) fn bad(context: &str, field: &str, problem: impl Into<String>) -> FractalityError {
    FractalityError::BadEvent {
        context: context.to_string(),
        field: field.to_string(),
        problem: problem.into(),
        form: EventForm::Json,
    }
}

/// A NULL element of the typed-array form (22004).
pub(super) fn null_field(context: &str, field: &str) -> FractalityError {
    FractalityError::NullEventField {
        context: context.to_string(),
        field: field.to_string(),
        form: EventForm::Arrays,
    }
}

/// A JSON value, short, for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(57)])
    } else {
        s
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// 32 hex digits, or a UUID string (8-4-4-4-12 hex digits with hyphens); `\x` may lead.
pub fn parse_event_id(text: &str) -> Result<[u8; 16], String> {
    let t = text.strip_prefix("\\x").unwrap_or(text);
    let digits: String = if t.len() == 36 && t.matches('-').count() == 4 {
        let parts: Vec<&str> = t.split('-').collect();
        if parts.iter().map(|p| p.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(format!("\"{text}\" is not a UUID"));
        }
        parts.concat()
    } else {
        t.to_string()
    };
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 32 hex digits or a UUID, got \"{text}\" (not hexadecimal)"
        ));
    }
    if digits.len() != 32 {
        return Err(format!(
            "expected 16 bytes (32 hex digits or a UUID), got \"{text}\" ({} hex digits{})",
            digits.len(),
            if digits.len().is_multiple_of(2) {
                format!(", {} bytes", digits.len() / 2)
            } else {
                String::new()
            }
        ));
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

fn int_field(
    ctx: &str,
    obj: &Map<String, Value>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<i64, FractalityError> {
    let v = obj.get(name).ok_or_else(|| bad(ctx, name, "missing"))?;
    let n = v
        .as_i64()
        .ok_or_else(|| bad(ctx, name, format!("expected an integer, got {}", show(v))))?;
    if n < min || n > max {
        return Err(bad(
            ctx,
            name,
            format!("{n} is out of range [{min}, {max}]"),
        ));
    }
    Ok(n)
}

/// The latest timestamp an event may have: one microsecond before the largest `bigint`. The
/// readers' time ranges end before their upper bound, and a replay buffer keeps the timestamps
/// of each block as an inclusive `int8range`, whose end PostgreSQL stores as the bound + 1: an
/// event at `bigint`'s largest value could be written but never read by time, nor enter a buffer.
pub const MAX_TIMESTAMP: i64 = i64::MAX - 1;

/// An integer field of an `integer` column.
fn int4_field(ctx: &str, obj: &Map<String, Value>, name: &str) -> Result<i32, FractalityError> {
    Ok(int_field(ctx, obj, name, i32::MIN.into(), i32::MAX.into())? as i32)
}

/// An integer field of a `smallint` column.
fn int2_field(ctx: &str, obj: &Map<String, Value>, name: &str) -> Result<i16, FractalityError> {
    Ok(int_field(ctx, obj, name, i16::MIN.into(), i16::MAX.into())? as i16)
}

fn real_field(
    ctx: &str,
    obj: &Map<String, Value>,
    name: &str,
    default: Option<f32>,
) -> Result<f32, FractalityError> {
    let v = match (obj.get(name), default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d),
        (None, None) => return Err(bad(ctx, name, "missing")),
    };
    let x = v
        .as_f64()
        .ok_or_else(|| bad(ctx, name, format!("expected a number, got {}", show(v))))?;
    // a number below float8's range is 0.0 here already: its text tells (the numbers are kept
    // as written)
    if x == 0.0
        && v.as_number()
            .is_some_and(|n| crate::json::nonzero_text(n.as_str()))
    {
        return Err(bad(
            ctx,
            name,
            format!("{} is too close to 0 for a real", show(v)),
        ));
    }
    finite_real(ctx, name, x)
}

/// The four rewards of an event, whose sum (total_reward, what the reward inbox and the queries
/// compute) must be a real too: each finite is not enough (3e38 + 3e38).
pub(super) fn rewards_that_sum(ctx: &str, rewards: [f32; 4]) -> Result<[f32; 4], FractalityError> {
    let [h, c, e, g] = rewards;
    crate::reward::state::sum_rewards(h, c, e, g)
        .map(|_| rewards)
        .map_err(|_| {
            bad(
                ctx,
                "rewards",
                // added as reals, in this order (3.4e38 + 3.4e38 - 3.4e38 - 3.4e38 overflows
                // at the first addition, though its exact sum is 0)
                format!(
                    "their sum in real arithmetic ({} + {} + {} + {}, added in that order) is beyond a real",
                    crate::errors::pg_real(h),
                    crate::errors::pg_real(c),
                    crate::errors::pg_real(e),
                    crate::errors::pg_real(g)
                ),
            )
        })
}

pub(super) fn finite_real(ctx: &str, name: &str, x: f64) -> Result<f32, FractalityError> {
    let r = x as f32;
    if !r.is_finite() {
        return Err(bad(
            ctx,
            name,
            format!("{} is not a finite real", crate::errors::pg_float(x)),
        ));
    }
    if r == 0.0 && x != 0.0 {
        // as PostgreSQL's real input refuses it (underflow), rather than storing 0
        return Err(bad(
            ctx,
            name,
            format!(
                "{} is too close to 0 for a real",
                crate::errors::pg_float(x)
            ),
        ));
    }
    Ok(r)
}

fn text_field(ctx: &str, obj: &Map<String, Value>, name: &str) -> Result<String, FractalityError> {
    let v = obj.get(name).ok_or_else(|| bad(ctx, name, "missing"))?;
    let s = v
        .as_str()
        .ok_or_else(|| bad(ctx, name, format!("expected a string, got {}", show(v))))?;
    if s.is_empty() || s.chars().count() > 255 {
        return Err(bad(
            ctx,
            name,
            format!(
                "expected 1 to 255 characters, got {} ({})",
                s.chars().count(),
                show(v)
            ),
        ));
    }
    Ok(s.to_string())
}

/// `v` as a JSON object, or a malformed `field`.
fn object<'v>(
    ctx: &str,
    field: &str,
    v: &'v Value,
) -> Result<&'v Map<String, Value>, FractalityError> {
    v.as_object()
        .ok_or_else(|| bad(ctx, field, format!("expected an object, got {}", show(v))))
}

/// An action_metadata object: intent_type, executor_id, parameters (an object, default {}); its
/// errors' hint describes metadata.
pub fn parse_metadata(ctx: &str, v: &Value) -> Result<Metadata, FractalityError> {
    metadata_of(ctx, v).map_err(|e| e.in_event_form(EventForm::Metadata))
}

fn metadata_of(ctx: &str, v: &Value) -> Result<Metadata, FractalityError> {
    let obj = object(ctx, "metadata", v)?;
    for key in obj.keys() {
        if !["intent_type", "executor_id", "parameters"].contains(&key.as_str()) {
            return Err(bad(ctx, &format!("metadata.{key}"), "unknown field"));
        }
    }
    // text_field's problem (missing, the value of another kind, its length), named in full
    let text = |name: &str| {
        text_field(ctx, obj, name).map_err(|e| match e {
            FractalityError::BadEvent { problem, .. } => {
                bad(ctx, &format!("metadata.{name}"), problem)
            }
            other => other,
        })
    };
    let intent_type = text("intent_type")?;
    let executor_id = text("executor_id")?;
    for (name, v) in [("intent_type", &intent_type), ("executor_id", &executor_id)] {
        if v.contains('\0') {
            return Err(bad(
                ctx,
                &format!("metadata.{name}"),
                "contains \\u0000, which text cannot hold",
            ));
        }
    }
    let parameters = match obj.get("parameters") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) if has_nul(p) => {
            return Err(bad(
                ctx,
                "metadata.parameters",
                "contains \\u0000, which jsonb cannot hold",
            ))
        }
        Some(p @ Value::Object(_)) => p.clone(),
        Some(p) => {
            return Err(bad(
                ctx,
                "metadata.parameters",
                format!("expected an object, got {}", show(p)),
            ))
        }
    };
    Ok(Metadata {
        intent_type,
        executor_id,
        parameters,
    })
}

/// Whether a string (or key) anywhere in `v` holds U+0000 (JSON text can, jsonb cannot).
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn known_field(k: &str) -> bool {
    match k {
        // the columns besides state, action and rewards, and the optional metadata object
        "event_id" | "timestamp" | "episode_id" | "step_number" | "event_type" | "flags"
        | "adna_version_hash" | "sequence_number" | "metadata" => true,
        _ => {
            (k.len() == 8 && k.starts_with("state_l") && (b'1'..=b'8').contains(&k.as_bytes()[7]))
                || (k.len() == 9
                    && k.starts_with("action_l")
                    && (b'1'..=b'8').contains(&k.as_bytes()[8]))
                || REWARD_FIELDS.contains(&k)
        }
    }
}

/// One event object with the seed's column names.
pub fn parse_event(ctx: &str, v: &Value) -> Result<Event, FractalityError> {
    let obj = object(ctx, "(event)", v)?;
    if let Some(k) = obj.keys().find(|k| !known_field(k)) {
        return Err(bad(ctx, k, "unknown field"));
    }
    let id_value = obj
        .get("event_id")
        .ok_or_else(|| bad(ctx, "event_id", "missing"))?;
    let id_text = id_value.as_str().ok_or_else(|| {
        bad(
            ctx,
            "event_id",
            format!(
                "expected a string of 32 hex digits or a UUID, got {}",
                show(id_value)
            ),
        )
    })?;
    let event_id = parse_event_id(id_text).map_err(|m| bad(ctx, "event_id", m))?;
    let mut state = [0f32; 8];
    for (s, name) in state.iter_mut().zip(STATE_FIELDS) {
        *s = real_field(ctx, obj, name, None)?;
    }
    let mut action = [0f32; 8];
    for (a, name) in action.iter_mut().zip(ACTION_FIELDS) {
        *a = real_field(ctx, obj, name, None)?;
    }
    let mut rewards = [0f32; 4];
    for (r, name) in rewards.iter_mut().zip(REWARD_FIELDS) {
        *r = real_field(ctx, obj, name, Some(0.0))?;
    }
    let rewards = rewards_that_sum(ctx, rewards)?;
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m) => Some(parse_metadata(ctx, m)?),
    };
    Ok(Event {
        timestamp: int_field(ctx, obj, "timestamp", 0, MAX_TIMESTAMP)?,
        event_id,
        episode_id: int_field(ctx, obj, "episode_id", i64::MIN, i64::MAX)?,
        step_number: int4_field(ctx, obj, "step_number")?,
        event_type: int2_field(ctx, obj, "event_type")?,
        flags: int2_field(ctx, obj, "flags")?,
        state,
        action,
        rewards,
        adna_version_hash: int4_field(ctx, obj, "adna_version_hash")?,
        sequence_number: int4_field(ctx, obj, "sequence_number")?,
        metadata,
    })
}

/// A JSON array of event objects given to `function` (its errors name it); the first malformed
/// element refuses the whole batch.
pub fn parse_batch(function: &str, batch: &Value) -> Result<Vec<Event>, FractalityError> {
    let items = batch.as_array().ok_or_else(|| {
        bad(
            function,
            "(batch)",
            format!("expected a JSON array of events, got {}", show(batch)),
        )
    })?;
    check_batch_size(items.len())?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(parse_event(&format!("{function}: element {i}"), item)?);
    }
    check_unique(&out)?;
    Ok(out)
}

/// No two events of a batch share an event id (whatever their timestamps).
pub fn check_unique(events: &[Event]) -> Result<(), FractalityError> {
    let mut seen = std::collections::HashMap::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if let Some(first) = seen.insert(e.event_id, i) {
            return Err(FractalityError::DuplicateEvent {
                timestamp: e.timestamp,
                event_id: hex(&e.event_id),
                detail: format!("elements {first} and {i} of the batch"),
            });
        }
    }
    Ok(())
}

/// The first event of the batch `events` (by its place in the batch) that is stored already
/// (`stored`: timestamp and id of events already written): with the id registry (`by_id`), a
/// stored event of its id; without it (a schema older than the library), one of the same
/// timestamp and id. The error names the batch's element, its timestamp, and the stored one's.
pub fn stored_duplicate(
    events: &[Event],
    stored: &[(i64, Vec<u8>)],
    by_id: bool,
) -> Option<FractalityError> {
    if stored.is_empty() {
        return None;
    }
    let mut at: std::collections::HashMap<[u8; 16], Vec<i64>> = Default::default();
    for (ts, id) in stored {
        if let Ok(id16) = <[u8; 16]>::try_from(id.as_slice()) {
            at.entry(id16).or_default().push(*ts);
        }
    }
    events.iter().enumerate().find_map(|(i, e)| {
        let times = at.get(&e.event_id)?;
        let ts = if by_id {
            times.iter().min().copied()
        } else {
            times.iter().find(|t| **t == e.timestamp).copied()
        }?;
        Some(FractalityError::DuplicateEvent {
            timestamp: e.timestamp,
            event_id: hex(&e.event_id),
            detail: if events.len() > 1 {
                format!("element {i} of the batch, already stored at timestamp {ts}")
            } else {
                format!("already stored at timestamp {ts}")
            },
        })
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::experience) fn event(i: u8) -> Value {
        let mut o = json!({
            "event_id": format!("{:032x}", i),
            "timestamp": 1000 + i as i64,
            "episode_id": 1, "step_number": i, "event_type": 1, "flags": 0,
            "adna_version_hash": 7, "sequence_number": i,
            "reward_homeostasis": 0.5
        });
        for k in 1..=8 {
            o[format!("state_l{k}")] = json!(0.1 * k as f64);
            o[format!("action_l{k}")] = json!(-0.1 * k as f64);
        }
        o
    }

    fn err(batch: Value) -> String {
        parse_batch("write_events", &batch).unwrap_err().to_string()
    }

    #[test]
    fn a_good_batch_parses() {
        let b = parse_batch("write_events", &json!([event(1), event(2)])).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].timestamp, 1002);
        assert_eq!(b[1].event_id[15], 2);
        assert_eq!(b[0].rewards, [0.5, 0.0, 0.0, 0.0]);
        assert!((b[0].state[7] - 0.8).abs() < 1e-6);
        assert!(b[0].metadata.is_none());
    }

    #[test]
    fn ids_as_hex_or_uuid() {
        let a = parse_event_id("000102030405060708090a0b0c0d0e0f").unwrap();
        let b = parse_event_id("00010203-0405-0607-0809-0a0b0c0d0e0f").unwrap();
        let c = parse_event_id("\\x000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a[15], 15);
        assert!(parse_event_id("000102030405060708090a0b0c0d0e")
            .unwrap_err()
            .contains("15 bytes"));
        assert!(parse_event_id("zz0102030405060708090a0b0c0d0e0f")
            .unwrap_err()
            .contains("not hexadecimal"));
    }

    #[test]
    fn malformed_elements_are_named() {
        let mut missing = event(2);
        missing.as_object_mut().unwrap().remove("episode_id");
        assert_eq!(
            err(json!([event(1), missing])),
            "write_events: element 1, field \"episode_id\": missing"
        );
        let mut wrong = event(2);
        wrong["step_number"] = json!("three");
        assert!(err(json!([event(1), wrong]))
            .starts_with("write_events: element 1, field \"step_number\": expected an integer"));
        let mut short = event(1);
        short["event_id"] = json!("000102030405060708090a0b0c0d0e");
        assert!(err(json!([short])).contains("element 0, field \"event_id\""));
        let mut nan = event(1);
        nan["reward_goal"] = json!("NaN");
        assert!(err(json!([nan])).contains("field \"reward_goal\": expected a number"));
        let mut huge = event(1);
        huge["reward_goal"] = json!(1e300);
        let h = err(json!([huge]));
        assert!(h.contains("is not a finite real"), "{h}");
        // each reward a real, their sum not: refused here, naming the event
        let mut sum = event(1);
        sum["reward_curiosity"] = json!(3e38);
        sum["reward_goal"] = json!(3e38);
        let e = err(json!([event(2), sum]));
        assert!(
            e.contains("element 1, field \"rewards\": their sum")
                && e.ends_with("is beyond a real"),
            "{e}"
        );
        // an exact sum of 0 that overflows as reals names the rewards, not the exact sum
        let mut zero = event(1);
        zero["reward_homeostasis"] = json!(3.4e38);
        zero["reward_curiosity"] = json!(3.4e38);
        zero["reward_efficiency"] = json!(-3.4e38);
        zero["reward_goal"] = json!(-3.4e38);
        let z = err(json!([zero]));
        assert!(
            z.contains("(3.4e+38 + 3.4e+38 + -3.4e+38 + -3.4e+38, added in that order)")
                && !z.contains("sum 0"),
            "{z}"
        );
        let mut unknown = event(1);
        unknown["rewardd"] = json!(1);
        assert!(err(json!([unknown])).contains("field \"rewardd\": unknown field"));
        let mut negative = event(1);
        negative["timestamp"] = json!(-1);
        assert!(err(json!([negative])).contains("out of range"));
        let mut flags = event(1);
        flags["flags"] = json!(40000);
        assert!(err(json!([flags])).contains("field \"flags\""));
        assert!(err(json!({"a": 1})).contains("expected a JSON array"));
        assert!(err(json!([1])).contains("element 0"));
    }

    #[test]
    fn duplicates_are_refused() {
        let e = err(json!([event(1), event(2), event(1)]));
        assert!(e.starts_with("duplicate event (timestamp 1001"));
        assert!(e.contains("elements 0 and 2"));
        // an event id is written once, whatever its timestamp
        let mut later = event(1);
        later["timestamp"] = json!(5000);
        let e = err(json!([event(1), later]));
        assert!(e.starts_with("duplicate event (timestamp 5000"), "{e}");
        assert!(e.contains("elements 0 and 1"), "{e}");
        assert_eq!(
            parse_batch("write_events", &json!([event(1), event(2)]))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn metadata_is_validated() {
        let mut e = event(1);
        e["metadata"] =
            json!({"intent_type": "explore", "executor_id": "agent-1", "parameters": {"depth": 2}});
        let b = parse_batch("write_events", &json!([e])).unwrap();
        assert_eq!(
            b[0].metadata.as_ref().unwrap().parameters,
            json!({"depth": 2})
        );
        let mut e = event(1);
        e["metadata"] = json!({"intent_type": "explore"});
        assert_eq!(
            err(json!([e])),
            "write_events: element 0, field \"metadata.executor_id\": missing"
        );
        // the value that is not one is named
        let ctx = "write_event_with_metadata";
        let msg = |m: Value| parse_metadata(ctx, &m).unwrap_err().to_string();
        assert_eq!(
            msg(json!({"intent_type": 42, "executor_id": "e"})),
            "write_event_with_metadata, field \"metadata.intent_type\": expected a string, got 42"
        );
        assert_eq!(
            msg(json!({"intent_type": "a", "executor_id": ["e"]})),
            "write_event_with_metadata, field \"metadata.executor_id\": expected a string, got [\"e\"]"
        );
        assert_eq!(
            msg(json!({"intent_type": "x".repeat(300), "executor_id": "e"})),
            format!(
                "write_event_with_metadata, field \"metadata.intent_type\": expected 1 to 255 characters, got 300 (\"{}...)",
                "x".repeat(56)
            )
        );
    }

    #[test]
    fn stored_duplicates_by_id_or_by_timestamp_and_id() {
        let b = parse_batch("write_events", &json!([event(1), event(2)])).unwrap();
        let id2 = b[1].event_id.to_vec();
        assert_eq!(stored_duplicate(&b, &[], true), None);
        // the registry knows id 2 at another time: a duplicate with it, not without it
        let e = stored_duplicate(&b, &[(1, id2.clone())], true).unwrap();
        assert_eq!(
            e.to_string(),
            "duplicate event (timestamp 1002, event_id \\x00000000000000000000000000000002): element 1 of the batch, already stored at timestamp 1"
        );
        assert_eq!(stored_duplicate(&b, &[(1, id2.clone())], false), None);
        assert!(stored_duplicate(&b, &[(1002, id2)], false).is_some());
        // an id of another length is no event of the batch
        assert_eq!(stored_duplicate(&b, &[(1002, vec![2; 15])], true), None);
    }
}
