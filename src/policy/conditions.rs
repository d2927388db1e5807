//! Kubernetes-style conditions: `lastTransitionTime` moves only when the
//! status flips.

use crate::api::{Condition, ConditionStatus, ModelStatus};

use super::observe::Observations;

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
