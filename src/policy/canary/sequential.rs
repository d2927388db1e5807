//! `method: sequential`: every rate check is an always-valid confidence
//! sequence ([`crate::policy::confidence`]) over the counts since the step
//! began, judged at every read: `harm` rolls back now, `noHarm` on every
//! check lets the step advance once its pause is over, anything else keeps
//! watching. Reading more often never raises the chance of promoting a
//! canary worse than a bound: that chance stays at most `alpha` per check.

use crate::api::{AnalysisCheck, AnalysisRecord, AnalysisSpec, Evidence};
use crate::policy::ServingMetrics;
use crate::policy::confidence::{self, Interval};

use super::{CanaryMetrics, StepWindow, bound_check, estimate_set_aside, pct, record, with_note};

/// Stable's own share of requests slower than its p99.
const STABLE_SLOW_SHARE: f64 = 0.01;

/// A rate check with its interval, judged.
struct RateCheck<'a> {
    name: &'a str,
    /// What is measured, in words ("canary error rate").
    what: &'a str,
    /// The point estimate and its interval, "higher is worse".
    value: f64,
    interval: Interval,
    /// The bound the Model allows and the value meaning "no worse than stable".
    bound: f64,
    reference: f64,
    /// Sample counts, in words ("3/500 canary, 20/4 500 stable").
    counts: String,
    /// Shown as `1 − x` (accuracy from the error share).
    complement: bool,
}

impl RateCheck<'_> {
    fn judge(self, alpha: f64) -> AnalysisCheck {
        let evidence = confidence::judge(self.interval, self.bound, self.reference);
        let flip = |x: f64| if self.complement { 1.0 - x } else { x };
        let (value, bound) = (flip(self.value), flip(self.bound));
        let (lower, upper) = if self.complement {
            (1.0 - self.interval.upper, 1.0 - self.interval.lower)
        } else {
            (self.interval.lower, self.interval.upper)
        };
        let relation = if self.complement { "min" } else { "max" };
        let message = format!(
            "{} {} ({}), {:.0} % always-valid interval [{}, {}] vs {relation} {}: {}",
            self.what,
            pct(value),
            self.counts,
            (1.0 - alpha) * 100.0,
            pct(lower),
            pct(upper),
            pct(bound),
            evidence
        );
        AnalysisCheck {
            name: self.name.into(),
            value,
            bound,
            passed: evidence == Evidence::NoHarm,
            message,
            evidence: Some(evidence),
            lower: Some(lower),
            upper: Some(upper),
        }
    }
}

fn share(bad: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        bad as f64 / total as f64
    }
}

/// A plain bound read in a sequential analysis: unread (keep watching) until
/// the pause is over, then `noHarm` or `harm` by the bound alone.
fn as_evidence(mut check: AnalysisCheck, pause_over: bool) -> AnalysisCheck {
    check.evidence = Some(match (pause_over, check.passed) {
        (false, _) => Evidence::KeepWatching,
        (true, true) => Evidence::NoHarm,
        (true, false) => Evidence::Harm,
    });
    check.passed = check.evidence == Some(Evidence::NoHarm);
    check
}

pub(super) fn analyse(spec: &AnalysisSpec, w: StepWindow, m: &CanaryMetrics) -> AnalysisRecord {
    let (c, s) = (&m.canary, &m.stable);
    let alpha = spec.alpha;
    let mut checks = Vec::new();
    let mut missing: Vec<&str> = Vec::new();

    if let Some(bound) = spec.max_error_rate {
        checks.push(
            RateCheck {
                name: "maxErrorRate",
                what: "canary error rate",
                value: share(c.errors, c.requests),
                interval: confidence::rate(c.errors, c.requests, alpha),
                bound,
                reference: bound,
                counts: format!("{}/{}", c.errors, c.requests),
                complement: false,
            }
            .judge(alpha),
        );
    }
    if let Some(margin) = spec.max_error_rate_increase {
        checks.push(
            RateCheck {
                name: "maxErrorRateIncrease",
                what: "canary error rate minus stable's",
                value: share(c.errors, c.requests) - share(s.errors, s.requests),
                interval: confidence::difference(
                    (c.errors, c.requests),
                    (s.errors, s.requests),
                    alpha,
                ),
                bound: margin,
                reference: 0.0,
                counts: format!(
                    "{}/{} canary, {}/{} stable",
                    c.errors, c.requests, s.errors, s.requests
                ),
                complement: false,
            }
            .judge(alpha),
        );
    }
    // Accuracy checks are read on wrong answers (higher is worse), shown as accuracy.
    let wrong = |v: &crate::policy::ServingMetrics| v.labelled.saturating_sub(v.correct);
    if let Some(min) = spec.min_online_accuracy.filter(|_| c.labelled > 0) {
        checks.push(
            RateCheck {
                name: "minOnlineAccuracy",
                what: "canary online accuracy",
                value: share(wrong(c), c.labelled),
                interval: confidence::rate(wrong(c), c.labelled, alpha),
                bound: 1.0 - min,
                reference: 1.0 - min,
                counts: format!("{}/{} labelled", c.correct, c.labelled),
                complement: true,
            }
            .judge(alpha),
        );
    }
    if let Some(margin) = spec.max_online_accuracy_drop {
        if c.labelled > 0 && s.labelled > 0 {
            let mut check = RateCheck {
                name: "maxOnlineAccuracyDrop",
                what: "online accuracy drop below stable's",
                value: share(wrong(c), c.labelled) - share(wrong(s), s.labelled),
                interval: confidence::difference(
                    (wrong(c), c.labelled),
                    (wrong(s), s.labelled),
                    alpha,
                ),
                bound: margin,
                reference: 0.0,
                counts: format!(
                    "{}/{} canary, {}/{} stable correct",
                    c.correct, c.labelled, s.correct, s.labelled
                ),
                complement: false,
            }
            .judge(alpha);
            check.message = check.message.replace(" vs max ", " vs max drop ");
            checks.push(check);
        } else if c.labelled > 0 || s.labelled > 0 {
            missing.push("labels for both canary and stable to compare online accuracy");
        }
    }
    // Where no label judges accuracy, the calibrated confidence estimates it.
    let labels_judge = (spec.min_online_accuracy.is_some() && c.labelled > 0)
        || (spec.max_online_accuracy_drop.is_some() && c.labelled > 0 && s.labelled > 0);
    let mut set_aside = None;
    if let Some(margin) = spec.max_estimated_accuracy_drop {
        set_aside = estimate_set_aside(labels_judge, w);
        match (set_aside, c.estimated_accuracy(), s.estimated_accuracy()) {
            (Some(_), _, _) => {}
            (None, Some(ce), Some(se)) => checks.push(estimated_drop(c, s, ce, se, margin, alpha)),
            (None, _, _) => {
                missing.push("the calibrated confidence of canary and stable to estimate accuracy")
            }
        }
    }
    if let Some(margin) = spec.max_slow_share_increase {
        match c.slow {
            Some(slow) => checks.push(
                RateCheck {
                    name: "maxSlowShareIncrease",
                    what: "share of canary requests slower than stable's p99",
                    value: share(slow, c.requests),
                    interval: confidence::rate(slow, c.requests, alpha),
                    bound: STABLE_SLOW_SHARE + margin,
                    reference: STABLE_SLOW_SHARE,
                    counts: format!("{slow}/{}", c.requests),
                    complement: false,
                }
                .judge(alpha),
            ),
            None => missing.push("latency histograms of canary and stable"),
        }
    }
    // Plain bounds: read as in `threshold`, once the pause is over.
    if let Some(bound) = spec.max_p99_latency_ms {
        match c.p99_latency_ms {
            Some(v) => checks.push(as_evidence(
                bound_check(
                    "maxP99LatencyMs",
                    v,
                    bound,
                    v <= bound,
                    format!("canary p99 {v:.1} ms vs max {bound:.1} ms"),
                ),
                w.pause_over,
            )),
            None => missing.push("canary p99 latency"),
        }
    }
    if let Some(bound) = spec.max_p99_latency_ratio {
        match (c.p99_latency_ms, s.p99_latency_ms) {
            (Some(cv), Some(sv)) if sv > 0.0 => checks.push(as_evidence(
                bound_check(
                    "maxP99LatencyRatio",
                    cv / sv,
                    bound,
                    cv / sv <= bound,
                    format!(
                        "canary p99 {cv:.1} ms is {:.2}x stable's {sv:.1} ms (max {bound:.2}x)",
                        cv / sv
                    ),
                ),
                w.pause_over,
            )),
            _ => missing.push("p99 latency of canary and stable"),
        }
    }
    if let Some(bound) = spec.max_prediction_divergence {
        match m.prediction_divergence {
            Some(v) => checks.push(as_evidence(
                bound_check(
                    "maxPredictionDivergence",
                    v,
                    bound,
                    v <= bound,
                    format!(
                        "prediction divergence canary vs stable {v:.3} (Jensen-Shannon distance) vs max {bound:.3}"
                    ),
                ),
                w.pause_over,
            )),
            None => missing.push("prediction divergence"),
        }
    }

    checks.insert(0, min_requests(spec, m));
    let mut blockers: Vec<String> = Vec::new();
    if c.requests < spec.min_requests {
        blockers.push(format!(
            "canary served {} requests, fewer than minRequests {}",
            c.requests, spec.min_requests
        ));
    }
    blockers.extend(missing.iter().map(|what| format!("waiting for {what}")));
    if !w.pause_over {
        blockers.push("the step's pause is not over".into());
    }
    let (outcome, detail) = confidence::conclude(&checks, blockers);
    record(w, outcome, Some(m), checks, with_note(detail, set_aside))
}

/// `maxEstimatedAccuracyDrop`: the canary's expected wrong answers (one
/// minus each request's calibrated confidence) against stable's, as a
/// difference of means of outcomes in [0, 1].
fn estimated_drop(
    c: &ServingMetrics,
    s: &ServingMetrics,
    canary_estimate: f64,
    stable_estimate: f64,
    margin: f64,
    alpha: f64,
) -> AnalysisCheck {
    let expected_wrong = |v: &ServingMetrics| {
        (
            (v.confidence_rows as f64 - v.expected_correct).max(0.0),
            v.confidence_rows,
        )
    };
    let mut check = RateCheck {
        name: "maxEstimatedAccuracyDrop",
        what: "estimated accuracy drop below stable's",
        value: stable_estimate - canary_estimate,
        interval: confidence::difference_of_means(expected_wrong(c), expected_wrong(s), alpha),
        bound: margin,
        reference: 0.0,
        counts: format!(
            "estimated {} over {} canary requests, {} over {} stable, no labels",
            pct(canary_estimate),
            c.confidence_rows,
            pct(stable_estimate),
            s.confidence_rows
        ),
        complement: false,
    }
    .judge(alpha);
    check.message = check.message.replace(" vs max ", " vs max drop ");
    check
}

fn min_requests(spec: &AnalysisSpec, m: &CanaryMetrics) -> AnalysisCheck {
    bound_check(
        "minRequests",
        m.canary.requests as f64,
        spec.min_requests as f64,
        m.canary.requests >= spec.min_requests,
        format!(
            "canary served {} requests (stable {}), minRequests {}",
            m.canary.requests, m.stable.requests, spec.min_requests
        ),
    )
}
