//! A `jsonb` argument read in place: its binary containers walked with PostgreSQL's own
//! iterator, numbers decoded from the `numeric` digits, with no round trip through JSON text.
//!
//! pgrx's `JsonB` prints the value to text and parses that with serde (for a batch of 10 000
//! events, most of write_events' own time). [`JsonbArg`] keeps the datum; the caller walks it
//! with [`JsonbArg::root`], [`elements`] and [`pairs`], and converts any sub-value to a
//! `serde_json::Value` ([`Value::to_serde`]) where it wants serde's view (error messages, rare
//! shapes). Numbers: [`Value::as_i64`] and [`Value::as_f64`] give exactly what serde's
//! `as_i64` / `as_f64` give for the value's text (jsonb_out prints a number as `numeric_out`
//! does): integers only without a fractional part, floats by the exact fast path where it is
//! exact and by serde's own parser otherwise.

use std::marker::PhantomData;

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};

use crate::errors::FractalityError;
use crate::vector::RawDatum;

/// A non-null `jsonb` argument, detoasted, borrowed for the call.
pub struct JsonbArg<'fcx> {
    jsonb: *mut pg_sys::Jsonb,
    _call: PhantomData<&'fcx ()>,
}

unsafe impl SqlTranslatable for JsonbArg<'_> {
    const TYPE_IDENT: &'static str = "fractality::jsonb::JsonbArg";
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArg<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        match unsafe { arg.unbox_arg_using_from_datum::<RawDatum>() } {
            // SAFETY: a non-null argument of the call
            Some(RawDatum(d)) => unsafe { JsonbArg::from_datum(d) },
            None => FractalityError::NullNotAllowed("jsonb argument").report(),
        }
    }
}

impl<'fcx> JsonbArg<'fcx> {
    /// A jsonb argument from its datum.
    ///
    /// # Safety
    /// `d` is a non-null jsonb datum that lives as long as the call.
    pub unsafe fn from_datum(d: pg_sys::Datum) -> JsonbArg<'fcx> {
        JsonbArg {
            // a plain 4-byte-header copy when the datum is toasted or short-headed
            jsonb: unsafe { pg_sys::pg_detoast_datum(d.cast_mut_ptr()) }.cast(),
            _call: PhantomData,
        }
    }

    /// The top-level value: a container (array or object), or a scalar.
    pub fn root(&self) -> Value<'fcx> {
        // SAFETY: a detoasted jsonb datum that lives as long as the call
        unsafe {
            let root = &raw mut (*self.jsonb).root;
            let header = (*root).header;
            if header & pg_sys::JB_FSCALAR != 0 {
                // a raw scalar is stored as a one-element array
                let mut it = pg_sys::JsonbIteratorInit(root);
                let mut v: pg_sys::JsonbValue = std::mem::zeroed();
                let mut got = None;
                loop {
                    match pg_sys::JsonbIteratorNext(&mut it, &mut v, true) {
                        pg_sys::JsonbIteratorToken::WJB_ELEM => got = Some(Value::from_jbv(&v)),
                        pg_sys::JsonbIteratorToken::WJB_DONE => break,
                        _ => {}
                    }
                }
                got.unwrap_or(Value::Null)
            } else {
                Value::Container(root, PhantomData)
            }
        }
    }

    /// The whole value as serde sees it (through its text, as pgrx's JsonB).
    pub fn to_serde(&self) -> Result<serde_json::Value, FractalityError> {
        self.root().to_serde()
    }
}

/// One JSON value inside a jsonb datum.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    String(&'a [u8]),
    Number(pg_sys::Numeric),
    /// An array or an object.
    Container(*mut pg_sys::JsonbContainer, PhantomData<&'a ()>),
}

impl<'a> Value<'a> {
    unsafe fn from_jbv(v: &pg_sys::JsonbValue) -> Value<'a> {
        unsafe {
            match v.type_ {
                pg_sys::jbvType::jbvNull => Value::Null,
                pg_sys::jbvType::jbvBool => Value::Bool(v.val.boolean),
                pg_sys::jbvType::jbvString => Value::String(std::slice::from_raw_parts(
                    v.val.string.val as *const u8,
                    v.val.string.len as usize,
                )),
                pg_sys::jbvType::jbvNumeric => Value::Number(v.val.numeric),
                pg_sys::jbvType::jbvBinary => Value::Container(v.val.binary.data, PhantomData),
                other => crate::errors::FractalityError::InternalStep(format!(
                    "unexpected jsonb value type {other}"
                ))
                .report(),
            }
        }
    }

    /// The container of this value when it is of `kind`: an array (`JB_FARRAY`) or an object
    /// (`JB_FOBJECT`).
    fn container(&self, kind: u32) -> Option<*mut pg_sys::JsonbContainer> {
        match self {
            // SAFETY: a container of a live jsonb datum
            Value::Container(c, _) if unsafe { (**c).header } & kind != 0 => Some(*c),
            _ => None,
        }
    }

    /// The number of elements of an array; None for anything else.
    pub fn array_len(&self) -> Option<usize> {
        // SAFETY: a container of a live jsonb datum
        self.container(pg_sys::JB_FARRAY)
            .map(|c| (unsafe { (*c).header } & pg_sys::JB_CMASK) as usize)
    }

    pub fn is_array(&self) -> bool {
        self.container(pg_sys::JB_FARRAY).is_some()
    }

    pub fn is_object(&self) -> bool {
        self.container(pg_sys::JB_FOBJECT).is_some()
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// serde's `as_i64` of this value's text: an integer (no fractional digits) within i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => Decimal::of(*n)?.to_i64(),
            _ => None,
        }
    }

    /// Whether this is a number whose value is 0 (a number too small for float8 is not, though
    /// `as_f64` gives 0 for it).
    pub fn is_zero_number(&self) -> bool {
        match self {
            Value::Number(n) => match Decimal::of(*n) {
                Some(d) => d.digits.iter().all(|&g| g == 0),
                // SAFETY: a numeric datum of a live jsonb; numeric_out writes no exponent
                None => unsafe { numeric_text(*n) }.is_some_and(|t| !crate::json::nonzero_text(&t)),
            },
            _ => false,
        }
    }

    /// serde's `as_f64` of this value's text.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => match Decimal::of(*n) {
                Some(d) => d.to_f64(),
                // SAFETY: a numeric datum of a live jsonb
                None => unsafe { numeric_text(*n) }
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| v.as_f64()),
            },
            _ => None,
        }
    }

    /// The value as serde sees it: jsonb_out's text of it, parsed (numbers kept as written). A
    /// nesting deeper than serde reads is 22023.
    pub fn to_serde(&self) -> Result<serde_json::Value, FractalityError> {
        self.to_serde_within(crate::json::MAX_VALUES)
    }

    /// [`Value::to_serde`] under a cap of `cap` values (54000 past it).
    pub fn to_serde_within(&self, cap: usize) -> Result<serde_json::Value, FractalityError> {
        let text = match self {
            Value::Null => return Ok(serde_json::Value::Null),
            Value::Bool(b) => return Ok(serde_json::Value::Bool(*b)),
            Value::String(b) => {
                return Ok(serde_json::Value::String(
                    String::from_utf8_lossy(b).into_owned(),
                ))
            }
            // SAFETY: a numeric datum of a live jsonb
            Value::Number(n) => unsafe { numeric_text(*n) }.unwrap_or_default(),
            // SAFETY: a container of a live jsonb
            Value::Container(c, _) => unsafe {
                let s = pg_sys::JsonbToCString(std::ptr::null_mut(), *c, 64);
                let t = std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned();
                pg_sys::pfree(s.cast());
                t
            },
        };
        crate::json::parse_within(&text, cap).map_err(unreadable)
    }
}

/// What serde reads of JSON, which jsonb holds more of.
const SERDE_READS: &str = "fractality reads JSON nested up to 128 levels deep.";

/// JSON that jsonb holds but serde does not read (nesting deeper than 128
/// levels): 22023; past the cap of a document read whole: 54000.
fn unreadable(e: serde_json::Error) -> FractalityError {
    if crate::json::is_too_large(&e) {
        return crate::json::too_large("jsonb argument");
    }
    FractalityError::invalid("jsonb argument", e.to_string(), SERDE_READS)
}

/// The text numeric_out prints for a numeric.
unsafe fn numeric_text(n: pg_sys::Numeric) -> Option<String> {
    unsafe {
        let s = pgrx::direct_function_call::<&std::ffi::CStr>(
            pg_sys::numeric_out,
            &[Some(pg_sys::Datum::from(n))],
        )?;
        Some(s.to_string_lossy().into_owned())
    }
}

/// Calls `f` with each element of an array container, in order; false when `v` is not an array.
pub fn elements<'a>(v: &Value<'a>, mut f: impl FnMut(usize, Value<'a>)) -> bool {
    let Some(c) = v.container(pg_sys::JB_FARRAY) else {
        return false;
    };
    // SAFETY: a container of a live jsonb; the iterator frees itself at the end
    unsafe {
        let mut it = pg_sys::JsonbIteratorInit(c);
        let mut jv: pg_sys::JsonbValue = std::mem::zeroed();
        let mut i = 0;
        loop {
            match pg_sys::JsonbIteratorNext(&mut it, &mut jv, true) {
                pg_sys::JsonbIteratorToken::WJB_ELEM => {
                    // a batch of many elements answers a cancel while it is read
                    crate::errors::interrupts_every(i, 256);
                    f(i, Value::from_jbv(&jv));
                    i += 1;
                }
                pg_sys::JsonbIteratorToken::WJB_DONE => break,
                _ => {}
            }
        }
    }
    true
}

/// Calls `f` with each (key, value) of an object container, in jsonb's key order; stops early
/// when `f` returns false. False when `v` is not an object or `f` stopped.
pub fn pairs<'a>(v: &Value<'a>, mut f: impl FnMut(&'a [u8], Value<'a>) -> bool) -> bool {
    let Some(c) = v.container(pg_sys::JB_FOBJECT) else {
        return false;
    };
    // SAFETY: a container of a live jsonb
    unsafe {
        let mut it = pg_sys::JsonbIteratorInit(c);
        let mut jv: pg_sys::JsonbValue = std::mem::zeroed();
        let mut key: &[u8] = &[];
        loop {
            match pg_sys::JsonbIteratorNext(&mut it, &mut jv, true) {
                pg_sys::JsonbIteratorToken::WJB_KEY => {
                    key = std::slice::from_raw_parts(
                        jv.val.string.val as *const u8,
                        jv.val.string.len as usize,
                    );
                }
                pg_sys::JsonbIteratorToken::WJB_VALUE if !f(key, Value::from_jbv(&jv)) => {
                    // release the iterator chain
                    while !it.is_null() {
                        let parent = (*it).parent;
                        pg_sys::pfree(it.cast());
                        it = parent;
                    }
                    return false;
                }
                pg_sys::JsonbIteratorToken::WJB_DONE => break,
                _ => {}
            }
        }
    }
    true
}

/// A finite numeric's digits: sign * sum(digits[i] * 10000^(weight - i)), with `dscale` decimal
/// digits after the point in its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Decimal<'a> {
    pub negative: bool,
    pub weight: i32,
    pub dscale: u32,
    pub digits: &'a [i16],
}

const NUMERIC_SIGN_MASK: u16 = 0xC000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SPECIAL: u16 = 0xC000;
const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
const NUMERIC_SHORT_DSCALE_MASK: u16 = 0x1F80;
const NUMERIC_SHORT_DSCALE_SHIFT: u16 = 7;
const NUMERIC_SHORT_WEIGHT_SIGN_MASK: u16 = 0x0040;
const NUMERIC_SHORT_WEIGHT_MASK: u16 = 0x003F;
const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;

impl<'a> Decimal<'a> {
    /// Reads a numeric datum (4-byte or 1-byte varlena header, as numerics inside a jsonb may
    /// have). None for NaN and infinities.
    pub fn of(n: pg_sys::Numeric) -> Option<Decimal<'a>> {
        // SAFETY: a numeric varlena of a live jsonb (never toasted inside a container)
        unsafe {
            let p = n as *const u8;
            let total = pgrx::varsize_any(p.cast());
            let body = pgrx::vardata_any(p.cast()) as *const u8;
            let body_len = total - (body as usize - p as usize);
            Decimal::parse(std::slice::from_raw_parts(body, body_len))
        }
    }

    /// The numeric's body (after the varlena header): its header words and digits.
    pub fn parse(body: &'a [u8]) -> Option<Decimal<'a>> {
        let word = |i: usize| -> Option<u16> {
            Some(u16::from_ne_bytes(body.get(i..i + 2)?.try_into().ok()?))
        };
        let header = word(0)?;
        let flags = header & NUMERIC_SIGN_MASK;
        if flags == NUMERIC_SPECIAL {
            return None;
        }
        let (negative, weight, dscale, start) = if flags == NUMERIC_SHORT {
            let weight = if header & NUMERIC_SHORT_WEIGHT_SIGN_MASK != 0 {
                (!(NUMERIC_SHORT_WEIGHT_MASK as i32)) | (header & NUMERIC_SHORT_WEIGHT_MASK) as i32
            } else {
                (header & NUMERIC_SHORT_WEIGHT_MASK) as i32
            };
            (
                header & NUMERIC_SHORT_SIGN_MASK != 0,
                weight,
                ((header & NUMERIC_SHORT_DSCALE_MASK) >> NUMERIC_SHORT_DSCALE_SHIFT) as u32,
                2,
            )
        } else {
            let weight = word(2)? as i16 as i32;
            (
                flags == NUMERIC_NEG,
                weight,
                (header & NUMERIC_DSCALE_MASK) as u32,
                4,
            )
        };
        let rest = body.get(start..)?;
        if !rest.len().is_multiple_of(2) || !(rest.as_ptr() as usize).is_multiple_of(2) {
            return None;
        }
        // SAFETY: aligned, in bounds, i16 has no invalid bit patterns
        let digits =
            unsafe { std::slice::from_raw_parts(rest.as_ptr() as *const i16, rest.len() / 2) };
        Some(Decimal {
            negative,
            weight,
            dscale,
            digits,
        })
    }

    /// As serde's `as_i64` of the text: only without a fractional part (dscale 0), within i64.
    pub fn to_i64(&self) -> Option<i64> {
        if self.dscale != 0 {
            return None;
        }
        if self.digits.is_empty() {
            return Some(0);
        }
        if self.weight < 0 || self.weight > 5 || self.digits.len() > self.weight as usize + 1 {
            return None;
        }
        let mut acc: i128 = 0;
        for i in 0..=self.weight as usize {
            acc = acc * 10_000 + i128::from(*self.digits.get(i).unwrap_or(&0));
        }
        if self.negative {
            acc = -acc;
        }
        i64::try_from(acc).ok()
    }

    /// The value as f64 where the conversion is exact-rounded in one step (Clinger's fast path:
    /// an integer significand up to 2^53 divided by an exact power of ten up to 10^22), which is
    /// also what serde computes for such a text. None otherwise (the caller asks serde).
    pub fn to_f64_exact(&self) -> Option<f64> {
        const LIMIT: u64 = 1 << 53;
        let mut m: u64 = 0;
        for &d in self.digits {
            m = m.checked_mul(10_000)?.checked_add(u64::try_from(d).ok()?)?;
            if m > LIMIT {
                return None;
            }
        }
        // value = m * 10^e
        let mut e = 4 * (self.weight - self.digits.len() as i32 + 1);
        while e < 0 && m != 0 && m.is_multiple_of(10) {
            m /= 10;
            e += 1;
        }
        let x = if m == 0 {
            0.0
        } else if e >= 0 {
            // integers: exact below 2^53
            let mut v = m;
            for _ in 0..e {
                v = v.checked_mul(10)?;
            }
            if v > LIMIT {
                return None;
            }
            v as f64
        } else if e >= -22 {
            m as f64 / POW10[(-e) as usize]
        } else {
            return None;
        };
        Some(if self.negative { -x } else { x })
    }

    /// The value as f64, correctly rounded: [`Decimal::to_f64_exact`] where it applies, else
    /// the digits written out as a decimal and read by Rust's parser (correctly rounded, as
    /// serde_json reads a number with `float_roundtrip`, so the same f64 as its text through
    /// serde). None beyond f64's range (serde refuses those too).
    pub fn to_f64(&self) -> Option<f64> {
        if let Some(x) = self.to_f64_exact() {
            return Some(x);
        }
        use std::fmt::Write;
        // value = digits (base 10000, concatenated) x 10^(4 (weight - len + 1))
        let mut text = String::with_capacity(4 * self.digits.len() + 16);
        if self.negative {
            text.push('-');
        }
        for &d in self.digits {
            if !(0..10_000).contains(&d) {
                return None;
            }
            let _ = write!(text, "{d:04}");
        }
        if self.digits.is_empty() {
            text.push('0');
        }
        let _ = write!(
            text,
            "e{}",
            4 * (self.weight - self.digits.len() as i32 + 1)
        );
        text.parse::<f64>().ok().filter(|x| x.is_finite())
    }
}

/// 10^0 ..= 10^22, each exact in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A `jsonb` argument read into a `serde_json::Value` by fractality itself: what serde_json
/// cannot hold (nesting deeper than 128 levels) is refused as bad input
/// (22023) naming the problem, where pgrx's own `JsonB` would fail with an internal error.
pub struct JsonValue(pub serde_json::Value);

unsafe impl SqlTranslatable for JsonValue {
    const TYPE_IDENT: &'static str = "fractality::jsonb::JsonValue";
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

/// The text of a non-null jsonb datum, as `jsonb_out` prints it.
fn jsonb_datum_text(d: pg_sys::Datum) -> String {
    // SAFETY: a non-null jsonb datum; JsonbToCString writes into a fresh palloc'd buffer
    unsafe {
        let jb: *mut pg_sys::Jsonb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()).cast();
        let cstr = pg_sys::JsonbToCString(
            std::ptr::null_mut(),
            &raw mut (*jb).root,
            pgrx::varsize_any_exhdr(jb.cast()) as i32,
        );
        std::ffi::CStr::from_ptr(cstr)
            .to_string_lossy()
            .into_owned()
    }
}

/// The text of a jsonb datum, parsed. A large document's memory, refused or not, is given back
/// once it is read (an argument is read before its function runs, whose own Trim does not exist
/// yet).
pub fn parse_jsonb_datum(d: pg_sys::Datum) -> Result<serde_json::Value, FractalityError> {
    let text = jsonb_datum_text(d);
    let trim = crate::heap::Trim::when(text.len(), 1 << 20);
    let parsed = crate::json::parse(&text).map_err(unreadable);
    drop(text);
    drop(trim);
    parsed
}

/// A `jsonb[]` argument, each element parsed (a NULL element as None): 22023 naming the element
/// for one serde cannot read (pgrx's own `Vec<JsonB>` panics there), or for an array of more
/// than one dimension.
pub struct JsonbArray(pub Vec<Option<serde_json::Value>>);

unsafe impl SqlTranslatable for JsonbArray {
    const TYPE_IDENT: &'static str = "fractality::jsonb::JsonbArray";
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Ok(SqlMappingRef::literal("jsonb[]"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb[]")));
}

impl JsonbArray {
    /// Reads a `jsonb[]` datum.
    ///
    /// # Safety
    /// `d` is a non-null `jsonb[]` datum.
    unsafe fn from_datum(d: pg_sys::Datum) -> Result<JsonbArray, FractalityError> {
        unsafe {
            let arr = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::ArrayType;
            if (*arr).ndim > 1 {
                return Err(FractalityError::invalid(
                    "metadata",
                    format!("an array of {} dimensions", (*arr).ndim),
                    "Pass a one-dimensional array of jsonb objects, one per memory.",
                ));
            }
            let mut items = Vec::new();
            // the values of every element together, as a batch's metadata (json::LIMITS)
            let mut left = crate::json::MAX_BATCH_VALUES;
            for (i, d) in crate::vector::varlena_elements("metadata", arr, pg_sys::JSONBOID)?
                .into_iter()
                .enumerate()
            {
                items.push(match d {
                    None => None,
                    Some(d) => Some({
                        let cap = left.min(crate::json::MAX_VALUES);
                        let v =
                            crate::json::parse_within(&jsonb_datum_text(d), cap).map_err(|e| {
                                if crate::json::is_too_large(&e) {
                                    return crate::json::too_large(format!(
                                        "metadata, element {} of the array",
                                        i + 1
                                    ));
                                }
                                FractalityError::invalid(
                                    "metadata",
                                    format!("element {} of the array: {e}", i + 1),
                                    SERDE_READS,
                                )
                            })?;
                        left -= crate::json::count(&v).min(left);
                        v
                    }),
                });
            }
            Ok(JsonbArray(items))
        }
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArray {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        match unsafe { arg.unbox_arg_using_from_datum::<RawDatum>() } {
            // SAFETY: a non-null argument of type jsonb[]
            Some(RawDatum(d)) => match unsafe { JsonbArray::from_datum(d) } {
                Ok(a) => a,
                Err(e) => e.report(),
            },
            None => FractalityError::NullNotAllowed("metadata").report(),
        }
    }
}

/// A stored jsonb value kept as its text and given back through `jsonb_in`: no serde in
/// between, which refuses nesting deeper than 128 levels, which jsonb holds (pgrx's `JsonB`
/// panics on it when reading a row).
#[derive(Clone, Debug, PartialEq)]
pub struct JsonbText(pub String);

impl pgrx::FromDatum for JsonbText {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then(|| JsonbText(jsonb_datum_text(datum)))
    }
}

impl pgrx::IntoDatum for JsonbText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let text = std::ffi::CString::new(self.0).expect("jsonb text holds no NUL");
        // SAFETY: jsonb_in of the text jsonb_out printed
        unsafe {
            pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(text.as_ptr().into())])
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

unsafe impl pgrx::callconv::BoxRet for JsonbText {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        match pgrx::IntoDatum::into_datum(self) {
            Some(d) => unsafe { fcinfo.return_raw_datum(d) },
            None => fcinfo.return_null(),
        }
    }
}

unsafe impl SqlTranslatable for JsonbText {
    const TYPE_IDENT: &'static str = "fractality::jsonb::JsonbText";
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

unsafe impl<'fcx> ArgAbi<'fcx> for JsonValue {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        match unsafe { arg.unbox_arg_using_from_datum::<RawDatum>() } {
            Some(RawDatum(d)) => match parse_jsonb_datum(d) {
                Ok(v) => JsonValue(v),
                Err(e) => e.report(),
            },
            None => FractalityError::NullNotAllowed("jsonb argument").report(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeric body in the long format.
    fn long(negative: bool, weight: i16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((if negative { NUMERIC_NEG } else { 0 }) | dscale).to_ne_bytes());
        b.extend_from_slice(&weight.to_ne_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_ne_bytes());
        }
        b
    }

    /// A numeric body in the short format.
    fn short(negative: bool, weight: i8, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut h = NUMERIC_SHORT | (dscale << NUMERIC_SHORT_DSCALE_SHIFT);
        if negative {
            h |= NUMERIC_SHORT_SIGN_MASK;
        }
        h |= (weight as i16 as u16) & (NUMERIC_SHORT_WEIGHT_SIGN_MASK | NUMERIC_SHORT_WEIGHT_MASK);
        let mut b = h.to_ne_bytes().to_vec();
        for d in digits {
            b.extend_from_slice(&d.to_ne_bytes());
        }
        b
    }

    fn with<R>(body: Vec<u8>, f: impl FnOnce(Decimal<'_>) -> R) -> R {
        // keep the digits 2-byte aligned
        let words: Vec<u16> = body
            .chunks(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect();
        let bytes =
            unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 2) };
        f(Decimal::parse(bytes).expect("a numeric"))
    }

    #[test]
    fn integers() {
        // 1732000000000123 = 1732 0000 0000 0123 (base 10000), weight 3
        let b = short(false, 3, 0, &[1732, 0, 0, 123]);
        assert_eq!(with(b, |d| d.to_i64()), Some(1_732_000_000_000_123));
        assert_eq!(with(short(true, 0, 0, &[42]), |d| d.to_i64()), Some(-42));
        assert_eq!(with(short(false, 0, 0, &[]), |d| d.to_i64()), Some(0));
        // 100000000 = 1 0000 0000, trailing zero digits stripped
        assert_eq!(
            with(short(false, 2, 0, &[1]), |d| d.to_i64()),
            Some(100_000_000)
        );
        // 5.0 has a fractional part in its text: not an integer for serde
        assert_eq!(with(short(false, 0, 1, &[5]), |d| d.to_i64()), None);
        // i64::MAX = 922 3372 0368 5477 5807, and one more
        let max = long(false, 4, 0, &[922, 3372, 368, 5477, 5807]);
        assert_eq!(with(max, |d| d.to_i64()), Some(i64::MAX));
        let over = long(false, 4, 0, &[922, 3372, 368, 5477, 5808]);
        assert_eq!(with(over, |d| d.to_i64()), None);
        let min = long(true, 4, 0, &[922, 3372, 368, 5477, 5808]);
        assert_eq!(with(min, |d| d.to_i64()), Some(i64::MIN));
    }

    #[test]
    fn floats_match_serde_where_exact() {
        // 0.123456789 = 0.1234 5678 9000
        let b = short(false, -1, 9, &[1234, 5678, 9000]);
        let got = with(b, |d| d.to_f64_exact()).unwrap();
        assert_eq!(got, serde_json::from_str::<f64>("0.123456789").unwrap());
        // -12.5
        let b = short(true, 0, 1, &[12, 5000]);
        assert_eq!(with(b, |d| d.to_f64_exact()), Some(-12.5));
        // 3 (an integer for a real field)
        assert_eq!(
            with(short(false, 0, 0, &[3]), |d| d.to_f64_exact()),
            Some(3.0)
        );
        // 0.0000001 = 0.0000 0010: weight -2, digit 10
        let b = short(false, -2, 7, &[10]);
        assert_eq!(with(b, |d| d.to_f64_exact()), Some(1e-7));
        // 1e-30: beyond the exact powers, left to serde
        let b = long(false, -8, 30, &[100]);
        assert_eq!(with(b, |d| d.to_f64_exact()), None);
        // 17 significant digits: beyond 2^53, left to serde
        let b = short(false, -1, 17, &[1234, 5678, 9012, 3456, 7000]);
        assert_eq!(with(b, |d| d.to_f64_exact()), None);
    }

    #[test]
    fn random_f32_texts_agree_with_serde() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let x: f32 = rng.random_range(-10.0f32..10.0) * 10f32.powi(rng.random_range(-6..4));
            let text = format!("{x}");
            // the numeric of that text: digits in base 10000 around the decimal point
            let (neg, t) = match text.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, text.as_str()),
            };
            let (int, frac) = t.split_once('.').unwrap_or((t, ""));
            let dscale = frac.len() as u16;
            let int = int.trim_start_matches('0');
            let pad_int = (4 - int.len() % 4) % 4;
            let pad_frac = (4 - frac.len() % 4) % 4;
            let all = format!("{}{int}{frac}{}", "0".repeat(pad_int), "0".repeat(pad_frac));
            let mut digits: Vec<i16> = all
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
                .collect();
            let mut weight = ((int.len() + pad_int) / 4) as i16 - 1;
            while digits.first() == Some(&0) {
                digits.remove(0);
                weight -= 1;
            }
            while digits.last() == Some(&0) {
                digits.pop();
            }
            let want = serde_json::from_str::<serde_json::Value>(&text)
                .unwrap()
                .as_f64()
                .unwrap();
            let b = long(neg && !digits.is_empty(), weight, dscale, &digits);
            if let Some(got) = with(b.clone(), |d| d.to_f64_exact()) {
                assert_eq!(got, want, "{text}");
            }
            assert_eq!(with(b, |d| d.to_f64()), Some(want), "{text}");
        }
    }

    /// The digits of a decimal text (optional sign, digits, optional point, optional exponent)
    /// as a numeric body: base-10000 digits around the point.
    fn numeric_of(text: &str) -> Vec<u8> {
        let (neg, t) = match text.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, text),
        };
        let (mantissa, exp) = match t.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i32>().unwrap()),
            None => (t, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        // all digits, and the position of the point among them (from the left)
        let all: String = format!("{int}{frac}");
        let point = int.len() as i32 + exp;
        // pad so that the point falls on a multiple of 4, on both sides
        let lead = (4 - point.rem_euclid(4)) % 4;
        let mut padded = "0".repeat(lead as usize) + &all;
        while !padded.len().is_multiple_of(4) {
            padded.push('0');
        }
        let mut digits: Vec<i16> = padded
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect();
        let mut weight = ((point + lead) / 4 - 1) as i16;
        while digits.first() == Some(&0) {
            digits.remove(0);
            weight -= 1;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        long(neg && !digits.is_empty(), weight, 0, &digits)
    }

    #[test]
    fn every_float_text_agrees_with_serde() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut texts: Vec<String> = vec![
            "0.10000000149011612".into(),
            "-0.30000001192092896".into(),
            "1.7976931348623157e308".into(),
            "2.2250738585072014e-308".into(),
            "5e-324".into(),
            "123456789012345678901234567890".into(),
            "0".into(),
        ];
        for _ in 0..20_000 {
            let x: f64 = rng.random_range(-1.0..1.0) * 10f64.powi(rng.random_range(-40..40));
            texts.push(format!("{x:e}"));
            texts.push(format!("{x:.17e}"));
            if (x as f32).is_finite() {
                texts.push(format!("{}", x as f32 as f64));
            }
        }
        for text in texts {
            let want = serde_json::from_str::<serde_json::Value>(&text)
                .unwrap()
                .as_f64()
                .unwrap();
            assert_eq!(
                with(numeric_of(&text), |d| d.to_f64()),
                Some(want),
                "{text}"
            );
        }
        // beyond f64: None, as serde's as_f64
        assert_eq!(with(numeric_of("1e400"), |d| d.to_f64()), None);
        // serde keeps it as written (arbitrary_precision) and gives no f64 of it either
        assert_eq!(
            serde_json::from_str::<serde_json::Value>("1e400")
                .unwrap()
                .as_f64(),
            None
        );
    }
}
