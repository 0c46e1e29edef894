//! A batch given as typed arrays, one per column (`write_events` over arrays, `write_event`):
//! [`events_from_arrays`], with the checks and messages of the JSON reader.

use crate::errors::FractalityError;

use super::event::{
    bad, check_batch_size, check_unique, finite_real, null_field, Event, ACTION_FIELDS,
    REWARD_FIELDS, STATE_FIELDS,
};

fn array_len(
    name: &'static str,
    len: usize,
    per_event: usize,
    n: usize,
) -> Result<(), FractalityError> {
    if len != n * per_event {
        return Err(bad(
            "write_events",
            name,
            format!(
                "expected {} values ({n} events x {per_event}), got {len}",
                n * per_event,
            ),
        ));
    }
    Ok(())
}

/// The lengths of the typed-array batch's arrays, in the order of [`events_from_arrays`]'
/// arguments: at most [`MAX_EVENTS`] events, and every other array of the first's length times
/// its values per event. Checked before any event is built.
fn check_lengths(lengths: [usize; 11]) -> Result<(), FractalityError> {
    let n = lengths[0];
    check_batch_size(n)?;
    for ((name, per_event), len) in COLUMNS.iter().zip(&lengths[1..]) {
        array_len(name, *len, *per_event, n)?;
    }
    Ok(())
}

/// The arrays after `event_ids` and their values per event.
const COLUMNS: [(&str, usize); 10] = [
    ("timestamps", 1),
    ("episode_ids", 1),
    ("step_numbers", 1),
    ("event_types", 1),
    ("flags", 1),
    ("states", 8),
    ("actions", 8),
    ("rewards", 4),
    ("adna_version_hashes", 1),
    ("sequence_numbers", 1),
];

fn elem<T: Copy>(
    a: &[Option<T>],
    i: usize,
    name: &str,
    event: usize,
) -> Result<T, FractalityError> {
    a[i].ok_or_else(|| null_field(&format!("write_events: element {event}"), name))
}

/// The typed-array batch: one array per column, element i of each is event i. `states` and
/// `actions` hold 8 values per event and `rewards` 4 (homeostasis, curiosity, efficiency, goal),
/// event after event (a 2-D array n x 8 is read the same way).
#[allow(clippy::too_many_arguments)]
pub fn events_from_arrays(
    event_ids: &[Option<Vec<u8>>],
    timestamps: &[Option<i64>],
    episode_ids: &[Option<i64>],
    step_numbers: &[Option<i32>],
    event_types: &[Option<i16>],
    flags: &[Option<i16>],
    states: &[Option<f32>],
    actions: &[Option<f32>],
    rewards: &[Option<f32>],
    adna_version_hashes: &[Option<i32>],
    sequence_numbers: &[Option<i32>],
) -> Result<Vec<Event>, FractalityError> {
    let n = event_ids.len();
    check_lengths([
        n,
        timestamps.len(),
        episode_ids.len(),
        step_numbers.len(),
        event_types.len(),
        flags.len(),
        states.len(),
        actions.len(),
        rewards.len(),
        adna_version_hashes.len(),
        sequence_numbers.len(),
    ])?;
    let mut out = Vec::with_capacity(n);
    for (i, id) in event_ids.iter().enumerate() {
        let ctx = format!("write_events: element {i}");
        let id = id.as_ref().ok_or_else(|| null_field(&ctx, "event_ids"))?;
        let event_id = <[u8; 16]>::try_from(id.as_slice()).map_err(|_| {
            bad(
                &ctx,
                "event_ids",
                format!("expected 16 bytes, got {} bytes", id.len()),
            )
        })?;
        let timestamp = elem(timestamps, i, "timestamps", i)?;
        let max = super::event::MAX_TIMESTAMP;
        if !(0..=max).contains(&timestamp) {
            let range = format!("{timestamp} is out of range [0, {max}]");
            return Err(bad(&ctx, "timestamps", range));
        }
        // value k of this event in `a`, which holds `names.len()` values per event
        let real = |a: &[Option<f32>], names: &[&str], k: usize| {
            let v = elem(a, names.len() * i + k, names[k], i)?;
            finite_real(&ctx, names[k], v.into())
        };
        let mut state = [0f32; 8];
        let mut action = [0f32; 8];
        let mut rew = [0f32; 4];
        for k in 0..8 {
            state[k] = real(states, &STATE_FIELDS, k)?;
            action[k] = real(actions, &ACTION_FIELDS, k)?;
        }
        for (k, r) in rew.iter_mut().enumerate() {
            *r = real(rewards, &REWARD_FIELDS, k)?;
        }
        let rew = super::event::rewards_that_sum(&ctx, rew)?;
        out.push(Event {
            timestamp,
            event_id,
            episode_id: elem(episode_ids, i, "episode_ids", i)?,
            step_number: elem(step_numbers, i, "step_numbers", i)?,
            event_type: elem(event_types, i, "event_types", i)?,
            flags: elem(flags, i, "flags", i)?,
            state,
            action,
            rewards: rew,
            adna_version_hash: elem(adna_version_hashes, i, "adna_version_hashes", i)?,
            sequence_number: elem(sequence_numbers, i, "sequence_numbers", i)?,
            metadata: None,
        });
    }
    check_unique(&out)?;
    Ok(out)
}

/// The argument of `write_event` behind a column array of `events_from_arrays`.
pub fn single_field(array: &str) -> &str {
    match array {
        "event_ids" => "event_id",
        "timestamps" => "timestamp",
        "episode_ids" => "episode_id",
        "step_numbers" => "step_number",
        "event_types" => "event_type",
        "states" => "state",
        "actions" => "action",
        "adna_version_hashes" => "adna_version_hash",
        "sequence_numbers" => "sequence_number",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_arrays() {
        let ids = vec![Some(vec![1u8; 16]), Some(vec![2u8; 16])];
        fn two<T: Copy>(v: T) -> Vec<Option<T>> {
            vec![Some(v), Some(v)]
        }
        let st: Vec<Option<f32>> = vec![Some(0.5); 16];
        let rw: Vec<Option<f32>> = vec![Some(1.0); 8];
        // the two events `ids`, with these timestamps and rewards
        let batch = |timestamps: &[Option<i64>], rewards: &[Option<f32>]| {
            events_from_arrays(
                &ids,
                timestamps,
                &two(1i64),
                &two(1i32),
                &two(0i16),
                &two(0i16),
                &st,
                &st,
                rewards,
                &two(3i32),
                &two(4i32),
            )
        };
        let ok = batch(&[Some(1), Some(2)], &rw).unwrap();
        assert_eq!(ok.len(), 2);
        let mut bad_rw = rw.clone();
        bad_rw[5] = Some(f32::NAN);
        let e = batch(&[Some(1), Some(2)], &bad_rw).unwrap_err().to_string();
        assert_eq!(
            e,
            "write_events: element 1, field \"reward_curiosity\": NaN is not a finite real"
        );
        let e = batch(&[Some(1)], &rw).unwrap_err().to_string();
        assert!(e.contains("field \"timestamps\": expected 2 values"));
        // a NULL element: 22004, as PostgreSQL's "array must not contain nulls"
        let e = batch(&[Some(1), None], &rw).unwrap_err();
        assert_eq!(
            e.to_string(),
            "write_events: element 1, field \"timestamps\": NULL"
        );
        assert_eq!(
            e.sqlstate(),
            pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED
        );
        let short = vec![Some(vec![1u8; 15])];
        let e = events_from_arrays(
            &short,
            &[Some(1)],
            &[Some(1)],
            &[Some(1)],
            &[Some(0)],
            &[Some(0)],
            &st[..8],
            &st[..8],
            &rw[..4],
            &[Some(3)],
            &[Some(4)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("expected 16 bytes, got 15 bytes"));
    }
}
