//! The fast readers of a batch, each giving exactly the events and errors of the reference
//! reader ([`parse_batch`]) and handing it whatever it does not take as it is: jsonb decoded in
//! place ([`parse_batch_jsonb`], [`event_from_jsonb`]) and JSON text read by serde straight into
//! events ([`parse_batch_text`]).

use crate::errors::FractalityError;
use crate::jsonb::{self, JsonbArg};

use super::event::{
    check_unique, parse_batch, parse_event, parse_event_id, parse_metadata, Event, Metadata,
    MAX_EVENTS,
};

// ---- jsonb: decoded in place -----------------------------------------------------------------

/// [`parse_batch`] over the jsonb in place: each element decoded straight from its binary
/// container ([`event_from_jsonb`]); an element it does not take as it is (a number it cannot
/// convert exactly, metadata it refuses, anything malformed) goes through serde and
/// [`parse_event`] as its JSON text, so results and error messages are those of parse_batch.
pub fn parse_batch_jsonb(batch: &JsonbArg<'_>) -> Result<Vec<Event>, FractalityError> {
    let root = batch.root();
    let Some(n) = root.array_len() else {
        return parse_batch("write_events", &batch.to_serde()?);
    };
    super::event::check_batch_size(n)?;
    let mut out = Vec::with_capacity(n);
    let mut failed = None;
    // the metadata the batch keeps, held to json::MAX_BATCH_VALUES together as the text reader's
    let mut kept = 0usize;
    jsonb::elements(&root, |i, item| {
        if failed.is_some() {
            return;
        }
        // with the values of its metadata document, counted as the text reader counts them
        let event = match event_from_jsonb(&item) {
            Some(e) => Ok(e),
            None => item.to_serde().and_then(|v| {
                let n = v.get("metadata").map_or(0, crate::json::count);
                parse_event(&format!("write_events: element {i}"), &v).map(|e| (e, n))
            }),
        };
        match event {
            Ok((e, n)) => {
                kept += n;
                if kept > crate::json::MAX_BATCH_VALUES {
                    failed = Some(crate::json::too_large(format!("write_events: element {i}")));
                    return;
                }
                out.push(e)
            }
            Err(e) => failed = Some(e),
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    check_unique(&out)?;
    Ok(out)
}

/// The slot of the optional metadata object.
const METADATA: usize = 28;

/// Fields of an event object, by their slot in [`Fields`].
fn field_slot(key: &[u8]) -> Option<usize> {
    Some(match key {
        b"event_id" => 0,
        b"timestamp" => 1,
        b"episode_id" => 2,
        b"step_number" => 3,
        b"event_type" => 4,
        b"flags" => 5,
        b"adna_version_hash" => 6,
        b"sequence_number" => 7,
        b"reward_homeostasis" => 24,
        b"reward_curiosity" => 25,
        b"reward_efficiency" => 26,
        b"reward_goal" => 27,
        b"metadata" => METADATA,
        _ if key.len() == 8 && key.starts_with(b"state_l") && (b'1'..=b'8').contains(&key[7]) => {
            8 + (key[7] - b'1') as usize
        }
        _ if key.len() == 9 && key.starts_with(b"action_l") && (b'1'..=b'8').contains(&key[8]) => {
            16 + (key[8] - b'1') as usize
        }
        _ => return None,
    })
}

/// An event object's fields as a fast reader meets them, in any order ([`event_from_jsonb`] over
/// a jsonb container, [`parse_batch_text`] over JSON text). Each setter answers false for what it
/// does not take as it is; [`Fields::finish`] gives the event only where [`parse_event`] gives the
/// same one, and None for anything else (the caller then asks parse_event, which explains).
struct Fields {
    seen: [bool; 29],
    id: [u8; 16],
    ints: [i64; 8],
    /// state 8, action 8, rewards 4
    reals: [f32; 20],
}

impl Fields {
    fn new() -> Self {
        Fields {
            seen: [false; 29],
            id: [0; 16],
            ints: [0; 8],
            reals: [0.0; 20],
        }
    }

    /// The slot (of [`field_slot`]) of a field met for the first time; None for a repeated one.
    fn claim(&mut self, slot: usize) -> Option<usize> {
        (!std::mem::replace(&mut self.seen[slot], true)).then_some(slot)
    }

    fn id(&mut self, text: &str) -> bool {
        match parse_event_id(text) {
            Ok(b) => {
                self.id = b;
                true
            }
            Err(_) => false,
        }
    }

    /// An integer field (slots 1 to 7), in its column's range.
    fn int(&mut self, slot: usize, n: i64) -> bool {
        let (min, max) = match slot {
            1 => (0, super::event::MAX_TIMESTAMP),
            2 => (i64::MIN, i64::MAX),
            4 | 5 => (i16::MIN.into(), i16::MAX.into()),
            3 | 6 | 7 => (i32::MIN.into(), i32::MAX.into()),
            _ => return false,
        };
        if n < min || n > max {
            return false;
        }
        self.ints[slot] = n;
        true
    }

    /// A real field (slots 8 to 27), finite as a real.
    fn real(&mut self, slot: usize, x: f64) -> bool {
        let r = x as f32;
        // beyond a real, or too close to 0 for one: the reference parser explains
        if !(8..=27).contains(&slot) || !r.is_finite() || (r == 0.0 && x != 0.0) {
            return false;
        }
        self.reals[slot - 8] = r;
        true
    }

    /// The event, once every field but the rewards (0 when absent) and metadata was met.
    fn finish(&self, metadata: Option<Metadata>) -> Option<Event> {
        if !self.seen[..24].iter().all(|&s| s) {
            return None;
        }
        let r = &self.reals;
        // rewards whose sum is beyond a real: the reference parser explains
        crate::reward::state::sum_rewards(r[16], r[17], r[18], r[19]).ok()?;
        Some(Event {
            timestamp: self.ints[1],
            event_id: self.id,
            episode_id: self.ints[2],
            step_number: self.ints[3] as i32,
            event_type: self.ints[4] as i16,
            flags: self.ints[5] as i16,
            state: r[..8].try_into().expect("8 reals"),
            action: r[8..16].try_into().expect("8 reals"),
            rewards: r[16..].try_into().expect("4 reals"),
            adna_version_hash: self.ints[6] as i32,
            sequence_number: self.ints[7] as i32,
            metadata,
        })
    }
}

/// The values an event's metadata read in place may hold: the cap of a document read whole,
/// less the event object and its other fields (numbers of up to 190 characters), as the
/// reference reads the whole element.
const METADATA_CAP: usize = crate::json::MAX_VALUES - 1 - 28 * 8;

/// The nesting an event's metadata read in place may have: serde's limit for the whole element,
/// less the event object's level.
const METADATA_DEPTH: usize = 126;

/// One well-formed event object, read from its jsonb container (a metadata object through
/// serde alone), with the JSON values of its metadata member as the text reader counts them (1
/// for a null one, 0 without one); None for anything else (the caller then asks
/// [`parse_event`], which accepts or explains it). Where it returns an event, parse_event
/// returns the same one.
pub fn event_from_jsonb(item: &jsonb::Value<'_>) -> Option<(Event, usize)> {
    let mut f = Fields::new();
    let mut values = 0;
    let mut metadata = None;
    let ok = jsonb::pairs(item, |key, v| {
        match field_slot(key).and_then(|s| f.claim(s)) {
            Some(0) => v.as_str().is_some_and(|t| f.id(t)),
            Some(slot @ 1..=7) => v.as_i64().is_some_and(|n| f.int(slot, n)),
            // a number too small for float8 reads as 0.0: the reference refuses it
            Some(slot @ 8..=27) => v
                .as_f64()
                .is_some_and(|x| (x != 0.0 || v.is_zero_number()) && f.real(slot, x)),
            // metadata: null, or an object read through serde alone (its numbers kept as
            // written); one parse_metadata refuses goes to the reference, which names the element
            Some(_) => match v {
                jsonb::Value::Null => {
                    values = 1;
                    true
                }
                // under the caps the element reader holds the whole element to (its other
                // fields' values, one level of nesting); beyond them the reference decides
                jsonb::Value::Container(..) => match v.to_serde_within(METADATA_CAP) {
                    Ok(m) if crate::json::depth(&m) <= METADATA_DEPTH => {
                        values = crate::json::count(&m);
                        metadata = parse_metadata("write_events", &m).ok();
                        metadata.is_some()
                    }
                    _ => false,
                },
                _ => false,
            },
            None => false,
        }
    });
    if !ok {
        return None;
    }
    f.finish(metadata).map(|e| (e, values))
}

// ---- JSON text: serde straight into events ----------------------------------------------------

/// A batch as JSON text (`write_events_json`, over `text` or `json`): read by serde straight
/// into events, field by field, without a JSON tree; a batch that reader does not take as it is
/// (anything malformed, a repeated field, a metadata object it refuses) is read again by the
/// reference reader ([`parse_event`] over each element, as [`parse_batch`] does), whose results
/// and error messages are the reference.
pub fn parse_batch_text(text: &str) -> Result<Vec<Event>, FractalityError> {
    parse_batch_text_within(text, crate::json::LIMITS)
}

/// [`parse_batch_text`] under `limits`.
fn parse_batch_text_within(
    text: &str,
    limits: crate::json::Limits,
) -> Result<Vec<Event>, FractalityError> {
    match read_text(text, limits) {
        Ok(events) => {
            check_unique(&events)?;
            Ok(events)
        }
        Err(too_many) => {
            // before a JSON tree of the batch is built: its size (one pass, nothing kept)
            let n = text_reader::count_elements(text);
            if too_many || n.is_some_and(|n| n > MAX_EVENTS) {
                super::event::check_batch_size(n.unwrap_or(MAX_EVENTS + 1))?;
            }
            read_by_element(text, n.is_some(), limits)
        }
    }
}

/// The reference reader over JSON text without a tree of the whole batch: an array is read one
/// element at a time, each a `Value` under [`crate::json::MAX_VALUES`] handed to
/// [`parse_event`] and dropped, so what the batch costs in Rust's heap is its events; anything
/// else is read whole under the same cap and handed to [`parse_batch`], which refuses it.
fn read_by_element(
    text: &str,
    array: bool,
    limits: crate::json::Limits,
) -> Result<Vec<Event>, FractalityError> {
    let json_error = |e: serde_json::Error| {
        if crate::json::is_too_large(&e) {
            crate::json::too_large("write_events_json")
        } else {
            FractalityError::InvalidJson {
                context: "write_events_json",
                detail: e.to_string(),
            }
        }
    };
    if !array {
        // malformed (the error of the whole text, before any tree), or not an array
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(json_error)?;
        let batch = crate::json::parse_within(text, limits.doc).map_err(json_error)?;
        return parse_batch("write_events_json", &batch);
    }
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let read = serde::Deserializer::deserialize_seq(
        &mut de,
        text_reader::ByElement {
            failed: &mut failed,
            limits,
        },
    )
    .and_then(|events| de.end().map(|()| events));
    // an error of the text (failed names the element when it was the cap's) before an
    // element's
    let events = match (read, failed) {
        // the cap's error names its element in failed
        (Err(e), Some(f)) if crate::json::is_too_large(&e) => return Err(f),
        (Err(e), _) => return Err(json_error(e)),
        (Ok(_), Some(f)) => return Err(f),
        (Ok(events), None) => events,
    };
    check_unique(&events)?;
    Ok(events)
}

/// The events of a batch the text reader takes as it is; Err for anything else, Err(true) for a
/// batch of more than [`MAX_EVENTS`] events (the reader stops at the one past them).
fn read_text(text: &str, limits: crate::json::Limits) -> Result<Vec<Event>, bool> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let events = TextBatch(limits)
        .deserialize(&mut de)
        .map_err(|e| e.to_string().starts_with(text_reader::TOO_MANY))?;
    de.end().map_err(|_| false)?;
    Ok(events)
}

mod text_reader {
    //! The serde visitors of [`super::parse_batch_text`]: an array of objects, each object's
    //! values put in [`super::Fields`]; any error only means "not taken as it is".
    use super::{field_slot, parse_event, parse_metadata, Event, Fields, MAX_EVENTS, METADATA};
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;
    use std::fmt;

    fn refuse<E: de::Error>() -> E {
        E::custom("not taken by the fast reader")
    }

    /// What the reader stops with at the event past [`MAX_EVENTS`].
    pub const TOO_MANY: &str = "more events than one call takes";

    /// The number of elements of `text`'s top-level JSON array (None when it is not one), read
    /// without keeping any of them.
    pub fn count_elements(text: &str) -> Option<usize> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
                let mut n = 0;
                while seq.next_element::<de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(n)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        de.deserialize_seq(Count).ok()
    }

    /// The batch, as the reference reader takes it: each element read as a `Value` (under
    /// [`crate::json::MAX_VALUES`]) and handed to [`parse_event`]; the first element it refuses
    /// is put in `failed`, and the rest is read on without being kept, so that an error of the
    /// text further on (its syntax, the cap) is the one reported, as
    /// when the reference read the whole text first. The metadata kept of all the events
    /// together is held to [`crate::json::MAX_BATCH_VALUES`].
    pub struct ByElement<'a> {
        pub failed: &'a mut Option<crate::errors::FractalityError>,
        pub limits: crate::json::Limits,
    }

    impl<'de> Visitor<'de> for ByElement<'_> {
        type Value = Vec<Event>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Event>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            let mut kept = self.limits.batch;
            let mut index = 0;
            loop {
                crate::errors::interrupts_every(index, 256);
                let element = format!("write_events_json: element {index}");
                let mut left = self.limits.doc;
                let v = match seq.next_element_seed(crate::json::Bounded { left: &mut left }) {
                    Ok(Some(v)) => v,
                    Ok(None) => return Ok(out),
                    Err(e) => {
                        if crate::json::is_too_large(&e) {
                            *self.failed = Some(crate::json::too_large(element));
                        }
                        return Err(e);
                    }
                };
                index += 1;
                if self.failed.is_some() {
                    continue;
                }
                match parse_event(&element, &v) {
                    Ok(e) => {
                        // the metadata document, counted as the text reader counts it
                        let n = v.get("metadata").map_or(0, crate::json::count);
                        match kept.checked_sub(n) {
                            Some(k) => kept = k,
                            None => *self.failed = Some(crate::json::too_large(element)),
                        }
                        out.push(e);
                    }
                    Err(e) => *self.failed = Some(e),
                }
            }
        }
    }

    /// The batch: a JSON array of event objects.
    pub struct TextBatch(pub crate::json::Limits);

    impl<'de> DeserializeSeed<'de> for TextBatch {
        type Value = Vec<Event>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Event>, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for TextBatch {
        type Value = Vec<Event>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Event>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            // the metadata values kept, of all the events together
            let mut left = self.0.batch;
            while let Some(e) = seq.next_element_seed(TextEvent {
                index: out.len(),
                left: &mut left,
                doc: self.0.doc,
            })? {
                crate::errors::interrupts_every(out.len(), 256);
                if out.len() == MAX_EVENTS {
                    return Err(de::Error::custom(TOO_MANY));
                }
                out.push(e);
            }
            Ok(out)
        }
    }

    /// One event object, element `index` of the batch.
    struct TextEvent<'a> {
        index: usize,
        /// the values the batch may still keep
        left: &'a mut usize,
        /// the values of one document
        doc: usize,
    }

    impl<'de> DeserializeSeed<'de> for TextEvent<'_> {
        type Value = Event;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for TextEvent<'_> {
        type Value = Event;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an event object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
            let mut f = Fields::new();
            let mut metadata = None;
            while let Some(Key(key)) = map.next_key()? {
                let Some(slot) = key.and_then(|s| f.claim(s)) else {
                    return Err(refuse());
                };
                let ok = if slot == METADATA {
                    // one document under the cap, all the batch's under its budget
                    let mut left = (*self.left).min(self.doc);
                    let had = left;
                    let value = map.next_value_seed(crate::json::Bounded { left: &mut left })?;
                    *self.left -= had - left;
                    match value {
                        Value::Null => true,
                        m => {
                            let ctx = format!("write_events_json: element {}", self.index);
                            metadata = parse_metadata(&ctx, &m).ok();
                            metadata.is_some()
                        }
                    }
                } else {
                    // a number field read from its text as a number (Numeric), not kept as
                    // written as metadata's numbers are
                    let value = if slot == 0 {
                        map.next_value::<Scalar>()?
                    } else {
                        map.next_value::<Numeric>()?.0
                    };
                    match (slot, value) {
                        (0, Scalar::Str(t)) => f.id(&t),
                        (1..=7, Scalar::Int(n)) => f.int(slot, n),
                        (8..=27, Scalar::Int(n)) => f.real(slot, n as f64),
                        (8..=27, Scalar::UInt(n)) => f.real(slot, n as f64),
                        (8..=27, Scalar::Float(x)) => f.real(slot, x),
                        _ => false,
                    }
                };
                if !ok {
                    return Err(refuse());
                }
            }
            f.finish(metadata).ok_or_else(refuse)
        }
    }

    /// A field name as its slot ([`field_slot`]); None for a name the reader does not know.
    struct Key(Option<usize>);

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                    Ok(Key(field_slot(v.as_bytes())))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// A field's value as JSON has it: an integer (as `serde_json::Value::as_i64` and `as_f64`
    /// take it), a float, a string; anything else is Other.
    enum Scalar<'a> {
        Int(i64),
        UInt(u64),
        Float(f64),
        Str(std::borrow::Cow<'a, str>),
        Other,
    }

    impl<'de> de::Deserialize<'de> for Scalar<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Scalar<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a JSON value")
                }
                fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Int(v))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                    Ok(i64::try_from(v).map_or(Scalar::UInt(v), Scalar::Int))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Float(v))
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Str(v.into()))
                }
                fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Str(v.to_string().into()))
                }
                fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Other)
                }
                fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Other)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Scalar<'de>, A::Error> {
                    Err(refuse())
                }
                fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Scalar<'de>, A::Error> {
                    Err(refuse())
                }
            }
            d.deserialize_any(V)
        }
    }

    /// A number field's value, read from its text as serde reads a number (an integer within
    /// i64, else u64, else a float); anything else is Other, and so is a number too small for
    /// float8 (0.0 to serde, which the reference refuses by its text), all of which leave the
    /// batch to the reference parser.
    struct Numeric<'a>(Scalar<'a>);

    impl<'de> de::Deserialize<'de> for Numeric<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw = <&'de serde_json::value::RawValue as de::Deserialize>::deserialize(d)?;
            Ok(Numeric(number_of(raw.get()).unwrap_or(Scalar::Other)))
        }
    }

    /// A JSON value's text as a number, if it is one.
    fn number_of(t: &str) -> Option<Scalar<'static>> {
        let first = *t.as_bytes().first()?;
        if first != b'-' && !first.is_ascii_digit() {
            return None;
        }
        // an integer stops i64's parser at its end, a float at its '.' or 'e'
        match t.parse::<i64>() {
            // serde reads -0 as the float -0.0
            Ok(0) if first == b'-' => return Some(Scalar::Float(-0.0)),
            Ok(n) => return Some(Scalar::Int(n)),
            Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
                if let Ok(n) = t.parse::<u64>() {
                    return Some(Scalar::UInt(n));
                }
            }
            Err(_) => {}
        }
        let x: f64 = t.parse().ok()?;
        if x == 0.0 && crate::json::nonzero_text(t) {
            return None;
        }
        Some(Scalar::Float(x))
    }
}
use text_reader::TextBatch;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experience::event::tests::event;
    use pgrx::prelude::*;
    use serde_json::{json, Value};

    /// The text reader against the reference: the same events, or the same error.
    /// Numbers written in ways `json!` cannot write read as the reference reads them, to the bit
    /// (`-0` is -0.0 in a real, as serde and `real[]` have it), or refused alike.
    #[test]
    fn number_texts_read_as_the_reference_reads_them() {
        let base = json!([event(1)]).to_string();
        for (text, want) in [
            ("-0", Some(-0.0f32)),
            ("-0.0", Some(-0.0)),
            ("0", Some(0.0)),
            ("1E5", Some(100000.0)),
            ("-2e-3", Some(-0.002)),
            ("123456789012345678901234567890", Some(1.2345679e29)),
            ("1e-400", None),
            ("1e-50", None),
            ("1e400", None),
        ] {
            let batch = base.replace(
                "\"reward_homeostasis\":0.5",
                &format!("\"reward_homeostasis\":{text}"),
            );
            assert!(batch.contains(text), "{batch}");
            let got = same_as_reference(&batch).ok().map(|e| e[0].rewards[0]);
            let reference = parse_batch("write_events_json", &crate::json::parse(&batch).unwrap())
                .ok()
                .map(|e| e[0].rewards[0]);
            assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "{text}");
            assert_eq!(
                reference.map(f32::to_bits),
                want.map(f32::to_bits),
                "{text}"
            );
        }
    }

    fn same_as_reference(text: &str) -> Result<Vec<Event>, String> {
        let fast = parse_batch_text(text).map_err(|e| e.to_string());
        let reference = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| parse_batch("write_events_json", &v).map_err(|e| e.to_string()));
        match (&fast, &reference) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) if b.starts_with("invalid JSON") => {
                assert!(a.ends_with(b.as_str()), "{text}: {a} vs {b}")
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{text}"),
            _ => panic!("{text}: text reader {fast:?}, reference {reference:?}"),
        }
        fast
    }

    #[test]
    fn the_text_reader_gives_the_events_and_errors_of_the_reference() {
        let mut with_metadata = event(2);
        with_metadata["metadata"] =
            json!({"intent_type": "explore", "executor_id": "agent-1", "parameters": {"d": 2}});
        let good = json!([event(1), with_metadata]).to_string();
        assert_eq!(same_as_reference(&good).unwrap().len(), 2);
        // taken by the text reader itself, not by the fallback
        assert_eq!(read_text(&good, crate::json::LIMITS).unwrap().len(), 2);
        // a malformed element, the reference's messages
        let mut variants: Vec<Value> = Vec::new();
        for (field, v) in [
            ("step_number", json!("three")),
            ("step_number", json!(1.0)),
            ("step_number", json!(1e3)),
            ("timestamp", json!(-1)),
            ("timestamp", json!(u64::MAX)),
            ("flags", json!(40000)),
            ("event_id", json!("000102030405060708090a0b0c0d0e")),
            ("event_id", json!(7)),
            ("reward_goal", json!(null)),
            ("reward_goal", json!("NaN")),
            ("reward_goal", json!(1e300)),
            ("reward_goal", json!(u64::MAX)),
            ("reward_goal", json!(-12)),
            ("state_l3", json!([1])),
            ("state_l3", json!({"x": 1})),
            ("state_l3", json!(true)),
            ("rewardd", json!(1)),
            ("metadata", json!(null)),
            ("metadata", json!({"intent_type": "explore"})),
            (
                "metadata",
                json!({"intent_type": "a", "executor_id": "b", "parameters": {"p": [1, {"q": null}]}}),
            ),
            (
                "metadata",
                json!({"intent_type": "a\u{0}b", "executor_id": "b"}),
            ),
            (
                "metadata",
                json!({"intent_type": "a", "executor_id": "b", "parameters": {"p": "\u{0}"}}),
            ),
        ] {
            let mut e = event(3);
            e[field] = v;
            variants.push(e);
        }
        let mut missing = event(3);
        missing.as_object_mut().unwrap().remove("action_l8");
        variants.push(missing);
        let mut no_rewards = event(3);
        no_rewards
            .as_object_mut()
            .unwrap()
            .remove("reward_homeostasis");
        variants.push(no_rewards);
        variants.push(json!(1));
        variants.push(json!([]));
        for v in variants {
            same_as_reference(&json!([event(1), v]).to_string()).ok();
        }
        let errors = [
            same_as_reference(&json!([event(1), event(1)]).to_string()),
            same_as_reference(r#"{"a": 1}"#),
            same_as_reference(r#"[{"event_id": "#),
            same_as_reference(r#"[] x"#),
            same_as_reference(""),
            // an error of the text after a refused element is the one reported
            same_as_reference(r#"[1] x"#),
            same_as_reference(r#"[1, tru]"#),
            same_as_reference(r#"[1, "\ud800"]"#),
            same_as_reference(&format!("[1, {}] x", event(2))),
        ];
        assert!(errors.iter().all(Result::is_err));
        // escapes in keys and values, a repeated field (the last one counts, as in jsonb)
        let mut text = json!([event(1)]).to_string();
        text = text.replacen("\"flags\":0", "\"fl\\u0061gs\":5,\"flags\":0", 1);
        assert!(text.contains("\\u0061"));
        let got = same_as_reference(&text).unwrap();
        assert_eq!(got[0].flags, 0);
        assert!(
            matches!(read_text(&text, crate::json::LIMITS), Err(false)),
            "a repeated field is the fallback's"
        );
        assert_eq!(
            text_reader::count_elements("[1, [2, 3], {\"a\": [4]}, null]"),
            Some(4)
        );
        assert_eq!(text_reader::count_elements("{\"a\": 1}"), None);
        let uuid = json!([event(1)]).to_string().replace(
            &format!("{:032x}", 1),
            "00000000-0000-0000-0000-00000000000\\u0031",
        );
        assert_eq!(same_as_reference(&uuid).unwrap()[0].event_id[15], 1);
        // numbers round to the nearest real through the nearest double, as the jsonb reader does
        let precise = json!([event(1)]).to_string().replace(
            "\"reward_homeostasis\":0.5",
            "\"reward_homeostasis\":0.10000000149011612",
        );
        assert_eq!(same_as_reference(&precise).unwrap()[0].rewards[0], 0.1f32);
    }

    #[test]
    fn a_document_past_the_cap_is_54000_and_builds_no_tree_of_the_batch() {
        let limit = PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED;
        let zeros = |n: usize| format!("[{}0]", "0,".repeat(n - 1));
        // not an array: read whole, under the cap
        let e = parse_batch_text(&format!("{{\"x\": {}}}", zeros(crate::json::MAX_VALUES)))
            .unwrap_err();
        assert_eq!(e.sqlstate(), limit, "{e}");
        // one event's metadata past the cap, after a good event
        let mut big = event(2);
        big["metadata"] = json!({"intent_type": "a", "executor_id": "b", "parameters": {}});
        let text = format!("[{}, {}]", event(1), big).replace(
            "\"parameters\":{}",
            &format!(
                "\"parameters\":{{\"p\":{}}}",
                zeros(crate::json::MAX_VALUES)
            ),
        );
        assert!(text.len() > 2 * crate::json::MAX_VALUES);
        let e = parse_batch_text(&text).unwrap_err();
        assert_eq!(e.sqlstate(), limit, "{e}");
        assert!(
            e.to_string().starts_with("write_events_json: element 1: "),
            "{e}"
        );
        // the metadata kept of all the events together: under the batch's budget (small caps
        // here: each event's parameters hold 300 values, the batch may keep 1 000)
        let small = crate::json::Limits {
            doc: 500,
            batch: 1000,
        };
        let per = 300;
        let events: Vec<String> = (0..5u8)
            .map(|i| {
                let mut e = event(i);
                e["metadata"] = json!({"intent_type": "a", "executor_id": "b", "parameters": {}});
                e.to_string().replace(
                    "\"parameters\":{}",
                    // nulls: a value each (a number counts twice, its text kept)
                    &format!("\"parameters\":{{\"p\":[{}null]}}", "null,".repeat(per - 3)),
                )
            })
            .collect();
        let e = parse_batch_text_within(&format!("[{}]", events.join(",")), small).unwrap_err();
        assert_eq!(e.sqlstate(), limit, "{e}");
        assert!(
            e.to_string().starts_with("write_events_json: element 3: "),
            "{e}"
        );
        // a batch of many small elements is not one document: every element under the cap
        let many = format!(
            "[{}]",
            (0..200u8)
                .map(|i| event(i).to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse_batch_text(&many).unwrap().len(), 200);
        // a malformed batch past the cap is still its syntax error, not the cap's
        let unclosed = format!("[{{\"x\": {}}}", zeros(2 * crate::json::MAX_VALUES));
        let e = parse_batch_text(&unclosed).unwrap_err();
        assert_eq!(
            e.sqlstate(),
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            "{e}"
        );
    }

    #[test]
    fn invalid_json_text_is_22p02_with_its_position() {
        let e = parse_batch_text("[{\"event_id\": }]").unwrap_err();
        assert_eq!(
            e.sqlstate(),
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
        );
        assert!(e
            .to_string()
            .starts_with("write_events_json: invalid JSON: "));
        assert!(e.to_string().contains("line 1 column 15"), "{e}");
    }
}
