//! Embedding models: a name and a dimension (`fractality.embedding_models`, registered with
//! `register_model` in sql/embeddings.sql), and the queries of one model.
//!
//! A model's HNSW index is an expression index over `embedding::vector(N)` (or `halfvec(N)`
//! above 2 000 dimensions) restricted to `model = '<name>'`; a query reaches it only when it
//! orders by the same expression under the same restriction, written into its text. So the
//! queries that scan the index are templates (`sql/queries/*.sql`) rendered per model: `{{model}}`
//! becomes the model's name as a quoted literal, `{{dims}}` its dimension and `{{type}}` the
//! element type of its index. The name comes from the registry, where a CHECK constraint keeps it
//! a plain identifier; no value of a caller's is ever written into SQL text.

use crate::errors::{FractalityError, OrReport};
use crate::spi;
use crate::vector::Vector;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// The model every function uses unless told otherwise (registered at install, 384 dimensions).
pub const DEFAULT: &str = "default";

/// pgvector's largest HNSW-indexable `vector`; above it a model's index is over `halfvec`.
pub const VECTOR_INDEX_MAX_DIMS: usize = 2000;

/// A registered model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    pub dims: usize,
}

/// A model name as the registry accepts it: a plain identifier (lower-case letters, digits and
/// underscores, starting with a letter, at most 32 characters).
pub fn check_name(name: &str) -> Result<&str, FractalityError> {
    let mut chars = name.chars();
    let ok = name.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(FractalityError::invalid(
            "model",
            format!("'{name}'"),
            "A model name is a plain identifier: lower-case letters, digits and underscores, starting with a letter, at most 32 characters (e.g. 'text_embedding_3_small').",
        ))
    }
}

const DIMS: spi::Query<'static> = spi::query!("model_dims", [TEXTOID]);

/// The trailing `model` argument (0-based position `n`) of a function whose SQL definition
/// gained it in 0.5.0. A database still on the 0.4.0 schema (before `ALTER EXTENSION fractality
/// UPDATE`) calls the same library symbol without it: that means the default model. None for
/// an explicit NULL.
///
/// # Safety
/// `fcinfo` is the call info of the running function call (or null).
pub unsafe fn model_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    // SAFETY: the caller's fcinfo; argument n is read only when it was passed
    unsafe {
        if fcinfo.is_null() || ((*fcinfo).nargs as usize) <= n {
            return Some(DEFAULT.to_string());
        }
        pgrx::fcinfo::pg_getarg::<String>(fcinfo, n)
    }
}

/// Whether the database holds the schema of this library (0.5.0 on: `embedding_models`), not
/// an older one still waiting for `ALTER EXTENSION fractality UPDATE`.
pub fn schema_is_current() -> bool {
    spi::relation_exists(c"embedding_models")
}

impl Model {
    /// The registered model `name`: 22023 for a malformed or unknown name, 55000 on a schema
    /// older than the library. SPI must be connected.
    pub fn lookup(name: &str) -> Result<Model, FractalityError> {
        check_name(name)?;
        if !schema_is_current() {
            return Err(FractalityError::SchemaBehind);
        }
        match spi::one::<i32>(&DIMS, &[name.into()], true)? {
            Some(d) if d > 0 => Ok(Model {
                name: name.to_string(),
                dims: d as usize,
            }),
            _ => Err(FractalityError::UnknownModel(name.to_string())),
        }
    }

    /// The element type of this model's index.
    pub fn index_type(&self) -> &'static str {
        index_type(self.dims)
    }

    /// How much less than the true similarity a distance read through this model's index may
    /// give: halfvec distances carry about three significant digits.
    pub fn index_margin(&self) -> f64 {
        if self.index_type() == "vector" {
            1e-6
        } else {
            1e-2
        }
    }

    /// A limit counted in 384-d embeddings (`fractality.exact_scan_limit`,
    /// `fractality.consensus_exact_limit`) as embeddings of this model: the same rows x
    /// dimensions, so a model of more dimensions takes an exact path for fewer rows.
    pub fn rows_within(&self, limit_384: i32) -> i64 {
        (limit_384 as i64 * 384 / self.dims.max(1) as i64).min(i32::MAX as i64)
    }

    /// `template` for this model: `{{model}}`, `{{dims}}` and `{{type}}` filled in, and
    /// pgvector's schema (`{{vector}}`, [`crate::vector::qualify`]).
    pub fn render(&self, template: &str) -> String {
        crate::vector::qualify(&render(template, &self.name, self.dims))
    }

    /// An embedding of this model: 22000 naming both dimensions otherwise, 22023 for an element
    /// its index cannot hold ([`check_index_range`]).
    pub fn check(&self, v: &Vector<'_>) -> Result<(), FractalityError> {
        self.check_as("embedding", v)
    }

    /// The same for the argument `what` (a query vector is checked as `query`).
    pub fn check_as(&self, what: &'static str, v: &Vector<'_>) -> Result<(), FractalityError> {
        if v.dims() == self.dims {
            check_index_range(what, v.as_slice())
        } else {
            Err(FractalityError::ModelDimension {
                what,
                model: self.name.clone(),
                got: v.dims(),
                dims: self.dims,
            })
        }
    }
}

/// The smallest magnitude that rounds to infinity in half precision, which pgvector refuses
/// (22003); below it a value rounds to at most 65504, the largest `halfvec` element.
pub const HALFVEC_OVERFLOW: f32 = 65520.0;

/// An embedding that its model's index can hold: above [`VECTOR_INDEX_MAX_DIMS`] the index is
/// over `halfvec`, so no element may round to infinity in half precision, [`HALFVEC_OVERFLOW`]
/// or more in magnitude (22023 naming the first that does). Checked when the row is written: a
/// staged row (remember_many's) enters the index only later, in `index_staged_embeddings`,
/// where such an element would fail the whole pass.
pub fn check_index_range(what: &'static str, v: &[f32]) -> Result<(), FractalityError> {
    if index_type(v.len()) == "vector" {
        return Ok(());
    }
    if let Some(i) = v.iter().position(|x| x.abs() >= HALFVEC_OVERFLOW) {
        return Err(FractalityError::invalid(
            what,
            format!("element {} is {}", i + 1, v[i]),
            "A model of more than 2 000 dimensions is indexed over halfvec, whose elements lie within ±65504: scale the embedding down first (its cosines do not change).",
        ));
    }
    // every element 2^-25 or less rounds to 0 in half precision: the index would hold a zero
    // vector, with no direction
    if v.iter().all(|x| x.abs() <= HALFVEC_UNDERFLOW) {
        return Err(FractalityError::invalid(
            what,
            "a vector whose every element rounds to 0 in half precision",
            "A model of more than 2 000 dimensions is indexed over halfvec, whose smallest element is about 6e-8: scale the embedding up first (its cosines do not change).",
        ));
    }
    Ok(())
}

/// The largest magnitude that rounds to 0 in half precision (half the smallest subnormal, 2^-24,
/// rounding to even).
pub const HALFVEC_UNDERFLOW: f32 = 2.980_232_2e-8;

pub fn index_type(dims: usize) -> &'static str {
    if dims <= VECTOR_INDEX_MAX_DIMS {
        "vector"
    } else {
        "halfvec"
    }
}

/// The template with a model's name (as a quoted literal), dimension and index type.
pub fn render(template: &str, name: &str, dims: usize) -> String {
    template
        .replace("{{model}}", &format!("'{}'", name.replace('\'', "''")))
        .replace("{{dims}}", &dims.to_string())
        .replace("{{type}}", index_type(dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        assert!(check_name("default").is_ok());
        assert!(check_name("text_embedding_3_small").is_ok());
        assert!(check_name("m2").is_ok());
        for bad in [
            "",
            "Default",
            "2m",
            "a-b",
            "a b",
            "x'y",
            &"a".repeat(33),
            "é",
        ] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.to_string(), format!("invalid value for model: '{bad}'"));
        }
    }

    #[test]
    fn templates_render_per_model() {
        let q = "SELECT e.embedding::{{type}}({{dims}}) <=> $1 FROM t e WHERE e.model = {{model}}";
        assert_eq!(
            render(q, "default", 384),
            "SELECT e.embedding::vector(384) <=> $1 FROM t e WHERE e.model = 'default'"
        );
        assert_eq!(
            render(q, "large", 3072),
            "SELECT e.embedding::halfvec(3072) <=> $1 FROM t e WHERE e.model = 'large'"
        );
        assert_eq!(index_type(2000), "vector");
        assert_eq!(index_type(2001), "halfvec");
    }

    #[test]
    fn halfvec_models_hold_elements_within_its_range() {
        let mut big = vec![0.5f32; 2001];
        assert!(check_index_range("embedding", &big).is_ok());
        big[1] = -65504.0;
        big[2] = 65519.0; // rounds to 65504
        assert!(check_index_range("embedding", &big).is_ok());
        big[3] = -65520.0; // rounds to infinity
        assert_eq!(
            check_index_range("embedding", &big)
                .unwrap_err()
                .to_string(),
            "invalid value for embedding: element 4 is -65520"
        );
        big[3] = 0.5;
        big[6] = 100000.0;
        assert_eq!(
            check_index_range("embedding", &big)
                .unwrap_err()
                .to_string(),
            "invalid value for embedding: element 7 is 100000"
        );
        // a vector model takes any real
        assert!(check_index_range("embedding", &[1e30f32; 2000]).is_ok());
        // every element rounding to 0 in half precision: a zero vector in the index
        assert!(check_index_range("embedding", &[1e-8f32; 2001]).is_err());
        assert!(check_index_range("embedding", &[HALFVEC_UNDERFLOW; 2001]).is_err());
        let mut one = vec![1e-8f32; 2001];
        one[7] = 6e-8; // rounds to the smallest subnormal
        assert!(check_index_range("embedding", &one).is_ok());
        assert!(check_index_range("embedding", &[1e-8f32; 2000]).is_ok());
    }
}

// ---- the dimension check of node_embeddings ----------------------------------------------------

/// Dimensions looked up, and the (local transaction, command) they were read in.
type Checked = (Option<(u32, u32)>, std::collections::HashMap<String, i32>);

thread_local! {
    /// The dimensions the check looked up: within one command the registry it reads with the
    /// command's snapshot does not change, so a statement writing many embeddings looks each
    /// model up once.
    static CHECKED: std::cell::RefCell<Checked> =
        std::cell::RefCell::new((None, std::collections::HashMap::new()));
}

/// This backend's (local transaction, command): the backend's local transaction id, not the
/// transaction id, which is 0 until the transaction first writes, so the first command of two
/// transactions would share a key.
fn command_now() -> (u32, u32) {
    // SAFETY: plain reads of this backend's transaction state (MyProc is set in a backend)
    unsafe { ((*pg_sys::MyProc).lxid, pg_sys::GetCurrentCommandId(false)) }
}

/// The dimension of `model` looked up already in the running command, if it was.
fn checked_dims(model: &str) -> Option<i32> {
    let now = command_now();
    CHECKED.with_borrow(|(at, dims)| {
        (*at == Some(now))
            .then(|| dims.get(model).copied())
            .flatten()
    })
}

/// The dimension of `model` as the registry holds it in the running command's snapshot (None:
/// not registered), kept for the command ([`checked_dims`]); SPI connected.
fn registered_dims(model: &str) -> Result<Option<i32>, FractalityError> {
    let now = command_now();
    let found = spi::one::<i32>(&DIMS, &[model.into()], true)?;
    CHECKED.with_borrow_mut(|(at, dims)| {
        if *at != Some(now) {
            *at = Some(now);
            dims.clear();
        }
        if let Some(d) = found {
            dims.insert(model.to_string(), d);
        }
    });
    Ok(found)
}

/// `node_embeddings_check`, BEFORE INSERT OR UPDATE OF model, embedding, FOR EACH ROW: the row's
/// model is registered (22023) and its embedding has the model's dimension (22000, naming both),
/// checked before the row reaches the foreign key or the model's index. Native, with the model's
/// dimension looked up once per statement: as a PL/pgSQL function with a query per row it was
/// about 7 % of a batch's time.
#[pg_trigger]
fn _node_embeddings_check<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    let td = trigger.trigger_data();
    // SAFETY: the trigger's own data (its relation and the row being written), read during this
    // call; the attributes by name from the relation's descriptor
    let (model, got) = unsafe {
        let update = td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE;
        let tuple = if update {
            td.tg_newtuple
        } else {
            td.tg_trigtuple
        };
        let desc = (*td.tg_relation).rd_att;
        let attr = |name: &std::ffi::CStr| -> Option<pg_sys::Datum> {
            let n = pg_sys::SPI_fnumber(desc, name.as_ptr());
            if n <= 0 {
                FractalityError::InternalStep(format!("node_embeddings has no column {name:?}"))
                    .report()
            }
            let mut null = false;
            let d = pg_sys::SPI_getbinval(tuple, desc, n, &mut null);
            (!null).then_some(d)
        };
        let model = attr(c"model").and_then(|d| String::from_datum(d, false));
        let got = attr(c"embedding").map(|d| Vector::from_datum_ref(d).unwrap_or_report());
        (model, got)
    };
    let model = crate::errors::required("model", model);
    // looked up once per command, without SPI after that; the lookup under the search path the
    // extension's other calls plan it under (one kept plan, not planned again at each switch)
    let dims = match checked_dims(&model) {
        Some(d) => Some(d),
        None => spi::connect_pinned(|| registered_dims(&model)).unwrap_or_report(),
    };
    let Some(dims) = dims else {
        FractalityError::UnknownModel(model).report()
    };
    if let Some(v) = got {
        if v.dims() != dims as usize {
            FractalityError::ModelDimension {
                what: "embedding",
                model,
                got: v.dims(),
                dims: dims as usize,
            }
            .report()
        }
        check_index_range("embedding", v.as_slice()).unwrap_or_report();
    }
    Ok(trigger.new())
}
