//! `method: threshold`: every bound compared with the window's value.

use crate::api::{AnalysisOutcome, AnalysisRecord, AnalysisSpec};

use super::{CanaryMetrics, StepWindow, bound_check, estimate_set_aside, pct, record, with_note};

/// `method: threshold`: each bound compared with the window's value, read
/// once the pause is over.
pub(super) fn analyse(spec: &AnalysisSpec, w: StepWindow, m: &CanaryMetrics) -> AnalysisRecord {
    let (c, s) = (&m.canary, &m.stable);
    let mut checks = Vec::new();
    let mut missing = Vec::new();
    let requests = bound_check(
        "minRequests",
        c.requests as f64,
        spec.min_requests as f64,
        c.requests >= spec.min_requests,
        format!(
            "canary served {} requests (stable {}), minRequests {}",
            c.requests, s.requests, spec.min_requests
        ),
    );
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
        checks.push(bound_check(
            "maxErrorRate",
            v,
            bound,
            v <= bound,
            format!(
                "canary error rate {} ({}/{}) vs max {}",
                pct(v),
                c.errors,
                c.requests,
                pct(bound)
            ),
        ));
    }
    if let Some(bound) = spec.max_p99_latency_ms {
        match c.p99_latency_ms {
            Some(v) => checks.push(bound_check(
                "maxP99LatencyMs",
                v,
                bound,
                v <= bound,
                format!("canary p99 {v:.1} ms vs max {bound:.1} ms"),
            )),
            None => missing.push("canary p99 latency not reported"),
        }
    }
    // Relative checks need a stable sample as large as the canary's minimum.
    let stable_enough = s.requests >= spec.min_requests;
    if let Some(bound) = spec.max_error_rate_increase {
        if stable_enough {
            let v = c.error_rate() - s.error_rate();
            checks.push(bound_check(
                "maxErrorRateIncrease",
                v,
                bound,
                v <= bound,
                format!(
                    "canary error rate {} vs stable {} on the same window: +{} (max +{})",
                    pct(c.error_rate()),
                    pct(s.error_rate()),
                    pct(v.max(0.0)),
                    pct(bound)
                ),
            ));
        } else {
            missing.push("stable served fewer than minRequests to compare error rates");
        }
    }
    if let Some(bound) = spec.max_p99_latency_ratio {
        match (c.p99_latency_ms, s.p99_latency_ms) {
            (Some(cv), Some(sv)) if stable_enough && sv > 0.0 => {
                let v = cv / sv;
                checks.push(bound_check(
                    "maxP99LatencyRatio",
                    v,
                    bound,
                    v <= bound,
                    format!(
                        "canary p99 {cv:.1} ms is {v:.2}x stable's {sv:.1} ms (max {bound:.2}x)"
                    ),
                ));
            }
            _ => missing.push("p99 latency of canary and stable not both available"),
        }
    }
    if let Some(bound) = spec.max_prediction_divergence {
        match m.prediction_divergence {
            Some(v) => checks.push(bound_check("maxPredictionDivergence", v, bound, v <= bound, format!("prediction divergence canary vs stable {v:.3} (Jensen-Shannon distance) vs max {bound:.3}"))),
            None => missing.push("prediction divergence not reported"),
        }
    }
    if let Some(bound) = spec.min_online_accuracy {
        // Checked only when labels exist.
        if c.labelled > 0 {
            let v = c.correct as f64 / c.labelled as f64;
            checks.push(bound_check(
                "minOnlineAccuracy",
                v,
                bound,
                v >= bound,
                format!(
                    "canary online accuracy {} ({}/{} labelled) vs min {}",
                    pct(v),
                    c.correct,
                    c.labelled,
                    pct(bound)
                ),
            ));
        }
    }
    // Where no label judges accuracy, the calibrated confidence estimates it.
    let labels_judge = spec.min_online_accuracy.is_some() && c.labelled > 0;
    let mut set_aside = None;
    if let Some(bound) = spec.max_estimated_accuracy_drop {
        set_aside = estimate_set_aside(labels_judge, w);
        match (set_aside, c.estimated_accuracy(), s.estimated_accuracy()) {
            (Some(_), _, _) => {}
            (None, Some(ce), Some(se)) if stable_enough => {
                let v = se - ce;
                checks.push(bound_check(
                    "maxEstimatedAccuracyDrop",
                    v,
                    bound,
                    v <= bound,
                    format!(
                        "canary estimated accuracy {} vs stable {} on the same window ({} and {} requests, no labels): drop {} (max drop {})",
                        pct(ce),
                        pct(se),
                        c.confidence_rows,
                        s.confidence_rows,
                        pct(v),
                        pct(bound)
                    ),
                ));
            }
            (None, Some(_), Some(_)) => {
                missing.push("stable served fewer than minRequests to compare estimated accuracy")
            }
            (None, _, _) => missing.push(
                "calibrated confidence of canary and stable not both reported to estimate accuracy",
            ),
        }
    }

    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.message.as_str())
        .collect();
    if !failed.is_empty() {
        let detail = with_note(failed.join("; "), set_aside);
        return record(w, AnalysisOutcome::Failed, Some(m), checks, detail);
    }
    if !missing.is_empty() {
        let detail = with_note(format!("{}; not a pass", missing.join("; ")), set_aside);
        return record(w, AnalysisOutcome::Inconclusive, Some(m), checks, detail);
    }
    let detail = checks
        .iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    record(
        w,
        AnalysisOutcome::Passed,
        Some(m),
        checks,
        with_note(detail, set_aside),
    )
}
