//! The data check's verdict: one pure function from the new window's
//! statistics (and the champion's, when there is one) and `gate.data` to
//! every check with its value, bound and column. A blocking failure stops
//! the run before its training Job exists.

use std::collections::BTreeSet;

use crate::api::{DataCheck, DataCheckSpec, DataStats, DataVerdict, Task};
use crate::drift::WindowReport;

fn check(
    name: &str,
    column: Option<&str>,
    value: f64,
    bound: f64,
    passed: bool,
    message: String,
) -> DataCheck {
    DataCheck {
        name: name.into(),
        column: column.map(Into::into),
        class: None,
        value: Some(value),
        bound: Some(bound),
        passed,
        blocking: true,
        message,
    }
}

/// One measured value of a per-column bound: the column, the target's class
/// when the value is a class's, the value and why it is what it is.
struct Measured {
    column: String,
    class: Option<String>,
    value: f64,
    why: String,
}

impl Measured {
    fn of(column: &str, value: f64, why: String) -> Self {
        Self {
            column: column.into(),
            class: None,
            value,
            why,
        }
    }

    /// `column` or `column`, class `c`, as a message names it.
    fn subject(&self) -> String {
        match &self.class {
            None => format!("`{}`", self.column),
            Some(class) => format!("`{}`, class `{class}`", self.column),
        }
    }

    fn check(&self, name: &str, bound: f64, passed: bool, message: String) -> DataCheck {
        DataCheck {
            class: self.class.clone(),
            ..check(name, Some(&self.column), self.value, bound, passed, message)
        }
    }
}

/// Per-column values of one bound: every column (or class) over it fails on
/// its own; when none is, one passing check reports the worst.
fn per_column(checks: &mut Vec<DataCheck>, name: &str, bound: f64, values: Vec<Measured>) {
    let failed: Vec<_> = values.iter().filter(|m| m.value > bound).collect();
    if failed.is_empty() {
        if let Some(m) = values.iter().max_by(|a, b| a.value.total_cmp(&b.value)) {
            let message = format!("{name}: largest {:.3} ({}) ≤ {bound}", m.value, m.subject());
            checks.push(m.check(name, bound, true, message));
        }
        return;
    }
    for m in failed {
        let message = format!(
            "column {}: {}; gate.data.{name} is {bound}",
            m.subject(),
            m.why
        );
        checks.push(m.check(name, bound, false, message));
    }
}

/// The checks of `spec` on the new window `new`, against the champion's
/// training window when there is one, and the window's drift from the
/// champion's drift reference when it was measured.
pub fn verdict(
    spec: &DataCheckSpec,
    task: Task,
    new: &DataStats,
    champion: Option<&DataStats>,
    drift: Option<&WindowReport>,
) -> DataVerdict {
    let mut checks = Vec::new();
    let rows = new.rows;
    checks.push(check(
        "minRows",
        None,
        rows as f64,
        spec.min_rows as f64,
        rows >= spec.min_rows,
        format!(
            "the training window holds {rows} rows; gate.data.minRows is {}",
            spec.min_rows
        ),
    ));
    let target = &new.target;
    match new.columns.get(target) {
        None => checks.push(DataCheck {
            name: "missingColumn".into(),
            column: Some(target.clone()),
            class: None,
            value: None,
            bound: None,
            passed: false,
            blocking: true,
            message: format!("the target column `{target}` is not in the data"),
        }),
        Some(t) => {
            let rate = t.null_rate(rows);
            checks.push(check(
                "maxTargetNullRate",
                Some(target),
                rate,
                spec.max_target_null_rate,
                rate <= spec.max_target_null_rate,
                format!(
                    "target `{target}` is empty in {:.1} % of rows ({} of {rows}); gate.data.maxTargetNullRate is {}",
                    rate * 100.0,
                    t.nulls,
                    spec.max_target_null_rate
                ),
            ));
            if task == Task::Classification {
                let classes = t.categories.len();
                checks.push(check(
                    "minClasses",
                    Some(target),
                    classes as f64,
                    2.0,
                    classes >= 2,
                    format!(
                        "target `{target}` has {classes} class(es) ({}); a classifier needs at least 2",
                        t.categories.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(champion) = champion {
        against_champion(&mut checks, spec, task, new, champion);
    }
    let dup = new.duplicate_rate();
    match spec.max_duplicate_rate {
        Some(bound) => checks.push(check(
            "maxDuplicateRate",
            None,
            dup,
            bound,
            dup <= bound,
            format!(
                "{} of {rows} rows repeat an earlier row ({:.1} %); gate.data.maxDuplicateRate is {bound}",
                new.duplicate_rows,
                dup * 100.0
            ),
        )),
        None => checks.push(DataCheck {
            name: "duplicateRows".into(),
            column: None,
            class: None,
            value: Some(dup),
            bound: None,
            passed: true,
            blocking: false,
            message: format!(
                "{} of {rows} rows repeat an earlier row ({:.1} %; reported only: set gate.data.maxDuplicateRate to check)",
                new.duplicate_rows,
                dup * 100.0
            ),
        }),
    }
    if let Some(report) = drift {
        drift_checks(&mut checks, spec, report);
    }
    let passed = checks.iter().all(|c| c.passed || !c.blocking);
    DataVerdict { passed, checks }
}

/// The window's drift, judged by the same rule as live windows: each
/// counted feature over its threshold is reported (a warning), and the
/// window's verdict blocks only with `gate.data.blockOnDrift`.
fn drift_checks(checks: &mut Vec<DataCheck>, spec: &DataCheckSpec, report: &WindowReport) {
    for name in &report.drifted_features {
        let Some(f) = report.features.iter().find(|f| &f.name == name) else {
            continue;
        };
        checks.push(DataCheck {
            name: "featureDrift".into(),
            column: Some(f.name.clone()),
            class: None,
            value: Some(f.value),
            bound: Some(f.threshold),
            passed: false,
            blocking: false,
            message: format!(
                "column `{}` drifted from the champion's training data: {} {:.3} over its threshold {:.3}",
                f.name,
                f.statistic,
                f.value,
                f.threshold
            ),
        });
    }
    let how = if spec.block_on_drift {
        ""
    } else {
        " (reported only: set gate.data.blockOnDrift to refuse a drifted window)"
    };
    checks.push(DataCheck {
        name: "windowDrift".into(),
        column: None,
        class: None,
        value: Some(report.drifted_weight),
        bound: None,
        passed: !report.dataset_drifted,
        blocking: spec.block_on_drift,
        message: format!(
            "the new window against the champion's training data: {}{how}",
            report.reason
        ),
    });
}

fn against_champion(
    checks: &mut Vec<DataCheck>,
    spec: &DataCheckSpec,
    task: Task,
    new: &DataStats,
    champion: &DataStats,
) {
    let target = &new.target;
    let features = |s: &DataStats| -> BTreeSet<String> {
        s.columns
            .keys()
            .filter(|c| *c != &s.target)
            .cloned()
            .collect()
    };
    let (old_cols, new_cols) = (features(champion), features(new));
    let mut nulls = Vec::new();
    let mut ranges = Vec::new();
    for column in &old_cols {
        let old = &champion.columns[column];
        let Some(now) = new.columns.get(column) else {
            checks.push(DataCheck {
                name: "missingColumn".into(),
                column: Some(column.clone()),
                class: None,
                value: None,
                bound: None,
                passed: false,
                blocking: true,
                message: format!(
                    "feature `{column}` the champion was trained on is not in the data (renamed or dropped upstream?)"
                ),
            });
            continue;
        };
        let was = if old.numeric() {
            "numeric"
        } else {
            "categorical"
        };
        let is = if now.numeric() {
            "numeric"
        } else {
            "categorical"
        };
        let present = now.numbers + now.texts > 0;
        if present && was != is {
            checks.push(DataCheck {
                name: "retypedColumn".into(),
                column: Some(column.clone()),
                class: None,
                value: None,
                bound: None,
                passed: false,
                blocking: true,
                message: format!(
                    "feature `{column}` is {is} ({} numbers, {} texts) but the champion learnt it {was}",
                    now.numbers, now.texts
                ),
            });
            continue;
        }
        let (before, after) = (old.null_rate(champion.rows), now.null_rate(new.rows));
        nulls.push(Measured::of(
            column,
            after - before,
            format!(
                "null rate {after:.3} is {:.3} above the champion's {before:.3}",
                after - before
            ),
        ));
        if old.numeric() && now.numbers > 0 {
            let share = now.out_of_range as f64 / now.numbers as f64;
            ranges.push(Measured::of(
                column,
                share,
                format!(
                    "{} of {} values ({:.1} %) lie outside the champion's training range [{}, {}]",
                    now.out_of_range,
                    now.numbers,
                    share * 100.0,
                    old.min.unwrap_or(f64::NAN),
                    old.max.unwrap_or(f64::NAN)
                ),
            ));
        }
    }
    per_column(
        checks,
        "maxNullRateIncrease",
        spec.max_null_rate_increase,
        nulls,
    );
    per_column(
        checks,
        "maxOutOfRangeRate",
        spec.max_out_of_range_rate,
        ranges,
    );
    for column in new_cols.difference(&old_cols) {
        checks.push(DataCheck {
            name: "newColumn".into(),
            column: Some(column.clone()),
            class: None,
            value: None,
            bound: None,
            passed: false,
            blocking: false,
            message: format!(
                "column `{column}` is new since the champion; it trains as a feature unless data.features leaves it out"
            ),
        });
    }
    if task != Task::Classification {
        return;
    }
    let (before, after) = (champion.class_shares(), new.class_shares());
    let mut shifts = Vec::new();
    for (class, share) in &before {
        if after.get(class).is_none_or(|s| *s == 0.0) {
            checks.push(DataCheck {
                class: Some(class.clone()),
                ..check(
                    "classVanished",
                    Some(target),
                    0.0,
                    *share,
                    false,
                    format!(
                        "class `{class}` of target `{target}` has no rows; it was {:.1} % of the champion's",
                        share * 100.0
                    ),
                )
            });
        }
    }
    for class in before.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        let (b, a) = (
            before.get(class).copied().unwrap_or(0.0),
            after.get(class).copied().unwrap_or(0.0),
        );
        let what = if b == 0.0 { " (appeared)" } else { "" };
        shifts.push(Measured {
            column: target.clone(),
            class: Some(class.clone()),
            value: (a - b).abs(),
            why: format!(
                "class `{class}`{what} is {:.1} % of rows, {:.1} % for the champion",
                a * 100.0,
                b * 100.0
            ),
        });
    }
    per_column(
        checks,
        "maxClassShareChange",
        spec.max_class_share_change,
        shifts,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::ColumnStats;

    /// A window: `rows` rows, numeric `x` in [0, 10], categorical `color`,
    /// classes a/b evenly.
    fn window(rows: u64) -> DataStats {
        DataStats {
            rows,
            duplicate_rows: 0,
            duplicates_uncounted: false,
            target: "label".into(),
            columns: BTreeMap::from([
                (
                    "x".into(),
                    ColumnStats {
                        numbers: rows,
                        min: Some(0.0),
                        max: Some(10.0),
                        ..Default::default()
                    },
                ),
                (
                    "color".into(),
                    ColumnStats {
                        texts: rows,
                        categories: BTreeMap::from([("red".into(), rows)]),
                        ..Default::default()
                    },
                ),
                (
                    "label".into(),
                    ColumnStats {
                        texts: rows,
                        categories: BTreeMap::from([
                            ("a".into(), rows / 2),
                            ("b".into(), rows / 2),
                        ]),
                        ..Default::default()
                    },
                ),
            ]),
        }
    }

    fn failed(v: &DataVerdict) -> Vec<(String, Option<String>)> {
        v.blocking_failures()
            .map(|c| (c.name.clone(), c.column.clone()))
            .collect()
    }

    /// The blocking failures as (name, column, class).
    fn failed_classes(v: &DataVerdict) -> Vec<(String, Option<String>, Option<String>)> {
        v.blocking_failures()
            .map(|c| (c.name.clone(), c.column.clone(), c.class.clone()))
            .collect()
    }

    fn judge(new: &DataStats) -> DataVerdict {
        verdict(
            &DataCheckSpec::default(),
            Task::Classification,
            new,
            Some(&window(1000)),
            None,
        )
    }

    #[test]
    fn a_window_like_the_champions_passes_every_check() {
        let v = judge(&window(1000));
        assert!(v.passed, "{v:#?}");
        assert!(v.summary().starts_with("passed "), "{}", v.summary());
    }

    #[test]
    fn a_renamed_column_is_missing_and_new() {
        let mut new = window(1000);
        let x = new.columns.remove("x").unwrap();
        new.columns.insert("x_renamed".into(), x);
        let v = judge(&new);
        assert_eq!(failed(&v), [("missingColumn".into(), Some("x".into()))]);
        let warned = v.checks.iter().find(|c| c.name == "newColumn").unwrap();
        assert_eq!(warned.column.as_deref(), Some("x_renamed"));
        assert!(!warned.blocking && !warned.passed);
    }

    #[test]
    fn an_all_null_target_fails_its_null_rate_and_its_classes() {
        let mut new = window(1000);
        let t = new.columns.get_mut("label").unwrap();
        *t = ColumnStats {
            nulls: 1000,
            ..Default::default()
        };
        let v = judge(&new);
        let f = failed(&v);
        assert!(
            f.contains(&("maxTargetNullRate".into(), Some("label".into()))),
            "{f:?}"
        );
        assert!(
            f.contains(&("minClasses".into(), Some("label".into()))),
            "{f:?}"
        );
        let c = v
            .checks
            .iter()
            .find(|c| c.name == "maxTargetNullRate")
            .unwrap();
        assert_eq!((c.value, c.bound), (Some(1.0), Some(0.0)));
    }

    #[test]
    fn a_vanished_class_fails_even_within_the_share_bound() {
        let mut new = window(1000);
        let t = new.columns.get_mut("label").unwrap();
        // `b` vanished, `c` appeared.
        t.categories = BTreeMap::from([("a".into(), 500), ("c".into(), 500)]);
        let spec = DataCheckSpec {
            max_class_share_change: 0.9,
            ..Default::default()
        };
        let v = verdict(&spec, Task::Classification, &new, Some(&window(1000)), None);
        let label = Some("label".to_string());
        assert_eq!(
            failed_classes(&v),
            [("classVanished".into(), label.clone(), Some("b".into()))]
        );
        let v = judge(&new);
        let f = failed_classes(&v);
        // The class has its own field; the column is the target's own name.
        for class in ["b", "c"] {
            assert!(
                f.contains(&(
                    "maxClassShareChange".into(),
                    label.clone(),
                    Some(class.into())
                )),
                "{f:?}"
            );
        }
        assert!(
            v.checks
                .iter()
                .any(|c| c.message.contains("class `c` (appeared) is 50.0 %")),
            "{:#?}",
            v.checks
        );
    }

    #[test]
    fn a_null_rate_jump_fails_and_one_within_the_bound_passes() {
        let mut new = window(1000);
        new.columns.get_mut("x").unwrap().nulls = 101;
        let v = judge(&new);
        assert_eq!(
            failed(&v),
            [("maxNullRateIncrease".into(), Some("x".into()))]
        );
        let c = v.blocking_failures().next().unwrap();
        assert!(
            (c.value.unwrap() - 0.101).abs() < 1e-9 && c.bound == Some(0.1),
            "{c:?}"
        );
        new.columns.get_mut("x").unwrap().nulls = 100;
        assert!(judge(&new).passed);
    }

    #[test]
    fn too_few_rows_fail_with_and_without_a_champion() {
        let v = verdict(
            &DataCheckSpec::default(),
            Task::Classification,
            &window(8),
            None,
            None,
        );
        assert_eq!(failed(&v), [("minRows".into(), None)]);
        assert!(v.summary().starts_with("failed 1/"), "{}", v.summary());
    }

    #[test]
    fn a_retyped_column_and_values_outside_the_training_range_fail() {
        let mut new = window(1000);
        new.columns.get_mut("x").unwrap().texts = 3;
        new.columns.get_mut("x").unwrap().numbers = 997;
        assert_eq!(
            failed(&judge(&new)),
            [("retypedColumn".into(), Some("x".into()))]
        );
        let mut new = window(1000);
        new.columns.get_mut("x").unwrap().out_of_range = 60;
        assert_eq!(
            failed(&judge(&new)),
            [("maxOutOfRangeRate".into(), Some("x".into()))]
        );
    }

    #[test]
    fn duplicates_are_reported_unless_bounded() {
        let mut new = window(1000);
        new.duplicate_rows = 400;
        assert!(judge(&new).passed, "reported only by default");
        let spec = DataCheckSpec {
            max_duplicate_rate: Some(0.3),
            ..Default::default()
        };
        let v = verdict(&spec, Task::Classification, &new, None, None);
        assert_eq!(failed(&v), [("maxDuplicateRate".into(), None)]);
    }
}
