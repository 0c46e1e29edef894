//! What callers pass to replay, checked as a plain function: the number of draws.

use crate::errors::FractalityError;

/// At most this many draws per call (of replay buffers and of 0.4.0's sample_experiences): the
/// sample is built in memory, and an allocation the server cannot make aborts the process
/// rather than raising an ERROR.
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
