//! What callers pass to the memory API, checked and parsed as plain functions (tested without a
//! server): `k`, similarity thresholds, energies, directions, `ttl`, metadata, one [`Memory`],
//! and the JSON batch of `remember_many` ([`parse_memories`], [`parse_memories_jsonb`]).

use pgrx::datum::Interval;
use serde_json::Value;

use crate::errors::{count_in_range, in_range, pg_interval, FractalityError};
use crate::jsonb::{self, JsonbArg};
use crate::models::Model;
use crate::vector::Vector;

/// Largest `k` recall accepts.
pub const MAX_K: i32 = 1000;

/// The key of a memory remembered without one: derived from its content, so that the same fact
/// told twice finds the same key. (The digest itself is computed in SQL: `md5`.)
pub const DERIVED_KEY_PREFIX: &str = "memory-";

pub fn check_k(k: i32) -> Result<usize, FractalityError> {
    const HINT: &str = "k is the number of memories wanted, from 1 to 1000.";
    count_in_range("k", k, 1, MAX_K, HINT)
}

pub fn check_similarity(name: &'static str, v: f64) -> Result<f64, FractalityError> {
    const HINT: &str = "A similarity threshold is a cosine similarity in [-1, 1].";
    in_range(name, v, -1.0, 1.0, HINT)
}

pub fn check_energy(name: &'static str, v: f64) -> Result<f64, FractalityError> {
    in_range(
        name,
        v,
        0.0,
        1.0,
        "Energy lies in [0, 1]; 0 reinforces nothing.",
    )
}

pub use crate::vector::check_direction;

/// The longest ttl, in years: `now() + ttl` stays far inside PostgreSQL's timestamps (to 294276
/// AD), so a ttl is refused by name rather than by the timestamp's overflow (22008).
const MAX_TTL_YEARS: f64 = 10_000.0;

/// The least an interval can add to a time, in microseconds: a month of 28 days (31 when it is
/// taken away), a day of 23 hours (25: a day across a change of daylight saving time in the
/// session's time zone). A ttl is positive when this is: `'7 days' - '1 hour'` is, `'1 mon -28
/// days'` is not (in February it is no time at all).
fn least_micros(t: &Interval) -> f64 {
    const HOUR: f64 = 3_600e6;
    let months = t.months() as f64 * if t.months() > 0 { 28.0 } else { 31.0 } * 24.0 * HOUR;
    let days = t.days() as f64 * if t.days() > 0 { 23.0 } else { 25.0 } * HOUR;
    months + days + t.micros() as f64
}

pub fn check_ttl(ttl: Option<Interval>) -> Result<Option<Interval>, FractalityError> {
    match ttl {
        Some(t) if least_micros(&t) <= 0.0 => Err(FractalityError::invalid(
            "ttl",
            format!("'{}'", pg_interval(&t)),
            "ttl is a positive interval (e.g. '7 days'), or NULL for a memory that never expires.",
        )),
        Some(t)
            if t.months() as f64 / 12.0
                + t.days() as f64 / 365.25
                + t.micros() as f64 / (365.25 * 86_400e6)
                > MAX_TTL_YEARS =>
        {
            Err(FractalityError::invalid(
                "ttl",
                format!("'{}'", pg_interval(&t)),
                "ttl is at most 10 000 years; NULL is a memory that never expires.",
            ))
        }
        t => Ok(t),
    }
}

pub fn check_metadata(m: &Value) -> Result<(), FractalityError> {
    if m.is_object() {
        Ok(())
    } else {
        Err(FractalityError::invalid(
            "metadata",
            m.to_string(),
            "metadata is a JSON object.",
        ))
    }
}

/// A memory's content is its text: what recall returns and searches the words of, and what a
/// memory without a key is known by (its key is derived from it), so it has words. Blank contents
/// were stored, all under the key of the empty text, so that a second reinforced the first.
pub fn check_content(content: &str) -> Result<(), FractalityError> {
    if content.trim().is_empty() {
        return Err(FractalityError::invalid(
            "content",
            format!("'{content}'"),
            "A memory's content is its text (what recall returns and searches): give it some words.",
        ));
    }
    Ok(())
}

/// One memory to remember.
#[derive(Debug)]
pub struct Memory {
    pub key: Option<String>,
    pub content: String,
    pub embedding: Vec<f32>,
    pub metadata: Value,
    pub ttl: Option<Interval>,
}

impl Memory {
    /// Its content, key, metadata, ttl and embedding (for `model`) checked.
    pub fn validate(&self, model: &Model) -> Result<(), FractalityError> {
        check_content(&self.content)?;
        if let Some(k) = &self.key {
            crate::graph::check_key(k)?;
        }
        check_metadata(&self.metadata)?;
        check_ttl(self.ttl)?;
        let v = Vector::from_slice(&self.embedding)?;
        model.check(&v)?;
        check_direction("embedding", &self.embedding)
    }
}

/// The batch of `remember_many`: a JSON array of memory objects (see [`parse_memory`]).
pub fn parse_memories(doc: &Value) -> Result<Vec<(Memory, Option<String>)>, FractalityError> {
    let Value::Array(items) = doc else {
        return Err(FractalityError::invalid(
            "memories",
            "not a JSON array",
            "Pass a JSON array of objects {content, embedding[, node_key, metadata, ttl]}.",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_memory(i, item))
        .collect()
}

/// Element `i` (0-based) of a batch: {content, embedding[, node_key, metadata, ttl]}, with its
/// ttl as text (read as an interval by the caller).
pub fn parse_memory(i: usize, item: &Value) -> Result<(Memory, Option<String>), FractalityError> {
    let bad = |field: &str, problem: &str| FractalityError::BadMemory {
        element: i + 1,
        field: field.to_string(),
        problem: problem.to_string(),
    };
    let Value::Object(o) = item else {
        return Err(bad("(element)", "not a JSON object"));
    };
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "content" | "embedding" | "node_key" | "metadata" | "ttl"
        ) {
            return Err(bad(k, "unknown field"));
        }
    }
    let content = match o.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(bad("content", "missing or not a string")),
    };
    let embedding = match o.get("embedding") {
        Some(Value::Array(a)) => {
            let mut v = Vec::with_capacity(a.len());
            for (j, x) in a.iter().enumerate() {
                let problem = match x.as_f64().map(embedding_value) {
                    Some(Some(f)) => {
                        v.push(f);
                        continue;
                    }
                    Some(None) => "beyond a real",
                    None => "not a number",
                };
                let x = crate::errors::shown(x.to_string());
                return Err(bad(
                    "embedding",
                    &format!("element {} is {x}, {problem}", j + 1),
                ));
            }
            v
        }
        _ => return Err(bad("embedding", "missing or not an array")),
    };
    let key = match o.get("node_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        _ => return Err(bad("node_key", "not a string")),
    };
    let metadata = match o.get("metadata") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(m @ Value::Object(_)) => m.clone(),
        _ => return Err(bad("metadata", "not a JSON object")),
    };
    let ttl = match o.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        _ => return Err(bad("ttl", "not an interval as text (e.g. \"7 days\")")),
    };
    Ok((
        Memory {
            key,
            content,
            embedding,
            metadata,
            ttl: None,
        },
        ttl,
    ))
}

/// The arrays form of `remember_many`: memory `i` is `contents[i]`, `embeddings[i]`, and, where
/// those arrays are given, `node_keys[i]` (NULL: derived from the content), `metadata[i]` (NULL:
/// `{}`) and `ttls[i]` (NULL: never expires). Every given array has the length of `contents`; a
/// NULL content or embedding is refused with its position (1-based, as SQL counts).
pub fn memories_from_arrays(
    node_keys: Option<Vec<Option<String>>>,
    contents: Vec<Option<String>>,
    embeddings: Vec<Option<Vec<f32>>>,
    metadata: Option<Vec<Option<Value>>>,
    ttls: Option<Vec<Option<Interval>>>,
) -> Result<Vec<Memory>, FractalityError> {
    const HINT: &str = "Pass one element per memory in each array: contents and embeddings, and node_keys, metadata and ttls when given (or NULL for the whole array).";
    let n = contents.len();
    let same = |name: &'static str, len: Option<usize>| match len {
        Some(len) if len != n => Err(FractalityError::invalid(
            name,
            format!("{len} elements for {n} contents"),
            HINT,
        )),
        _ => Ok(()),
    };
    same("embeddings", Some(embeddings.len()))?;
    same("node_keys", node_keys.as_ref().map(Vec::len))?;
    same("metadata", metadata.as_ref().map(Vec::len))?;
    same("ttls", ttls.as_ref().map(Vec::len))?;
    let null = |name: &'static str, i: usize| FractalityError::NullElement {
        name,
        position: i + 1,
        hint: "Every memory has a content and an embedding.",
    };
    let mut keys = node_keys.map(Vec::into_iter);
    let mut metadata = metadata.map(Vec::into_iter);
    let mut ttls = ttls.map(Vec::into_iter);
    contents
        .into_iter()
        .zip(embeddings)
        .enumerate()
        .map(|(i, (content, embedding))| {
            Ok(Memory {
                key: keys.as_mut().and_then(|k| k.next().flatten()),
                content: content.ok_or_else(|| null("contents", i))?,
                embedding: embedding.ok_or_else(|| null("embeddings", i))?,
                metadata: metadata
                    .as_mut()
                    .and_then(|m| m.next().flatten())
                    .unwrap_or_else(|| Value::Object(Default::default())),
                ttl: ttls.as_mut().and_then(|t| t.next().flatten()),
            })
        })
        .collect()
}

/// A number of an embedding as an f32: finite and within f32's range.
fn embedding_value(v: f64) -> Option<f32> {
    // as PostgreSQL's real input rounds it: the largest real written out (3.4028235e38) is one
    let r = v as f32;
    r.is_finite().then_some(r)
}

/// [`parse_memories`] over the jsonb argument in place: each element read from its binary
/// container ([`memory_from_jsonb`]), without printing the batch to text and parsing it again
/// (for 10 000 memories of 384 numbers, most of the time and memory of that round trip); an
/// element it does not take as it is (anything malformed) goes through serde and
/// [`parse_memory`], so results and error messages are those of parse_memories.
pub fn parse_memories_jsonb(
    doc: &JsonbArg<'_>,
) -> Result<Vec<(Memory, Option<String>)>, FractalityError> {
    let root = doc.root();
    if !root.is_array() {
        return parse_memories(&doc.to_serde()?);
    }
    let mut out = Vec::new();
    let mut failed = None;
    // the metadata the batch keeps, held to json::MAX_BATCH_VALUES together
    let mut kept = 0usize;
    jsonb::elements(&root, |i, item| {
        if failed.is_some() {
            return;
        }
        match memory_from_jsonb(&item)
            .map(Ok)
            .unwrap_or_else(|| item.to_serde().and_then(|v| parse_memory(i, &v)))
        {
            Ok(m) => {
                kept += crate::json::count(&m.0.metadata);
                if kept > crate::json::MAX_BATCH_VALUES {
                    failed = Some(crate::json::too_large(format!(
                        "memories, element {}",
                        i + 1
                    )));
                    return;
                }
                out.push(m)
            }
            Err(e) => failed = Some(e),
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// One well-formed memory object read in place; None for anything else (the caller then reads
/// it through serde, which names the problem).
fn memory_from_jsonb(item: &jsonb::Value<'_>) -> Option<(Memory, Option<String>)> {
    use jsonb::Value as J;
    let text = |v: &J<'_>| v.as_str().map(str::to_string);
    let (mut content, mut embedding, mut key, mut metadata, mut ttl) =
        (None, None, None, None, None);
    let whole = jsonb::pairs(item, |k, v| match k {
        b"content" => {
            content = text(&v);
            content.is_some()
        }
        b"embedding" => {
            let mut e = Vec::new();
            let mut good = true;
            let array = jsonb::elements(&v, |_, x| match x.as_f64().and_then(embedding_value) {
                Some(f) if good => e.push(f),
                _ => good = false,
            });
            embedding = Some(e);
            array && good
        }
        b"node_key" | b"ttl" => {
            let t = match v {
                J::Null => None,
                J::String(_) => match text(&v) {
                    Some(t) => Some(t),
                    None => return false,
                },
                _ => return false,
            };
            if k == b"ttl" {
                ttl = t;
            } else {
                key = t;
            }
            true
        }
        b"metadata" => match v {
            J::Null => true,
            _ if v.is_object() => {
                metadata = v.to_serde().ok();
                metadata.is_some()
            }
            _ => false,
        },
        _ => false,
    });
    if !whole {
        return None;
    }
    Some((
        Memory {
            key,
            content: content?,
            embedding: embedding?,
            metadata: metadata.unwrap_or_else(|| Value::Object(Default::default())),
            ttl: None,
        },
        ttl,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(
            check_k(0).unwrap_err().to_string(),
            "invalid value for k: 0"
        );
        assert!(check_k(1001).is_err());
        assert_eq!(check_k(10), Ok(10));
        assert!(check_similarity("min_similarity", 1.5).is_err());
        assert_eq!(
            check_content(" \t").unwrap_err().to_string(),
            "invalid value for content: ' \t'"
        );
        assert!(check_content("").is_err());
        assert_eq!(check_content(" a fact "), Ok(()));
        assert!(check_similarity("min_similarity", f64::NAN).is_err());
        assert!(check_energy("reinforce", -0.1).is_err());
        assert!(check_direction("query", &[0.0, 0.0]).is_err());
        assert!(check_direction("query", &[0.0, 1.0]).is_ok());
        // squared lengths single precision cannot hold, as pgvector sums them
        assert!(check_direction("query", &[1e-23; 384]).is_err());
        assert!(check_direction("query", &[1e19; 384]).is_err());
        assert!(check_direction("query", &[1e-10; 384]).is_ok());
        assert!(check_direction("query", &[1e18; 300]).is_ok());
    }

    #[test]
    fn a_memory_s_bad_embedding_value_is_named_with_its_place() {
        // the element named by its place (from 1) and its value
        let msg = |e: &str| {
            let m = serde_json::from_str(&format!("{{\"content\": \"c\", \"embedding\": {e}}}"));
            parse_memory(1, &m.unwrap()).unwrap_err().to_string()
        };
        assert_eq!(
            msg("[0.5, 1e39]"),
            "memory 2, field \"embedding\": element 2 is 1e+39, beyond a real"
        );
        assert_eq!(
            msg("[0.5, \"x\"]"),
            "memory 2, field \"embedding\": element 2 is \"x\", not a number"
        );
        assert_eq!(
            parse_memory(
                0,
                &serde_json::json!({"content": "c", "embedding": [0.5, -2.0]})
            )
            .unwrap()
            .0
            .embedding,
            vec![0.5, -2.0]
        );
        // the largest real written out is one, as PostgreSQL's real input rounds it
        assert_eq!(embedding_value(3.4028235e38), Some(f32::MAX));
        assert_eq!(
            embedding_value(-340282350000000000000000000000000000000.0),
            Some(f32::MIN)
        );
        assert_eq!(embedding_value(3.4028236e38), None);
    }

    #[test]
    fn arrays_pair_up_and_name_the_bad_one() {
        let s = |x: &str| Some(x.to_string());
        let ms = memories_from_arrays(
            Some(vec![s("k"), None]),
            vec![s("a"), s("b")],
            vec![Some(vec![1.0, 0.0]), Some(vec![0.0, 1.0])],
            Some(vec![None, Some(serde_json::json!({"x": 1}))]),
            None,
        )
        .unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].key.as_deref(), Some("k"));
        assert_eq!(ms[1].key, None);
        assert_eq!(ms[0].metadata, serde_json::json!({}));
        assert_eq!(ms[1].metadata, serde_json::json!({"x": 1}));
        assert_eq!(ms[1].embedding, vec![0.0, 1.0]);
        assert!(ms[0].ttl.is_none());
        let e = memories_from_arrays(
            None,
            vec![s("a"), s("b")],
            vec![Some(vec![1.0])],
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for embeddings: 1 elements for 2 contents"
        );
        let e = memories_from_arrays(
            None,
            vec![s("a"), None],
            vec![Some(vec![1.0]), Some(vec![1.0])],
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for contents: NULL at position 2"
        );
        assert_eq!(
            e.sqlstate(),
            pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED
        );
        let e =
            memories_from_arrays(Some(vec![]), vec![s("a")], vec![None], None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for node_keys: 0 elements for 1 contents"
        );
        let e = memories_from_arrays(None, vec![s("a")], vec![None], None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for embeddings: NULL at position 1"
        );
        assert!(
            memories_from_arrays(None, vec![], vec![], None, Some(vec![]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn batches_parse_and_name_the_bad_element() {
        let ok = serde_json::json!([
            {"content": "a", "embedding": [1, 0]},
            {"content": "b", "embedding": [0, 1], "node_key": "k", "metadata": {"x": 1}, "ttl": "1 day"}
        ]);
        let parsed = parse_memories(&ok).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0.key.as_deref(), Some("k"));
        assert_eq!(parsed[1].1.as_deref(), Some("1 day"));
        let e = parse_memories(
            &serde_json::json!([{"content": "a", "embedding": [1, 0]}, {"content": "b"}]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "memory 2, field \"embedding\": missing or not an array"
        );
        assert!(parse_memories(&serde_json::json!({"content": "a"})).is_err());
        assert!(parse_memories(
            &serde_json::json!([{"content": "a", "embedding": [1], "extra": 1}])
        )
        .is_err());
        assert!(
            parse_memories(&serde_json::json!([{"content": "a", "embedding": ["x"]}])).is_err()
        );
    }
}
