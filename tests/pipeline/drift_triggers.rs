//! Drift that matters, on the bundled data: calibrated thresholds keep
//! training-like windows quiet, importance-weighted triggering fires on a
//! shift of what the model relies on and not on what it ignores, and a
//! concept drift (same inputs, new labels) is left to online accuracy.

use std::sync::Arc;

use candle_core::Device;
use chrono::{TimeZone, Utc};
use driftline::api::DriftSpec;
use driftline::api::{ModelSpec, load_model_config};
use driftline::data::{Cell, Table};
use driftline::drift::{DriftConfig, DriftMonitor, Observation, WindowReport};
use driftline::ml::MANIFEST_FILE;
use driftline::ml::synth::{self, Shift};
use driftline::ml::{FeatureBatch, LoadedModel, fit};
use driftline::serve::load_artifact;
use driftline::serve::{Predictor, RunningServer, ServerConfig, start};
use serde_json::{Value, json};

const SYNTHETIC: &str = "pipelines/data/synthetic";

fn read(path: &str) -> Table {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Table::from_csv(path, &bytes).expect("bundled csv parses")
}

fn rows(table: &Table, range: std::ops::Range<usize>) -> Table {
    table.select(&range.collect::<Vec<_>>())
}

/// The bundled synthetic pipeline: trained on the first 2 000 rows of
/// `reference.csv`, drift windows of 500 rows.
fn synthetic_spec() -> ModelSpec {
    load_model_config(
        r#"
task: classification
data: {source: reference.csv, target: label}
architecture: {type: mlp, hiddenLayers: [32, 16]}
training: {epochs: 30, batchSize: 64, learningRate: 0.01, seed: 7}
drift: {window: 500}
"#,
    )
    .expect("spec parses")
}

async fn train_and_load(spec: &ModelSpec, table: &Table, dir: &std::path::Path) -> LoadedModel {
    let model = fit(spec, table, None, &Device::Cpu, false).expect("training succeeds");
    let uri = dir.join("model").join("v1").display().to_string();
    model.save(&uri).await.expect("artifact written");
    // Loading verifies the manifest, calibration and importance included.
    LoadedModel::load(&uri).await.expect("artifact loads")
}

fn observation(cell: &Cell) -> Observation<'_> {
    match cell {
        Cell::Number(x) => Observation::Number(*x),
        Cell::Text(t) => Observation::Text(t),
        Cell::Missing => Observation::Missing,
    }
}

/// Serves `table`'s rows through the monitor as the model server does:
/// each row's features and the model's prediction for it.
fn windows(model: &LoadedModel, monitor: &mut DriftMonitor, table: &Table) -> Vec<WindowReport> {
    let features = &model.manifest().features;
    let batch = FeatureBatch::from_table(features, table).expect("features present");
    let predicted = model.predict(&batch).expect("predicts");
    monitor.observe_rows(
        batch.rows,
        |j, i| observation(&batch.columns[j][i]),
        |i| match predicted.labels.get(i) {
            Some(label) => Observation::Text(label),
            None => Observation::Number(predicted.values[i]),
        },
        |_| None,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    )
}

fn monitor(model: &LoadedModel, window_rows: u64) -> DriftMonitor {
    let config = DriftConfig::from(DriftSpec {
        window: window_rows as u32,
        ..Default::default()
    });
    DriftMonitor::new(model.manifest().reference.clone(), config, Utc::now()).unwrap()
}

#[tokio::test]
async fn the_synthetic_pipeline_is_quiet_in_distribution_and_flags_every_covariate_shift_window() {
    let dir = tempfile::tempdir().unwrap();
    let reference = read(&format!("{SYNTHETIC}/reference.csv"));
    let model = train_and_load(&synthetic_spec(), &rows(&reference, 0..2_000), dir.path()).await;
    let profile = &model.manifest().reference;
    let calibration = profile.calibration.as_ref().expect("training calibrates");
    assert!(
        calibration.features[0]
            .windows
            .iter()
            .any(|w| w.rows == 500),
        "the Model's own window size is calibrated"
    );
    // The model relies on x1 and x2 (the labelling rule's strongest terms), not x7 or x8.
    let weight = |name: &str| {
        profile
            .importance
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.weight)
            .unwrap()
    };
    assert!(
        weight("x1") + weight("x2") > 0.5,
        "{:?}",
        profile.importance
    );
    assert!(
        weight("x7") < 0.05 && weight("x8") < 0.05,
        "{:?}",
        profile.importance
    );

    // In distribution: the held-back half of reference.csv, then fresh rows
    // from the same generator: 24 windows of 500 rows.
    let mut m = monitor(&model, 500);
    let mut quiet = windows(&model, &mut m, &rows(&reference, 2_000..4_000));
    let fresh = Table::from_csv(
        "fresh.csv",
        synth::generate(10_000, 11, Shift::None).as_bytes(),
    )
    .unwrap();
    quiet.extend(windows(&model, &mut m, &fresh));
    assert_eq!(quiet.len(), 24);
    let flagged: usize = quiet.iter().map(|w| w.drifted_features.len()).sum();
    for w in &quiet {
        assert!(w.calibrated);
        assert!(!w.dataset_drifted, "false alarm: {}", w.reason);
    }
    // The fixed 0.1 flagged 2 of 36 feature-windows here; calibrated thresholds sit above the noise.
    assert!(
        flagged <= 1,
        "{flagged} feature-windows flagged in distribution"
    );
    let x1 = &quiet[0].features[0];
    assert!(
        x1.threshold > 0.1 && x1.threshold < 0.3,
        "x1's calibrated JS threshold at 500 rows: {}",
        x1.threshold
    );

    // Covariate shift: every window drifts, and says which features and why.
    let mut m = monitor(&model, 500);
    let shifted = windows(
        &model,
        &mut m,
        &read(&format!("{SYNTHETIC}/covariate-shift.csv")),
    );
    assert_eq!(shifted.len(), 2);
    for w in &shifted {
        assert!(w.dataset_drifted, "{}", w.reason);
        for name in ["x1", "x2", "segment"] {
            assert!(
                w.drifted_features.iter().any(|f| f == name),
                "{name}: {}",
                w.reason
            );
        }
        assert!(w.drifted_weight > 0.5, "{}", w.reason);
        assert!(w.reason.contains("x2 (weight"), "{}", w.reason);
    }

    // Concept drift: the inputs are unchanged, so input drift stays quiet.
    let mut m = monitor(&model, 500);
    for w in windows(
        &model,
        &mut m,
        &read(&format!("{SYNTHETIC}/concept-drift.csv")),
    ) {
        assert!(!w.dataset_drifted, "{}", w.reason);
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Row `i` of the table as one request, in the server's feature order.
fn request(table: &Table, i: usize, features: &[String], id: String) -> Value {
    let inputs: Vec<Value> = features
        .iter()
        .map(|name| {
            let cell = &table.columns[table.position(name).expect("feature column")][i];
            let (datatype, data) = match cell {
                Cell::Number(x) => ("FP64", json!(x)),
                Cell::Text(t) => ("BYTES", json!(t)),
                Cell::Missing => ("FP64", Value::Null),
            };
            json!({"name": name, "shape": [1], "datatype": datatype, "data": [data]})
        })
        .collect();
    json!({"id": id, "inputs": inputs})
}

/// Infers every row of `table` one request at a time, then labels them all.
async fn infer_and_label(server: &RunningServer, table: &Table, features: &[String], tag: &str) {
    let http = client();
    let base = format!("http://{}/v2/models/model", server.addr);
    for i in 0..table.rows {
        let r = http
            .post(format!("{base}/infer"))
            .json(&request(table, i, features, format!("{tag}-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let labels = table.column("label", "the test").unwrap();
    let feedback: Vec<Value> = (0..table.rows)
        .map(|i| json!({"id": format!("{tag}-{i}"), "label": labels[i].as_text().unwrap()}))
        .collect();
    let r = http
        .post(format!("{base}/feedback"))
        .json(&feedback)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn get(server: &RunningServer, what: &str) -> Value {
    client()
        .get(format!("http://{}/v2/models/model/{what}", server.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concept_drift_is_caught_by_online_accuracy_not_by_input_drift() {
    let dir = tempfile::tempdir().unwrap();
    let reference = read(&format!("{SYNTHETIC}/reference.csv"));
    let model = fit(
        &synthetic_spec(),
        &rows(&reference, 0..2_000),
        None,
        &Device::Cpu,
        false,
    )
    .unwrap();
    let uri = dir.path().join("model").join("v1").display().to_string();
    model.save(&uri).await.unwrap();
    let features: Vec<String> = model
        .manifest
        .features
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        drift: DriftConfig::from(DriftSpec {
            window: 500,
            ..Default::default()
        }),
        feedback: driftline::serve::FeedbackConfig {
            online_window: 500,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let mut server = start(config, {
        let uri = uri.clone();
        async move {
            let model: Arc<dyn Predictor> = Arc::new(load_artifact(&uri, None, None).await?);
            Ok(model)
        }
    })
    .await
    .unwrap();
    server.ready().await.expect("artifact loads");

    // Labelled traffic like the training data: accurate, no drift.
    infer_and_label(&server, &rows(&reference, 2_000..2_500), &features, "same").await;
    let before = get(&server, "feedback").await;
    let accuracy_before = before["accuracy"].as_f64().expect("online accuracy");
    assert!(accuracy_before > 0.8, "{before}");

    // Concept drift: same inputs, the labelling rule reversed.
    let concept = rows(&read(&format!("{SYNTHETIC}/concept-drift.csv")), 0..500);
    infer_and_label(&server, &concept, &features, "concept").await;
    let after = get(&server, "feedback").await;
    assert_eq!(after["labelled"], 500);
    let accuracy_after = after["accuracy"].as_f64().expect("online accuracy");
    assert!(accuracy_after < 0.4, "{after}");

    // The two windows the server closed: neither drifted, and `/drift` says why.
    let drift = get(&server, "drift").await;
    let recent = drift["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 2);
    for w in recent {
        assert_eq!(w["datasetDrifted"], false, "{w}");
        assert_eq!(w["calibrated"], true);
        assert!(
            w["reason"]
                .as_str()
                .unwrap()
                .starts_with("not drifted by trigger weighted"),
            "{}",
            w["reason"]
        );
        let x1 = &w["features"][0];
        assert!(x1["weight"].as_f64().unwrap() > 0.0, "{x1}");
        assert!(x1["calibratedPValue"].as_f64().is_some(), "{x1}");
    }
}

#[tokio::test]
async fn wine_quality_triggers_on_its_most_important_feature_and_not_its_least() {
    let dir = tempfile::tempdir().unwrap();
    let spec = load_model_config(&std::fs::read_to_string("pipelines/wine-quality.yaml").unwrap())
        .expect("bundled pipeline parses");
    let model = train_and_load(
        &spec,
        &read("pipelines/data/wine-quality/train.csv"),
        dir.path(),
    )
    .await;
    let reference = &model.manifest().reference;
    let mut ranked = reference.importance.clone();
    ranked.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    let (most, least) = (&ranked[0], &ranked[ranked.len() - 1]);
    assert!(most.weight > 3.0 * least.weight, "{ranked:?}");

    // The 320 test rows, as they are and with one feature moved up by one
    // reference standard deviation.
    let test = read("pipelines/data/wine-quality/test.csv");
    let shifted = |name: &str| {
        let j = reference
            .features
            .iter()
            .position(|f| f.name() == name)
            .unwrap();
        let driftline::drift::FeatureProfile::Numeric { profile, .. } = &reference.features[j]
        else {
            panic!("{name} is numeric")
        };
        let mut t = test.clone();
        let c = t.position(name).unwrap();
        for cell in &mut t.columns[c] {
            if let Cell::Number(x) = cell {
                *x += profile.std;
            }
        }
        t
    };
    let verdict = |table: &Table| {
        let mut m = monitor(&model, test.rows as u64);
        windows(&model, &mut m, table).remove(0)
    };
    let unchanged = verdict(&test);
    assert!(!unchanged.dataset_drifted, "{}", unchanged.reason);

    let on_most = verdict(&shifted(&most.name));
    assert!(on_most.dataset_drifted, "{}: {}", most.name, on_most.reason);
    assert!(
        on_most.drifted_features.contains(&most.name),
        "{}",
        on_most.reason
    );

    let on_least = verdict(&shifted(&least.name));
    // The shift itself is seen, but the model does not rely on that feature.
    assert!(
        on_least.drifted_features.contains(&least.name),
        "{}",
        on_least.reason
    );
    assert!(
        !on_least.dataset_drifted,
        "{}: {}",
        least.name, on_least.reason
    );
}

#[tokio::test]
async fn an_artifact_trained_before_calibration_still_serves_with_the_fixed_default() {
    let dir = tempfile::tempdir().unwrap();
    let reference = read(&format!("{SYNTHETIC}/reference.csv"));
    let model = train_and_load(&synthetic_spec(), &rows(&reference, 0..2_000), dir.path()).await;
    // The manifest as an older driftline wrote it: no calibration (of the
    // drift thresholds, nor a temperature), no importance.
    let mut old = model.manifest().clone();
    old.calibration = None;
    old.reference.calibration = None;
    old.reference.importance.clear();
    let json = String::from_utf8(old.signed_json().unwrap()).unwrap();
    assert!(!json.contains("calibration") && !json.contains("importance"));
    let uri = dir.path().join("model").join("v1");
    std::fs::write(uri.join(MANIFEST_FILE), json).unwrap();
    let old = LoadedModel::load(&uri.display().to_string())
        .await
        .expect("an older manifest still loads verified");
    assert!(old.manifest().reference.calibration.is_none());
    let mut m = monitor(&old, 500);
    let w = windows(
        &old,
        &mut m,
        &read(&format!("{SYNTHETIC}/covariate-shift.csv")),
    )
    .remove(0);
    assert!(
        !w.calibrated,
        "the report says the thresholds are not calibrated"
    );
    assert!(w.features.iter().all(|f| f.threshold == 0.1));
    // Every feature weighs the same; the shifted ones and the predictions are named.
    assert!(
        w.features
            .iter()
            .all(|f| (f.weight - 1.0 / 9.0).abs() < 1e-12)
    );
    for name in ["x1", "x2", "segment"] {
        assert!(w.drifted_features.iter().any(|f| f == name), "{}", w.reason);
    }
    assert!(w.prediction.drifted && w.dataset_drifted, "{}", w.reason);
}
