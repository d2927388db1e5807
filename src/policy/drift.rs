//! Drift trigger: a window drifts when enough features exceed their
//! threshold; retraining is due after `consecutiveWindows` drifted windows in a row.

use crate::api::{ConditionStatus, ModelSpec, ModelStatus};

use super::conditions::set_condition;
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
        let mut monitored = 0usize;
        let mut drifted: Vec<(String, f64)> = Vec::new();
        let mut score = 0.0f64;
        for (name, value) in &r.features {
            let over = d.features.get(name);
            if over.is_some_and(|o| o.ignore) {
                continue;
            }
            monitored += 1;
            score = score.max(*value);
            let threshold = over.and_then(|o| o.threshold).unwrap_or(d.threshold);
            if *value > threshold {
                drifted.push((name.clone(), *value));
            }
        }
        let share = if monitored == 0 {
            0.0
        } else {
            drifted.len() as f64 / monitored as f64
        };
        let window_drifted = !drifted.is_empty() && share >= d.drifted_share;
        summary.consecutive_windows = if window_drifted {
            summary.consecutive_windows + 1
        } else {
            0
        };
        summary.score = score;
        summary.drifted_share = share;
        drifted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        summary.drifted_features = drifted.iter().map(|(n, _)| n.clone()).collect();
        summary.last_window_end = Some(r.window_end);
    }
    summary.summary = format!(
        "{:.3} ({}/{} windows)",
        summary.score,
        summary.consecutive_windows.min(d.consecutive_windows),
        d.consecutive_windows
    );
    let due = summary.consecutive_windows >= d.consecutive_windows;
    let features = if summary.drifted_features.is_empty() {
        "none".to_string()
    } else {
        summary.drifted_features.join(", ")
    };
    let reason = format!(
        "drift for {} windows in a row (needed {}): {:.0} % of features over threshold {} (driftedShare {}), max {:?} {:.3}; drifted: {features}",
        summary.consecutive_windows,
        d.consecutive_windows,
        summary.drifted_share * 100.0,
        d.threshold,
        d.drifted_share,
        d.statistic,
        summary.score
    );
    if due {
        set_condition(
            status,
            obs,
            "DriftDetected",
            ConditionStatus::True,
            "DriftDetected",
            &reason,
        );
    } else if summary.last_window_end.is_some() {
        let msg = format!(
            "{} of {} drifted windows in a row; latest max {:.3}, {:.0} % of features over threshold",
            summary.consecutive_windows,
            d.consecutive_windows,
            summary.score,
            summary.drifted_share * 100.0
        );
        set_condition(
            status,
            obs,
            "DriftDetected",
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
