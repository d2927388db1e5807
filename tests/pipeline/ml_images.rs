//! Image models on a real image set: scikit-learn's bundled 8×8 handwritten
//! digits, upscaled to 16×16 PNG files at test time by
//! `tests/fixtures/digits_images.py` (seeded; nothing downloaded, nothing
//! committed). A CNN trains on the class folders, passes its gate on the
//! indexed test set (accuracy, a slice, images per second), and answers
//! tritonclient sending PNG bytes through the gateway.
//!
//! Under `CI=true` a missing scikit-learn or tritonclient fails these tests;
//! elsewhere they are skipped with a message.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use driftline::api::GateSpec;
use driftline::data::{DecodeLimits, read_image_set};
use driftline::ml::{LoadedModel, TrainOptions, train};
use driftline::serve::{
    Backend, ImageLimits, Predictor, RunningServer, ServerConfig, WeightTable, gateway_router,
    load_artifact, start,
};
use serde_json::Value;

use crate::digits::{digits, digits_model, python_has};

async fn serve(uri: &str, images: ImageLimits) -> RunningServer {
    let uri = uri.to_string();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        name: Some("digits".into()),
        images,
        ..ServerConfig::default()
    };
    let mut server = start(config, async move {
        let model: Arc<dyn Predictor> = Arc::new(load_artifact(&uri, None, None).await?);
        Ok(model)
    })
    .await
    .unwrap();
    server
        .ready()
        .await
        .expect("the image artifact loads and warms up");
    server
}

/// Sends every test image through `url` as PNG bytes: binary REST, gRPC and
/// JSON (base64), 25 a request; then an undecodable and an oversized image.
const CLIENT: &str = r#"
import base64, csv, json, os, struct, sys, zlib
import numpy as np
import tritonclient.http as httpclient
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

url, root = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(root, "index.csv"))))
files = [open(os.path.join(root, r["path"]), "rb").read() for r in rows]
truth = [r["digit"] for r in rows]

def request(module, batch, binary=True):
    x = module.InferInput("image", [len(batch)], "BYTES")
    data = np.array(batch, dtype=np.object_)
    if module is httpclient:
        x.set_data_from_numpy(data, binary_data=binary)
    else:
        x.set_data_from_numpy(data)
    return [x]

def labels(result):
    return [p.decode() if isinstance(p, bytes) else p for p in result.as_numpy("predictions")]

http = httpclient.InferenceServerClient(url=url)
grpc = grpcclient.InferenceServerClient(url=url)
correct = {"rest": 0, "grpc": 0, "json": 0}
for start in range(0, len(files), 25):
    batch, want = files[start:start + 25], truth[start:start + 25]
    got = labels(http.infer("digits", request(httpclient, batch)))
    correct["rest"] += sum(g == w for g, w in zip(got, want))
    got = labels(grpc.infer("digits", request(grpcclient, batch)))
    correct["grpc"] += sum(g == w for g, w in zip(got, want))
encoded = [base64.b64encode(f).decode() for f in files[:50]]
got = labels(http.infer("digits", request(httpclient, encoded, binary=False)))
correct["json"] = sum(g == w for g, w in zip(got, truth[:50]))

def png(w, h):
    raw = b"".join(b"\x00" + bytes([128] * w) for _ in range(h))
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

def refused(batch):
    try:
        http.infer("digits", request(httpclient, batch))
    except InferenceServerException as e:
        return {"status": str(e.status()), "message": e.message()}
    return None

meta = http.get_model_metadata("digits")
print(json.dumps({
    "total": len(files),
    "correct": correct,
    "inputs": meta["inputs"],
    "undecodable": refused([files[0], b"\x89PNG\r\n\x1a\n broken"]),
    "oversized": refused([png(300, 300)]),
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cnn_on_the_digits_trains_passes_its_gate_and_answers_png_bytes_through_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    if !digits(tmp.path(), 900, 300)
        || !python_has(
            "a_cnn_on_the_digits_trains_passes_its_gate_and_answers_png_bytes_through_the_gateway",
            "tritonclient.http, tritonclient.grpc",
            "tritonclient[http,grpc]",
        )
    {
        return;
    }
    // One undecodable file among the training images: skipped and counted, not fatal.
    std::fs::write(
        tmp.path().join("train/3/corrupt.png"),
        b"\x89PNG\r\n\x1a\ntruncated",
    )
    .unwrap();
    let spec = digits_model(tmp.path());
    let model = train(&spec, &TrainOptions::default())
        .await
        .expect("the CNN trains");
    let m = &model.manifest;
    assert_eq!(
        m.dataset.rows, 900,
        "the corrupt file is not a training image"
    );
    assert_eq!(m.dataset.bad_images.len(), 1, "{:?}", m.dataset.bad_images);
    assert!(
        m.dataset.bad_images[0].contains("train/3/corrupt.png"),
        "{:?}",
        m.dataset.bad_images
    );
    assert_eq!(m.classes.len(), 10);
    let artifact = tmp.path().join("digits/v1").display().to_string();
    model.save(&artifact).await.unwrap();

    // The gate, on the indexed test set, as `driftline evaluate` runs it.
    let gate: GateSpec = spec.gate.clone().unwrap();
    let test = read_image_set(&gate.test_set, "digit", DecodeLimits::default(), 0)
        .await
        .unwrap();
    let loaded = LoadedModel::load(&artifact).await.unwrap();
    let report = driftline::ml::evaluate_images(&loaded, &gate, &test, None).unwrap();
    let verdict = driftline::policy::gate_verdict(&gate, &report, None);
    assert!(verdict.passed, "{:#?}", verdict.checks);
    let names: Vec<&str> = verdict.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["accuracy", "accuracy", "imagesPerSecond"]);
    assert_eq!(
        report.slices[0].rows as usize,
        test.index
            .column("half", "t")
            .unwrap()
            .iter()
            .filter(|c| c.as_text().as_deref() == Some("high"))
            .count()
    );

    // Served behind the gateway; the server allows 200×200 pixels per image.
    let server = serve(
        &artifact,
        ImageLimits {
            max_pixels: 200 * 200,
            ..ImageLimits::default()
        },
    )
    .await;
    let table = WeightTable {
        backends: vec![Backend {
            version: "1".into(),
            url: format!("http://{}", server.addr),
            weight: 100,
        }],
    };
    let (router, _weights) = gateway_router(table, Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let root = tmp.path().join("test").display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", CLIENT, &gateway.to_string(), &root])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let total = got["total"].as_f64().unwrap();
    for front in ["rest", "grpc"] {
        let share = got["correct"][front].as_f64().unwrap() / total;
        assert!(share >= 0.95, "{front}: {share} of the test images right");
    }
    assert!(
        got["correct"]["json"].as_f64().unwrap() >= 0.95 * 50.0,
        "{got}"
    );
    assert_eq!(got["inputs"][0]["name"], "image", "{got}");
    assert_eq!(got["inputs"][0]["datatype"], "BYTES", "{got}");
    let undecodable = &got["undecodable"];
    assert_eq!(undecodable["status"], "400", "{got}");
    assert!(
        undecodable["message"]
            .as_str()
            .unwrap()
            .contains("input `image` element 1: cannot be decoded as PNG"),
        "{got}"
    );
    let oversized = &got["oversized"];
    assert_eq!(oversized["status"], "413", "{got}");
    assert!(
        oversized["message"]
            .as_str()
            .unwrap()
            .contains("300×300 pixels (90000); at most 40000"),
        "{got}"
    );
    drop(server);
}

/// The first epoch (1-based) whose validation accuracy reaches `target`.
fn epochs_to(curve: &[driftline::ml::EpochRecord], target: f64) -> Option<usize> {
    curve
        .iter()
        .position(|e| e.validation_metric.unwrap_or(0.0) + 1e-12 >= target)
        .map(|i| i + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_retrain_reaches_the_champions_accuracy_in_a_third_of_the_cold_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    if !digits(tmp.path(), 900, 100) {
        return;
    }
    let spec = digits_model(tmp.path());
    let cold = train(&spec, &TrainOptions::default()).await.unwrap();
    let champion = tmp.path().join("digits/v1").display().to_string();
    cold.save(&champion).await.unwrap();
    let accuracy = cold.manifest.metrics["accuracy"];
    let cold_epochs = epochs_to(&cold.manifest.curve, accuracy).unwrap();

    // The nightly retrain: same Model, warm from the champion.
    let mut nightly = spec.clone();
    nightly.training.warm_start = driftline::api::WarmStart::Champion;
    let options = TrainOptions {
        warm_start: Some(champion.clone()),
        ..TrainOptions::default()
    };
    let warm = train(&nightly, &options).await.unwrap();
    let warm_epochs = epochs_to(&warm.manifest.curve, accuracy)
        .unwrap_or_else(|| panic!("never reached {accuracy}: {:?}", warm.manifest.curve));
    assert!(
        warm_epochs * 3 <= cold_epochs,
        "warm start reached the champion's {accuracy:.4} in {warm_epochs} epochs, cold in {cold_epochs}"
    );
    let start = warm.manifest.start.as_ref().expect("lineage of the start");
    assert_eq!(start.from, driftline::ml::StartFrom::Champion);
    assert_eq!(start.uri.as_deref(), Some(champion.as_str()));
    assert_eq!(
        start.weights_digest.as_deref(),
        Some(cold.weights_digest().as_str()),
        "the lineage records the parent weights' digest"
    );
    // Both curves stay with their versions, for the registry and the dashboard.
    assert_eq!(cold.manifest.curve.len(), 12);
    assert_eq!(warm.manifest.curve.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_trained_on_half_the_digits_is_fine_tuned_on_all_with_its_conv_layers_frozen() {
    let tmp = tempfile::tempdir().unwrap();
    if !digits(tmp.path(), 900, 300) {
        return;
    }
    // The base sees digits 0–4 only.
    let half = tmp.path().join("half");
    for d in 0..5 {
        let (from, to) = (
            tmp.path().join(format!("train/{d}")),
            half.join(d.to_string()),
        );
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&from).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    let mut base_spec = digits_model(tmp.path());
    base_spec.data.source = half.display().to_string();
    let base = train(&base_spec, &TrainOptions::default()).await.unwrap();
    assert_eq!(base.manifest.classes.len(), 5);
    let base_uri = tmp.path().join("base").display().to_string();
    base.save(&base_uri).await.unwrap();

    let mut tuned_spec = digits_model(tmp.path());
    tuned_spec.architecture.init = Some(base_uri.clone());
    tuned_spec.training.freeze = vec!["conv".into()];
    tuned_spec.training.head_learning_rate = Some(0.02);
    let tuned = train(&tuned_spec, &TrainOptions::default()).await.unwrap();
    assert_eq!(tuned.manifest.classes.len(), 10);
    let weights = |m: &driftline::ml::TrainedModel| {
        safetensors::SafeTensors::deserialize(&m.weights)
            .unwrap()
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.data().to_vec()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (before, after) = (weights(&base), weights(&tuned));
    let frozen: Vec<&String> = after.keys().filter(|n| n.starts_with("conv")).collect();
    assert_eq!(frozen.len(), 10, "{frozen:?}");
    for name in frozen {
        assert_eq!(before[name], after[name], "frozen tensor {name} changed");
    }
    let start = tuned.manifest.start.as_ref().unwrap();
    assert_eq!(start.uri.as_deref(), Some(base_uri.as_str()));
    assert_eq!(
        start.reinitialised,
        ["head0.weight [5, 32] → [10, 32]", "head0.bias [5] → [10]"]
    );
    assert!(
        tuned.manifest.metrics["accuracy"] >= 0.85,
        "frozen features of five digits carry to ten: {:?}",
        tuned.manifest.metrics
    );
}

/// The test images, each changed by `shift`, drawn `windows` times `size` at random.
fn windows(
    images: &[driftline::data::Pixels],
    shift: impl Fn(&driftline::data::Pixels) -> driftline::data::Pixels,
    windows: usize,
    size: usize,
    seed: u64,
) -> Vec<Vec<driftline::data::Pixels>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..windows)
        .map(|_| {
            (0..size)
                .map(|_| shift(&images[rng.random_range(0..images.len())]))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blurred_or_darkened_images_are_flagged_and_in_distribution_windows_are_not() {
    use driftline::data::Pixels;
    use driftline::drift::{DriftConfig, DriftMonitor, Observation};
    let tmp = tempfile::tempdir().unwrap();
    if !digits(tmp.path(), 900, 897) {
        return;
    }
    let mut spec = digits_model(tmp.path());
    spec.drift.window = 100;
    let model = train(&spec, &TrainOptions::default()).await.unwrap();
    let artifact = tmp.path().join("digits/v1").display().to_string();
    model.save(&artifact).await.unwrap();
    let loaded = LoadedModel::load(&artifact).await.unwrap();
    let held_out = read_image_set(
        &format!("{}/test/index.csv", tmp.path().display()),
        "digit",
        DecodeLimits::default(),
        0,
    )
    .await
    .unwrap();
    // What the server does with each batch: predict, then feed the monitor what the model saw.
    let judge = |batches: Vec<Vec<Pixels>>| {
        let mut monitor = DriftMonitor::new(
            loaded.manifest().reference.clone(),
            DriftConfig::from(spec.drift.clone()),
            chrono::Utc::now(),
        )
        .unwrap();
        let mut reports = Vec::new();
        for batch in batches {
            let answer = loaded.predict_images(&batch).unwrap();
            reports.extend(monitor.observe_rows(
                batch.len(),
                |j, i| Observation::Number(answer.monitored[j][i]),
                |i| Observation::Text(&answer.predictions.labels[i]),
                |_| None,
                chrono::Utc::now(),
            ));
        }
        reports
    };
    let same = judge(windows(&held_out.images, Pixels::clone, 20, 100, 1));
    assert_eq!(same.len(), 20);
    for (i, w) in same.iter().enumerate() {
        assert!(
            !w.dataset_drifted,
            "in-distribution window {i} flagged: {}",
            w.reason
        );
    }
    let consecutive = spec.drift.consecutive_windows as usize;
    let darker = |p: &Pixels| Pixels {
        rgb: p.rgb.iter().map(|&v| v / 2).collect(),
        ..p.clone()
    };
    let blurred = |p: &Pixels| Pixels::from_image(&image::imageops::blur(&p.to_image(), 1.0));
    for (name, reports, named) in [
        (
            "darkened",
            judge(windows(&held_out.images, darker, consecutive, 100, 2)),
            "brightness",
        ),
        (
            "blurred",
            judge(windows(&held_out.images, blurred, consecutive, 100, 3)),
            "sharpness",
        ),
    ] {
        for w in &reports {
            assert!(w.dataset_drifted, "{name} window not flagged: {}", w.reason);
            assert!(
                w.reason.contains(named) || w.reason.contains("embedding direction"),
                "{name}: {}",
                w.reason
            );
        }
        eprintln!("{name}: {}", reports[0].reason);
    }
}
