//! What callers pass to replay, checked as plain functions: a number in a range, the number of
//! draws; and event ids as hex for messages.

use crate::errors::{finite, pg_float, FractalityError};

/// The most draws one call takes.
pub const MAX_DRAWS: i32 = 1_000_000;

/// `v` (named `name`) a finite number in [lo, hi], or 22023 with `hint`.
pub fn check_unit_interval(
    name: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
    hint: &'static str,
) -> Result<f64, FractalityError> {
    let v = finite(name, v)?;
    if v < lo || v > hi {
        return Err(FractalityError::invalid(name, pg_float(v), hint));
    }
    Ok(v)
}

/// The number of draws `n`, from 0 to [`MAX_DRAWS`].
pub fn check_draws(n: i32) -> Result<usize, FractalityError> {
    if !(0..=MAX_DRAWS).contains(&n) {
        return Err(FractalityError::invalid(
            "n",
            n,
            "The number of draws n is from 0 to 1000000 (draw larger samples in several calls).",
        ));
    }
    Ok(n as usize)
}

/// Bytes as lower-case hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
