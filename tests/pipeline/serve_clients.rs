//! Real third-party clients against `driftline serve` and the gateway:
//! tritonclient (installed by `.ci/run` from `.ci/requirements.txt`) over REST
//! with binary data, REST with JSON, and gRPC, in its default settings.
//!
//! Under `CI=true` a missing client fails these tests; elsewhere they are
//! skipped with a message.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use driftline::api::{FeatureKind, Task};
use driftline::drift::{CategoricalProfile, FeatureProfile, NumericProfile, ReferenceProfile};
use driftline::serve::DecodedBatch;
use driftline::serve::{ModelInfo, ModelOutput, Predictor, RunningServer, ServerConfig, start};
use driftline::serve::{WeightTable, gateway_router};
use serde_json::{Value, json};

/// `good` when alcohol, plus one for a red wine, is over 10 (`cut`): the
/// categorical feature changes the answer, so a client that garbles it fails.
struct WineRule {
    info: ModelInfo,
    cut: f64,
}

impl WineRule {
    fn new(version: &str) -> Self {
        Self::with_cut(version, 10.0)
    }

    fn with_cut(version: &str, cut: f64) -> Self {
        let alcohol: Vec<f64> = (0..200).map(|i| 8.0 + 4.0 * f64::from(i) / 199.0).collect();
        let colors: Vec<&str> = (0..200)
            .map(|i| if i % 2 == 0 { "red" } else { "white" })
            .collect();
        Self {
            info: ModelInfo {
                name: "wine-quality".into(),
                version: version.into(),
                task: Task::Classification,
                classes: vec!["bad".into(), "good".into()],
                target: "quality".into(),
                features: vec![
                    ("alcohol".into(), FeatureKind::Numeric),
                    ("color".into(), FeatureKind::Categorical),
                ],
                image_input: None,
                reference: ReferenceProfile {
                    features: vec![
                        FeatureProfile::Numeric {
                            name: "alcohol".into(),
                            profile: NumericProfile::fit("alcohol", &alcohol, 10).unwrap(),
                        },
                        FeatureProfile::Categorical {
                            name: "color".into(),
                            profile: CategoricalProfile::fit("color", &colors).unwrap(),
                        },
                    ],
                    prediction: FeatureProfile::Categorical {
                        name: "prediction".into(),
                        profile: CategoricalProfile::fit("prediction", &["bad", "good"]).unwrap(),
                    },
                    calibration: None,
                    importance: Vec::new(),
                    embedding: None,
                },
            },
            cut,
        }
    }
}

impl Predictor for WineRule {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn predict(&self, batch: &DecodedBatch) -> Result<ModelOutput, String> {
        let p: Vec<f32> = batch
            .column(0)
            .iter()
            .zip(batch.column(1))
            .map(|(a, c)| match (a.number(), c.text()) {
                (Some(a), Some(c)) => {
                    let score = a + if c == "red" { 1.0 } else { 0.0 } - self.cut;
                    Ok(1.0 / (1.0 + (-score as f32).exp()))
                }
                _ => Err("alcohol must be numeric and color text".to_string()),
            })
            .collect::<Result<_, _>>()?;
        Ok(ModelOutput {
            labels: p
                .iter()
                .map(|p| if *p > 0.5 { "good" } else { "bad" }.to_string())
                .collect(),
            values: vec![],
            probabilities: Some(p.iter().map(|p| vec![1.0 - p, *p]).collect()),
            monitored: None,
        })
    }
}

async fn serve(version: &str) -> RunningServer {
    serve_rule(WineRule::new(version)).await
}

async fn serve_rule(rule: WineRule) -> RunningServer {
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let model: Arc<dyn Predictor> = Arc::new(rule);
    let mut server = start(config, async move { Ok(model) }).await.unwrap();
    server.ready().await.unwrap();
    server
}

/// Whether tritonclient can be imported; missing, `test` is skipped, or
/// fails under CI (`tests/support/require_tool.rs`).
fn tritonclient_installed(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import tritonclient.http, tritonclient.grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    let found = ok.then_some(()).ok_or_else(|| {
        "tritonclient[http,grpc] is not installed (pip install -r .ci/requirements.txt)".to_string()
    });
    crate::require_tool::require_tool(test, found).is_some()
}

/// Shared by every script: the inputs of the two-feature model, in numpy.
const PRELUDE: &str = r#"
import json, sys
import numpy as np
import tritonclient.http as httpclient
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

ALCOHOL = np.array([9.5, 9.5, 10.5, 8.0], dtype=np.float32)
COLOR = np.array([b"red", b"white", b"white", "rouge".encode()], dtype=np.object_)

def inputs(module, binary=True, alcohol=ALCOHOL, color=COLOR):
    a = module.InferInput("alcohol", [len(alcohol)], "FP32")
    c = module.InferInput("color", [len(color)], "BYTES")
    if module is httpclient:
        a.set_data_from_numpy(alcohol, binary_data=binary)
        c.set_data_from_numpy(color, binary_data=binary)
    else:
        a.set_data_from_numpy(alcohol)
        c.set_data_from_numpy(color)
    return [a, c]

def outputs(result):
    return {
        # Binary BYTES come back as bytes, JSON ones as str.
        "predictions": [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("predictions")],
        "probabilities": result.as_numpy("probabilities").round(4).tolist(),
    }

def refused(call):
    try:
        call()
    except InferenceServerException as e:
        return {"status": str(e.status()), "message": e.message()}
    return None
"#;

/// Runs `script` (after [`PRELUDE`]) with `url` as its argument; returns the JSON it printed.
async fn python(script: &str, url: String) -> Value {
    let code = format!("{PRELUDE}\n{script}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", &code, &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("client printed no JSON ({e}):\n{stdout}"))
}

/// The answers the rule gives for `ALCOHOL` and `COLOR`.
fn expected() -> Value {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    let p: Vec<f64> = [0.5, -0.5, 0.5, -2.0].into_iter().map(sigmoid).collect();
    json!({
        "predictions": ["good", "bad", "good", "bad"],
        "probabilities": p.iter().map(|p| vec![round(1.0 - p), round(*p)]).collect::<Vec<_>>(),
    })
}

fn assert_outputs(got: &Value, context: &str) {
    let want = expected();
    assert_eq!(got["predictions"], want["predictions"], "{context}");
    let (got, want) = (
        got["probabilities"].as_array().unwrap(),
        want["probabilities"].as_array().unwrap(),
    );
    for (g, w) in got.iter().zip(want) {
        for j in 0..2 {
            let (g, w) = (g[j].as_f64().unwrap(), w[j].as_f64().unwrap());
            assert!((g - w).abs() < 2e-4, "{context}: {g} vs {w}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_http_binary_and_json_infer_a_model_with_a_categorical_feature() {
    if !tritonclient_installed(
        "tritonclient_http_binary_and_json_infer_a_model_with_a_categorical_feature",
    ) {
        return;
    }
    let s = serve("3").await;
    let got = python(
        r#"
client = httpclient.InferenceServerClient(url=sys.argv[1])
meta = client.get_model_metadata("wine-quality")
binary = client.infer("wine-quality", inputs(httpclient), request_id="rest-bin-1")
json_in = client.infer(
    "wine-quality",
    inputs(httpclient, binary=False),
    outputs=[httpclient.InferRequestedOutput("predictions", binary_data=False),
             httpclient.InferRequestedOutput("probabilities", binary_data=False)],
    request_id="rest-json-1",
)
gzip = client.infer("wine-quality", inputs(httpclient), request_compression_algorithm="gzip")
deflate = client.infer("wine-quality", inputs(httpclient), request_compression_algorithm="deflate")
print(json.dumps({
    "live": client.is_server_live(), "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("wine-quality"),
    "inputs": [(i["name"], i["datatype"]) for i in meta["inputs"]],
    "binary": outputs(binary), "binary_id": binary.get_response()["id"],
    "binary_out": [o.get("parameters", {}).get("binary_data_size", 0) > 0 and "data" not in o
                   for o in binary.get_response()["outputs"]],
    "json": outputs(json_in), "json_id": json_in.get_response()["id"],
    "json_out": ["data" in o for o in json_in.get_response()["outputs"]],
    "gzip": outputs(gzip), "deflate": outputs(deflate),
}))
"#,
        s.addr.to_string(),
    )
    .await;
    assert_eq!(
        (&got["live"], &got["ready"], &got["model_ready"]),
        (&json!(true), &json!(true), &json!(true))
    );
    assert_eq!(
        got["inputs"],
        json!([["alcohol", "FP32"], ["color", "BYTES"]])
    );
    assert_outputs(&got["binary"], "REST, binary in and out");
    assert_eq!(got["binary_id"], "rest-bin-1");
    assert_eq!(got["binary_out"], json!([true, true]));
    assert_outputs(&got["json"], "REST, JSON in and out");
    assert_eq!(got["json_id"], "rest-json-1");
    assert_eq!(got["json_out"], json!([true, true]));
    assert_outputs(&got["gzip"], "REST, gzip body");
    assert_outputs(&got["deflate"], "REST, deflate body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_grpc_infers_with_the_same_answers_and_metadata() {
    if !tritonclient_installed("tritonclient_grpc_infers_with_the_same_answers_and_metadata") {
        return;
    }
    let s = serve("3").await;
    let got = python(
        r#"
client = grpcclient.InferenceServerClient(url=sys.argv[1])
meta = client.get_model_metadata("wine-quality", as_json=True)
server = client.get_server_metadata(as_json=True)
result = client.infer("wine-quality", inputs(grpcclient), request_id="grpc-1")
gzip = client.infer("wine-quality", inputs(grpcclient), compression_algorithm="gzip")
deflate = client.infer("wine-quality", inputs(grpcclient), compression_algorithm="deflate")
print(json.dumps({
    "gzip": outputs(gzip), "deflate": outputs(deflate),
    "live": client.is_server_live(), "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("wine-quality", "3"),
    "server": server["name"], "extensions": server.get("extensions", []),
    "versions": meta["versions"],
    "inputs": [(i["name"], i["datatype"]) for i in meta["inputs"]],
    "outputs": outputs(result), "id": result.get_response().id,
    "model_version": result.get_response().model_version,
}))
"#,
        s.addr.to_string(),
    )
    .await;
    assert_eq!(
        (&got["live"], &got["ready"], &got["model_ready"]),
        (&json!(true), &json!(true), &json!(true))
    );
    assert_eq!(got["server"], "driftline");
    assert_eq!(got["extensions"], json!(["binary_tensor_data"]));
    assert_eq!(got["versions"], json!(["3"]));
    assert_eq!(
        got["inputs"],
        json!([["alcohol", "FP32"], ["color", "BYTES"]])
    );
    assert_outputs(&got["outputs"], "gRPC");
    assert_outputs(&got["gzip"], "gRPC, gzip message");
    assert_outputs(&got["deflate"], "gRPC, deflate message");
    assert_eq!(got["id"], "grpc-1");
    assert_eq!(got["model_version"], "3");
    // The gRPC rows (three calls of four) landed in the same metrics as REST's would.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("http://{}/metrics", s.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("driftline_serve_rows_total 12"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_bad_requests_get_400_and_invalid_argument_and_the_server_stays_up() {
    if !tritonclient_installed(
        "tritonclient_bad_requests_get_400_and_invalid_argument_and_the_server_stays_up",
    ) {
        return;
    }
    let s = serve("3").await;
    let got = python(
        r#"
url = sys.argv[1]
http = httpclient.InferenceServerClient(url=url)
grpc = grpcclient.InferenceServerClient(url=url)

def short(module, binary=True):
    # Two values sent for a declared shape of [4].
    a = module.InferInput("alcohol", [2], "FP32")
    if module is httpclient:
        a.set_data_from_numpy(ALCOHOL[:2], binary_data=binary)
    else:
        a.set_data_from_numpy(ALCOHOL[:2])
    a.set_shape([4])
    return [a, inputs(module, binary)[1]]

def numeric_color(module):
    c = module.InferInput("color", [4], "FP32")
    c.set_data_from_numpy(ALCOHOL)
    return [inputs(module)[0], c]

print(json.dumps({
    "http_short": refused(lambda: http.infer("wine-quality", short(httpclient))),
    "http_json_short": refused(lambda: http.infer("wine-quality", short(httpclient, binary=False))),
    "http_color": refused(lambda: http.infer("wine-quality", numeric_color(httpclient))),
    "http_missing": refused(lambda: http.infer("wine-quality", inputs(httpclient)[:1])),
    "http_model": refused(lambda: http.infer("beer", inputs(httpclient))),
    "grpc_short": refused(lambda: grpc.infer("wine-quality", short(grpcclient))),
    "grpc_color": refused(lambda: grpc.infer("wine-quality", numeric_color(grpcclient))),
    "grpc_model": refused(lambda: grpc.infer("beer", inputs(grpcclient))),
    "http_after": outputs(http.infer("wine-quality", inputs(httpclient))),
    "grpc_after": outputs(grpc.infer("wine-quality", inputs(grpcclient))),
}))
"#,
        s.addr.to_string(),
    )
    .await;
    let refusal = |key: &str, status: &str, needle: &str| {
        let r = &got[key];
        assert_eq!(r["status"], status, "{key}: {r}");
        let message = r["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{key}: `{message}` lacks `{needle}`"
        );
    };
    let short = "input `alcohol`: shape [4] holds 4 values but data has 2";
    refusal("http_short", "400", short);
    refusal("http_json_short", "400", short);
    refusal(
        "http_color",
        "400",
        "input `color`: datatype FP32 does not fit feature `color`",
    );
    refusal("http_missing", "400", "feature `color` missing");
    refusal("http_model", "404", "`beer` is not served here");
    refusal("grpc_short", "StatusCode.INVALID_ARGUMENT", short);
    refusal("grpc_color", "StatusCode.INVALID_ARGUMENT", "send BYTES");
    refusal(
        "grpc_model",
        "StatusCode.NOT_FOUND",
        "`beer` is not served here",
    );
    assert_outputs(&got["http_after"], "REST after the errors");
    assert_outputs(&got["grpc_after"], "gRPC after the errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_tritonclient_grpc_and_rest_by_weight() {
    if !tritonclient_installed("the_gateway_routes_tritonclient_grpc_and_rest_by_weight") {
        return;
    }
    let (v3, v4) = (serve("3").await, serve("4").await);
    let table = WeightTable {
        backends: vec![
            driftline::serve::Backend {
                version: "3".into(),
                url: format!("http://{}", v3.addr),
                weight: 50,
            },
            driftline::serve::Backend {
                version: "4".into(),
                url: format!("http://{}", v4.addr),
                weight: 50,
            },
        ],
    };
    let (router, weights) = gateway_router(table.clone(), Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let script = r#"
url = sys.argv[1]
grpc = grpcclient.InferenceServerClient(url=url)
http = httpclient.InferenceServerClient(url=url)
versions = {"grpc": [], "rest": []}
for _ in range(40):
    result = grpc.infer("wine-quality", inputs(grpcclient))
    assert outputs(result)["predictions"] == ["good", "bad", "good", "bad"]
    versions["grpc"].append(result.get_response().model_version)
    versions["rest"].append(http.infer("wine-quality", inputs(httpclient)).get_response()["model_version"])
versions["ready"] = grpc.is_model_ready("wine-quality")
print(json.dumps(versions))
"#;
    let got = python(script, gateway.to_string()).await;
    assert_eq!(got["ready"], true);
    for front in ["grpc", "rest"] {
        let seen: Vec<&str> = got[front]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // 50/50 over 40 calls: each version answers some (all-one-side is 2^-39).
        let threes = seen.iter().filter(|v| **v == "3").count();
        assert!(threes > 0 && threes < 40, "{front}: {seen:?}");
        assert_eq!(seen.iter().filter(|v| **v == "4").count(), 40 - threes);
    }
    // All weight on version 4: every gRPC call goes there.
    let mut only_v4 = table;
    only_v4.backends[0].weight = 0;
    weights.set(only_v4);
    let got = python(script, gateway.to_string()).await;
    assert!(
        got["grpc"].as_array().unwrap().iter().all(|v| v == "4"),
        "{got}"
    );
}

/// #20's shadow stage for clients that do not speak JSON: tritonclient over
/// gRPC, over REST with binary tensors, gzipped, and with JSON, through the
/// gateway while a candidate is in shadow. Every call is answered by the
/// champion; each is mirrored and paired, whatever its wire, into the same
/// flip matrix and slices; and the disagreements file holds exactly the
/// rows the two versions disagreed on, with the client's ids and inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_binary_gzip_and_json_calls_are_mirrored_and_paired_in_shadow() {
    use driftline::api::scrape::parse_shadow_tallies;
    use driftline::serve::{GatewayConfig, Mirror};
    if !tritonclient_installed("grpc_binary_gzip_and_json_calls_are_mirrored_and_paired_in_shadow")
    {
        return;
    }
    // The candidate asks for 0.5 more: 10.2 white and 9.3 red flip to bad.
    let (champion, candidate) = (
        serve("3").await,
        serve_rule(WineRule::with_cut("4", 10.5)).await,
    );
    let table = WeightTable {
        backends: vec![driftline::serve::Backend {
            version: "3".into(),
            url: format!("http://{}", champion.addr),
            weight: 100,
        }],
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().display().to_string();
    let config = GatewayConfig {
        shadow_root: Some(root.clone()),
        ..Default::default()
    };
    let (router, handle) = gateway_router(table, config);
    handle.set_mirror(Some(Mirror {
        version: "v4".into(),
        url: format!("http://{}", candidate.addr),
        sample: 1.0,
        tolerance: 0.0,
        slices: [(
            "red".to_string(),
            [("color".to_string(), "red".to_string())].into(),
        )]
        .into(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let got = python(
        r#"
url = sys.argv[1]
grpc = grpcclient.InferenceServerClient(url=url)
http = httpclient.InferenceServerClient(url=url)
A = np.array([9.5, 10.2, 10.7, 9.3], dtype=np.float32)
C = np.array([b"white", b"white", b"white", b"red"], dtype=np.object_)
def shifted(module, binary=True):
    return inputs(module, binary, alcohol=A, color=C)
json_out = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("predictions", "probabilities")]
answers = []
for i in range(8):
    answers.append(grpc.infer("wine-quality", shifted(grpcclient), request_id=f"grpc-{i}"))
    answers.append(http.infer("wine-quality", shifted(httpclient), request_id=f"bin-{i}"))
    answers.append(http.infer("wine-quality", shifted(httpclient), request_id=f"gzip-{i}",
                              request_compression_algorithm="gzip"))
    answers.append(http.infer("wine-quality", shifted(httpclient, binary=False), outputs=json_out,
                              request_id=f"json-{i}"))
print(json.dumps({"answers": [outputs(a)["predictions"] for a in answers]}))
"#,
        gateway.to_string(),
    )
    .await;
    let answers = got["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 32);
    for a in answers {
        assert_eq!(
            a,
            &json!(["bad", "good", "good", "good"]),
            "the champion answers"
        );
    }
    // Every call is paired, whatever its wire.
    let mut tally = driftline::api::ShadowTally::default();
    for _ in 0..500 {
        let text = crate::serve_protocol::get_text(&format!("http://{gateway}/metrics")).await;
        tally = parse_shadow_tallies(&text).remove("v4").unwrap_or_default();
        if tally.paired + tally.shadow_errors + tally.dropped >= 32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (tally.paired, tally.rows, tally.shadow_errors, tally.dropped),
        (32, 128, 0, 0),
        "{tally:?}"
    );
    assert_eq!(tally.flips["good"]["bad"], 64, "{:?}", tally.flips);
    assert_eq!(tally.flips["good"]["good"], 32, "{:?}", tally.flips);
    assert_eq!(tally.flips["bad"]["bad"], 32, "{:?}", tally.flips);
    let red = &tally.slices["red"];
    assert_eq!((red.rows, red.disagreements), (32, 32));
    // Exactly the disagreeing rows are kept: two a call, with its id and inputs.
    let file = driftline::api::names::disagreements_uri(&root, "v4");
    let mut rows: Vec<Value> = Vec::new();
    for _ in 0..500 {
        rows = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if rows.len() >= 64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows.len(), 64);
    let mut ids = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for r in &rows {
        assert_eq!(
            (&r["champion"], &r["shadow"]),
            (&json!("good"), &json!("bad")),
            "{r}"
        );
        let (alcohol, color) = (
            r["inputs"]["alcohol"].as_f64().unwrap(),
            &r["inputs"]["color"],
        );
        match r["row"].as_u64().unwrap() {
            1 => assert!((alcohol - 10.2).abs() < 1e-5 && color == "white", "{r}"),
            3 => assert!((alcohol - 9.3).abs() < 1e-5 && color == "red", "{r}"),
            other => panic!("row {other} agreed: {r}"),
        }
        ids.entry(r["id"].as_str().unwrap().to_string())
            .or_default()
            .push(r["row"].as_u64().unwrap());
    }
    assert_eq!(ids.len(), 32, "{ids:?}");
    for wire in ["grpc", "bin", "gzip", "json"] {
        for i in 0..8 {
            let mut got = ids[&format!("{wire}-{i}")].clone();
            got.sort();
            assert_eq!(got, [1, 3], "{wire}-{i}");
        }
    }
}
