//! Training data, artifacts and feedback on S3 for real: a moto S3 server
//! (PyPI `moto[server]`, installed by `.ci/run` from `.ci/requirements.txt`)
//! on loopback, and the real `driftline` binary configured the way a Job in a
//! cluster is, through `AWS_*` variables.
//!
//! The Python interpreter is `python3`, or `DRIFTLINE_TEST_PYTHON` when set.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use driftline::ml::synth::{self, Shift};
use serde_json::{Value, json};

use super::moto::{BUCKET, Moto, free_port};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Model YAML whose data and regression test-set live in the bucket.
fn model_yaml(dir: &std::path::Path) -> String {
    let path = dir.join("model.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {{name: synth}}
spec:
  task: classification
  data: {{source: "s3://{BUCKET}/data/train.csv", target: label, includeFeedback: true}}
  architecture: {{type: mlp, hiddenLayers: [16]}}
  training: {{epochs: 4, batchSize: 32, learningRate: 0.01, seed: 3}}
  gate:
    testSet: "s3://{BUCKET}/data/test.csv"
    metrics:
      - {{name: accuracy, min: 0.7}}
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_artifacts_and_feedback_round_trip_through_s3() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    moto.put("data/train.csv", synth::generate(2_000, 1, Shift::None))
        .await;
    moto.put("data/test.csv", synth::generate(300, 2, Shift::None))
        .await;
    let config = model_yaml(dir.path());
    let v1 = format!("s3://{BUCKET}/models/synth/v1");

    // Train from S3 data into an S3 artifact.
    let out = moto
        .driftline(&["train", "-c", &config, "--out", &v1])
        .await;
    assert!(out.status.success(), "train: {}", stderr(&out));
    let mut keys = moto.keys("models/synth/v1").await;
    keys.sort();
    assert_eq!(
        keys,
        [
            "models/synth/v1/manifest.json",
            "models/synth/v1/weights.safetensors"
        ],
        "an artifact is its manifest and weights, nothing staged left behind"
    );
    let manifest = moto.get("models/synth/v1/manifest.json").await;

    // An existing artifact is never overwritten.
    let again = moto
        .driftline(&["train", "-c", &config, "--out", &v1])
        .await;
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already holds an artifact"),
        "{}",
        stderr(&again)
    );
    assert_eq!(moto.get("models/synth/v1/manifest.json").await, manifest);

    // Evaluate and gate it on the test-set in the bucket.
    let out = moto
        .driftline(&["evaluate", "--candidate", &v1, "-c", &config])
        .await;
    assert!(out.status.success(), "evaluate: {}", stderr(&out));

    // Serve it from S3, capture feedback into S3.
    let port = free_port();
    let feedback = format!("s3://{BUCKET}/feedback/synth/");
    let mut server = moto
        .command(&[
            "serve",
            "--artifact",
            &v1,
            "--feedback",
            &feedback,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/v2/models/synth");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = json!({"id": "req-1", "inputs": [
        {"name": "x1", "shape": [1], "datatype": "FP64", "data": [0.3]},
        {"name": "x2", "shape": [1], "datatype": "FP64", "data": [-1.2]},
        {"name": "x3", "shape": [1], "datatype": "FP64", "data": [0.1]},
        {"name": "x4", "shape": [1], "datatype": "FP64", "data": [0.4]},
        {"name": "x5", "shape": [1], "datatype": "FP64", "data": [0.2]},
        {"name": "x6", "shape": [1], "datatype": "FP64", "data": [-0.5]},
        {"name": "x7", "shape": [1], "datatype": "FP64", "data": [0.0]},
        {"name": "x8", "shape": [1], "datatype": "FP64", "data": [0.9]},
        {"name": "segment", "shape": [1], "datatype": "BYTES", "data": ["a"]}
    ]});
    let infer = |body: Value| {
        let request = http.post(format!("{base}/infer")).json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let answer = infer(row.clone()).await;
    assert_eq!(answer["id"], "req-1", "{answer}");
    // A second request whose label will come late, as a file.
    let mut late = row.clone();
    late["id"] = json!("req-2");
    let answer = infer(late).await;
    assert_eq!(answer["id"], "req-2", "{answer}");
    let labelled = http
        .post(format!("{base}/feedback"))
        .json(&json!({"id": "req-1", "label": "1"}))
        .send()
        .await
        .unwrap();
    assert!(labelled.status().is_success(), "{labelled:?}");
    // SIGTERM: the server writes the labelled row before it exits.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "serve exited with {status}");
    let keys = moto.keys("feedback/synth").await;
    // The prediction log sits beside the labelled rows, under predictions/.
    let (logged, files): (Vec<String>, Vec<String>) = keys
        .iter()
        .cloned()
        .partition(|k| k.contains("/predictions/"));
    assert_eq!(logged.len(), 1, "{keys:?}");
    let log = String::from_utf8(moto.get(&logged[0]).await).unwrap();
    assert!(log.contains("\"_id\":\"req-1\""), "{log}");
    assert!(log.contains("\"_id\":\"req-2\""), "{log}");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".jsonl"), "{files:?}");
    let written = String::from_utf8(moto.get(&files[0]).await).unwrap();
    let line: Value = serde_json::from_str(written.trim()).unwrap();
    assert_eq!(line["_id"], "req-1");
    assert_eq!(line["x2"], -1.2);
    assert_eq!(line["segment"], "a");

    // Days later, after the server has forgotten req-2, its label arrives
    // as a file (with one for an id never served); the next training joins
    // it with the prediction log the server wrote.
    moto.put(
        "feedback/synth/labels/late.csv",
        "id,label\nreq-2,0\nghost,1\n",
    )
    .await;

    // The next training run reads that feedback from S3 as training rows.
    let v2 = format!("s3://{BUCKET}/models/synth/v2");
    let out = moto
        .driftline(&[
            "train",
            "-c",
            &config,
            "--feedback",
            &feedback,
            "--out",
            &v2,
        ])
        .await;
    assert!(
        out.status.success(),
        "train with feedback: {}",
        stderr(&out)
    );
    let manifest: Value =
        serde_json::from_slice(&moto.get("models/synth/v2/manifest.json").await).unwrap();
    let lineage = &manifest["dataset"]["feedback"];
    assert_eq!(lineage["rows"], 2, "{lineage}");
    assert_eq!(lineage["files"], 1, "{lineage}");
    assert_eq!(
        lineage["lateLabels"],
        json!({"files": 1, "labels": 2, "joined": 1, "unknown": 1, "duplicates": 0, "annotated": 0}),
        "{lineage}"
    );

    // Weights changed in the bucket are refused at load, by digest.
    moto.put("models/synth/v1/weights.safetensors", vec![0u8; 64])
        .await;
    let out = moto
        .driftline(&["evaluate", "--candidate", &v1, "-c", &config])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("weights.safetensors"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_or_bucket_is_named_and_nothing_is_written() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = model_yaml(dir.path());
    // No training data in the bucket yet.
    let out = moto
        .driftline(&[
            "train",
            "-c",
            &config,
            "--out",
            &format!("s3://{BUCKET}/models/synth/v1"),
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("s3://{BUCKET}/data/")) && err.contains("does not exist"),
        "{err}"
    );
    assert!(moto.keys("models").await.is_empty());
    // A candidate in a bucket that does not exist.
    moto.put("data/test.csv", synth::generate(300, 2, Shift::None))
        .await;
    let out = moto
        .driftline(&[
            "evaluate",
            "--candidate",
            "s3://no-such-bucket/models/synth/v1",
            "-c",
            &config,
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("s3://no-such-bucket/models/synth/v1"),
        "{}",
        stderr(&out)
    );
}
