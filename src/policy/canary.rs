//! Canary analysis: the candidate against the stable version on the same
//! window. Too few requests is inconclusive, never a pass.

use chrono::{DateTime, Utc};

use crate::api::{AnalysisCheck, AnalysisOutcome, AnalysisRecord, AnalysisSpec};

use super::observe::CanaryMetrics;

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
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
    let (c, s) = (&m.canary, &m.stable);
    let mut checks = Vec::new();
    let mut missing = Vec::new();
    let requests = AnalysisCheck {
        name: "minRequests".into(),
        value: c.requests as f64,
        bound: spec.min_requests as f64,
        passed: c.requests >= spec.min_requests,
        message: format!(
            "canary served {} requests (stable {}), minRequests {}",
            c.requests, s.requests, spec.min_requests
        ),
    };
    if !requests.passed {
        let detail = format!(
            "canary served {} requests, fewer than minRequests {}: not enough evidence, not a pass",
            c.requests, spec.min_requests
        );
        return record(
            w,
            AnalysisOutcome::Inconclusive,
            Some(m),
            vec![requests],
            detail,
        );
    }
    checks.push(requests);

    if let Some(bound) = spec.max_error_rate {
        let v = c.error_rate();
        checks.push(AnalysisCheck {
            name: "maxErrorRate".into(),
            value: v,
            bound,
            passed: v <= bound,
            message: format!(
                "canary error rate {} ({}/{}) vs max {}",
                pct(v),
                c.errors,
                c.requests,
                pct(bound)
            ),
        });
    }
    if let Some(bound) = spec.max_p99_latency_ms {
        match c.p99_latency_ms {
            Some(v) => checks.push(AnalysisCheck {
                name: "maxP99LatencyMs".into(),
                value: v,
                bound,
                passed: v <= bound,
                message: format!("canary p99 {v:.1} ms vs max {bound:.1} ms"),
            }),
            None => missing.push("canary p99 latency not reported"),
        }
    }
    // Relative checks need a stable sample as large as the canary's minimum.
    let stable_enough = s.requests >= spec.min_requests;
    if let Some(bound) = spec.max_error_rate_increase {
        if stable_enough {
            let v = c.error_rate() - s.error_rate();
            checks.push(AnalysisCheck {
                name: "maxErrorRateIncrease".into(),
                value: v,
                bound,
                passed: v <= bound,
                message: format!(
                    "canary error rate {} vs stable {} on the same window: +{} (max +{})",
                    pct(c.error_rate()),
                    pct(s.error_rate()),
                    pct(v.max(0.0)),
                    pct(bound)
                ),
            });
        } else {
            missing.push("stable served fewer than minRequests to compare error rates");
        }
    }
    if let Some(bound) = spec.max_p99_latency_ratio {
        match (c.p99_latency_ms, s.p99_latency_ms) {
            (Some(cv), Some(sv)) if stable_enough && sv > 0.0 => {
                let v = cv / sv;
                checks.push(AnalysisCheck {
                    name: "maxP99LatencyRatio".into(),
                    value: v,
                    bound,
                    passed: v <= bound,
                    message: format!(
                        "canary p99 {cv:.1} ms is {v:.2}x stable's {sv:.1} ms (max {bound:.2}x)"
                    ),
                });
            }
            _ => missing.push("p99 latency of canary and stable not both available"),
        }
    }
    if let Some(bound) = spec.max_prediction_divergence {
        match m.prediction_divergence {
            Some(v) => checks.push(AnalysisCheck {
                name: "maxPredictionDivergence".into(),
                value: v,
                bound,
                passed: v <= bound,
                message: format!("prediction divergence canary vs stable {v:.3} (Jensen-Shannon distance) vs max {bound:.3}"),
            }),
            None => missing.push("prediction divergence not reported"),
        }
    }
    if let Some(bound) = spec.min_online_accuracy {
        // Checked only when labels exist.
        if c.labelled > 0 {
            let v = c.correct as f64 / c.labelled as f64;
            checks.push(AnalysisCheck {
                name: "minOnlineAccuracy".into(),
                value: v,
                bound,
                passed: v >= bound,
                message: format!(
                    "canary online accuracy {} ({}/{} labelled) vs min {}",
                    pct(v),
                    c.correct,
                    c.labelled,
                    pct(bound)
                ),
            });
        }
    }

    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.message.as_str())
        .collect();
    if !failed.is_empty() {
        let detail = failed.join("; ");
        return record(w, AnalysisOutcome::Failed, Some(m), checks, detail);
    }
    if !missing.is_empty() {
        let detail = format!("{}; not a pass", missing.join("; "));
        return record(w, AnalysisOutcome::Inconclusive, Some(m), checks, detail);
    }
    let detail = checks
        .iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    record(w, AnalysisOutcome::Passed, Some(m), checks, detail)
}
