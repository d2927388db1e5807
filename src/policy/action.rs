//! What the decision core asks the operator to do beyond writing the new
//! status: plain data, each with the reason a user reads in `kubectl describe`.
//!
//! The children that serve and train (Jobs, Deployments, Services, the
//! gateway, the HTTPRoute) are no action: they are derived from the decided
//! status by one pure function (`operator::desired::children`), so a restart at
//! any point converges and an edited child is put back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::{
    DataCheckSummary, GateSummary, ModelStatus, RolloutOutcome, TrainingTrigger, VersionPhase,
};

/// Kubernetes Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Normal,
    Warning,
}

/// One thing to do. The operator carries each out: on the cluster
/// (ModelVersions, their statuses, Events), in the registry (the audit
/// trail), or both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Create ModelVersion `v<n>` (phase CheckingData, or Training when
    /// the data check is off); the status then calls for its Job.
    StartTraining {
        version: u32,
        trigger: TrainingTrigger,
        reason: String,
        /// Hash of the training-relevant spec, for the version's lineage.
        config_hash: String,
        /// The version's first phase: `CheckingData` or `Training`.
        phase: VersionPhase,
    },
    /// Write the data check's verdict into `ModelVersion.status.dataCheck`.
    RecordDataCheck {
        version: u32,
        data_check: DataCheckSummary,
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
    /// Record in the registry's audit trail that `version` became champion
    /// and `previous` was superseded. Serving follows `status.champion` and
    /// `status.traffic`, not this record.
    Promote {
        version: u32,
        previous: Option<u32>,
        reason: String,
    },
    /// Record in the registry's audit trail that `version` lost its traffic
    /// and `restored` serves 100 %. Serving follows the status, as above.
    Rollback {
        version: u32,
        restored: Option<u32>,
        reason: String,
    },
    /// Delete the version's ModelVersion (retention); its Job, Deployment and
    /// Service go with it, as children no status calls for.
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
