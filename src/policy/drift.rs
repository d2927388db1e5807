//! Drift trigger: each window is judged by the drift rule the model server
//! uses ([`crate::drift::window_verdict`]); retraining is due after
//! `consecutiveWindows` drifted windows in a row.

use crate::api::{ConditionStatus, DriftDriver, ModelSpec, ModelStatus};
use crate::drift::{DriftConfig, window_verdict};

use super::conditions::{self, set_condition};
use super::observe::Observations;

/// What the drift readings of this decision amount to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DriftUpdate {
    /// `consecutiveWindows` drifted windows in a row have been seen.
    pub due: bool,
    /// At least one window was new in this decision.
    pub new_windows: bool,
    /// The numbers, for the training reason.
    pub reason: String,
}

/// Folds new complete windows into `status.drift` and sets `DriftDetected`.
pub fn update_drift(status: &mut ModelStatus, spec: &ModelSpec, obs: &Observations) -> DriftUpdate {
    let d = &spec.drift;
    let config = DriftConfig::from(d.clone());
    let mut summary = status.drift.clone().unwrap_or_default();
    let mut readings: Vec<_> = obs
        .drift
        .iter()
        .filter(|r| r.rows >= u64::from(d.window))
        .filter(|r| {
            summary
                .last_window_end
                .is_none_or(|last| r.window_end > last)
        })
        .collect();
    readings.sort_by_key(|r| r.window_end);
    let new_windows = !readings.is_empty();
    for r in readings {
        let verdict = window_verdict(&r.features, r.prediction.as_ref(), &config.rule());
        summary.consecutive_windows = if verdict.drifted {
            summary.consecutive_windows + 1
        } else {
            0
        };
        summary.score = verdict
            .features
            .iter()
            .filter(|f| !f.ignored)
            .map(|f| f.value)
            .fold(0.0, f64::max);
        summary.drifted_share = verdict.drifted_share;
        summary.drifted_weight = verdict.drifted_weight;
        summary.window_drifted = verdict.drifted;
        summary.drivers = verdict
            .drivers()
            .into_iter()
            .chain(verdict.prediction.iter().filter(|p| p.drifted))
            .map(|c| DriftDriver {
                name: c.name.clone(),
                weight: c.weight,
                value: c.value,
                threshold: c.threshold,
            })
            .collect();
        summary.drifted_features = verdict.drifted_features;
        summary.reason = verdict.reason;
        summary.last_window_end = Some(r.window_end);
    }
    summary.summary = format!(
        "{:.3} ({}/{} windows)",
        summary.score,
        summary.consecutive_windows.min(d.consecutive_windows),
        d.consecutive_windows
    );
    let due = summary.consecutive_windows >= d.consecutive_windows;
    let reason = format!(
        "drift for {} windows in a row (needed {}); latest window {} (max {} {:.3})",
        summary.consecutive_windows,
        d.consecutive_windows,
        summary.reason,
        d.statistic,
        summary.score
    );
    if due {
        set_condition(
            status,
            obs,
            conditions::DRIFT_DETECTED,
            ConditionStatus::True,
            "DriftDetected",
            &reason,
        );
    } else if summary.last_window_end.is_some() {
        let msg = format!(
            "{} of {} drifted windows in a row; latest window {}",
            summary.consecutive_windows, d.consecutive_windows, summary.reason
        );
        set_condition(
            status,
            obs,
            conditions::DRIFT_DETECTED,
            ConditionStatus::False,
            "NoDrift",
            &msg,
        );
    }
    if summary.last_window_end.is_some() {
        status.drift = Some(summary);
    }
    DriftUpdate {
        due,
        new_windows,
        reason,
    }
}
