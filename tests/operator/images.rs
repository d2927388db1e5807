//! Done-when 1 of issue 22 on the embedded cluster: an image Model
//! (scikit-learn's digits as 16×16 PNG files under a local path the pods
//! read, as the other operator tests' data) is applied to the operator,
//! trained in a Job, gated on accuracy, a slice and images per second,
//! promoted and served through its gateway Service; tritonclient sends the
//! test set's PNG bytes through that Service and gets the right class for
//! at least 95 % of them.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use driftline::api::{StartKind, VersionPhase, names};
use driftline::registry::{RegistryWriter, WriterOptions};
use serde_json::Value;

use crate::digits::{digits, digits_model, python_has};
use crate::operator_support::*;

const MODEL: &str = "digits";

/// Every test image through the gateway as PNG bytes (binary REST, 25 a
/// request): how many came back with their own digit.
const CLIENT: &str = r#"
import csv, json, os, sys
import numpy as np
import tritonclient.http as httpclient

url, root = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(root, "index.csv"))))
files = [open(os.path.join(root, r["path"]), "rb").read() for r in rows]
truth = [r["digit"] for r in rows]
http = httpclient.InferenceServerClient(url=url)
correct = 0
for start in range(0, len(files), 25):
    batch = files[start:start + 25]
    x = httpclient.InferInput("image", [len(batch)], "BYTES")
    x.set_data_from_numpy(np.array(batch, dtype=np.object_), binary_data=True)
    result = http.infer("digits", [x])
    got = [p.decode() if isinstance(p, bytes) else p for p in result.as_numpy("predictions")]
    correct += sum(g == w for g, w in zip(got, truth[start:start + 25]))
meta = http.get_model_metadata("digits")
print(json.dumps({"total": len(files), "correct": correct, "inputs": meta["inputs"]}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_model_trains_in_a_job_passes_its_gate_and_answers_png_bytes_through_its_gateway()
{
    let test =
        "an_image_model_trains_in_a_job_passes_its_gate_and_answers_png_bytes_through_its_gateway";
    let data = tempfile::tempdir().expect("temp dir");
    if !digits(data.path(), 900, 300)
        || !python_has(test, "tritonclient.http", "tritonclient[http,grpc]")
    {
        return;
    }
    let mut h = Harness::start_idle(190, 1.0).await;
    let registry_url = format!("sqlite://{}", h.dir.path().join("registry.db").display());
    let writer = Arc::new(
        RegistryWriter::start(&registry_url, WriterOptions::default()).expect("registry URL"),
    );
    h.registry = Some(writer.clone());
    h.start_operator();
    // The Model's defaults as a user writes them: the data check is on for
    // tables and off for image sets (ModelSpec::data_check).
    let mut spec = digits_model(data.path());
    spec.serving.replicas = 1;
    spec.retrain = None;
    h.apply(MODEL, spec).await;
    h.wait_champion(MODEL, 1).await;

    // Trained in a Job, gated on every check, and its start said in status.
    let v1 = h
        .versions()
        .get(&names::version_object(MODEL, 1))
        .await
        .expect("v1");
    let status = v1.status.expect("v1 status");
    assert_eq!(status.phase, VersionPhase::Champion, "{status:?}");
    let gate = status.gate.as_ref().expect("v1's gate");
    assert!(gate.passed, "{gate:?}");
    assert_eq!(gate.summary, "passed 3/3", "accuracy, the slice, images/s");
    let start = status.start.as_ref().expect("v1's start lineage");
    assert_eq!(
        (start.from, start.parent.as_deref()),
        (StartKind::Cold, None)
    );
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(h.client.clone(), &h.ns);
    let job = jobs
        .get(&names::training_job(MODEL, 1))
        .await
        .expect("the training Job");
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
    // `driftline history` says so too, from the registry.
    tokio::time::timeout(Duration::from_secs(60), writer.flush())
        .await
        .expect("the registry rows are written");
    let (v1_line, shown) = history_line(MODEL, &h.ns, &registry_url, "v1");
    assert!(
        v1_line.contains("passed 3/3") && v1_line.contains(" cold "),
        "{shown}"
    );

    // Served through the gateway Service: tritonclient sends PNG bytes.
    let gateway = h.service_url(MODEL).await;
    wait_serving(&h.http(), &gateway, MODEL).await;
    let address = gateway.trim_start_matches("http://").to_string();
    let root = data.path().join("test").display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", CLIENT, &address, &root])
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("the client ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_str(stdout.lines().last().expect("a line")).expect("JSON");
    assert_eq!(got["total"], 300, "{got}");
    let share = got["correct"].as_f64().expect("a count") / 300.0;
    assert!(share >= 0.95, "{share} of the test images right: {got}");
    assert_eq!(got["inputs"][0]["name"], "image", "{got}");
    assert_eq!(got["inputs"][0]["datatype"], "BYTES", "{got}");
    h.shutdown().await;
}
