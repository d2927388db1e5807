//! The shadow verdict (#20): the candidate's answers against the champion's
//! on the same mirrored requests, judged as a canary analysis is: each check
//! with its value, bound, always-valid interval and evidence.
//!
//! Disagreement is a rate, so it gets the same confidence sequence as the
//! sequential canary checks ([`super::confidence`]): `harm` when the
//! disagreement is shown above `maxDisagreement` (overall or in a named
//! slice), `noHarm` when shown below it. The stage passes once its duration
//! is over, `minRequests` pairs are in and every check says `noHarm`; it
//! fails at the first `harm`, before any user sees the candidate.

use crate::api::{
    AnalysisCheck, AnalysisOutcome, Evidence, ShadowSpec, ShadowTally, Task, bucket_quantile,
};
use crate::drift::{jensen_shannon_distance, shares};

use super::confidence;

/// What the shadow stage concluded, with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowVerdict {
    pub outcome: AnalysisOutcome,
    pub checks: Vec<AnalysisCheck>,
    /// Jensen-Shannon distance between the two answers' distributions.
    pub divergence: Option<f64>,
    /// Regression: mean and p95 absolute difference (p95 within a factor of 2).
    pub mean_abs_difference: Option<f64>,
    pub p95_abs_difference: Option<f64>,
    /// p50 and p99 time to answer the same requests, microseconds (within a factor of 2).
    pub champion_latency_us: (Option<f64>, Option<f64>),
    pub shadow_latency_us: (Option<f64>, Option<f64>),
    /// One sentence with the numbers.
    pub message: String,
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

fn rate_check(
    name: &str,
    what: &str,
    bad: u64,
    total: u64,
    bound: f64,
    alpha: f64,
) -> AnalysisCheck {
    let interval = confidence::rate(bad, total, alpha);
    let evidence = confidence::judge(interval, bound, bound);
    let value = if total == 0 {
        0.0
    } else {
        bad as f64 / total as f64
    };
    AnalysisCheck {
        name: name.into(),
        value,
        bound,
        passed: evidence == Evidence::NoHarm,
        message: format!(
            "{what} {} ({bad}/{total} rows), {:.0} % always-valid interval [{}, {}] vs max {}: {evidence}",
            pct(value),
            (1.0 - alpha) * 100.0,
            pct(interval.lower),
            pct(interval.upper),
            pct(bound)
        ),
        evidence: Some(evidence),
        lower: Some(interval.lower),
        upper: Some(interval.upper),
    }
}

/// The two answers' distributions: classes (classification) or base-2
/// buckets of the predictions (regression).
fn divergence(task: Task, t: &ShadowTally) -> Option<f64> {
    let (a, b): (Vec<u64>, Vec<u64>) = match task {
        Task::Classification => {
            let mut classes: std::collections::BTreeSet<&String> = t.flips.keys().collect();
            classes.extend(t.flips.values().flat_map(|to| to.keys()));
            classes
                .iter()
                .map(|c| {
                    let champion: u64 = t.flips.get(*c).map_or(0, |to| to.values().sum());
                    let shadow: u64 = t.flips.values().filter_map(|to| to.get(*c)).sum();
                    (champion, shadow)
                })
                .unzip()
        }
        Task::Regression => {
            let keys: std::collections::BTreeSet<&i32> = t
                .champion_values
                .keys()
                .chain(t.shadow_values.keys())
                .collect();
            keys.iter()
                .map(|k| {
                    (
                        t.champion_values.get(*k).copied().unwrap_or(0),
                        t.shadow_values.get(*k).copied().unwrap_or(0),
                    )
                })
                .unzip()
        }
    };
    if a.iter().sum::<u64>() == 0 || b.iter().sum::<u64>() == 0 {
        return None;
    }
    Some(jensen_shannon_distance(&shares(&a), &shares(&b)))
}

/// Judges one shadow window. `duration_over`: the stage has run its
/// `duration`; `alpha`: the rollout analysis's.
pub fn verdict(
    spec: &ShadowSpec,
    task: Task,
    tally: &ShadowTally,
    duration_over: bool,
    alpha: f64,
) -> ShadowVerdict {
    let mut checks = vec![rate_check(
        "maxDisagreement",
        "disagreement",
        tally.disagreements(),
        tally.rows,
        spec.max_disagreement,
        alpha,
    )];
    let mut missing = Vec::new();
    for slice in &spec.slices {
        match tally.slices.get(slice) {
            Some(a) if a.rows > 0 => checks.push(rate_check(
                &format!("maxDisagreement[{slice}]"),
                &format!("disagreement in slice {slice}"),
                a.disagreements,
                a.rows,
                spec.max_disagreement,
                alpha,
            )),
            _ => missing.push(format!("no mirrored rows of slice {slice} yet")),
        }
    }
    let p = |b: &std::collections::BTreeMap<i32, u64>| {
        (bucket_quantile(b, 0.5), bucket_quantile(b, 0.99))
    };
    let champion_latency_us = p(&tally.champion_latency_us);
    let shadow_latency_us = p(&tally.shadow_latency_us);
    if let Some(bound) = spec.max_p99_latency_ratio {
        match (shadow_latency_us.1, champion_latency_us.1) {
            (Some(s), Some(c)) if c > 0.0 => {
                let ratio = s / c;
                let evidence = if !duration_over {
                    Evidence::KeepWatching
                } else if ratio <= bound {
                    Evidence::NoHarm
                } else {
                    Evidence::Harm
                };
                checks.push(AnalysisCheck {
                    name: "maxP99LatencyRatio".into(),
                    value: ratio,
                    bound,
                    passed: evidence == Evidence::NoHarm,
                    message: format!(
                        "shadow p99 {s:.0} µs is {ratio:.2}x the champion's {c:.0} µs on the same requests (max {bound:.2}x): {evidence}"
                    ),
                    evidence: Some(evidence),
                    lower: None,
                    upper: None,
                });
            }
            _ => missing.push("latency of both versions on the same requests".into()),
        }
    }
    let mean_abs_difference = (task == Task::Regression && tally.rows > 0)
        .then(|| tally.abs_difference_sum / tally.rows as f64);
    let p95_abs_difference = (task == Task::Regression)
        .then(|| bucket_quantile(&tally.abs_difference, 0.95))
        .flatten();
    let divergence = divergence(task, tally);

    let mut blockers = Vec::new();
    if tally.paired < spec.min_requests {
        blockers.push(format!(
            "{} paired requests, fewer than minRequests {}",
            tally.paired, spec.min_requests
        ));
    }
    blockers.extend(missing);
    if !duration_over {
        blockers.push(format!(
            "the shadow's duration {} is not over",
            spec.duration
        ));
    }
    let (outcome, detail) = confidence::conclude(&checks, blockers);
    let message = format!("shadow: {detail}");
    ShadowVerdict {
        outcome,
        checks,
        divergence,
        mean_abs_difference,
        p95_abs_difference,
        champion_latency_us,
        shadow_latency_us,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Agreement;

    fn spec(slices: &[&str]) -> ShadowSpec {
        serde_json::from_value(serde_json::json!({
            "maxDisagreement": 0.05,
            "minRequests": 200,
            "slices": slices,
        }))
        .unwrap()
    }

    /// `rows` paired rows of class good/bad; `flips` of them answered the
    /// other way by the candidate, all inside slice `red` when `in_red`.
    fn tally(rows: u64, flips: u64, red_rows: u64, red_flips: u64) -> ShadowTally {
        let mut t = ShadowTally {
            paired: rows,
            rows,
            ..Default::default()
        };
        let good = t.flips.entry("good".into()).or_default();
        good.insert("good".into(), rows - flips);
        good.insert("bad".into(), flips);
        t.slices.insert(
            "red".into(),
            Agreement {
                rows: red_rows,
                disagreements: red_flips,
            },
        );
        t
    }

    #[test]
    fn a_candidate_that_agrees_passes_once_the_duration_is_over() {
        let t = tally(2000, 10, 400, 2);
        let early = verdict(&spec(&["red"]), Task::Classification, &t, false, 0.05);
        assert_eq!(
            early.outcome,
            AnalysisOutcome::Inconclusive,
            "{}",
            early.message
        );
        let v = verdict(&spec(&["red"]), Task::Classification, &t, true, 0.05);
        assert_eq!(v.outcome, AnalysisOutcome::Passed, "{}", v.message);
        assert!((v.checks[0].value - 0.005).abs() < 1e-12);
        assert!(v.divergence.is_some_and(|d| d > 0.0 && d < 0.1));
    }

    #[test]
    fn a_candidate_that_flips_a_tenth_of_one_slice_fails_even_when_the_whole_agrees() {
        // 2 % overall, but 12 % of slice `red`'s 500 rows.
        let t = tally(3000, 60, 500, 60);
        let v = verdict(&spec(&["red"]), Task::Classification, &t, false, 0.05);
        assert_eq!(v.outcome, AnalysisOutcome::Failed, "{}", v.message);
        assert!(v.message.contains("slice red"), "{}", v.message);
        let overall = &v.checks[0];
        assert_eq!(overall.evidence, Some(Evidence::NoHarm));
        // Without the slice named, the same tally passes: slices are opt-in.
        let v = verdict(&spec(&[]), Task::Classification, &t, true, 0.05);
        assert_eq!(v.outcome, AnalysisOutcome::Passed, "{}", v.message);
    }

    #[test]
    fn too_few_pairs_or_an_unseen_slice_is_neither_pass_nor_failure() {
        let t = tally(150, 0, 0, 0);
        let v = verdict(&spec(&["red"]), Task::Classification, &t, true, 0.05);
        assert_eq!(v.outcome, AnalysisOutcome::Inconclusive);
        assert!(
            v.message.contains("fewer than minRequests 200"),
            "{}",
            v.message
        );
        assert!(
            v.message.contains("no mirrored rows of slice red"),
            "{}",
            v.message
        );
    }

    #[test]
    fn regression_reports_mean_and_p95_absolute_difference() {
        let mut t = ShadowTally {
            paired: 1000,
            rows: 1000,
            regression_disagreements: 3,
            abs_difference_sum: 100.0,
            ..Default::default()
        };
        t.abs_difference
            .insert(crate::api::magnitude_bucket(0.1), 960);
        t.abs_difference
            .insert(crate::api::magnitude_bucket(2.0), 40);
        let v = verdict(&spec(&[]), Task::Regression, &t, true, 0.05);
        assert_eq!(v.mean_abs_difference, Some(0.1));
        assert_eq!(v.p95_abs_difference, Some(0.125));
        assert_eq!(v.outcome, AnalysisOutcome::Passed, "{}", v.message);
    }
}
