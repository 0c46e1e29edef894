//! What callers pass to replay, checked as a plain function: the number of draws.

use crate::errors::{count_in_range, FractalityError};

/// At most this many draws per call (of replay buffers and of 0.4.0's sample_experiences): the
/// sample is built in memory, and an allocation the server cannot make aborts the process
/// rather than raising an ERROR.
pub const MAX_DRAWS: i32 = 1_000_000;

/// The number of draws `n`, from 0 to [`MAX_DRAWS`].
pub fn check_draws(n: i32) -> Result<usize, FractalityError> {
    const HINT: &str =
        "The number of draws n is from 0 to 1000000 (draw larger samples in several calls).";
    count_in_range("n", n, 0, MAX_DRAWS, HINT)
}
