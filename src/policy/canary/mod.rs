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
    /// The Model's `EstimateUnreliable` is True: late labels showed its
    /// estimated accuracy wrong, so `maxEstimatedAccuracyDrop` is set aside.
    pub estimate_unreliable: bool,
}

/// Why `maxEstimatedAccuracyDrop` is not read in this step, if it is not:
/// where labelled requests judge the step's online accuracy they decide,
/// and an estimate late labels showed wrong decides nothing.
fn estimate_set_aside(labels_judge: bool, w: StepWindow) -> Option<&'static str> {
    if labels_judge {
        Some(
            "maxEstimatedAccuracyDrop set aside: labelled requests judge this step's online accuracy",
        )
    } else if w.estimate_unreliable {
        Some("maxEstimatedAccuracyDrop set aside while EstimateUnreliable is True")
    } else {
        None
    }
}

/// `detail`, then why a configured check was set aside, if one was.
fn with_note(detail: String, set_aside: Option<&str>) -> String {
    match set_aside {
        Some(note) => format!("{detail}; {note}"),
        None => detail,
    }
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
        divergence: metrics.and_then(|m| m.prediction_divergence),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Evidence;
    use crate::policy::ServingMetrics;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("a time")
            + chrono::Duration::minutes(minutes)
    }

    /// Step 1 of 2, begun at minute 0, read at minute 5.
    fn window(pause_over: bool, estimate_unreliable: bool) -> StepWindow {
        StepWindow {
            step: 0,
            steps: 2,
            weight: 20,
            started_at: t(0),
            now: t(5),
            pause_over,
            estimate_unreliable,
        }
    }

    /// Only the estimated-accuracy check (and minRequests), `method`.
    fn spec(method: AnalysisMethod) -> AnalysisSpec {
        AnalysisSpec {
            method,
            max_error_rate: None,
            max_estimated_accuracy_drop: Some(0.05),
            ..AnalysisSpec::default()
        }
    }

    /// `requests` unlabelled requests answered with mean calibrated confidence `estimate`.
    fn serving(requests: u64, estimate: f64) -> ServingMetrics {
        ServingMetrics {
            requests,
            p99_latency_ms: Some(5.0),
            confidence_rows: requests,
            expected_correct: estimate * requests as f64,
            ..ServingMetrics::default()
        }
    }

    fn metrics(canary: ServingMetrics, stable: ServingMetrics) -> CanaryMetrics {
        CanaryMetrics {
            version: 2,
            window_start: t(0),
            window_end: t(5),
            canary,
            stable,
            prediction_divergence: Some(0.01),
        }
    }

    fn check<'a>(r: &'a AnalysisRecord, name: &str) -> Option<&'a AnalysisCheck> {
        r.checks.iter().find(|c| c.name == name)
    }

    const ESTIMATED: &str = "maxEstimatedAccuracyDrop";

    #[test]
    fn sequential_rolls_back_a_canary_estimated_clearly_worse_without_any_label_inside_the_pause() {
        let spec = spec(AnalysisMethod::Sequential);
        let m = metrics(serving(2_000, 0.45), serving(8_000, 0.62));
        let r = analyse(&spec, window(false, false), Some(&m));
        assert_eq!(r.outcome, AnalysisOutcome::Failed, "{}", r.message);
        let c = check(&r, ESTIMATED).expect("the estimate is judged");
        assert_eq!(c.evidence, Some(Evidence::Harm), "{c:?}");
        assert!((c.value - 0.17).abs() < 1e-9, "{c:?}");
        let (lower, upper) = (c.lower.expect("lower"), c.upper.expect("upper"));
        assert!(0.0 < lower && lower < 0.17 && 0.17 < upper, "{c:?}");
        assert!(
            c.message
                .contains("estimated 45.00 % over 2000 canary requests")
                && c.message.contains("62.00 % over 8000 stable")
                && c.message.contains("vs max drop 5.00 %"),
            "{}",
            c.message
        );
        assert!(
            r.message.contains("harm: estimated accuracy drop"),
            "{}",
            r.message
        );
    }

    #[test]
    fn sequential_passes_an_estimate_as_good_as_stables_once_the_pause_is_over_and_waits_on_few_requests()
     {
        let spec = spec(AnalysisMethod::Sequential);
        let m = metrics(serving(20_000, 0.62), serving(40_000, 0.62));
        let inside = analyse(&spec, window(false, false), Some(&m));
        assert_eq!(
            inside.outcome,
            AnalysisOutcome::Inconclusive,
            "{}",
            inside.message
        );
        let after = analyse(&spec, window(true, false), Some(&m));
        assert_eq!(after.outcome, AnalysisOutcome::Passed, "{}", after.message);
        let c = check(&after, ESTIMATED).expect("judged");
        assert_eq!(c.evidence, Some(Evidence::NoHarm), "{c:?}");
        assert!(c.upper.expect("upper") < 0.05, "{c:?}");
        // The same estimates on 200 requests: neither harm nor no harm.
        let thin = metrics(serving(200, 0.62), serving(400, 0.62));
        let r = analyse(&spec, window(true, false), Some(&thin));
        assert_eq!(r.outcome, AnalysisOutcome::Inconclusive, "{}", r.message);
        assert_eq!(
            check(&r, ESTIMATED).and_then(|c| c.evidence),
            Some(Evidence::KeepWatching)
        );
    }

    #[test]
    fn labels_judge_where_they_exist_and_an_unreliable_estimate_judges_nothing() {
        for method in [AnalysisMethod::Sequential, AnalysisMethod::Threshold] {
            let bad = || metrics(serving(2_000, 0.45), serving(8_000, 0.62));
            // EstimateUnreliable is True: the clearly lower estimate is not read.
            let spec = spec(method);
            let r = analyse(&spec, window(true, true), Some(&bad()));
            assert!(check(&r, ESTIMATED).is_none(), "{method:?}: {r:?}");
            assert_eq!(
                r.outcome,
                AnalysisOutcome::Passed,
                "{method:?}: {}",
                r.message
            );
            assert!(
                r.message.ends_with(
                    "maxEstimatedAccuracyDrop set aside while EstimateUnreliable is True"
                ),
                "{}",
                r.message
            );
            // Labelled canary requests: the online accuracy decides instead.
            let spec = AnalysisSpec {
                min_online_accuracy: Some(0.4),
                ..spec
            };
            let mut labelled = bad();
            (labelled.canary.labelled, labelled.canary.correct) = (1_000, 900);
            let r = analyse(&spec, window(true, false), Some(&labelled));
            assert!(check(&r, ESTIMATED).is_none(), "{method:?}: {r:?}");
            assert!(
                check(&r, "minOnlineAccuracy").is_some(),
                "{method:?}: {r:?}"
            );
            assert!(
                r.message
                    .contains("labelled requests judge this step's online accuracy"),
                "{}",
                r.message
            );
            // Without labels the same spec reads the estimate, and fails.
            let r = analyse(&spec, window(true, false), Some(&bad()));
            assert_eq!(
                r.outcome,
                AnalysisOutcome::Failed,
                "{method:?}: {}",
                r.message
            );
            assert!(check(&r, ESTIMATED).is_some_and(|c| !c.passed), "{r:?}");
        }
    }

    #[test]
    fn threshold_compares_the_two_estimates_after_the_pause() {
        let spec = spec(AnalysisMethod::Threshold);
        let r = analyse(
            &spec,
            window(true, false),
            Some(&metrics(serving(500, 0.55), serving(2_000, 0.62))),
        );
        assert_eq!(r.outcome, AnalysisOutcome::Failed, "{}", r.message);
        let c = check(&r, ESTIMATED).expect("read");
        assert!((c.value - 0.07).abs() < 1e-9 && !c.passed, "{c:?}");
        assert!(
            r.message.contains(
                "canary estimated accuracy 55.00 % vs stable 62.00 % on the same window (500 and 2000 requests, no labels): drop 7.00 % (max drop 5.00 %)"
            ),
            "{}",
            r.message
        );
        let r = analyse(
            &spec,
            window(true, false),
            Some(&metrics(serving(500, 0.59), serving(2_000, 0.62))),
        );
        assert_eq!(r.outcome, AnalysisOutcome::Passed, "{}", r.message);
    }

    #[test]
    fn without_confidence_from_both_versions_the_estimate_is_awaited_never_passed() {
        for method in [AnalysisMethod::Sequential, AnalysisMethod::Threshold] {
            let mut m = metrics(serving(2_000, 0.62), serving(8_000, 0.62));
            m.stable.confidence_rows = 0;
            m.stable.expected_correct = 0.0;
            let r = analyse(&spec(method), window(true, false), Some(&m));
            assert_eq!(
                r.outcome,
                AnalysisOutcome::Inconclusive,
                "{method:?}: {}",
                r.message
            );
            assert!(
                r.message
                    .contains("calibrated confidence of canary and stable"),
                "{}",
                r.message
            );
        }
    }
}
