//! `driftline serve` on a real trained artifact: its answers equal the
//! evaluation path's, drift stays quiet on training-like traffic and flags a
//! covariate shift by name, and captured feedback comes back as training rows.

use std::sync::Arc;

use candle_core::Device;
use driftline::api::{DriftSpec, FeatureDriftOverride};
use driftline::api::{GateSpec, ModelSpec, load_model_config};
use driftline::data::{Cell, Table, load_feedback};
use driftline::drift::DriftConfig;
use driftline::ml::synth::{self, Shift};
use driftline::ml::{FeatureBatch, LoadedModel, evaluate, fit};
use driftline::serve::FeedbackConfig;
use driftline::serve::{Predictor, RunningServer, ServerConfig, start};
use driftline::serve::{StoreFeedbackSink, load_artifact};
use serde_json::{Value, json};

fn spec() -> ModelSpec {
    let yaml = r#"
task: classification
data: {source: synthetic.csv, target: label}
architecture: {type: mlp, hiddenLayers: [16], dropout: 0.1}
training: {epochs: 4, batchSize: 32, learningRate: 0.01, seed: 5}
"#;
    load_model_config(yaml).expect("test spec parses")
}

fn synthetic(rows: usize, seed: u64, shift: Shift) -> Table {
    Table::from_csv(
        "synthetic.csv",
        synth::generate(rows, seed, shift).as_bytes(),
    )
    .expect("synthetic csv parses")
}

/// Trains on 2 000 synthetic rows and saves the artifact as `…/synthetic/v1`.
async fn artifact(dir: &std::path::Path) -> String {
    artifact_of(dir, 2_000).await
}

/// Trains on `rows` synthetic rows; the reference profile is fitted on them too.
pub(crate) async fn artifact_of(dir: &std::path::Path, rows: usize) -> String {
    let model = fit(
        &spec(),
        &synthetic(rows, 1, Shift::None),
        None,
        &Device::Cpu,
        false,
    )
    .expect("training succeeds");
    let uri = dir.join("synthetic").join("v1").display().to_string();
    model.save(&uri).await.expect("artifact written");
    uri
}

pub(crate) async fn serve(uri: &str, config: ServerConfig) -> RunningServer {
    let uri = uri.to_string();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let mut server = start(config, async move {
        let model: Arc<dyn Predictor> = Arc::new(load_artifact(&uri, None, None).await?);
        Ok(model)
    })
    .await
    .unwrap();
    server.ready().await.expect("artifact loads and warms up");
    server
}

pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Rows `range` of the table as one tensor per feature, in the server's metadata order.
pub(crate) fn body(
    table: &Table,
    range: std::ops::Range<usize>,
    features: &[(String, String)],
) -> Value {
    let inputs: Vec<Value> = features
        .iter()
        .map(|(name, datatype)| {
            let column =
                &table.columns[table.position(name).expect("feature column")][range.clone()];
            let data: Vec<Value> = column
                .iter()
                .map(|c| match (c, datatype.as_str()) {
                    (Cell::Number(x), "BYTES") => json!(x.to_string()),
                    (Cell::Number(x), _) => json!(x),
                    (Cell::Text(t), _) => json!(t),
                    (Cell::Missing, _) => Value::Null,
                })
                .collect();
            json!({"name": name, "shape": [range.len()], "datatype": datatype, "data": data})
        })
        .collect();
    json!({ "inputs": inputs })
}

pub(crate) async fn metadata_features(server: &RunningServer) -> Vec<(String, String)> {
    let meta: Value = client()
        .get(format!("http://{}/v2/models/synthetic", server.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["datatype"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) async fn infer(server: &RunningServer, body: &Value) -> Value {
    let r = client()
        .post(format!("http://{}/v2/models/synthetic/infer", server.addr))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub(crate) async fn drift_report(server: &RunningServer) -> Value {
    client()
        .get(format!("http://{}/v2/models/synthetic/drift", server.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_predicts_what_evaluate_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let uri = artifact(dir.path()).await;
    let server = serve(&uri, ServerConfig::default()).await;
    let test = synthetic(300, 7, Shift::None);
    let features = metadata_features(&server).await;
    let answer = infer(&server, &body(&test, 0..test.rows, &features)).await;
    let served: Vec<String> = answer["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    // The evaluation path: the same artifact loaded by `ml`, the same rows.
    let loaded = LoadedModel::load(&uri).await.unwrap();
    let batch = FeatureBatch::from_table(&loaded.manifest().features, &test).unwrap();
    let expected = loaded.predict(&batch).unwrap();
    assert_eq!(served, expected.labels);
    let probabilities: Vec<f32> = answer["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(probabilities, expected.probabilities.unwrap().concat());

    // And `evaluate`'s accuracy is the accuracy of the served answers.
    let labels = test.column("label", "the test").unwrap();
    let correct = served
        .iter()
        .zip(labels)
        .filter(|(p, l)| Some(p.to_string()) == l.as_text())
        .count();
    let gate: GateSpec =
        serde_yaml::from_str("{testSet: synthetic.csv, metrics: [{name: accuracy}]}").unwrap();
    let report = evaluate(&loaded, &gate, &test, None).unwrap();
    assert!((report.metrics["accuracy"] - correct as f64 / test.rows as f64).abs() < 1e-12);

    // Row by row gives the same answers as the batch.
    for i in [0, 17, 299] {
        let one = infer(&server, &body(&test, i..i + 1, &features)).await;
        assert_eq!(
            one["outputs"][0]["data"][0],
            answer["outputs"][0]["data"][i]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_quiet_on_training_traffic_and_names_shifted_features() {
    let dir = tempfile::tempdir().unwrap();
    // A large reference: with few reference rows, fresh values outside its range alone add noise.
    let uri = artifact_of(dir.path(), 20_000).await;
    let config = ServerConfig {
        drift: DriftConfig::from(DriftSpec {
            window: 10_000,
            ..Default::default()
        }),
        ..ServerConfig::default()
    };
    let server = serve(&uri, config).await;
    let features = metadata_features(&server).await;
    // Fresh rows from the training distribution: one full window.
    let same = synthetic(10_000, 11, Shift::None);
    for start in (0..10_000).step_by(500) {
        infer(&server, &body(&same, start..start + 500, &features)).await;
    }
    let drift = drift_report(&server).await;
    let window = &drift["recent"][0];
    assert_eq!(window["rows"], 10_000);
    for f in window["features"].as_array().unwrap() {
        assert!(
            f["jensenShannon"].as_f64().unwrap() < 0.05,
            "{} drifted on training-like traffic: {f}",
            f["name"]
        );
    }
    assert_eq!(window["driftedFeatures"], json!([]));
    // Covariate shift (x1, x2 and the segment mix move) within the first full window.
    let shifted = synthetic(10_000, 12, Shift::Covariate);
    for start in (0..10_000).step_by(500) {
        infer(&server, &body(&shifted, start..start + 500, &features)).await;
    }
    let drift = drift_report(&server).await;
    let drifted: Vec<&str> = drift["recent"][0]["driftedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        drifted.contains(&"x1") && drifted.contains(&"x2"),
        "{drifted:?}"
    );
    assert!(!drifted.contains(&"x5"), "{drifted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_feature_overrides_silence_a_feature_and_unknown_names_stop_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let uri = artifact_of(dir.path(), 5_000).await;
    let overrides = |pairs: &[(&str, FeatureDriftOverride)]| {
        DriftConfig::from(DriftSpec {
            window: 4_000,
            features: pairs
                .iter()
                .map(|(n, o)| (n.to_string(), o.clone()))
                .collect(),
            ..Default::default()
        })
    };
    let ignore = FeatureDriftOverride {
        threshold: None,
        ignore: true,
    };
    let server = serve(
        &uri,
        ServerConfig {
            drift: overrides(&[("x1", ignore.clone())]),
            ..ServerConfig::default()
        },
    )
    .await;
    let features = metadata_features(&server).await;
    let shifted = synthetic(4_000, 12, Shift::Covariate);
    for start in (0..4_000).step_by(500) {
        infer(&server, &body(&shifted, start..start + 500, &features)).await;
    }
    let drift = drift_report(&server).await;
    let window = &drift["recent"][0];
    let drifted: Vec<&str> = window["driftedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(drifted.contains(&"x2"), "{drifted:?}");
    assert!(!drifted.contains(&"x1"), "x1 is ignored: {drifted:?}");
    // Its statistic is still measured and served.
    let x1 = window["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "x1")
        .expect("x1 is reported");
    assert!(x1["jensenShannon"].as_f64().unwrap() > 0.1, "{x1}");

    // A name the model does not have is a configuration error, named.
    let mut server = start(
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            drift: overrides(&[("alcohol", ignore)]),
            ..ServerConfig::default()
        },
        {
            let uri = uri.clone();
            async move {
                let model: Arc<dyn Predictor> = Arc::new(load_artifact(&uri, None, None).await?);
                Ok(model)
            }
        },
    )
    .await
    .unwrap();
    let err = server.ready().await.expect_err("unknown feature refused");
    assert!(err.to_string().contains("`alcohol`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_read_back_by_the_dataset_loader_as_training_rows() {
    let dir = tempfile::tempdir().unwrap();
    let uri = artifact(dir.path()).await;
    let prefix = format!("file://{}/feedback/synthetic/", dir.path().display());
    let config = ServerConfig {
        feedback_sink: Some(Arc::new(StoreFeedbackSink::new(&prefix).unwrap())),
        feedback: FeedbackConfig {
            batch_rows: 50,
            ..FeedbackConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = serve(&uri, config).await;
    let features = metadata_features(&server).await;
    let traffic = synthetic(120, 21, Shift::None);
    let labels = traffic.column("label", "the traffic").unwrap().to_vec();
    for i in 0..traffic.rows {
        let mut b = body(&traffic, i..i + 1, &features);
        b["id"] = json!(format!("row-{i}"));
        infer(&server, &b).await;
    }
    let feedback: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("row-{i}"), "label": labels[i].as_text().unwrap()}))
        .collect();
    let r = client()
        .post(format!(
            "http://{}/v2/models/synthetic/feedback",
            server.addr
        ))
        .json(&feedback)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["joined"], 100);
    assert_eq!(
        server.flush_feedback().await.unwrap(),
        0,
        "the 100 joined rows were written at once"
    );

    let read = load_feedback(&prefix, "label")
        .await
        .expect("the trainer reads the feedback prefix");
    assert_eq!(
        read.files, 1,
        "one batch of labels over the batch size is written as one file"
    );
    assert_eq!(read.table.rows, 100);
    let ids = read.table.column("x1", "the test").unwrap();
    assert_eq!(ids[0], traffic.column("x1", "the test").unwrap()[0]);
    let read_labels = read.table.column("label", "the test").unwrap();
    assert_eq!(
        read_labels[..100]
            .iter()
            .map(Cell::as_text)
            .collect::<Vec<_>>(),
        labels[..100].iter().map(Cell::as_text).collect::<Vec<_>>()
    );

    // And training with the feedback uses those rows.
    let mut with_feedback = spec();
    with_feedback.data.include_feedback = true;
    let model = fit(
        &with_feedback,
        &synthetic(2_000, 1, Shift::None),
        Some((&prefix, &read)),
        &Device::Cpu,
        false,
    )
    .unwrap();
    let lineage = model
        .manifest
        .dataset
        .feedback
        .expect("feedback lineage recorded");
    assert_eq!(lineage.rows, 100);
}
