//! Training, the artifact format and its verification, as the trainer Job
//! and the model server rely on them.

use std::path::Path;

use candle_core::Device;
use driftline::api::{GateSpec, MetricThreshold, ModelSpec, load_model_config};
use driftline::data::{Cell, Table};
use driftline::ml::synth::{self, Shift};
use driftline::ml::{ArtifactError, FeatureBatch, LoadedModel, MlError, TrainedModel, fit};

fn spec(yaml_extra: &str) -> ModelSpec {
    let yaml = format!(
        r#"
task: classification
data: {{source: synthetic.csv, target: label}}
architecture: {{type: mlp, hiddenLayers: [16], dropout: 0.1}}
training: {{epochs: 4, batchSize: 32, learningRate: 0.01, seed: 5}}
{yaml_extra}
"#
    );
    load_model_config(&yaml).expect("test spec parses")
}

fn synthetic(rows: usize, seed: u64, shift: Shift) -> Table {
    Table::from_csv(
        "synthetic.csv",
        synth::generate(rows, seed, shift).as_bytes(),
    )
    .expect("synthetic csv parses")
}

fn train(spec: &ModelSpec, table: &Table) -> TrainedModel {
    fit(spec, table, None, &Device::Cpu, false).expect("training succeeds")
}

async fn save(model: &TrainedModel, dir: &Path, name: &str) -> String {
    let uri = dir.join(name).display().to_string();
    model.save(&uri).await.expect("artifact written");
    uri
}

#[test]
fn same_seed_gives_identical_weights_and_another_seed_does_not() {
    let table = synthetic(600, 1, Shift::None);
    let a = train(&spec(""), &table);
    let b = train(&spec(""), &table);
    assert_eq!(
        a.weights_digest(),
        b.weights_digest(),
        "same seed, same data → same weights"
    );
    assert_eq!(a.manifest.curve, b.manifest.curve);
    let mut other = spec("");
    other.training.seed = 6;
    assert_ne!(a.weights_digest(), train(&other, &table).weights_digest());
}

#[tokio::test]
async fn a_saved_artifact_loads_verified_and_predicts_like_training() {
    let tmp = tempfile::tempdir().unwrap();
    let table = synthetic(800, 1, Shift::None);
    let model = train(&spec(""), &table);
    let uri = save(&model, tmp.path(), "v1").await;
    let loaded = LoadedModel::load(&uri).await.expect("verified load");
    let m = loaded.manifest();
    assert_eq!(m.classes, vec!["0", "1"]);
    assert_eq!(m.features.len(), 9);
    assert_eq!(m.reference.features.len(), 9);
    assert_eq!(m.curve.len(), 4);
    assert_eq!(m.dataset.digest, table.digest);
    assert_eq!(m.dataset.training_rows + m.dataset.validation_rows, 800);
    assert_eq!(m.weights_digest(), model.weights_digest());
    assert!(m.metrics["accuracy"] > 0.7, "{:?}", m.metrics);
    assert!(loaded.size_bytes() > 0);
    // No temporary directory is left beside the artifact.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    let test = synthetic(200, 9, Shift::None);
    let batch = FeatureBatch::from_table(&m.features, &test).unwrap();
    let p = loaded.predict(&batch).unwrap();
    assert_eq!(p.labels.len(), 200);
    let probs = p.probabilities.as_ref().unwrap();
    assert!(
        probs
            .iter()
            .all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-4)
    );
    let truth = test.column("label", "test").unwrap();
    let correct = p
        .labels
        .iter()
        .zip(truth)
        .filter(|(l, t)| Some((*l).clone()) == t.as_text())
        .count();
    assert!(correct as f64 / 200.0 > 0.7, "accuracy {correct}/200");
}

#[tokio::test]
async fn training_calibrates_on_the_validation_split_and_the_loaded_model_serves_at_that_temperature()
 {
    let tmp = tempfile::tempdir().unwrap();
    let table = synthetic(800, 1, Shift::None);
    let model = train(&spec(""), &table);
    let c = model
        .manifest
        .calibration
        .expect("a classifier is calibrated");
    assert!(c.temperature > 0.0 && c.temperature != 1.0, "{c:?}");
    assert_eq!(c.bins, 15);
    assert_eq!(c.rows, model.manifest.dataset.validation_rows as u64);
    // The temperature minimises the log-likelihood, not the binned error:
    // on an already well-calibrated model the two may differ by a bin's noise.
    assert!(
        c.ece_after < 0.1 && c.ece_after <= c.ece_before + 0.01,
        "{c:?}"
    );
    // The validation metrics are those of the served (calibrated) probabilities.
    let ece = model.manifest.metrics["expectedCalibrationError"];
    assert!((ece - c.ece_after).abs() < 1e-6, "{ece} vs {c:?}");

    // The same weights without a calibration (an artifact from before it)
    // serve at temperature 1: the same labels, other probabilities.
    let mut uncalibrated = model.clone();
    uncalibrated.manifest.calibration = None;
    let calibrated = LoadedModel::load(&save(&model, tmp.path(), "t").await)
        .await
        .unwrap();
    let plain = LoadedModel::load(&save(&uncalibrated, tmp.path(), "one").await)
        .await
        .unwrap();
    let test = synthetic(200, 9, Shift::None);
    let batch = FeatureBatch::from_table(&calibrated.manifest().features, &test).unwrap();
    let (a, b) = (
        calibrated.predict(&batch).unwrap(),
        plain.predict(&batch).unwrap(),
    );
    assert_eq!(a.labels, b.labels, "a temperature never changes the answer");
    let top = |p: &[f32]| p.iter().copied().fold(0.0f32, f32::max);
    let (pa, pb) = (a.probabilities.unwrap(), b.probabilities.unwrap());
    for (ra, rb) in pa.iter().zip(&pb) {
        // Above 1 the temperature softens every answer, below 1 sharpens it.
        if c.temperature > 1.0 {
            assert!(top(ra) <= top(rb) + 1e-6, "{ra:?} vs {rb:?}");
        } else {
            assert!(top(ra) + 1e-6 >= top(rb), "{ra:?} vs {rb:?}");
        }
    }
    assert_ne!(pa, pb);
}

#[tokio::test]
async fn weights_from_another_architecture_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let table = synthetic(300, 1, Shift::None);
    let small = save(&train(&spec(""), &table), tmp.path(), "small").await;
    let mut wide = spec("");
    wide.architecture.hidden_layers = vec![8, 4];
    let wide = save(&train(&wide, &table), tmp.path(), "wide").await;
    std::fs::copy(
        format!("{wide}/weights.safetensors"),
        format!("{small}/weights.safetensors"),
    )
    .unwrap();
    let err = LoadedModel::load(&small).await.unwrap_err();
    assert!(matches!(err, ArtifactError::TensorMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("layer0.weight") && msg.contains("[8, 12]") && msg.contains("[16, 12]"),
        "{msg}"
    );
}

#[tokio::test]
async fn corrupted_or_truncated_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = save(
        &train(&spec(""), &synthetic(300, 1, Shift::None)),
        tmp.path(),
        "v1",
    )
    .await;
    let path = format!("{uri}/weights.safetensors");
    let original = std::fs::read(&path).unwrap();

    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    std::fs::write(&path, &flipped).unwrap();
    let err = LoadedModel::load(&uri).await.unwrap_err();
    assert!(matches!(err, ArtifactError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("weights.safetensors"), "{err}");

    std::fs::write(&path, &original[..original.len() / 2]).unwrap();
    let err = LoadedModel::load(&uri).await.unwrap_err();
    assert!(matches!(err, ArtifactError::SizeMismatch { .. }), "{err}");

    std::fs::remove_file(&path).unwrap();
    let err = LoadedModel::load(&uri).await.unwrap_err();
    assert!(matches!(err, ArtifactError::MissingFile { .. }), "{err}");
}

#[tokio::test]
async fn an_edited_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = save(
        &train(&spec(""), &synthetic(300, 1, Shift::None)),
        tmp.path(),
        "v1",
    )
    .await;
    let path = format!("{uri}/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();

    // Hand-edited preprocessing: the manifest digest no longer matches.
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["features"][0]["mean"] = serde_json::json!(123.0);
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    let err = LoadedModel::load(&uri).await.unwrap_err();
    assert!(matches!(err, ArtifactError::ManifestEdited { .. }), "{err}");

    // A careful edit of the architecture that also rewrites the manifest digest
    // still fails: the fingerprint covers the architecture.
    let mut manifest: driftline::ml::Manifest = serde_json::from_str(&text).unwrap();
    manifest.architecture.hidden_layers = vec![32];
    std::fs::write(&path, manifest.signed_json().unwrap()).unwrap();
    let err = LoadedModel::load(&uri).await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::FingerprintMismatch { .. }),
        "{err}"
    );

    std::fs::write(&path, b"{ not json").unwrap();
    let err = LoadedModel::load(&uri).await.unwrap_err();
    assert!(
        err.to_string().contains("not a valid manifest") || err.to_string().contains("format"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_time_input_missing_a_column_fails_naming_it_and_unseen_categories_are_tolerated() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = save(
        &train(&spec(""), &synthetic(300, 1, Shift::None)),
        tmp.path(),
        "v1",
    )
    .await;
    let model = LoadedModel::load(&uri).await.unwrap();
    let features = &model.manifest().features;
    let x = vec![Cell::Number(0.1)];
    let unseen = vec![Cell::Text("never-seen".into())];
    let err = FeatureBatch::from_named(
        features,
        |name| match name {
            "x5" => None,
            "segment" => Some(unseen.as_slice()),
            _ => Some(x.as_slice()),
        },
        "the request",
    )
    .unwrap_err();
    assert!(err.to_string().contains("column `x5` missing"), "{err}");
    let batch = FeatureBatch::from_named(
        features,
        |name| {
            if name == "segment" {
                Some(unseen.as_slice())
            } else {
                Some(x.as_slice())
            }
        },
        "the request",
    )
    .unwrap();
    assert_eq!(model.predict(&batch).unwrap().labels.len(), 1);
    // A batch in the wrong shape is refused, not misread.
    let short = FeatureBatch {
        rows: 1,
        columns: vec![x.clone()],
    };
    assert!(matches!(
        model.predict(&short),
        Err(MlError::BatchShape { .. })
    ));
}

#[tokio::test]
async fn feedback_rows_join_the_training_split_only() {
    let tmp = tempfile::tempdir().unwrap();
    let fb_dir = tmp.path().join("feedback");
    std::fs::create_dir_all(&fb_dir).unwrap();
    let csv = synth::generate(50, 11, Shift::None);
    let mut lines = String::new();
    for (i, row) in csv.lines().skip(1).enumerate() {
        let v: Vec<&str> = row.split(',').collect();
        let mut obj = serde_json::Map::new();
        obj.insert("_id".into(), serde_json::json!(i));
        for (j, name) in ["x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"]
            .iter()
            .enumerate()
        {
            obj.insert(
                name.to_string(),
                serde_json::json!(v[j].parse::<f64>().unwrap()),
            );
        }
        obj.insert("segment".into(), serde_json::json!(v[8]));
        obj.insert(
            "label".into(),
            serde_json::json!(v[9].parse::<u8>().unwrap()),
        );
        lines.push_str(&serde_json::Value::Object(obj).to_string());
        lines.push('\n');
    }
    std::fs::write(fb_dir.join("part-0001.jsonl"), lines).unwrap();
    let data = tmp.path().join("train.csv");
    std::fs::write(&data, synth::generate(300, 1, Shift::None)).unwrap();

    let mut s = spec("");
    s.data.source = data.display().to_string();
    s.data.include_feedback = true;
    let options = driftline::ml::TrainOptions {
        feedback: Some(fb_dir.display().to_string()),
        ..Default::default()
    };
    let with = driftline::ml::train(&s, &options).await.unwrap();
    let lineage = with.manifest.dataset.clone();
    assert_eq!(
        lineage.feedback.as_ref().map(|f| (f.files, f.rows)),
        Some((1, 50))
    );
    assert_eq!(
        lineage.validation_rows, 60,
        "feedback never enters the validation split"
    );
    assert_eq!(lineage.training_rows, 240 + 50);

    s.data.include_feedback = false;
    let without = driftline::ml::train(&s, &options).await.unwrap();
    assert_eq!(without.manifest.dataset.training_rows, 240);
    assert!(without.manifest.dataset.feedback.is_none());
}

#[test]
fn regression_trains_and_reports_error_metrics() {
    let yaml = r#"
task: regression
data: {source: d.csv, target: y}
architecture: {hiddenLayers: [8]}
training: {epochs: 30, batchSize: 16, learningRate: 0.01, seed: 1}
"#;
    let s = load_model_config(yaml).unwrap();
    let mut csv = String::from("a,b,y\n");
    for i in 0..200 {
        let a = (i % 17) as f64;
        let b = (i % 5) as f64;
        csv.push_str(&format!("{a},{b},{}\n", 3.0 * a - 2.0 * b + 100.0));
    }
    let table = Table::from_csv("d.csv", csv.as_bytes()).unwrap();
    let model = fit(&s, &table, None, &Device::Cpu, false).unwrap();
    let m = &model.manifest.metrics;
    assert!(m["r2"] > 0.95, "{m:?}");
    assert!(m.contains_key("rmse") && m.contains_key("mae"));
    assert!(model.manifest.target_scale.is_some());
}

#[test]
fn hyper_parameters_that_cannot_train_are_refused_by_name() {
    let table = synthetic(100, 1, Shift::None);
    let cases = [
        (
            "training: {epochs: 0, batchSize: 8, learningRate: 0.01, seed: 1}",
            "training.epochs",
        ),
        (
            "training: {epochs: 1, batchSize: 0, learningRate: 0.01, seed: 1}",
            "training.batchSize",
        ),
        (
            "training: {epochs: 1, batchSize: 8, learningRate: -1, seed: 1}",
            "training.learningRate",
        ),
    ];
    for (yaml, field) in cases {
        // Parsed without the API's validation: `fit` must refuse on its own,
        // for specs built in code rather than read from YAML.
        let s: driftline::api::ModelSpec = serde_yaml::from_str(&format!(
            "task: classification\ndata: {{source: s.csv, target: label}}\n{yaml}"
        ))
        .unwrap();
        let err = fit(&s, &table, None, &Device::Cpu, false).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let mut s = spec("");
    s.architecture.kind = "transformer".into();
    let err = fit(&s, &table, None, &Device::Cpu, false).unwrap_err();
    // The same words as `kubectl apply` gives: one home for spec rules.
    assert!(
        driftline::error_chain(&err).contains(
            "spec.architecture.type: architecture type must be a known architecture: mlp, cnn"
        ),
        "{err}"
    );
    let mut s = spec("");
    s.data.target = "colour".into();
    let err = fit(&s, &table, None, &Device::Cpu, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("column `colour` missing; expected by data.target"),
        "{err}"
    );
}

#[tokio::test]
async fn a_candidate_trained_on_shuffled_labels_fails_the_gate_against_a_good_champion() {
    use driftline::policy::gate_verdict as verdict;
    let tmp = tempfile::tempdir().unwrap();
    let table = synthetic(1200, 1, Shift::None);
    let mut good_spec = spec("");
    good_spec.training.epochs = 10;
    let good = save(&train(&good_spec, &table), tmp.path(), "good").await;
    // Same rows with the labels permuted: nothing left to learn.
    let mut shuffled = table.clone();
    let label = shuffled.position("label").unwrap();
    let mut labels = shuffled.columns[label].clone();
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    labels.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    shuffled.columns[label] = labels;
    let bad = save(&train(&good_spec, &shuffled), tmp.path(), "bad").await;

    let gate = GateSpec {
        data: Default::default(),
        test_set: "test.csv".into(),
        metrics: vec![MetricThreshold {
            name: "accuracy".into(),
            min: Some(0.75),
            max: None,
            max_drop_from_champion: Some(0.02),
            max_relative_drop_from_champion: None,
        }],
        slices: Vec::new(),
        must_pass: None,
        must_pass_tolerance: None,
        max_calibration_error: None,
        budgets: None,
    };
    let test = synthetic(400, 21, Shift::None);
    let good = LoadedModel::load(&good).await.unwrap();
    let bad = LoadedModel::load(&bad).await.unwrap();
    let good_report = driftline::ml::evaluate(&good, &gate, &test, None).unwrap();
    let bad_report = driftline::ml::evaluate(&bad, &gate, &test, None).unwrap();
    let v = verdict(&gate, &bad_report, Some(&good_report));
    assert!(!v.passed);
    let failed: Vec<_> = v
        .failures()
        .map(|c| (c.kind.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        failed,
        vec![("metric", "accuracy"), ("championDrop", "accuracy")],
        "{v:#?}"
    );
    let promoted = verdict(&gate, &good_report, Some(&bad_report));
    assert!(promoted.passed, "{promoted:#?}");
    assert!(
        good_report.budgets.p99_latency_ms > 0.0
            && good_report.budgets.throughput_rows_per_sec > 0.0
    );
    assert_eq!(good_report.budgets.parameters, good.manifest().parameters);
}
