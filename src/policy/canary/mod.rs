//! Canary analysis: the candidate against the stable version on the same
//! window. Too few requests is inconclusive, never a pass.
//!
//! Two methods (`spec.rollout.analysis.method`): `sequential` (always-valid
//! confidence sequences read at every poll, [`sequential`]) and `threshold`
//! (bounds read after the pause, [`threshold`]).

mod sequential;
mod threshold;

use chrono::{DateTime, Utc};

use crate::api::{AnalysisCheck, AnalysisMethod, AnalysisOutcome, AnalysisRecord, AnalysisSpec};

use super::observe::CanaryMetrics;

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

/// A check read as a plain bound (no evidence interval).
fn bound_check(name: &str, value: f64, bound: f64, passed: bool, message: String) -> AnalysisCheck {
    AnalysisCheck {
        name: name.into(),
        value,
        bound,
        passed,
        message,
        evidence: None,
        lower: None,
        upper: None,
    }
}

/// Which step is analysed, for the record.
#[derive(Clone, Copy, Debug)]
pub struct StepWindow {
    /// 0-based step index.
    pub step: u32,
    /// Total number of steps.
    pub steps: u32,
    pub weight: u32,
    /// When this step's weight was set.
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The step's pause is over: only then may a step pass, and only then
    /// are the checks that are plain bounds read.
    pub pause_over: bool,
}

fn record(
    w: StepWindow,
    outcome: AnalysisOutcome,
    metrics: Option<&CanaryMetrics>,
    checks: Vec<AnalysisCheck>,
    detail: String,
) -> AnalysisRecord {
    let verdict = match outcome {
        AnalysisOutcome::Passed => "passed",
        AnalysisOutcome::Failed => "failed",
        AnalysisOutcome::Inconclusive => "inconclusive",
    };
    AnalysisRecord {
        step: w.step,
        weight: w.weight,
        outcome,
        canary_requests: metrics.map_or(0, |m| m.canary.requests),
        stable_requests: metrics.map_or(0, |m| m.stable.requests),
        checks,
        window_start: metrics.map_or(w.started_at, |m| m.window_start),
        window_end: metrics.map_or(w.now, |m| m.window_end),
        message: format!(
            "step {}/{} at {} %: {verdict}: {detail}",
            w.step + 1,
            w.steps,
            w.weight
        ),
    }
}

/// Analyses one step. `metrics` must be of this canary; a window that starts
/// before the step (it would mix in the previous weight) is inconclusive.
pub fn analyse(
    spec: &AnalysisSpec,
    w: StepWindow,
    metrics: Option<&CanaryMetrics>,
) -> AnalysisRecord {
    let Some(m) = metrics else {
        return record(
            w,
            AnalysisOutcome::Inconclusive,
            None,
            Vec::new(),
            "no canary metrics for this window yet".into(),
        );
    };
    if m.window_start < w.started_at {
        let detail = format!(
            "metrics window starts {} before the step began at {}; waiting for a window inside the step",
            m.window_start.to_rfc3339(),
            w.started_at.to_rfc3339()
        );
        return record(
            w,
            AnalysisOutcome::Inconclusive,
            Some(m),
            Vec::new(),
            detail,
        );
    }
    match spec.method {
        AnalysisMethod::Sequential => sequential::analyse(spec, w, m),
        AnalysisMethod::Threshold => threshold::analyse(spec, w, m),
    }
}
