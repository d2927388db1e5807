//! The decision core: pure functions from what was observed (and `now`) to
//! what to do next. No IO, no clock reads.
//!
//! [`decide`] takes the Model, its ModelVersions and [`Observations`] and
//! returns a [`Decision`]: [`Action`]s for the operator and the new
//! `Model.status`. Every action and event carries a reason with its numbers.

pub mod action;
pub mod canary;
pub mod conditions;
pub mod decide;
pub mod drift;
pub mod observe;

pub use action::{Action, Decision, EventKind};
pub use decide::{SCHEDULE_GRACE, config_hash, decide};
pub use observe::{
    CanaryMetrics, DriftReading, GateResult, JobState, ManualAction, ManualRequest, Observations,
    ServingMetrics, TrainingJob,
};
