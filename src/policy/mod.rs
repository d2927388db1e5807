//! The decision core: pure functions from what was observed (and `now`) to
//! what to do next. No IO, no clock reads.
pub mod gate;
