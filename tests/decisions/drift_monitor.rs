//! Drift monitoring as the operator relies on it: quiet on training-like
//! traffic, loud (by feature name) on a shifted feature, and sketches that
//! merge across replicas exactly.

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftline::api::{DriftSpec, DriftStatistic, DriftTrigger};
use driftline::drift::{
    CategoricalProfile, DatasetSketch, DriftConfig, DriftMonitor, FeatureProfile, NumericProfile,
    Observation, ReferenceProfile, ReplicaWindows, RunningTotal, compare,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

const COLORS: [&str; 3] = ["red", "white", "rosé"];

fn normal(rng: &mut StdRng) -> f64 {
    // Box-Muller: rand 0.9 has no normal distribution without rand_distr.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Rows like the training data: alcohol ~ N(10, 1), acidity ~ N(3, 0.5),
/// color red/white/rosé at 50/40/10 %, prediction "good" when alcohol > 10.
struct Rows {
    alcohol: Vec<f64>,
    acidity: Vec<f64>,
    color: Vec<&'static str>,
    prediction: Vec<&'static str>,
}

fn rows(n: usize, seed: u64, alcohol_shift: f64) -> Rows {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut r = Rows {
        alcohol: vec![],
        acidity: vec![],
        color: vec![],
        prediction: vec![],
    };
    for _ in 0..n {
        let alcohol = 10.0 + normal(&mut rng) + alcohol_shift;
        r.alcohol.push(alcohol);
        r.acidity.push(3.0 + 0.5 * normal(&mut rng));
        let u: f64 = rng.random();
        r.color.push(if u < 0.5 {
            COLORS[0]
        } else if u < 0.9 {
            COLORS[1]
        } else {
            COLORS[2]
        });
        r.prediction
            .push(if alcohol > 10.0 { "good" } else { "bad" });
    }
    r
}

fn profile_of(r: &Rows) -> ReferenceProfile {
    ReferenceProfile {
        features: vec![
            FeatureProfile::Numeric {
                name: "alcohol".into(),
                profile: NumericProfile::fit("alcohol", &r.alcohol, 10).unwrap(),
            },
            FeatureProfile::Numeric {
                name: "acidity".into(),
                profile: NumericProfile::fit("acidity", &r.acidity, 10).unwrap(),
            },
            FeatureProfile::Categorical {
                name: "color".into(),
                profile: CategoricalProfile::fit("color", &r.color).unwrap(),
            },
        ],
        prediction: FeatureProfile::Categorical {
            name: "prediction".into(),
            profile: CategoricalProfile::fit("prediction", &r.prediction).unwrap(),
        },
        calibration: None,
        importance: Vec::new(),
        embedding: None,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn feed(
    monitor: &mut DriftMonitor,
    r: &Rows,
    now: DateTime<Utc>,
) -> Vec<driftline::drift::WindowReport> {
    monitor.observe_rows(
        r.alcohol.len(),
        |j, i| match j {
            0 => Observation::Number(r.alcohol[i]),
            1 => Observation::Number(r.acidity[i]),
            _ => Observation::Text(r.color[i]),
        },
        |i| Observation::Text(r.prediction[i]),
        |_| None,
        now,
    )
}

#[test]
fn training_like_traffic_stays_under_the_noise_floor() {
    let reference = rows(20_000, 1, 0.0);
    let config = DriftConfig::from(DriftSpec {
        window: 10_000,
        ..Default::default()
    });
    let mut monitor = DriftMonitor::new(profile_of(&reference), config, t0()).unwrap();
    let closed = feed(&mut monitor, &rows(20_000, 2, 0.0), t0());
    assert_eq!(closed.len(), 2);
    for window in &closed {
        assert!(window.complete);
        assert!(!window.dataset_drifted);
        for f in window.features.iter().chain([&window.prediction]) {
            assert!(
                f.jensen_shannon < 0.05,
                "{} JS = {}",
                f.name,
                f.jensen_shannon
            );
            assert!(!f.drifted, "{} flagged: {f:?}", f.name);
        }
    }
}

#[test]
fn a_feature_shifted_by_one_standard_deviation_is_flagged_by_name_in_the_first_full_window() {
    let reference = rows(20_000, 1, 0.0);
    let mut monitor =
        DriftMonitor::new(profile_of(&reference), DriftConfig::default(), t0()).unwrap();
    let live = rows(1_000, 3, 1.0);
    let closed = feed(&mut monitor, &live, t0());
    assert_eq!(
        closed.len(),
        1,
        "a window of 1000 rows closes after 1000 rows"
    );
    let window = &closed[0];
    assert_eq!(window.drifted_features, vec!["alcohol".to_string()]);
    let alcohol = &window.features[0];
    assert_eq!(alcohol.statistic, DriftStatistic::JensenShannon);
    assert!(alcohol.value > 0.2, "JS = {}", alcohol.value);
    assert!(alcohol.adjusted_p_value < 0.001);
    assert!(!window.features[1].drifted && !window.features[2].drifted);
    assert!((window.drifted_share - 1.0 / 3.0).abs() < 1e-12);
    // The predictions follow alcohol and drift too, which the default
    // (weighted) trigger counts: the window drifted, and says why.
    assert!(window.prediction.drifted);
    assert!(window.dataset_drifted, "{}", window.reason);
    assert!(
        window.reason.contains("the predictions drifted"),
        "{}",
        window.reason
    );
    assert!(
        window.reason.contains("alcohol (weight 0.33"),
        "{}",
        window.reason
    );
    // Without calibration in the profile, `auto` falls back to the fixed default.
    assert!(!window.calibrated);
    assert_eq!(alcohol.threshold, 0.1);
    // The report keeps the window.
    assert_eq!(monitor.report().recent[0], *window);

    // Counted Evidently's way, one of three features is under the 50 % share.
    let mut share = DriftMonitor::new(
        profile_of(&reference),
        DriftConfig::from(DriftSpec {
            trigger: DriftTrigger::Share,
            ..Default::default()
        }),
        t0(),
    )
    .unwrap();
    let window = &feed(&mut share, &live, t0())[0];
    assert!(!window.dataset_drifted, "{}", window.reason);
    assert!(
        window
            .reason
            .contains("1 of 3 features drifted (33 % < driftedShare 50 %)"),
        "{}",
        window.reason
    );
}

#[test]
fn unseen_categories_are_counted_and_reported() {
    let reference = rows(5_000, 1, 0.0);
    let config = DriftConfig::from(DriftSpec {
        window: 100,
        ..Default::default()
    });
    let mut monitor = DriftMonitor::new(profile_of(&reference), config, t0()).unwrap();
    let mut live = rows(100, 4, 0.0);
    for c in live.color.iter_mut().take(30) {
        *c = "orange";
    }
    let closed = feed(&mut monitor, &live, t0());
    let color = &closed[0].features[2];
    assert!((color.unseen_share - 0.3).abs() < 1e-12);
    assert!(color.drifted);
    assert!(color.ks.is_none(), "KS is numeric-only");
}

#[test]
fn windows_close_by_time_and_only_recent_ones_are_kept() {
    let reference = rows(5_000, 1, 0.0);
    let config = DriftConfig {
        window_duration: Some(std::time::Duration::from_secs(60)),
        recent_windows: 2,
        ..DriftConfig::from(DriftSpec {
            window: 1_000_000,
            ..Default::default()
        })
    };
    let mut monitor = DriftMonitor::new(profile_of(&reference), config, t0()).unwrap();
    for minute in 0..4 {
        let now = t0() + Duration::seconds(60 * minute);
        let closed = feed(&mut monitor, &rows(10, minute as u64, 0.0), now);
        assert_eq!(closed.len(), usize::from(minute > 0), "minute {minute}");
        if let Some(w) = closed.first() {
            assert!(
                !w.complete,
                "a time-closed window short of its rows is marked incomplete"
            );
            assert_eq!(w.rows, 10);
        }
    }
    let report = monitor.report();
    assert_eq!(report.recent.len(), 2);
    assert!(
        report.recent[0].started > report.recent[1].started,
        "newest first"
    );
    assert_eq!(report.current.rows, 10);
}

#[test]
fn overrides_naming_unknown_features_are_refused() {
    let reference = rows(100, 1, 0.0);
    let mut config = DriftConfig::default();
    config
        .spec
        .features
        .insert("sugar".into(), Default::default());
    let err = DriftMonitor::new(profile_of(&reference), config, t0())
        .err()
        .unwrap();
    assert!(err.to_string().contains("`sugar`"), "{err}");
}

#[test]
fn ignored_features_do_not_count_towards_dataset_drift() {
    let reference = rows(20_000, 1, 0.0);
    let mut config = DriftConfig::from(DriftSpec {
        trigger: DriftTrigger::Share,
        drifted_share: 0.3,
        ..Default::default()
    });
    config.spec.features.insert(
        "alcohol".into(),
        driftline::api::FeatureDriftOverride {
            threshold: None,
            ignore: true,
        },
    );
    let mut monitor = DriftMonitor::new(profile_of(&reference), config, t0()).unwrap();
    let closed = feed(&mut monitor, &rows(1_000, 3, 1.0), t0());
    assert!(closed[0].features[0].drifted, "still reported");
    assert!(closed[0].drifted_features.is_empty());
    assert!(!closed[0].dataset_drifted);
}

fn sketch_of(profile: &ReferenceProfile, r: &Rows, range: std::ops::Range<usize>) -> DatasetSketch {
    let mut s = DatasetSketch::for_profile(profile);
    for i in range {
        let features = [
            Observation::Number(r.alcohol[i]),
            Observation::Number(r.acidity[i]),
            Observation::Text(r.color[i]),
        ];
        s.observe_row(profile, |j| features[j], Observation::Text(r.prediction[i]));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn sketches_of_two_servers_merged_equal_the_sketch_of_their_combined_traffic(
        seed in 0u64..1000, n in 0usize..400, split in 0usize..400, shift in -2.0f64..2.0,
    ) {
        let reference = rows(500, 99, 0.0);
        let profile = profile_of(&reference);
        let traffic = rows(n, seed, shift);
        let split = split.min(n);
        let mut a = sketch_of(&profile, &traffic, 0..split);
        let b = sketch_of(&profile, &traffic, split..n);
        // The sketch travels as JSON from each replica to the operator.
        let b: DatasetSketch = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        a.merge(&b).unwrap();
        prop_assert_eq!(a, sketch_of(&profile, &traffic, 0..n));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The operator's windows over several replicas (`ReplicaWindows`, fed
    /// each replica's running total) hold exactly the rows all of them
    /// served, whatever windows each replica closed on its own, and a shift
    /// in that traffic is seen in the merged window.
    #[test]
    fn windows_merged_from_replicas_running_totals_hold_all_their_traffic(
        seed in 0u64..1000, n in 200usize..600, split in 0usize..600, shift in prop::sample::select(vec![0.0f64, 1.5]),
        replica_window in prop::sample::select(vec![50u64, 10_000]),
    ) {
        let reference = rows(5_000, 7, 0.0);
        let profile = profile_of(&reference);
        let traffic = rows(n, seed, shift);
        let split = split.min(n);
        let part = |range: std::ops::Range<usize>| Rows {
            alcohol: traffic.alcohol[range.clone()].to_vec(),
            acidity: traffic.acidity[range.clone()].to_vec(),
            color: traffic.color[range.clone()].to_vec(),
            prediction: traffic.prediction[range].to_vec(),
        };
        // Each replica closes its own windows (or not) as it likes; only its
        // running total travels to the operator.
        let replica_config = DriftConfig::from(DriftSpec { window: replica_window as u32, ..Default::default() });
        let mut a = DriftMonitor::new(profile.clone(), replica_config.clone(), t0()).unwrap();
        let mut b = DriftMonitor::new(profile.clone(), replica_config, t0()).unwrap();
        let wire = |m: &DriftMonitor| -> RunningTotal {
            serde_json::from_str(&serde_json::to_string(&m.report().total).unwrap()).unwrap()
        };
        let mut merge = ReplicaWindows::new(t0());
        let read = |a: &DriftMonitor, b: &DriftMonitor| vec![("a".to_string(), wire(a)), ("b".to_string(), wire(b))];
        prop_assert!(merge.advance(&read(&a, &b), n as u64, None, t0()).unwrap().is_none());
        feed(&mut a, &part(0..split), t0());
        feed(&mut b, &part(split..n), t0());
        let later = t0() + Duration::seconds(30);
        let window = merge.advance(&read(&a, &b), n as u64, None, later).unwrap().expect("n rows close the window");
        prop_assert_eq!(&window.sketch, &sketch_of(&profile, &traffic, 0..n));
        // Counted here from the rows themselves: each alcohol value in its reference bin.
        let driftline::drift::FeatureProfile::Numeric { profile: alcohol, .. } = &profile.features[0] else {
            panic!("alcohol is numeric")
        };
        let mut bins = vec![0u64; window.sketch.features[0].counts.len()];
        for x in &traffic.alcohol {
            bins[alcohol.bin(*x)] += 1;
        }
        prop_assert_eq!(&window.sketch.features[0].counts, &bins);
        prop_assert_eq!(window.sketch.rows, n as u64);
        prop_assert_eq!(window.replicas, usize::from(split > 0) + usize::from(split < n));
        prop_assert_eq!((window.started, window.ended), (t0(), later));
        let operator_config = DriftConfig::from(DriftSpec { window: n as u32, ..Default::default() });
        let merged = compare(&profile, &operator_config, &window.sketch, window.started, Some(window.ended));
        if shift > 0.0 {
            prop_assert!(merged.drifted_features.contains(&"alcohol".to_string()), "{}", merged.reason);
        }
    }
}
