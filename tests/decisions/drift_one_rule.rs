//! One drift rule: the model server's window verdict and the decision
//! core's reading of the same window agree, because both call
//! `drift::window_verdict` with the configuration `spec.drift` converts to.

use chrono::{TimeZone, Utc};
use driftline::api::{ModelStatus, load_model_config};
use driftline::drift::DriftConfig;
use driftline::drift::{
    CategoricalProfile, DriftMonitor, FeatureImportance, FeatureProfile, NumericProfile,
    Observation, ReferenceProfile,
};
use driftline::policy::drift::update_drift;
use driftline::policy::{DriftReading, Observations};
use rand::{Rng, SeedableRng, rngs::StdRng};

const FIXTURE: &str = include_str!("../fixtures/wine-quality.yaml");

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// alcohol ~ N(10, 1), ph ~ N(3.3, 0.15), color red/white; the model says
/// "good" when alcohol > 10, so only alcohol moves its predictions.
fn rows(n: usize, seed: u64, alcohol_shift: f64, ph_shift: f64) -> Vec<(f64, f64, &'static str)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let alcohol = 10.0 + normal(&mut rng) + alcohol_shift;
            let ph = 3.3 + 0.15 * (normal(&mut rng) + ph_shift);
            let color = if rng.random::<f64>() < 0.7 {
                "red"
            } else {
                "white"
            };
            (alcohol, ph, color)
        })
        .collect()
}

fn label(alcohol: f64) -> &'static str {
    if alcohol > 10.0 { "good" } else { "bad" }
}

fn profile() -> ReferenceProfile {
    let r = rows(5_000, 1, 0.0, 0.0);
    let column = |f: fn(&(f64, f64, &str)) -> f64| r.iter().map(f).collect::<Vec<_>>();
    let colors: Vec<&str> = r.iter().map(|x| x.2).collect();
    let labels: Vec<&str> = r.iter().map(|x| label(x.0)).collect();
    let importance = |name: &str, weight: f64| FeatureImportance {
        name: name.into(),
        loss_increase: weight,
        weight,
    };
    ReferenceProfile {
        features: vec![
            FeatureProfile::Numeric {
                name: "alcohol".into(),
                profile: NumericProfile::fit("alcohol", &column(|x| x.0), 10).unwrap(),
            },
            FeatureProfile::Numeric {
                name: "ph".into(),
                profile: NumericProfile::fit("ph", &column(|x| x.1), 10).unwrap(),
            },
            FeatureProfile::Categorical {
                name: "color".into(),
                profile: CategoricalProfile::fit("color", &colors).unwrap(),
            },
        ],
        prediction: FeatureProfile::Categorical {
            name: "quality".into(),
            profile: CategoricalProfile::fit("quality", &labels).unwrap(),
        },
        calibration: None,
        importance: vec![
            importance("alcohol", 0.7),
            importance("ph", 0.2),
            importance("color", 0.1),
        ],
        embedding: None,
    }
}

#[test]
fn the_server_and_the_decision_core_reach_the_same_verdict_for_the_same_reasons() {
    // The north-star fixture: threshold 0.1, ph's own 0.2, color ignored, window 1000.
    let spec = load_model_config(FIXTURE).expect("fixture parses");
    let config = DriftConfig::from(spec.drift.clone());
    assert_eq!(config.window_rows(), 1000);
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let mut monitor = DriftMonitor::new(profile(), config, t0).unwrap();
    let mut status = ModelStatus::default();
    let mut verdicts = Vec::new();
    for (k, (alcohol_shift, ph_shift)) in [(0.0, 0.0), (1.0, 0.0), (0.0, 3.0), (0.0, 0.0)]
        .into_iter()
        .enumerate()
    {
        let now = t0 + chrono::Duration::minutes(10 * (k as i64 + 1));
        let live = rows(1_000, 10 + k as u64, alcohol_shift, ph_shift);
        let window = monitor
            .observe_rows(
                live.len(),
                |j, i| match j {
                    0 => Observation::Number(live[i].0),
                    1 => Observation::Number(live[i].1),
                    _ => Observation::Text(live[i].2),
                },
                |i| Observation::Text(label(live[i].0)),
                now,
            )
            .remove(0);
        let mut obs = Observations::at(now);
        obs.drift = vec![DriftReading::from_window(&window).expect("a closed window")];
        update_drift(&mut status, &spec, &obs);
        let summary = status.drift.as_ref().expect("status.drift is set");
        assert_eq!(
            summary.window_drifted, window.dataset_drifted,
            "{}",
            window.reason
        );
        assert_eq!(summary.reason, window.reason);
        assert_eq!(summary.drifted_features, window.drifted_features);
        let drivers: Vec<&str> = summary.drivers.iter().map(|d| d.name.as_str()).collect();
        let mut expected: Vec<&str> = window.drifted_features.iter().map(String::as_str).collect();
        if window.prediction.drifted {
            expected.push("quality");
        }
        assert_eq!(drivers, expected);
        for d in &summary.drivers {
            assert!(d.value > d.threshold, "{d:?}");
        }
        verdicts.push(window.dataset_drifted);
    }
    // Quiet, alcohol (most of the importance) drifts, ph alone (a fifth of
    // it, over even its own 0.2) does not, quiet again.
    assert_eq!(verdicts, [false, true, false, false]);
    let summary = status.drift.as_ref().unwrap();
    assert_eq!(summary.consecutive_windows, 0);
}
