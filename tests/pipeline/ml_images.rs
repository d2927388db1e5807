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
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use driftline::api::{GateSpec, ModelSpec, load_model_config};
use driftline::ml::vision::{DecodeLimits, read_image_set};
use driftline::ml::{LoadedModel, TrainOptions, eval, train};
use driftline::serve::gateway::{Backend, WeightTable, gateway_router};
use driftline::serve::images::ImageLimits;
use driftline::serve::model::load_artifact;
use driftline::serve::server::{Predictor, RunningServer, ServerConfig, start};
use serde_json::Value;

/// Whether python3 can import `modules`; under CI their absence is a failure.
fn python_has(modules: &str, install: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 cannot import {modules}; .ci/run installs {install} from .ci/requirements.txt"
        );
        eprintln!("skipped: python3 cannot import {modules} (pip install {install})");
    }
    ok
}

/// Writes the digits under `dir` (`train/<digit>/*.png`, `test/index.csv`).
pub fn digits(dir: &Path, train: usize, test: usize) -> bool {
    if !python_has("sklearn", "scikit-learn") {
        return false;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/digits_images.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .args(["--train", &train.to_string(), "--test", &test.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "digits_images.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// The digits Model: a small CNN on 16×16 grayscale images, gated on
/// accuracy, the `high` half of the digits and images per second.
pub fn digits_model(dir: &Path) -> ModelSpec {
    let yaml = format!(
        r#"
apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {{name: digits}}
spec:
  task: classification
  data:
    source: {dir}/train
    format: images
    target: digit
    images: {{height: 16, width: 16, channels: grayscale, maxBadImages: 1}}
  architecture:
    type: cnn
    convBlocks: [{{channels: 16}}, {{channels: 32}}]
  training: {{epochs: 12, batchSize: 32, learningRate: 0.005, seed: 1}}
  drift: {{window: 200}}
  gate:
    testSet: {dir}/test/index.csv
    metrics: [{{name: accuracy, min: 0.95}}]
    slices: [{{name: high, where: {{half: high}}, metrics: [{{name: accuracy, min: 0.9}}]}}]
    budgets: {{minImagesPerSecond: 100, imageBatchSize: 32}}
  rollout: {{steps: [{{weight: 50, pause: 0s}}]}}
"#,
        dir = dir.display()
    );
    load_model_config(&yaml).expect("the digits Model parses")
}

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
    let report = eval::evaluate_images(&loaded, &gate, &test, None).unwrap();
    let verdict = driftline::policy::gate::verdict(&gate, &report, None);
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
