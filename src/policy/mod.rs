//! The decision core: pure functions from what was observed (and `now`) to
//! what to do next. No IO, no clock reads.
//!
//! [`decide`] takes the Model, its ModelVersions and [`Observations`] and
//! returns a [`Decision`]: [`Action`]s for the operator, the new
//! `Model.status` and when to look again. Every action and event carries a
//! reason with its numbers. The operator's loop is:
//!
//! 1. observe: training Jobs, gate verdicts, which serving Deployments are
//!    ready, merged canary and stable metrics over one window, drift windows,
//!    the data source's digest, and at most one manual request;
//! 2. `decide(model, versions, observations)`;
//! 3. carry out the actions ([`version_status`] says what each leaves in a
//!    ModelVersion's status), write the Model's status (one replacing patch),
//!    derive the children from that status and apply them, requeue after
//!    `requeue_after`.
//!
//! Pause and resume are `spec.paused` (the CLI patches it): while paused no
//! training starts and canary weights are held; explicit promote and rollback
//! requests still act.

mod action;
mod canary;
pub mod conditions;
mod confidence;
mod data_check;
mod decide;
mod drift;
mod estimate;
mod gate;
mod notify;
mod observe;
mod shadow;
mod test_set;
mod version_status;

pub use action::{Action, Decision, EventKind};
pub use canary::{StepWindow, analyse as analyse_canary};
pub use data_check::verdict as data_verdict;
pub use decide::{SCHEDULE_GRACE, config_hash, decide};
pub use drift::{DriftUpdate, update_drift};
pub use estimate::{EstimateUpdate, update_estimate};
pub use gate::verdict as gate_verdict;
pub use notify::{
    Notification, Subject, body as notification_body, cloud_event, event_id, notifications,
    slack_body,
};
pub use observe::{
    CanaryMetrics, DataCheckOutcome, DataCheckResult, DriftReading, GateResult, JobState,
    ManualAction, ManualRequest, Observations, ServingMetrics, ShadowObservation, TestSetReading,
    TrainingJob, WindowEstimate, awaits_gate,
};
pub use shadow::{ShadowVerdict, verdict as shadow_verdict};
pub use version_status::{apply as apply_to_version_status, version_of as version_written_by};
