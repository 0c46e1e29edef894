//! What callers pass to replay, checked as plain functions: the number of draws; and event ids
//! as hex for messages.

use crate::errors::FractalityError;

/// The most draws one call takes.
pub const MAX_DRAWS: i32 = 1_000_000;

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
