//! Kubernetes-style conditions on `Model.status`: the one list of their
//! types, and [`set_condition`], which moves `lastTransitionTime` only when
//! the status flips.
//!
//! The decision core sets every type but `Reconciled`, `RegistryAvailable`
//! and `NotificationsDegraded`, which the operator sets around it; `api::Condition`'s documentation (and so the CRD) lists
//! them all, as a test below checks.

use crate::api::{Condition, ConditionStatus, ModelStatus};

use super::observe::Observations;

/// A champion serves (`True`), or none has passed the gate yet.
pub const READY: &str = "Ready";
/// A training Job runs (`True`), or the last one failed, or none runs.
pub const TRAINING: &str = "Training";
/// The running training's pod waits for a node that can take it.
pub const TRAINING_UNSCHEDULABLE: &str = "TrainingUnschedulable";
/// A canary is in progress or waits for `driftline promote`.
pub const PROGRESSING: &str = "Progressing";
/// `spec.paused` holds training and rollout steps.
pub const PAUSED: &str = "Paused";
/// The spec passed `validate()`, or why not.
pub const SPEC_VALID: &str = "SpecValid";
/// Live inputs drifted for `consecutiveWindows` windows in a row.
pub const DRIFT_DETECTED: &str = "DriftDetected";
/// Live traffic has left the gate's regression test-set for
/// `consecutiveWindows` windows in a row (`True`, naming the features).
pub const TEST_SET_STALE: &str = "TestSetStale";
/// The champion's accuracy estimated without labels is off from what its
/// late labels realised by more than `retrain.onEstimatedDrop.tolerance`
/// (`True`): the estimate triggers nothing until it is back within.
pub const ESTIMATE_UNRELIABLE: &str = "EstimateUnreliable";
/// The labels under the feedback prefix could be read and joined with the
/// prediction log (`True`), or why not (`False`: a malformed label file,
/// named with its line).
pub const LABELS_READABLE: &str = "LabelsReadable";
/// The latest data check passed (`True`), or refused the window (`False`,
/// with every failed check).
pub const DATA_VALID: &str = "DataValid";
/// `spec.data.source` can be listed for `retrain.onNewData` (`True`), or
/// why not (`False`: a missing prefix, refused credentials).
pub const SOURCE_READABLE: &str = "SourceReadable";
/// The operator's last reconcile finished (`True`), or the cause it met.
pub const RECONCILED: &str = "Reconciled";
/// Decisions reach the registry, or wait in memory while it is down.
pub const REGISTRY_AVAILABLE: &str = "RegistryAvailable";
/// A notification sink's signing key (its Secret) is missing: its
/// notifications are dead-lettered (`True`), or every key was found.
pub const NOTIFICATIONS_DEGRADED: &str = "NotificationsDegraded";

/// kstatus's `Reconciling`: the Model is on its way somewhere (training,
/// gating, shadow, canary, a champion starting); `False` once it is settled.
pub const RECONCILING: &str = "Reconciling";
/// kstatus's `Stalled`: it cannot move on without a person (an invalid spec,
/// a training pod no node can take, a first version whose training or data
/// failed).
pub const STALLED: &str = "Stalled";

/// Every condition type a Model can carry.
pub const ALL: [&str; 17] = [
    READY,
    TRAINING,
    TRAINING_UNSCHEDULABLE,
    PROGRESSING,
    PAUSED,
    SPEC_VALID,
    DRIFT_DETECTED,
    TEST_SET_STALE,
    ESTIMATE_UNRELIABLE,
    LABELS_READABLE,
    DATA_VALID,
    SOURCE_READABLE,
    RECONCILED,
    REGISTRY_AVAILABLE,
    NOTIFICATIONS_DEGRADED,
    RECONCILING,
    STALLED,
];

/// Sets condition `type_`; returns whether its status changed (or it is new).
pub fn set_condition(
    status: &mut ModelStatus,
    obs: &Observations,
    type_: &str,
    value: ConditionStatus,
    reason: &str,
    message: &str,
) -> bool {
    let fresh = Condition {
        type_: type_.to_string(),
        status: value,
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: obs.now,
        observed_generation: obs.generation,
    };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) if existing.status == value => {
            existing.reason = fresh.reason;
            existing.message = fresh.message;
            existing.observed_generation = fresh.observed_generation;
            false
        }
        Some(existing) => {
            *existing = fresh;
            true
        }
        None => {
            status.conditions.push(fresh);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Observations {
        Observations::at(
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("RFC 3339")
                .into(),
        )
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let mut status = ModelStatus::default();
        let t0 = at("2026-06-01T08:00:00Z");
        assert!(set_condition(
            &mut status,
            &t0,
            READY,
            ConditionStatus::False,
            "NoChampion",
            "none yet"
        ));
        let later = at("2026-06-01T09:00:00Z");
        assert!(!set_condition(
            &mut status,
            &later,
            READY,
            ConditionStatus::False,
            "NoChampion",
            "still none"
        ));
        let ready = status.condition(READY).expect("set");
        assert_eq!(ready.last_transition_time, t0.now);
        assert_eq!(ready.message, "still none", "the message follows");
        assert!(set_condition(
            &mut status,
            &later,
            READY,
            ConditionStatus::True,
            "ChampionServing",
            "v1"
        ));
        let ready = status.condition(READY).expect("set");
        assert_eq!(ready.last_transition_time, later.now);
        assert_eq!(status.conditions.len(), 1);
    }

    #[test]
    fn the_crd_documents_every_condition_type() {
        let crds = crate::api::crd::all_crds();
        let model = crds
            .iter()
            .find(|c| c.spec.names.kind == "Model")
            .expect("the Model CRD");
        let schema = serde_json::to_value(&model.spec.versions[0].schema).expect("schema");
        let documented = schema
            .pointer(
                "/openAPIV3Schema/properties/status/properties/conditions/items/properties/type/description",
            )
            .and_then(|d| d.as_str())
            .expect("conditions[].type has a description");
        for type_ in ALL {
            assert!(
                documented.contains(&format!("`{type_}`")),
                "`{type_}` is missing from the CRD's list: {documented}"
            );
        }
        assert_eq!(
            documented.matches('`').count(),
            2 * ALL.len(),
            "the CRD lists a condition type no one sets: {documented}"
        );
    }
}
