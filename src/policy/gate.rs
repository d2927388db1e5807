//! The promotion gate's verdict: a pure function of the gate spec, the
//! candidate's evaluation and the champion's (on the same test set).
//! Every check is recorded with its value and bound; any failed check
//! fails the candidate. With no champion only absolute thresholds apply.

use std::collections::BTreeMap;

use crate::api::{CALIBRATION_ERROR_METRIC, higher_is_better};
use crate::api::{GateCheck, GateReport, GateSpec, GateVerdict, MetricThreshold};

/// Tolerance for comparing floats that went through JSON.
const EPS: f64 = 1e-12;

/// Decides whether `candidate` may be promoted.
pub fn verdict(
    spec: &GateSpec,
    candidate: &GateReport,
    champion: Option<&GateReport>,
) -> GateVerdict {
    let mut checks = Vec::new();
    for threshold in &spec.metrics {
        metric_checks(
            threshold,
            None,
            &candidate.metrics,
            champion.map(|c| &c.metrics),
            &mut checks,
        );
    }
    for slice in &spec.slices {
        let measured = candidate.slices.iter().find(|s| s.name == slice.name);
        match measured {
            Some(s) if s.rows > 0 => {
                let champ = champion
                    .and_then(|c| c.slices.iter().find(|cs| cs.name == slice.name && cs.rows > 0))
                    .map(|cs| &cs.metrics);
                for threshold in &slice.metrics {
                    metric_checks(threshold, Some(&slice.name), &s.metrics, champ, &mut checks);
                }
            }
            _ => checks.push(GateCheck {
                kind: "slice".into(),
                name: "rows".into(),
                slice: Some(slice.name.clone()),
                value: Some(measured.map_or(0.0, |s| s.rows as f64)),
                bound: Some(1.0),
                passed: false,
                message: format!(
                    "slice `{}` selects no rows of the test set, so its metrics cannot be checked; add such rows or fix its `where`",
                    slice.name
                ),
            }),
        }
    }
    if spec.must_pass.is_some() {
        checks.push(must_pass_check(candidate));
    }
    if let Some(bound) = spec.max_calibration_error {
        checks.push(calibration_check(candidate, bound));
    }
    if let Some(budgets) = &spec.budgets {
        let b = &candidate.budgets;
        let mut budget = |name: &str, value: f64, bound: Option<f64>, at_most: bool, unit: &str| {
            if let Some(bound) = bound {
                let passed = if at_most {
                    value <= bound + EPS
                } else {
                    value + EPS >= bound
                };
                let relation = if at_most { "at most" } else { "at least" };
                checks.push(GateCheck {
                    kind: "budget".into(),
                    name: name.into(),
                    slice: None,
                    value: Some(value),
                    bound: Some(bound),
                    passed,
                    message: format!(
                        "{name} is {value:.4}{unit}; the budget allows {relation} {bound}{unit}{}",
                        if passed { "" } else { " — over budget" }
                    ),
                });
            }
        };
        budget(
            "p99LatencyMs",
            b.p99_latency_ms,
            budgets.p99_latency_ms,
            true,
            " ms",
        );
        budget(
            "throughputRowsPerSec",
            b.throughput_rows_per_sec,
            budgets.min_throughput_rows_per_sec,
            false,
            " rows/s",
        );
        budget("sizeMB", b.size_mb, budgets.max_size_mb, true, " MB");
        budget(
            "parameters",
            b.parameters as f64,
            budgets.max_parameters.map(|p| p as f64),
            true,
            "",
        );
        if let Some(bound) = budgets.min_images_per_second {
            match b.images_per_second {
                Some(value) => budget("imagesPerSecond", value, Some(bound), false, " images/s"),
                None => checks.push(GateCheck {
                    kind: "budget".into(),
                    name: "imagesPerSecond".into(),
                    slice: None,
                    value: None,
                    bound: Some(bound),
                    passed: false,
                    message: "imagesPerSecond was not measured: the model does not read images; remove gate.budgets.minImagesPerSecond".into(),
                }),
            }
        }
    }
    GateVerdict {
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}

/// `gate.maxCalibrationError` against the candidate's calibration error on
/// the test set; a model without one (a regressor) cannot pass it.
fn calibration_check(candidate: &GateReport, bound: f64) -> GateCheck {
    let value = candidate.metrics.get(CALIBRATION_ERROR_METRIC).copied();
    let passed = value.is_some_and(|v| v <= bound + EPS);
    let message = match value {
        Some(v) if passed => format!(
            "expected calibration error is {v:.4}; gate.maxCalibrationError allows at most {bound}"
        ),
        Some(v) => format!(
            "expected calibration error is {v:.4}, above gate.maxCalibrationError {bound}: its confidence does not match its accuracy, so its estimated accuracy cannot be trusted"
        ),
        None => "expected calibration error was not measured: only classifiers have one; remove gate.maxCalibrationError".into(),
    };
    GateCheck {
        kind: "calibration".into(),
        name: CALIBRATION_ERROR_METRIC.into(),
        slice: None,
        value,
        bound: Some(bound),
        passed,
        message,
    }
}

fn where_(slice: Option<&String>) -> String {
    slice.map_or_else(String::new, |s| format!(" on slice `{s}`"))
}

fn metric_checks(
    threshold: &MetricThreshold,
    slice: Option<&String>,
    candidate: &BTreeMap<String, f64>,
    champion: Option<&BTreeMap<String, f64>>,
    checks: &mut Vec<GateCheck>,
) {
    let name = &threshold.name;
    let kind = if slice.is_some() { "slice" } else { "metric" };
    let check =
        |kind: &str, value: Option<f64>, bound: Option<f64>, passed: bool, message: String| {
            GateCheck {
                kind: kind.into(),
                name: name.clone(),
                slice: slice.cloned(),
                value,
                bound,
                passed,
                message,
            }
        };
    let Some(&value) = candidate.get(name) else {
        let known: Vec<&str> = candidate.keys().map(String::as_str).collect();
        checks.push(check(
            kind,
            None,
            None,
            false,
            format!(
                "metric `{name}` was not measured{}; measured: {}",
                where_(slice),
                known.join(", ")
            ),
        ));
        return;
    };
    if let Some(min) = threshold.min {
        let passed = value + EPS >= min;
        checks.push(check(
            kind,
            Some(value),
            Some(min),
            passed,
            format!(
                "{name}{} is {value:.4}; minimum {min}{}",
                where_(slice),
                if passed { "" } else { " — below the minimum" }
            ),
        ));
    }
    if let Some(max) = threshold.max {
        let passed = value <= max + EPS;
        checks.push(check(
            kind,
            Some(value),
            Some(max),
            passed,
            format!(
                "{name}{} is {value:.4}; maximum {max}{}",
                where_(slice),
                if passed { "" } else { " — above the maximum" }
            ),
        ));
    }
    let Some(&champ) = champion.and_then(|c| c.get(name)) else {
        return;
    };
    let higher = higher_is_better(name);
    // How much worse the candidate is than the champion, in the metric's units.
    let drop = if higher { champ - value } else { value - champ };
    let signed = |d: f64| if higher { champ - d } else { champ + d };
    if let Some(max_drop) = threshold.max_drop_from_champion {
        let passed = drop <= max_drop + EPS;
        checks.push(check(
            "championDrop",
            Some(value),
            Some(signed(max_drop)),
            passed,
            format!(
                "{name}{} is {value:.4} against the champion's {champ:.4} ({}{:.4}); at most {max_drop} worse allowed",
                where_(slice),
                if drop > 0.0 { "worse by " } else { "better by " },
                drop.abs()
            ),
        ));
    }
    if let Some(max_rel) = threshold.max_relative_drop_from_champion {
        let allowed = max_rel * champ.abs();
        let passed = drop <= allowed + EPS;
        let relative = if champ.abs() > 0.0 {
            drop / champ.abs()
        } else if drop > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        checks.push(check(
            "championDrop",
            Some(value),
            Some(signed(allowed)),
            passed,
            format!(
                "{name}{} is {value:.4} against the champion's {champ:.4} ({:+.2}% worse); at most {:.2}% worse allowed",
                where_(slice),
                relative * 100.0,
                max_rel * 100.0
            ),
        ));
    }
}

fn must_pass_check(candidate: &GateReport) -> GateCheck {
    let Some(report) = &candidate.must_pass else {
        return GateCheck {
            kind: "mustPass".into(),
            name: "goldenExamples".into(),
            slice: None,
            value: None,
            bound: None,
            passed: false,
            message: "the gate names must-pass examples but the evaluation has no result for them"
                .into(),
        };
    };
    let failed = report.failures.len();
    let passed = failed == 0 && report.passed == report.total;
    let listed: Vec<String> = report
        .failures
        .iter()
        .take(10)
        .map(|f| {
            format!(
                "row {}: expected {}, predicted {}",
                f.row, f.expected, f.predicted
            )
        })
        .collect();
    let more = if failed > listed.len() {
        format!("; and {} more", failed - listed.len())
    } else {
        String::new()
    };
    GateCheck {
        kind: "mustPass".into(),
        name: "goldenExamples".into(),
        slice: None,
        value: Some(report.passed as f64),
        bound: Some(report.total as f64),
        passed,
        message: if passed {
            format!(
                "all {} must-pass examples in `{}` predicted correctly",
                report.total, report.source
            )
        } else {
            format!(
                "{failed} of {} must-pass examples in `{}` failed: {}{more}",
                report.total,
                report.source,
                listed.join("; ")
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        BudgetReport, BudgetSpec, MustPassFailure, MustPassReport, SliceReport, SliceSpec,
    };

    fn report(metrics: &[(&str, f64)]) -> GateReport {
        GateReport {
            model: "file://m".into(),
            fingerprint: "f".into(),
            weights_digest: "w".into(),
            test_set: "t.csv".into(),
            test_set_digest: "d".into(),
            rows: 100,
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            slices: Vec::new(),
            must_pass: None,
            budgets: BudgetReport {
                p50_latency_ms: 0.1,
                p99_latency_ms: 0.5,
                throughput_rows_per_sec: 100_000.0,
                size_bytes: 20_000,
                size_mb: 0.02,
                parameters: 3_000,
                images_per_second: None,
                image_batch_size: None,
            },
        }
    }

    fn threshold(name: &str) -> MetricThreshold {
        MetricThreshold {
            name: name.into(),
            min: None,
            max: None,
            max_drop_from_champion: None,
            max_relative_drop_from_champion: None,
        }
    }

    fn spec(metrics: Vec<MetricThreshold>) -> GateSpec {
        GateSpec {
            data: Default::default(),
            test_set: "t.csv".into(),
            metrics,
            slices: Vec::new(),
            must_pass: None,
            must_pass_tolerance: None,
            max_calibration_error: None,
            budgets: None,
        }
    }

    #[test]
    fn a_calibration_error_over_the_bound_fails_with_value_and_bound() {
        let s = GateSpec {
            max_calibration_error: Some(0.05),
            ..spec(Vec::new())
        };
        let good = verdict(&s, &report(&[("expectedCalibrationError", 0.03)]), None);
        assert!(good.passed, "{good:?}");
        let bad = verdict(&s, &report(&[("expectedCalibrationError", 0.12)]), None);
        assert!(!bad.passed);
        let failed: Vec<_> = bad.failures().collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].kind.as_str(), failed[0].value, failed[0].bound),
            ("calibration", Some(0.12), Some(0.05))
        );
        assert!(
            failed[0].message.contains("0.1200") && failed[0].message.contains("0.05"),
            "{}",
            failed[0].message
        );
        // A regressor has no calibration error: the bound cannot be met.
        let regressor = verdict(&s, &report(&[("rmse", 1.0)]), None);
        assert!(!regressor.passed);
        assert_eq!(regressor.checks[0].value, None);
    }

    #[test]
    fn absolute_thresholds_pass_and_fail_with_value_and_bound() {
        let s = spec(vec![
            MetricThreshold {
                min: Some(0.8),
                ..threshold("accuracy")
            },
            MetricThreshold {
                max: Some(0.5),
                ..threshold("logLoss")
            },
        ]);
        let good = verdict(&s, &report(&[("accuracy", 0.85), ("logLoss", 0.3)]), None);
        assert!(good.passed, "{good:?}");
        let bad = verdict(&s, &report(&[("accuracy", 0.75), ("logLoss", 0.7)]), None);
        assert!(!bad.passed);
        let failed: Vec<_> = bad.failures().collect();
        assert_eq!(failed.len(), 2);
        assert_eq!(
            (failed[0].name.as_str(), failed[0].value, failed[0].bound),
            ("accuracy", Some(0.75), Some(0.8))
        );
        assert!(
            failed[0].message.contains("0.7500") && failed[0].message.contains("minimum 0.8"),
            "{}",
            failed[0].message
        );
        assert!(failed[1].message.contains("above the maximum"));
    }

    #[test]
    fn champion_drop_is_checked_in_the_metrics_direction() {
        let s = spec(vec![
            MetricThreshold {
                max_drop_from_champion: Some(0.01),
                ..threshold("accuracy")
            },
            MetricThreshold {
                max_relative_drop_from_champion: Some(0.1),
                ..threshold("rmse")
            },
        ]);
        let champion = report(&[("accuracy", 0.90), ("rmse", 10.0)]);
        let v = verdict(
            &s,
            &report(&[("accuracy", 0.895), ("rmse", 10.9)]),
            Some(&champion),
        );
        assert!(v.passed, "{v:?}");
        let v = verdict(
            &s,
            &report(&[("accuracy", 0.85), ("rmse", 11.5)]),
            Some(&champion),
        );
        let failed: Vec<_> = v.failures().collect();
        assert_eq!(failed.len(), 2, "{v:?}");
        assert!(failed.iter().all(|c| c.kind == "championDrop"));
        assert!((failed[0].bound.unwrap() - 0.89).abs() < 1e-9);
        assert!(
            (failed[1].bound.unwrap() - 11.0).abs() < 1e-9,
            "rmse is worse when higher"
        );
        // Without a champion the drop checks do not apply.
        assert!(verdict(&s, &report(&[("accuracy", 0.1), ("rmse", 99.0)]), None).passed);
    }

    #[test]
    fn an_unmeasured_metric_fails_naming_what_was_measured() {
        let v = verdict(
            &spec(vec![MetricThreshold {
                min: Some(0.5),
                ..threshold("r2")
            }]),
            &report(&[("accuracy", 0.9)]),
            None,
        );
        assert!(!v.passed);
        assert!(
            v.checks[0]
                .message
                .contains("`r2` was not measured; measured: accuracy"),
            "{}",
            v.checks[0].message
        );
    }

    #[test]
    fn slices_are_checked_and_an_empty_slice_fails() {
        let mut s = spec(vec![]);
        s.slices = vec![
            SliceSpec {
                name: "red".into(),
                where_: [("color".to_string(), "red".to_string())].into(),
                metrics: vec![MetricThreshold {
                    min: Some(0.8),
                    ..threshold("accuracy")
                }],
            },
            SliceSpec {
                name: "rose".into(),
                where_: [("color".to_string(), "rose".to_string())].into(),
                metrics: vec![],
            },
        ];
        let mut c = report(&[]);
        c.slices = vec![
            SliceReport {
                name: "red".into(),
                rows: 40,
                metrics: [("accuracy".to_string(), 0.7)].into(),
            },
            SliceReport {
                name: "rose".into(),
                rows: 0,
                metrics: BTreeMap::new(),
            },
        ];
        let v = verdict(&s, &c, None);
        let failed: Vec<_> = v.failures().collect();
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0].slice.as_deref(), Some("red"));
        assert!(
            failed[0].message.contains("on slice `red`"),
            "{}",
            failed[0].message
        );
        assert!(failed[1].message.contains("selects no rows"));
    }

    #[test]
    fn must_pass_failures_are_listed_by_row() {
        let mut s = spec(vec![]);
        s.must_pass = Some("golden.csv".into());
        let mut c = report(&[]);
        assert!(
            !verdict(&s, &c, None).passed,
            "a must-pass set without results fails"
        );
        c.must_pass = Some(MustPassReport {
            source: "golden.csv".into(),
            total: 5,
            passed: 4,
            failures: vec![MustPassFailure {
                row: 3,
                expected: "7".into(),
                predicted: "5".into(),
            }],
        });
        let v = verdict(&s, &c, None);
        assert!(!v.passed);
        assert!(
            v.checks[0]
                .message
                .contains("row 3: expected 7, predicted 5"),
            "{}",
            v.checks[0].message
        );
        c.must_pass = Some(MustPassReport {
            source: "golden.csv".into(),
            total: 5,
            passed: 5,
            failures: vec![],
        });
        assert!(verdict(&s, &c, None).passed);
    }

    #[test]
    fn budgets_bound_latency_throughput_size_and_parameters() {
        let mut s = spec(vec![]);
        s.budgets = Some(BudgetSpec {
            p99_latency_ms: Some(1.0),
            min_throughput_rows_per_sec: Some(1000.0),
            max_size_mb: Some(0.01),
            max_parameters: Some(10_000),
            ..BudgetSpec::default()
        });
        let v = verdict(&s, &report(&[]), None);
        let failed: Vec<_> = v.failures().map(|c| c.name.as_str()).collect();
        assert_eq!(failed, vec!["sizeMB"]);
        assert_eq!(v.checks.len(), 4);
    }

    #[test]
    fn the_images_per_second_budget_is_checked_and_a_table_model_cannot_meet_it() {
        let spec = GateSpec {
            data: Default::default(),
            test_set: "t".into(),
            metrics: Vec::new(),
            slices: Vec::new(),
            must_pass: None,
            must_pass_tolerance: None,
            max_calibration_error: None,
            budgets: Some(BudgetSpec {
                min_images_per_second: Some(500.0),
                ..BudgetSpec::default()
            }),
        };
        let mut fast = report(&[]);
        fast.budgets.images_per_second = Some(800.0);
        let v = verdict(&spec, &fast, None);
        assert!(v.passed, "{:?}", v.checks);
        assert_eq!(v.checks[0].name, "imagesPerSecond");
        let mut slow = report(&[]);
        slow.budgets.images_per_second = Some(300.0);
        let v = verdict(&spec, &slow, None);
        assert!(!v.passed);
        assert!(
            v.checks[0]
                .message
                .contains("300.0000 images/s; the budget allows at least 500 images/s"),
            "{}",
            v.checks[0].message
        );
        let v = verdict(&spec, &report(&[]), None);
        assert!(!v.passed && v.checks[0].message.contains("was not measured"));
    }
}
