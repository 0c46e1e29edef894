//! What the graph functions are given, checked without a server: keys, relationship types,
//! weights, energies and depths ([`check_key`], ...), the fields of `upsert_node`
//! ([`NodeFields`]), and the document `freeze` reads ([`parse_frozen`]).

use serde::Deserialize;

use crate::errors::{count_in_range, in_range, pg_float, FractalityError};
use crate::vector::Vector;

/// Deepest `traverse` accepted.
pub const MAX_DEPTH: i32 = 100;

// ---- validation ------------------------------------------------------------------------------

pub fn check_depth(depth: i32) -> Result<usize, FractalityError> {
    const HINT: &str = "max_depth must be between 0 and 100.";
    count_in_range("max_depth", depth, 0, MAX_DEPTH, HINT)
}

pub fn check_weight(weight: f64) -> Result<f64, FractalityError> {
    in_range(
        "weight",
        weight,
        -1.0,
        1.0,
        "An edge weight lies in [-1, 1].",
    )
}

pub fn check_atp(atp: f64) -> Result<f64, FractalityError> {
    in_range("atp", atp, 0.0, 1.0, "Energy (atp) lies in [0, 1].")
}

/// `text` (named `name`) of 1 to `max` characters, or 22023 with `hint`.
fn check_length<'a>(
    name: &'static str,
    text: &'a str,
    max: usize,
    hint: &'static str,
) -> Result<&'a str, FractalityError> {
    if (1..=max).contains(&text.chars().count()) {
        Ok(text)
    } else {
        Err(FractalityError::invalid(name, format!("'{text}'"), hint))
    }
}

pub fn check_relationship(rel: &str) -> Result<&str, FractalityError> {
    const HINT: &str = "A relationship type has 1 to 50 characters.";
    check_length("relationship type", rel, 50, HINT)
}

pub fn check_key(key: &str) -> Result<&str, FractalityError> {
    check_key_named("node_key", key)
}

/// A node key passed as the argument `name`.
pub fn check_key_named<'a>(name: &'static str, key: &'a str) -> Result<&'a str, FractalityError> {
    check_length(name, key, 255, "A node key has 1 to 255 characters.")
}

// ---- nodes -----------------------------------------------------------------------------------

/// What `upsert_node` writes; `None` keeps what is stored (or the column default on insert).
pub struct NodeFields<'a> {
    pub key: &'a str,
    pub label: Option<&'a str>,
    pub metadata: Option<serde_json::Value>,
    pub atp: Option<f64>,
    pub embedding: Option<Vector<'a>>,
    /// The model of `embedding`.
    pub model: &'a str,
    pub node_type: Option<&'a str>,
}

impl NodeFields<'_> {
    pub fn validate(&self) -> Result<(), FractalityError> {
        check_key(self.key)?;
        if let Some(a) = self.atp {
            check_atp(a)?;
        }
        if let Some(m) = &self.metadata {
            if !m.is_object() {
                return Err(FractalityError::invalid(
                    "metadata",
                    m.to_string(),
                    "metadata is a JSON object.",
                ));
            }
        }
        if let Some(t) = self.node_type {
            if t.chars().count() > 50 {
                return Err(FractalityError::invalid(
                    "type",
                    format!("'{t}'"),
                    "A node type has at most 50 characters.",
                ));
            }
        }
        crate::models::check_name(self.model)?;
        if let Some(v) = &self.embedding {
            crate::vector::check_direction("embedding", v.as_slice())?;
        }
        Ok(())
    }
}

// ---- the frozen document --------------------------------------------------------------------

/// What `freeze` reads: the shape `thaw` writes. A field it does not know is refused (a
/// misspelt `lable` or `wieght` would otherwise be dropped without a word); the fields `thaw`
/// writes that freeze does not restore (`user_id`, `created_at`, `updated_at`, an edge's `id`)
/// are taken and left.
#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Frozen {
    /// The id of the node thawed (as `thaw` gives it, a uuid): an edge whose other node it is,
    /// is a self-loop, whatever key the document is frozen under.
    pub id: Option<String>,
    pub user_id: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub node_key: Option<String>,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub node_type: Option<String>,
    /// (The JSON values below are taken out of the document before serde reads the rest: see
    /// [`parse_frozen`].)
    #[serde(skip)]
    pub metadata: Option<serde_json::Value>,
    /// The node's other energy fields (network, ...) as `thaw` gives them: merged into its own.
    #[serde(skip)]
    pub energy: Option<serde_json::Value>,
    pub atp: Option<f64>,
    /// The moment of `atp`, as `thaw` gives it (a time as text): the energy is decayed from it to
    /// now; absent or null: `atp` is the energy of now.
    pub atp_at: Option<String>,
    /// When the node expires, as `thaw` gives it (a time as text); absent or null: as it was.
    pub expires_at: Option<String>,
    pub embedding: Option<Vec<f32>>,
    /// The model of `embedding`, as `thaw` names it (absent: freeze's `model` argument).
    pub model: Option<String>,
    /// Embeddings by model (thaw writes every model's here).
    pub embeddings: std::collections::BTreeMap<String, Vec<f32>>,
    pub edges: FrozenEdges,
    pub stream: Vec<FrozenPoint>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FrozenEdges {
    pub outgoing: Vec<FrozenEdge>,
    pub incoming: Vec<FrozenEdge>,
}

/// An edge of the node, as `thaw` gives it: the other node's key is `to_key` in `outgoing`,
/// `from_key` in `incoming`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FrozenEdge {
    /// The edge's id, as `thaw` gives it (not restored: the edge is keyed by its nodes and type).
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(rename = "to_key", alias = "from_key")]
    pub key: String,
    /// The other node's id, as `thaw` gives it (`to_node`, `from_node`), a uuid.
    #[serde(default, rename = "to_node", alias = "from_node")]
    pub node: Option<String>,
    #[serde(rename = "type", default = "child")]
    pub relationship: String,
    #[serde(default = "one")]
    pub weight: f64,
    /// The edge's metadata, as `thaw` gives it (a JSON object), merged into the edge's.
    #[serde(skip)]
    pub metadata: Option<serde_json::Value>,
}

fn child() -> String {
    "child".into()
}
fn one() -> f64 {
    1.0
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FrozenPoint {
    pub time: String,
    pub atp_level: f64,
    #[serde(default)]
    pub attention_score: Option<f64>,
    /// As `thaw` gives it: an array (of arrays, for more dimensions) whose elements are numbers,
    /// NULL, or "NaN" / "Infinity" / "-Infinity" as PostgreSQL writes a real in JSON; the column
    /// `real[]` reads it (22P02 for anything else).
    #[serde(skip)]
    pub resonance_vector: Option<serde_json::Value>,
}

/// `field` of the object `v` taken out (None for null, for none, or when `v` is no object).
fn take(v: &mut serde_json::Value, field: &str) -> Option<serde_json::Value> {
    v.as_object_mut()
        .and_then(|o| o.remove(field))
        .filter(|x| !x.is_null())
}

/// `field` taken out of each element of the array at `path` of `doc` (None where there is none).
fn take_each(
    doc: &mut serde_json::Value,
    path: &[&str],
    field: &str,
) -> Vec<Option<serde_json::Value>> {
    let mut at = Some(doc);
    for p in path {
        at = at.and_then(|v| v.get_mut(*p));
    }
    match at.and_then(|v| v.as_array_mut()) {
        Some(items) => items.iter_mut().map(|i| take(i, field)).collect(),
        None => Vec::new(),
    }
}

/// The most elements a stream point's `resonance_vector` holds (the table's check
/// `consciousness_streams_vector_size`): the archive packs up to 1 000 points of a node in one
/// row, and a vector of any size could make that row too large to write.
pub const MAX_RESONANCE_VECTOR: usize = 1_000_000;

/// The elements of a JSON value read as an array of any dimensions: of a string, which the column
/// reads as an array literal (`"{1,2}"`), its commas and one; 1 for any other scalar.
fn leaves(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => a.iter().map(leaves).sum(),
        serde_json::Value::String(s) => s.matches(',').count() + 1,
        _ => 1,
    }
}

/// The first number of a JSON value read as an array of any dimensions that a `real` cannot
/// hold (one that rounds to an infinity, as PostgreSQL's real input rounds it: 3.4028235e38, the
/// largest real as thaw writes it, is one), as written: the column's cast would fail with 22003
/// naming neither the point nor the field.
fn beyond_real(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Array(a) => a.iter().find_map(beyond_real),
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|x| !(*x as f32).is_finite())
            .map(|_| n.to_string()),
        _ => None,
    }
}

/// 22023 for stream point `i` at the infinite time `time`.
pub fn infinite_point(time: &str, i: usize) -> FractalityError {
    FractalityError::invalid(
        "stream point time",
        format!("{time} (point {i})"),
        "A stream point's time is a finite timestamp, as thaw gives it.",
    )
}

pub fn parse_frozen(mut doc: serde_json::Value) -> Result<Frozen, FractalityError> {
    // The caller's own JSON values (metadata, energy, resonance vectors) are taken out before
    // serde reads the rest into the struct and put back after: serde_json's Value, read through
    // serde (numbers kept as written), takes an object whose key is serde_json's own for a
    // number for a number.
    let metadata = take(&mut doc, "metadata");
    let energy = take(&mut doc, "energy");
    let edge_metadata = take_each(&mut doc, &["edges", "outgoing"], "metadata");
    let in_edge_metadata = take_each(&mut doc, &["edges", "incoming"], "metadata");
    let vectors = take_each(&mut doc, &["stream"], "resonance_vector");
    let mut frozen = Frozen::deserialize(&doc).map_err(|e| {
        // serde names the expected type, not the field: the first field that fails alone
        let field = doc.as_object().and_then(|o| {
            o.iter().find_map(|(k, v)| {
                let alone = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
                Frozen::deserialize(&alone).is_err().then(|| k.clone())
            })
        });
        FractalityError::invalid(
            "frozen node",
            match field {
                Some(f) => format!("field \"{f}\": {e}"),
                None => e.to_string(),
            },
            "Pass the shape thaw() returns: node_key, label, type, metadata, atp, embedding, edges.outgoing, edges.incoming, stream.",
        )
    })?;
    frozen.metadata = metadata;
    frozen.energy = energy;
    for (e, m) in frozen.edges.outgoing.iter_mut().zip(edge_metadata) {
        e.metadata = m;
    }
    for (e, m) in frozen.edges.incoming.iter_mut().zip(in_edge_metadata) {
        e.metadata = m;
    }
    for (p, r) in frozen.stream.iter_mut().zip(vectors) {
        p.resonance_vector = r;
    }
    // the ids tell a self-loop from an edge to another node: each a uuid, as thaw gives it
    let ids = frozen.id.iter().map(|v| ("id", v)).chain(
        frozen
            .edges
            .outgoing
            .iter()
            .filter_map(|e| e.node.as_ref().map(|v| ("to_node", v))),
    );
    let ids = ids.chain(
        frozen
            .edges
            .incoming
            .iter()
            .filter_map(|e| e.node.as_ref().map(|v| ("from_node", v))),
    );
    for (field, v) in ids {
        if parse_uuid(v).is_none() {
            return Err(FractalityError::invalid(
                field,
                format!("'{v}'"),
                "A node's id in a frozen document is a uuid, as thaw gives it (or leave it out).",
            ));
        }
    }
    if frozen.node_key.is_none() {
        return Err(FractalityError::invalid(
            "frozen node",
            "no node_key",
            "A frozen node names its node_key.",
        ));
    }
    for (i, p) in frozen.stream.iter().enumerate() {
        // a stream point's time is finite (the table's check would refuse it with 23514); the
        // plain spellings here, any other when the points are written (graph_freeze_stream.sql)
        let t = p.time.trim().to_ascii_lowercase();
        if matches!(t.as_str(), "infinity" | "+infinity" | "-infinity") {
            return Err(infinite_point(&p.time, i));
        }
        // and its resonance vector within the table's bound (23514 otherwise)
        let n = p.resonance_vector.as_ref().map_or(0, leaves);
        if n > MAX_RESONANCE_VECTOR {
            return Err(FractalityError::invalid(
                "stream point resonance_vector",
                format!("{n} elements (point {i})"),
                "A stream point's resonance_vector holds at most 1 000 000 elements.",
            ));
        }
        if let Some(x) = p.resonance_vector.as_ref().and_then(beyond_real) {
            return Err(FractalityError::invalid(
                "stream point resonance_vector",
                format!("{x} (point {i})"),
                "A stream point's resonance_vector holds reals: numbers within about 3.4e38.",
            ));
        }
        check_atp(p.atp_level).map_err(|_| {
            FractalityError::invalid(
                "stream point atp_level",
                pg_float(p.atp_level),
                "A stream point's atp_level lies in [0, 1].",
            )
        })?;
    }
    if let Some(e) = frozen.energy.as_ref().filter(|e| !e.is_object()) {
        return Err(FractalityError::invalid(
            "energy",
            e.to_string(),
            "A node's energy is a JSON object (its network and other fields; atp apart).",
        ));
    }
    for e in frozen.edges.outgoing.iter().chain(&frozen.edges.incoming) {
        check_weight(e.weight)?;
        check_relationship(&e.relationship)?;
        if let Some(m) = e.metadata.as_ref().filter(|m| !m.is_object()) {
            return Err(FractalityError::invalid(
                "edge metadata",
                m.to_string(),
                "An edge's metadata is a JSON object.",
            ));
        }
    }
    Ok(frozen)
}

/// Whether `by_model` holds an embedding of `model` already.
pub fn frozen_has(by_model: &[(String, Vector<'static>)], model: &str) -> bool {
    by_model.iter().any(|(m, _)| m == model)
}

/// The 16 bytes of a uuid written in its canonical form (8-4-4-4-12 hex digits) or as 32 hex
/// digits; None for anything else (PostgreSQL's other forms, braces or hyphens elsewhere, are
/// left to its own `uuid` input, which also rejects what is no uuid).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let canonical = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    let hex: Vec<u8> = match (canonical, b.len()) {
        (true, _) => b.iter().copied().filter(|&c| c != b'-').collect(),
        (false, 32) => b.to_vec(),
        _ => return None,
    };
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).expect("a hex digit") as u8;
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(hex[2 * i]) << 4 | digit(hex[2 * i + 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_value() {
        assert_eq!(
            check_weight(1.5).unwrap_err().to_string(),
            "invalid value for weight: 1.5"
        );
        assert_eq!(
            check_weight(f64::NAN).unwrap_err().to_string(),
            "invalid value for weight: NaN"
        );
        assert!(check_weight(-1.0).is_ok());
        assert_eq!(
            check_depth(-1).unwrap_err().to_string(),
            "invalid value for max_depth: -1"
        );
        assert!(check_depth(101).is_err());
        assert_eq!(check_depth(5), Ok(5));
        assert!(check_atp(1.01).is_err());
        assert!(check_relationship("").is_err());
        assert!(check_key(&"x".repeat(256)).is_err());
    }

    #[test]
    fn frozen_documents_refuse_unknown_fields_and_ids_that_are_no_uuid() {
        // what thaw writes is taken whole
        let thawed = serde_json::json!({
            "id": "0a41354d-8206-4fca-8dc3-00025cd120aa", "user_id": "b369adec-b3d0-44ed-b3a8-b9a8246a3cd6",
            "node_key": "a", "label": "l", "type": "concept", "metadata": {}, "energy": {},
            "atp": 0.5, "atp_at": "2026-01-01T00:00:00+00:00", "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:00+00:00", "expires_at": null, "model": "default",
            "embedding": [1.0], "embeddings": {"default": [1.0]},
            "edges": {"outgoing": [{"id": "5ec65505-04ec-49b9-8218-e2c6d81e1e0c", "to_node": "0a41354d-8206-4fca-8dc3-00025cd120aa",
                                     "to_key": "a", "type": "child", "weight": 0.5, "metadata": {}}],
                      "incoming": [{"id": "5ec65505-04ec-49b9-8218-e2c6d81e1e0d", "from_node": "5ec65505-04ec-49b9-8218-e2c6d81e1e0e",
                                     "from_key": "b", "type": "child", "weight": 0.5, "metadata": {}}]},
            "stream": [{"time": "2026-01-01T00:00:00+00:00", "atp_level": 0.3, "attention_score": 0.1, "resonance_vector": null}]
        });
        assert!(parse_frozen(thawed).is_ok());
        let e = parse_frozen(serde_json::json!({"node_key": "a", "lable": "x"})).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid value for frozen node: field \"lable\": unknown field `lable`"
            ),
            "{e}"
        );
        let e = parse_frozen(serde_json::json!({
            "node_key": "a", "edges": {"outgoing": [{"to_key": "b", "wieght": 0.1}]}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `wieght`"), "{e}");
        let e = parse_frozen(serde_json::json!({
            "node_key": "a", "stream": [{"time": "2026-01-01", "atp_level": 0.5, "atention": 3}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `atention`"), "{e}");
        let e = parse_frozen(serde_json::json!({
            "node_key": "a", "id": "x", "edges": {"outgoing": [{"to_key": "b", "to_node": "x"}]}
        }))
        .unwrap_err();
        assert_eq!(e.to_string(), "invalid value for id: 'x'");
        let e = parse_frozen(serde_json::json!({
            "node_key": "a", "edges": {"incoming": [{"from_key": "b", "from_node": "x"}]}
        }))
        .unwrap_err();
        assert_eq!(e.to_string(), "invalid value for from_node: 'x'");
        // a number is no id either
        assert!(parse_frozen(serde_json::json!({"node_key": "a", "id": 5})).is_err());
        // a resonance vector's element beyond a real is named with its point
        let e = parse_frozen(serde_json::json!({
            "node_key": "a", "stream": [{"time": "2026-01-01", "atp_level": 0.5, "resonance_vector": [1, 2]},
                                        {"time": "2026-01-02", "atp_level": 0.5, "resonance_vector": [[1], [-1e39]]}]
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for stream point resonance_vector: -1e+39 (point 1)"
        );
        // the largest real as thaw writes it is one (PostgreSQL's input rounds it), a little
        // more rounds to an infinity
        let doc = r#"{"node_key": "a", "stream": [{"time": "2026-01-01", "atp_level": 0.5,
                      "resonance_vector": [340282350000000000000000000000000000000, -3.4028235e38]}]}"#;
        assert!(parse_frozen(serde_json::from_str(doc).unwrap()).is_ok());
        let doc = doc.replace("-3.4028235e38", "3.4028236e38");
        assert!(parse_frozen(serde_json::from_str(&doc).unwrap()).is_err());
    }

    #[test]
    fn frozen_documents_parse_and_bad_ones_are_refused() {
        let f = parse_frozen(serde_json::json!({
            "node_key": "a", "atp": 0.5, "embedding": [1.0, 2.0],
            "edges": {"outgoing": [{"to_key": "b", "type": "child", "weight": 0.5}], "incoming": []},
            "stream": [{"time": "2026-01-01T00:00:00Z", "atp_level": 0.3}]
        }))
        .unwrap();
        assert_eq!(f.node_key.as_deref(), Some("a"));
        assert_eq!(f.edges.outgoing[0].key, "b");
        assert_eq!(f.stream.len(), 1);
        assert!(parse_frozen(serde_json::json!({"label": "no key"})).is_err());
        // a field of the wrong type is named
        let e = parse_frozen(serde_json::json!({"node_key": "a", "label": "x", "atp": "high"}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for frozen node: field \"atp\": invalid type: string \"high\", expected f64"
        );
        let e = parse_frozen(serde_json::json!({"node_key": "a", "edges": [1]})).unwrap_err();
        assert!(
            e.to_string().contains("field \"edges\": invalid type"),
            "{e}"
        );
        assert!(parse_frozen(serde_json::json!({
            "node_key": "a", "stream": [{"time": "2026-01-01", "atp_level": 2.0}]
        }))
        .is_err());
        assert!(parse_frozen(serde_json::json!({
            "node_key": "a", "edges": {"outgoing": [{"to_key": "b", "weight": -3}]}
        }))
        .is_err());
        for time in ["infinity", " -Infinity", "+INFINITY "] {
            let e = parse_frozen(serde_json::json!({
                "node_key": "a", "stream": [{"time": "2026-01-01", "atp_level": 0.5},
                                            {"time": time, "atp_level": 0.5}]
            }))
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid value for stream point time: {time} (point 1)")
            );
        }
        assert_eq!(
            parse_uuid("a11ce000-0000-4000-8000-000000000001").unwrap()[0],
            0xa1
        );
        assert!(parse_uuid("nope").is_none());
        assert_eq!(
            parse_uuid("A11CE0000000400080000000000000FF").unwrap()[15],
            0xff
        );
        // no panic on multibyte text of 32 bytes, and no sign taken for a digit
        assert!(parse_uuid(&format!("a\u{e9}{}", "a".repeat(29))).is_none());
        assert!(parse_uuid(&"+0".repeat(16)).is_none());
        assert!(parse_uuid("a11ce000-0000-4000-8000-00000000000+").is_none());
        assert!(parse_uuid("a11ce0000-000-4000-8000-000000000001").is_none());
    }
}
