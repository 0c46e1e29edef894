//! The rewards' one query (`sql/queries/reward_sample_hot_events.sql`) through [`crate::spi`];
//! SPI must be connected ([`crate::spi::connect`]).

use crate::errors::FractalityError;
use crate::spi::{query, Cursor, Query};

/// The hot events in one fixed order with their total reward (sample_experiences' two passes).
const SAMPLE_HOT_EVENTS: Query<'static> =
    query!("reward_sample_hot_events", [], name = "sample_hot_events");

/// A cursor over the hot events, read with the statement's snapshot: (event id, total reward).
pub fn hot_events() -> Result<Cursor, FractalityError> {
    Cursor::open(&SAMPLE_HOT_EVENTS, &[], true)
}
