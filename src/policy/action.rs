//! What the decision core asks the operator to do: plain data, each with the
//! reason a user reads in `kubectl describe`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::{
    GateSummary, ModelStatus, RolloutOutcome, TrafficWeight, TrainingTrigger, VersionPhase,
};

/// Kubernetes Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Normal,
    Warning,
}

/// One thing to do. The operator applies them in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Create ModelVersion `v<n>` (phase Training) and Job `<model>-train-<n>`.
    StartTraining {
        version: u32,
        trigger: TrainingTrigger,
        reason: String,
        /// Hash of the training-relevant spec, for the version's lineage.
        config_hash: String,
    },
    /// Set `ModelVersion.status.phase` (and its message).
    SetVersionPhase {
        version: u32,
        phase: VersionPhase,
        reason: String,
    },
    /// Write the gate summary into `ModelVersion.status.gate`.
    RecordGate { version: u32, gate: GateSummary },
    /// Write how the canary ended, with every analysis, into `ModelVersion.status.rollout`.
    RecordRollout {
        version: u32,
        rollout: RolloutOutcome,
    },
    /// Create the candidate's serving Deployment and Service (no traffic yet).
    CreateCanary { version: u32, reason: String },
    /// Apply this traffic split (weights sum to 100) to the gateway.
    SetTraffic {
        weights: Vec<TrafficWeight>,
        reason: String,
    },
    /// `version` becomes champion; `previous` is superseded.
    Promote {
        version: u32,
        previous: Option<u32>,
        reason: String,
    },
    /// `version` loses its traffic; `restored` serves 100 %.
    Rollback {
        version: u32,
        restored: Option<u32>,
        reason: String,
    },
    /// Delete the version's ModelVersion, serving objects and artifact (retention).
    DeleteVersion { version: u32, reason: String },
    /// Emit a Kubernetes Event on the Model.
    RecordEvent {
        kind: EventKind,
        reason: String,
        message: String,
    },
}

/// The outcome of one decision: actions, the new status, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub status: ModelStatus,
    /// Reconcile again after this long even if nothing changes (pause end,
    /// schedule slot, cooldown end).
    pub requeue_after: Option<Duration>,
}

impl Decision {
    /// The traffic split this decision sets, if any.
    pub fn traffic(&self) -> Option<&[TrafficWeight]> {
        self.actions.iter().rev().find_map(|a| match a {
            Action::SetTraffic { weights, .. } => Some(weights.as_slice()),
            _ => None,
        })
    }

    /// Events this decision records, as `(reason, message)`.
    pub fn events(&self) -> impl Iterator<Item = (&str, &str)> {
        self.actions.iter().filter_map(|a| match a {
            Action::RecordEvent {
                reason, message, ..
            } => Some((reason.as_str(), message.as_str())),
            _ => None,
        })
    }

    /// The training this decision starts, if any.
    pub fn started_training(&self) -> Option<(u32, TrainingTrigger, &str)> {
        self.actions.iter().find_map(|a| match a {
            Action::StartTraining {
                version,
                trigger,
                reason,
                ..
            } => Some((*version, *trigger, reason.as_str())),
            _ => None,
        })
    }
}
