//! JSON read into a `serde_json::Value` with a cap on the number of values: a tree of the whole
//! document is built in Rust's heap, outside PostgreSQL's memory contexts, at 32 bytes or more a
//! value (16 times the text of `[0,0,...]`), so an argument of a few hundred megabytes could
//! otherwise ask for gigabytes, and a refused allocation aborts the server. A document over the
//! cap is 54000 (`FractalityError::TooLarge`), as PostgreSQL refuses a value past its own limits.
//!
//! Numbers are kept as written (serde_json's `arbitrary_precision`): each holds its text in a
//! heap string of its own besides its 32 bytes, so a number counts as two values, and one more
//! for every 32 characters of its text.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

use crate::errors::FractalityError;

/// The most values (scalars, arrays and objects, each counted once) one document read whole may
/// hold: about 256 MB of tree (a `freeze` of a node with a million stream points holds about
/// five million). A batch of events is read element by element, each element under this cap.
pub const MAX_VALUES: usize = 8_000_000;

/// The most values a batch keeps of all its elements' documents together (the metadata of its
/// events): about 1 GB of trees, the most PostgreSQL takes as one argument.
pub const MAX_BATCH_VALUES: usize = 32_000_000;

/// serde's error message for a document past its cap (the caps are in [`too_large`]'s).
const TOO_MANY_VALUES: &str = "more JSON values than the cap";

/// The caps a reader holds a document and a batch to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// values of one document
    pub doc: usize,
    /// values a batch keeps of its elements' documents together
    pub batch: usize,
}

/// The caps of every call: [`MAX_VALUES`] and [`MAX_BATCH_VALUES`].
pub const LIMITS: Limits = Limits {
    doc: MAX_VALUES,
    batch: MAX_BATCH_VALUES,
};

/// `text` parsed as `serde_json::from_str::<Value>` would, refused past [`MAX_VALUES`].
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    parse_within(text, MAX_VALUES)
}

/// [`parse`] refusing past `cap` values.
pub fn parse_within(text: &str, cap: usize) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut left = cap;
    let v = Bounded { left: &mut left }.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The values of `v`, counted as [`Bounded`] counts them.
pub fn count(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(count).sum::<usize>(),
        Value::Number(n) => 1 + number_cost(n.as_str()),
        _ => 1,
    }
}

/// What a number's text costs beyond its value: its heap string, one value per 32 characters
/// begun.
fn number_cost(text: &str) -> usize {
    1 + text.len() / 32
}

/// Whether a JSON number's text has a digit other than 0 before its exponent (a number that
/// float8 reads as 0 may not be 0).
pub fn nonzero_text(text: &str) -> bool {
    text.bytes()
        .take_while(|b| !matches!(b, b'e' | b'E'))
        .any(|b| (b'1'..=b'9').contains(&b))
}

/// How deeply `v` nests: 0 for a scalar, 1 for an array or object of scalars, ...
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether serde's error is the cap's.
pub fn is_too_large(e: &impl fmt::Display) -> bool {
    e.to_string().starts_with(TOO_MANY_VALUES)
}

/// The cap's error for `context`, from serde's.
pub fn too_large(context: impl Into<String>) -> FractalityError {
    FractalityError::TooLarge {
        context: context.into(),
        detail: format!(
            "more than {MAX_VALUES} JSON values (a number counts as two) in one document, or past {MAX_BATCH_VALUES} in the metadata of one batch"
        ),
    }
}

/// The key under which serde_json hands over a number it keeps as written.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// What follows the number token: a number's text (an owned string), or the value of a caller's
/// key of that name.
enum Entry {
    Number(String),
    Value(Value),
}

/// Reads what follows the number token: as [`Bounded`] but for an owned string.
struct NumberOrValue<'a> {
    left: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for NumberOrValue<'_> {
    type Value = Entry;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumberOrValue<'_> {
    type Value = Entry;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Entry, E> {
        Ok(Entry::Number(s))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Entry, E> {
        self.bounded()?.visit_bool(b).map(Entry::Value)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Entry, E> {
        self.bounded()?.visit_i64(n).map(Entry::Value)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Entry, E> {
        self.bounded()?.visit_u64(n).map(Entry::Value)
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Entry, E> {
        self.bounded()?.visit_f64(x).map(Entry::Value)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Entry, E> {
        self.bounded()?.visit_str(s).map(Entry::Value)
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Entry, E> {
        self.bounded()?.visit_str(s).map(Entry::Value)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
        self.bounded()?.visit_unit().map(Entry::Value)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Entry, A::Error> {
        self.bounded()?.visit_seq(seq).map(Entry::Value)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
        self.bounded()?.visit_map(map).map(Entry::Value)
    }
}

impl<'a> NumberOrValue<'a> {
    /// The value of a caller's key, counted as [`Bounded::deserialize`] counts one.
    fn bounded<E: de::Error>(self) -> Result<Bounded<'a>, E> {
        if *self.left == 0 {
            return Err(E::custom(TOO_MANY_VALUES));
        }
        *self.left -= 1;
        Ok(Bounded { left: self.left })
    }
}

/// An object's key, borrowed from the text where it can be (the number token always is).
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(s.into()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(s.to_owned().into()))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(s.into()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A `Value` seed that counts what it builds against `left`. For JSON text only: a
/// deserializer of a `serde_json::Value` hands strings over as owned ones, which the number
/// token's value is told apart by (see [`NumberOrValue`]).
pub struct Bounded<'a> {
    pub left: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if *self.left == 0 {
            return Err(de::Error::custom(TOO_MANY_VALUES));
        }
        *self.left -= 1;
        d.deserialize_any(self)
    }
}

impl Bounded<'_> {
    /// A number, charged as [`count`] charges it.
    fn number<E: de::Error>(self, n: Number) -> Result<Value, E> {
        let cost = number_cost(n.as_str());
        if *self.left < cost {
            return Err(E::custom(TOO_MANY_VALUES));
        }
        *self.left -= cost;
        Ok(Value::Number(n))
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        self.number(n.into())
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        self.number(n.into())
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Value, E> {
        match Number::from_f64(x) {
            Some(n) => self.number(n),
            None => Ok(Value::Null),
        }
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Bounded {
            left: &mut *self.left,
        })? {
            crate::errors::interrupts_every(out.len(), 1024);
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(k)) = map.next_key::<Key>()? {
            // a number, kept as written: serde_json's arbitrary_precision hands it over as a map
            // of one entry under this key, its text as an owned string, which no string of the
            // JSON text is (those come borrowed or copied); an object of the caller's with this
            // key is an object
            if out.is_empty() && k == NUMBER_TOKEN {
                match map.next_value_seed(NumberOrValue {
                    left: &mut *self.left,
                })? {
                    Entry::Number(text) => {
                        let n = text.parse::<Number>().map_err(de::Error::custom)?;
                        return Bounded {
                            left: &mut *self.left,
                        }
                        .number(n);
                    }
                    Entry::Value(v) => {
                        out.insert(k.into_owned(), v);
                        continue;
                    }
                }
            }
            let k = k.into_owned();
            let v = map.next_value_seed(Bounded {
                left: &mut *self.left,
            })?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_serde_does() {
        for text in [
            r#"{"a": [1, -2, 3.5, 1e300, "x\u00e9", true, null, {"b": {}}], "a": 0}"#,
            "[]",
            // kept as written: beyond f64's digits, range and integers, trailing zeros
            r#"{"big": 123456789012345678901234567890, "dec": 0.12345678901234567890123,
                "e": 1e400, "z": 1.10, "neg": -0.0}"#,
            "18446744073709551615",
            "-9223372036854775808",
            r#""\ud83d\ude00""#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
        for bad in ["[1,]", "{\"a\" 1}", "[1] x", ""] {
            let want = serde_json::from_str::<Value>(bad).unwrap_err().to_string();
            assert_eq!(parse(bad).unwrap_err().to_string(), want, "{bad}");
        }
    }

    #[test]
    fn numbers_are_kept_as_written() {
        let text = r#"{"big":123456789012345678901234567890,"dec":0.12345678901234567890123,"e":1e+400,"z":1.10}"#;
        assert_eq!(parse(text).unwrap().to_string(), text);
        // an object of the caller's under serde_json's own key for a number is an object
        for text in [
            r#"{"$serde_json::private::Number":"7"}"#,
            r#"{"m":{"$serde_json::private::Number":"x","z":1}}"#,
            r#"{"$serde_json::private::Number":[1,{"a":null}]}"#,
        ] {
            let v = parse(text).unwrap();
            assert_eq!(v.to_string(), text);
            assert!(v.is_object());
        }
    }

    #[test]
    fn refuses_past_the_cap() {
        let at_cap = format!("[{}null]", "null,".repeat(MAX_VALUES - 2));
        assert_eq!(
            parse(&at_cap).unwrap().as_array().unwrap().len(),
            MAX_VALUES - 1
        );
        let past = format!("[{}null]", "null,".repeat(MAX_VALUES - 1));
        let e = parse(&past).unwrap_err();
        assert!(is_too_large(&e), "{e}");
        // a number counts twice (its text is a string of its own), and once more per 32
        // characters of it; count agrees
        let n = (MAX_VALUES - 1) / 2;
        let zeros = parse(&format!("[{}0]", "0,".repeat(n - 1))).unwrap();
        assert_eq!(count(&zeros), 1 + 2 * n);
        assert!(is_too_large(
            &parse(&format!("[{}0]", "0,".repeat(n))).unwrap_err()
        ));
        let text = format!("[0.{}, 1.5, 1e400]", "1".repeat(62));
        let long = parse(&text).unwrap();
        assert_eq!(count(&long), 1 + 4 + 2 + 2);
        assert!(parse_within(&text, 9).is_ok());
        assert!(is_too_large(&parse_within(&text, 8).unwrap_err()));
        let nested = format!("{{\"a\": [{}{{}}]}}", "[],".repeat(MAX_VALUES));
        assert!(is_too_large(&parse(&nested).unwrap_err()));
    }
}
