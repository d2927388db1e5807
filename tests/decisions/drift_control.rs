//! `drift.control`: which false-flag rate the calibrated thresholds bound.
//! On one constructed window of five counted features with moderate drift,
//! `familyWise` (Bonferroni over the features and the predictions) flags
//! one, `falseDiscoveryRate` (Benjamini-Hochberg) three and `perFeature`
//! (each column at the raw quantile) four, so only the last two call the
//! window drifted. The expected thresholds and flags are computed here from
//! the stated rules, on a calibration whose nulls have a closed form.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use driftline::api::{DriftControl, DriftSpec, DriftThreshold, FeatureDriftOverride};
use driftline::drift::{
    Calibration, CategoricalProfile, ColumnNull, DriftConfig, DriftMonitor, FeatureProfile,
    NullFit, Observation, ReferenceProfile, WindowNull, WindowReport,
};

/// Rows per window, and the one window size calibrated.
const ROWS: u64 = 1000;
/// Every column's null: JS² ≈ SCALE · χ²(2), so a value `v` has the p-value
/// `exp(-v² / 2·SCALE)` and the tail `t` sits at `sqrt(-2·SCALE·ln t)`.
const SCALE: f64 = 4.8e-4;
/// `drift.falseAlarmRate`.
const ALPHA: f64 = 0.01;
/// The features and how many of the window's rows read "b" (the reference
/// is half "a", half "b"); `id` is ignored (`drift.features.id.ignore`).
const WINDOW: [(&str, u64); 6] = [
    ("f1", 600),
    ("f2", 590),
    ("f3", 585),
    ("f4", 580),
    ("f5", 500),
    ("id", 900),
];
const IGNORED: &str = "id";

fn null(name: &str) -> ColumnNull {
    let fit = NullFit {
        scale: SCALE,
        dof: 2.0,
        q99: 0.0,
    };
    ColumnNull {
        name: name.into(),
        windows: vec![WindowNull {
            rows: ROWS,
            jensen_shannon: fit,
            psi: fit,
            ks: None,
            wasserstein: None,
        }],
    }
}

fn profile() -> ReferenceProfile {
    let half_and_half = ["a", "b"].repeat(500);
    ReferenceProfile {
        features: WINDOW
            .iter()
            .map(|(name, _)| FeatureProfile::Categorical {
                name: name.to_string(),
                profile: CategoricalProfile::fit(name, &half_and_half).unwrap(),
            })
            .collect(),
        prediction: FeatureProfile::Categorical {
            name: "quality".into(),
            profile: CategoricalProfile::fit("quality", &["good"; 10]).unwrap(),
        },
        calibration: Some(Calibration {
            resamples: 400,
            pooled_rows: 1000,
            features: WINDOW.iter().map(|(name, _)| null(name)).collect(),
            prediction: null("quality"),
        }),
        importance: Vec::new(),
        embedding: None,
    }
}

/// The window of [`WINDOW`] as a monitor under `control` closes it.
fn window_under(control: DriftControl) -> WindowReport {
    let config = DriftConfig::from(DriftSpec {
        threshold: DriftThreshold::Auto,
        false_alarm_rate: ALPHA,
        control,
        window: ROWS as u32,
        features: BTreeMap::from([(
            IGNORED.to_string(),
            FeatureDriftOverride {
                threshold: None,
                ignore: true,
            },
        )]),
        ..Default::default()
    });
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let mut monitor = DriftMonitor::new(profile(), config, t0).unwrap();
    let mut closed = monitor.observe_rows(
        ROWS as usize,
        |j, i| Observation::Text(if (i as u64) < WINDOW[j].1 { "b" } else { "a" }),
        |_| Observation::Text("good"),
        |_| None,
        t0,
    );
    assert_eq!(closed.len(), 1, "{ROWS} rows close one window");
    closed.remove(0)
}

/// Jensen-Shannon distance (base 2) of `b` "b"s in [`ROWS`] from half and half.
fn js(b: u64) -> f64 {
    let q = b as f64 / ROWS as f64;
    [(0.5, 1.0 - q), (0.5, q)]
        .iter()
        .map(|&(p, q): &(f64, f64)| {
            let m = (p + q) / 2.0;
            let term = |x: f64| {
                if x > 0.0 {
                    0.5 * x * (x / m).log2()
                } else {
                    0.0
                }
            };
            term(p) + term(q)
        })
        .sum::<f64>()
        .sqrt()
}

fn p_value(value: f64) -> f64 {
    (-value * value / (2.0 * SCALE)).exp()
}

fn upper_quantile(tail: f64) -> f64 {
    (-2.0 * SCALE * tail.ln()).sqrt()
}

/// The tail each mode's rule puts the threshold at, over the family of
/// counted features plus the predictions (which read 0 here: p = 1).
fn tail(control: DriftControl) -> f64 {
    let mut family: Vec<f64> = WINDOW
        .iter()
        .filter(|(name, _)| *name != IGNORED)
        .map(|(_, b)| p_value(js(*b)))
        .chain([1.0])
        .collect();
    let m = family.len() as f64;
    match control {
        DriftControl::PerFeature => ALPHA,
        DriftControl::FamilyWise => ALPHA / m,
        DriftControl::FalseDiscoveryRate => {
            // Benjamini-Hochberg: the largest k whose k-th smallest p-value is ≤ kα/m.
            family.sort_by(f64::total_cmp);
            let k = (1..=family.len())
                .filter(|&k| family[k - 1] <= k as f64 * ALPHA / m)
                .max()
                .unwrap_or(1);
            k as f64 * ALPHA / m
        }
    }
}

/// Checks the window against the rule of `control` and returns the features it flagged.
fn flagged_as_the_rule_says(control: DriftControl) -> (Vec<String>, bool) {
    let window = window_under(control);
    assert!(
        window.calibrated,
        "{control:?}: thresholds come from the calibration"
    );
    let threshold = upper_quantile(tail(control));
    let mut expected = Vec::new();
    for (column, (name, b)) in window.features.iter().zip(WINDOW) {
        assert_eq!(column.name, name);
        assert!(
            (column.value - js(b)).abs() < 1e-12,
            "{name}: JS {} measured, {} expected",
            column.value,
            js(b)
        );
        assert!(
            (column.threshold - threshold).abs() < 1e-9 * threshold,
            "{control:?}: {name}'s threshold {} should be {threshold}",
            column.threshold
        );
        assert_eq!(
            column.drifted,
            column.value > threshold,
            "{control:?}: {name}"
        );
        if name != IGNORED && column.value > threshold {
            expected.push(name.to_string());
        }
    }
    // Equal weights: the most drifted first.
    assert_eq!(
        window.drifted_features, expected,
        "{control:?}: {}",
        window.reason
    );
    (window.drifted_features, window.dataset_drifted)
}

#[test]
fn family_wise_flags_only_what_survives_bonferroni_over_features_and_predictions() {
    let (flagged, drifted) = flagged_as_the_rule_says(DriftControl::FamilyWise);
    assert_eq!(flagged, ["f1"]);
    assert!(!drifted, "1 of 5 features is under driftedShare 0.5");
}

#[test]
fn false_discovery_rate_flags_what_benjamini_hochberg_keeps_and_bonferroni_does_not() {
    let (flagged, drifted) = flagged_as_the_rule_says(DriftControl::FalseDiscoveryRate);
    assert_eq!(flagged, ["f1", "f2", "f3"]);
    assert!(drifted, "3 of 5 features reach driftedShare 0.5");
}

#[test]
fn per_feature_flags_every_column_over_its_raw_quantile() {
    let (flagged, drifted) = flagged_as_the_rule_says(DriftControl::PerFeature);
    assert_eq!(flagged, ["f1", "f2", "f3", "f4"]);
    assert!(drifted);
    // The ignored column is over every threshold, reported and never counted.
    let window = window_under(DriftControl::PerFeature);
    let id = window.features.iter().find(|c| c.name == IGNORED).unwrap();
    assert!(id.drifted && id.weight == 0.0, "{id:?}");
}
