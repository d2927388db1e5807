//! Conformance of `driftline serve` to the Open Inference Protocol v2, its
//! error answers, overload behaviour, drift and feedback endpoints.
//!
//! The model here is a small rule (`good` when alcohol > 10) so that every
//! expected answer is known exactly; tests with trained artifacts live in
//! `serve_artifact.rs`.

use std::sync::Arc;
use std::time::Duration;

use driftline::api::DriftSpec;
use driftline::api::{FeatureKind, Task};
use driftline::drift::{
    CategoricalProfile, DriftConfig, FeatureProfile, NumericProfile, ReferenceProfile,
};
use driftline::serve::DecodedBatch;
use driftline::serve::FeedbackConfig;
use driftline::serve::StoreFeedbackSink;
use driftline::serve::{ModelInfo, ModelOutput, Predictor, RunningServer, ServerConfig, start};
use serde_json::{Value, json};

use crate::json_logs::{CapturedLogs, in_child_process};

/// `good` when alcohol > 10, with probability sigmoid(alcohol - 10); sleeps
/// `delay` per call so overload and timeouts can be provoked.
struct AlcoholRule {
    info: ModelInfo,
    delay: Duration,
}

impl AlcoholRule {
    fn new(delay: Duration) -> Self {
        let alcohol: Vec<f64> = (0..1000).map(|i| 8.0 + 4.0 * i as f64 / 999.0).collect();
        let colors: Vec<&str> = (0..1000)
            .map(|i| if i % 2 == 0 { "red" } else { "white" })
            .collect();
        let labels: Vec<&str> = alcohol
            .iter()
            .map(|a| if *a > 10.0 { "good" } else { "bad" })
            .collect();
        Self {
            info: ModelInfo {
                name: "wine-quality".into(),
                version: "3".into(),
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
                        profile: CategoricalProfile::fit("prediction", &labels).unwrap(),
                    },
                    calibration: None,
                    importance: Vec::new(),
                    embedding: None,
                },
            },
            delay,
        }
    }
}

impl Predictor for AlcoholRule {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn predict(&self, batch: &DecodedBatch) -> Result<ModelOutput, String> {
        std::thread::sleep(self.delay);
        let alcohol: Vec<f64> = batch
            .column(0)
            .iter()
            .map(|v| v.number().ok_or("alcohol must be numeric"))
            .collect::<Result<_, _>>()?;
        // A model that fails on some inputs: the server's 5xx path.
        if alcohol.contains(&-999.0) {
            return Err("the model cannot score alcohol -999".into());
        }
        let p: Vec<f32> = alcohol
            .iter()
            .map(|a| 1.0 / (1.0 + (-(a - 10.0) as f32).exp()))
            .collect();
        Ok(ModelOutput {
            labels: p
                .iter()
                .map(|p| {
                    if *p > 0.5 {
                        "good".to_string()
                    } else {
                        "bad".to_string()
                    }
                })
                .collect(),
            values: vec![],
            probabilities: Some(p.iter().map(|p| vec![1.0 - p, *p]).collect()),
            monitored: None,
        })
    }
}

/// A client for the tests' loopback servers (rustls needs its provider first).
pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The text a loopback server answers a GET of `url` with (its `/metrics`).
pub(crate) async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn serve_with(config: ServerConfig, delay: Duration) -> RunningServer {
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let mut server = start(config, async move {
        let model: Arc<dyn Predictor> = Arc::new(AlcoholRule::new(delay));
        Ok(model)
    })
    .await
    .unwrap();
    server.ready().await.unwrap();
    server
}

async fn serve() -> RunningServer {
    serve_with(ServerConfig::default(), Duration::ZERO).await
}

fn url(server: &RunningServer, path: &str) -> String {
    format!("http://{}{}", server.addr, path)
}

async fn get(server: &RunningServer, path: &str) -> (u16, Value) {
    let r = client().get(url(server, path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(server: &RunningServer, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = client()
        .post(url(server, path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn per_feature(alcohol: &[f64], color: &[&str]) -> Value {
    json!({"inputs": [
        {"name": "alcohol", "shape": [alcohol.len()], "datatype": "FP32", "data": alcohol},
        {"name": "color", "shape": [color.len()], "datatype": "BYTES", "data": color},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metadata_endpoints_answer_as_the_protocol_says() {
    let s = serve().await;
    assert_eq!(
        get(&s, "/v2/health/live").await,
        (200, json!({"live": true}))
    );
    assert_eq!(
        get(&s, "/v2/health/ready").await,
        (200, json!({"ready": true}))
    );
    let (code, meta) = get(&s, "/v2").await;
    assert_eq!(code, 200);
    assert_eq!(meta["name"], "driftline");
    assert!(meta["version"].is_string() && meta["extensions"].is_array());
    assert_eq!(
        get(&s, "/v2/models/wine-quality/ready").await,
        (200, json!({"name": "wine-quality", "ready": true}))
    );
    assert_eq!(
        get(&s, "/v2/models/wine-quality/versions/3/ready").await.0,
        200
    );
    let expected = json!({
        "name": "wine-quality", "versions": ["3"], "platform": "driftline",
        "inputs": [{"name": "alcohol", "datatype": "FP32", "shape": [-1]}, {"name": "color", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}, {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
    });
    assert_eq!(
        get(&s, "/v2/models/wine-quality").await,
        (200, expected.clone())
    );
    assert_eq!(
        get(&s, "/v2/models/wine-quality/versions/3").await,
        (200, expected)
    );
    let (code, body) = get(&s, "/v2/models/beer").await;
    assert_eq!(code, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`beer` is not served here"),
        "{body}"
    );
    let (code, body) = get(&s, "/v2/models/wine-quality/versions/9/ready").await;
    assert_eq!(code, 404);
    assert!(
        body["error"].as_str().unwrap().contains("no version `9`"),
        "{body}"
    );
    let (code, body) = get(&s, "/v2/nothing").await;
    assert_eq!(code, 404);
    assert!(body["error"].is_string());
    assert_eq!(
        client()
            .get(url(&s, "/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(url(&s, "/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_model_and_its_warm_up() {
    let (release, loaded) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let mut server = start(config, async move {
        let _ = loaded.await;
        let model: Arc<dyn Predictor> = Arc::new(AlcoholRule::new(Duration::ZERO));
        Ok(model)
    })
    .await
    .unwrap();
    assert_eq!(
        client()
            .get(url(&server, "/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        get(&server, "/v2/health/ready").await,
        (503, json!({"ready": false}))
    );
    assert_eq!(get(&server, "/v2/health/live").await.0, 200);
    let (code, body) = post(
        &server,
        "/v2/models/wine-quality/infer",
        per_feature(&[11.0], &["red"]).to_string(),
    )
    .await;
    assert_eq!(code, 503);
    assert!(body["error"].as_str().unwrap().contains("not ready"));
    release.send(()).unwrap();
    server.ready().await.unwrap();
    assert_eq!(
        client()
            .get(url(&server, "/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_answers_with_predictions_probabilities_and_the_request_id() {
    let s = serve().await;
    let mut body = per_feature(&[11.0, 9.0], &["red", "white"]);
    body["id"] = json!("req-42");
    let (code, r) = post(&s, "/v2/models/wine-quality/infer", body.to_string()).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["model_name"], "wine-quality");
    assert_eq!(r["model_version"], "3");
    assert_eq!(r["id"], "req-42");
    assert_eq!(
        r["outputs"][0],
        json!({"name": "predictions", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]})
    );
    assert_eq!(r["outputs"][1]["name"], "probabilities");
    assert_eq!(r["outputs"][1]["shape"], json!([2, 2]));
    assert_eq!(r["outputs"][1]["data"].as_array().unwrap().len(), 4);
    // Without an id the server makes one up, so feedback can still refer to
    // it; the id also comes back as a header, the same in both places.
    let answer = client()
        .post(url(&s, "/v2/models/wine-quality/versions/3/infer"))
        .body(per_feature(&[11.0], &["red"]).to_string())
        .send()
        .await
        .unwrap();
    let header = answer
        .headers()
        .get(driftline::api::routes::INFERENCE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let r: Value = answer.json().await.unwrap();
    assert!(r["id"].as_str().is_some_and(|id| id.len() >= 16), "{r}");
    assert_eq!(header.as_deref(), r["id"].as_str());
    // Only the requested outputs.
    let mut body = per_feature(&[11.0], &["red"]);
    body["outputs"] = json!([{"name": "probabilities"}]);
    let (_, r) = post(&s, "/v2/models/wine-quality/infer", body.to_string()).await;
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(r["outputs"][0]["name"], "probabilities");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_answers_the_same_through_the_front_door_and_the_router() {
    // Plain inference paths take the server's fast path; one the router
    // must percent-decode goes through the router. Same model, same answer.
    let s = serve().await;
    let mut body = per_feature(&[11.0, 9.0], &["red", "white"]);
    body["id"] = json!("same-answer");
    let body = body.to_string();
    let (code, fast) = post(&s, "/v2/models/wine-quality/infer", body.clone()).await;
    assert_eq!(code, 200, "{fast}");
    for routed in [
        "/v2/models/wine%2Dquality/infer",
        "/v2/models/wine%2dquality/versions/%33/infer",
    ] {
        let (code, r) = post(&s, routed, body.clone()).await;
        assert_eq!(code, 200, "{routed}: {r}");
        assert_eq!(r, fast, "{routed}");
    }
    let (code, fast) = post(&s, "/v2/models/wine-quality/versions/3/infer", body.clone()).await;
    assert_eq!((code, &fast["id"]), (200, &json!("same-answer")));
    // Both ways name an unknown model or version the same.
    let (code, r) = post(&s, "/v2/models/other/infer", body.clone()).await;
    let (routed_code, routed) = post(&s, "/v2/models/%6Fther/infer", body.clone()).await;
    assert_eq!((code, &r), (routed_code, &routed));
    assert_eq!(code, 404, "{r}");
    let (code, r) = post(&s, "/v2/models/wine-quality/versions/9/infer", body.clone()).await;
    assert_eq!(code, 404, "{r}");
    // Other methods on an inference path are still the router's 405, and
    // a path one segment off is its 404.
    let r = client()
        .get(url(&s, "/v2/models/wine-quality/infer"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let (code, _) = post(&s, "/v2/models/wine-quality/infer/x", body).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_inference_equals_row_by_row() {
    let s = serve().await;
    let alcohol: Vec<f64> = (0..32).map(|i| 8.0 + i as f64 / 8.0).collect();
    let colors: Vec<&str> = (0..32)
        .map(|i| if i % 3 == 0 { "red" } else { "white" })
        .collect();
    let (_, batch) = post(
        &s,
        "/v2/models/wine-quality/infer",
        per_feature(&alcohol, &colors).to_string(),
    )
    .await;
    for (i, (a, c)) in alcohol.iter().zip(&colors).enumerate() {
        let (_, one) = post(
            &s,
            "/v2/models/wine-quality/infer",
            per_feature(&[*a], &[c]).to_string(),
        )
        .await;
        assert_eq!(one["outputs"][0]["data"][0], batch["outputs"][0]["data"][i]);
        assert_eq!(
            one["outputs"][1]["data"][0],
            batch["outputs"][1]["data"][2 * i]
        );
        assert_eq!(
            one["outputs"][1]["data"][1],
            batch["outputs"][1]["data"][2 * i + 1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_with_a_message_naming_the_problem() {
    let s = serve().await;
    let infer = "/v2/models/wine-quality/infer";
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "not valid JSON"),
        ("[]".into(), "not valid JSON"),
        (json!({"inputs": "x"}).to_string(), "not valid JSON"),
        (json!({"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP32", "data": [1]}]}).to_string(), "feature `color` missing"),
        (json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).to_string(), "`color` is categorical"),
        (
            json!({"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP32", "data": [1]}, {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}).to_string(),
            "unknown input `colour`",
        ),
        (
            json!({"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP32", "data": ["ten"]}, {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}).to_string(),
            "data holds strings but datatype is FP32",
        ),
        (
            json!({"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP32", "data": [1e300]}, {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}).to_string(),
            "not a finite FP32",
        ),
        (
            r#"{"inputs":[{"name":"alcohol","shape":[1],"datatype":"FP64","data":[1e999]},{"name":"color","shape":[1],"datatype":"BYTES","data":["red"]}]}"#.into(),
            "not valid JSON",
        ),
        (
            json!({"inputs": [{"name": "alcohol", "shape": [3], "datatype": "FP32", "data": [1, 2]}, {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}).to_string(),
            "holds 3 values but data has 2",
        ),
        ({
            let mut b = per_feature(&[1.0], &["red"]);
            b["outputs"] = json!([{"name": "logits"}]);
            b.to_string()
        }, "unknown output `logits`"),
    ];
    for (body, needle) in cases {
        let (code, r) = post(&s, infer, body.clone()).await;
        assert_eq!(code, 400, "{body} → {r}");
        let message = r["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message for {body}: {r}"));
        assert!(
            message.contains(needle),
            "{body}: `{message}` lacks `{needle}`"
        );
    }
    let (code, r) = post(
        &s,
        "/v2/models/beer/infer",
        per_feature(&[1.0], &["red"]).to_string(),
    )
    .await;
    assert_eq!(code, 404);
    assert!(r["error"].is_string());
    let (code, r) = post(
        &s,
        "/v2/models/wine-quality/versions/2/infer",
        per_feature(&[1.0], &["red"]).to_string(),
    )
    .await;
    assert_eq!(code, 404);
    assert!(r["error"].as_str().unwrap().contains("no version `2`"));
    let r = client().get(url(&s, infer)).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_4xx_and_the_server_stays_up() {
    let s = serve().await;
    let infer = "/v2/models/wine-quality/infer";
    let deep = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":{}1{}}}]}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(5000), "}".repeat(5000));
    let huge_number = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,2],"datatype":"FP32","data":[1{},2]}}]}}"#,
        "0".repeat(5000)
    );
    let huge_shape = r#"{"inputs":[{"name":"x","shape":[9223372036854775807,9223372036854775807],"datatype":"FP32","data":[1]}]}"#.to_string();
    let mut bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        deep_object.into_bytes(),
        huge_number.into_bytes(),
        huge_shape.into_bytes(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"".to_vec(),
        b"null".to_vec(),
        br#"{"inputs":[{"name":1,"shape":"x","datatype":[],"data":{}}]}"#.to_vec(),
        br#"{"id":7,"inputs":[]}"#.to_vec(),
        br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[true,1]}]}"#.to_vec(),
    ];
    // Seeded random mutations of a valid body.
    let valid = per_feature(&[10.5, 9.5], &["red", "white"])
        .to_string()
        .into_bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let mut b = valid.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state as usize) % b.len();
            b[i] = (state >> 32) as u8;
        }
        bodies.push(b);
    }
    for body in bodies {
        let (code, r) = post(&s, infer, body.clone()).await;
        assert!(
            code == 200 || (400..500).contains(&code),
            "{code} for {:?}",
            String::from_utf8_lossy(&body)
        );
        if code != 200 {
            assert!(
                r["error"].as_str().is_some_and(|m| !m.is_empty()),
                "{code} without message: {r}"
            );
        }
    }
    assert_eq!(get(&s, "/v2/health/live").await.0, 200);
    let (code, _) = post(&s, infer, valid).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let s = serve_with(
        ServerConfig {
            body_limit: 1024,
            ..ServerConfig::default()
        },
        Duration::ZERO,
    )
    .await;
    let alcohol = [10.0; 500];
    let colors = ["red"; 500];
    let (code, r) = post(
        &s,
        "/v2/models/wine-quality/infer",
        per_feature(&alcohol, &colors).to_string(),
    )
    .await;
    assert_eq!(code, 413);
    assert!(r["error"].as_str().unwrap().contains("1024 bytes"), "{r}");
    // A chunked body without a length is cut off at the limit as well.
    let chunks = futures::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 100])));
    let r = client()
        .post(url(&s, "/v2/models/wine-quality/infer"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    // The server may answer 413 and close before the client finished sending (a broken pipe on the client side).
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    assert_eq!(get(&s, "/v2/health/live").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saturation_answers_503_with_retry_after_and_slow_inference_times_out() {
    let s = serve_with(
        ServerConfig {
            max_concurrency: 1,
            request_timeout: Duration::from_millis(150),
            ..ServerConfig::default()
        },
        Duration::from_millis(400),
    )
    .await;
    let body = per_feature(&[10.0; 100], &["red"; 100]).to_string();
    // Five requests at once: one takes the only slot and runs past the timeout, the rest are turned away.
    let answers = futures::future::join_all((0..5).map(|_| {
        let (u, b) = (url(&s, "/v2/models/wine-quality/infer"), body.clone());
        async move { client().post(u).body(b).send().await.unwrap() }
    }))
    .await;
    let mut busy = 0;
    let mut timed_out = 0;
    for r in answers {
        match r.status().as_u16() {
            503 => {
                busy += 1;
                assert_eq!(r.headers()["retry-after"], "1");
                let message: Value = r.json().await.unwrap();
                assert!(
                    message["error"]
                        .as_str()
                        .unwrap()
                        .contains("inference slots"),
                    "{message}"
                );
            }
            504 => {
                timed_out += 1;
                let message: Value = r.json().await.unwrap();
                assert!(
                    message["error"]
                        .as_str()
                        .unwrap()
                        .contains("did not finish within"),
                    "{message}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        busy >= 1,
        "no request was turned away while the slot was taken"
    );
    assert!(timed_out >= 1, "the slow request did not time out");
}

/// Stopping a server (dropping it, as `driftline up` does with a replaced
/// version) finishes the answer in flight, then closes that connection, and
/// accepts no new one: a canary switch loses no request already taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_finishes_the_answer_in_flight_and_accepts_no_more() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = serve_with(ServerConfig::default(), Duration::from_millis(400)).await;
    let addr = s.addr;
    // Over 64 rows: the model runs on the blocking pool, the async threads stay free.
    let body = per_feature(&[11.0; 100], &["red"; 100]).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // HTTP/1.1 keeps the connection open after the answer unless the server ends it.
    let request = format!(
        "POST /v2/models/wine-quality/infer HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    let mut answer = Vec::new();
    // Read to the end: the connection must close once the answer is out.
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the connection stayed open after the answer")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let json: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(json["outputs"][0]["shape"], json!([100]), "{json}");
    // The listener is gone: a new connection is refused.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the stopped server still accepts connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_errors_rows_classes_and_drift() {
    let config = ServerConfig {
        drift: DriftConfig::from(DriftSpec {
            window: 4,
            ..Default::default()
        }),
        ..ServerConfig::default()
    };
    let s = serve_with(config, Duration::ZERO).await;
    post(
        &s,
        "/v2/models/wine-quality/infer",
        per_feature(&[11.0, 12.0, 9.0, 11.5], &["red"; 4]).to_string(),
    )
    .await;
    post(&s, "/v2/models/wine-quality/infer", "{").await;
    let text = get_text(&url(&s, "/metrics")).await;
    for needle in [
        r#"driftline_serve_requests_total{endpoint="infer",code="200"} 1"#,
        r#"driftline_serve_requests_total{endpoint="infer",code="400"} 1"#,
        r#"driftline_serve_errors_total{code="400"} 1"#,
        "driftline_serve_rows_total 4",
        r#"driftline_serve_predictions_total{class="good"} 3"#,
        r#"driftline_serve_predictions_total{class="bad"} 1"#,
        "driftline_serve_infer_latency_seconds_bucket",
        r#"driftline_serve_drift{feature="alcohol"}"#,
        r#"driftline_serve_drifted{feature="color"} 1"#,
        "driftline_serve_drift_windows_total 1",
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_endpoint_reports_statistics_and_raw_counts() {
    let config = ServerConfig {
        drift: DriftConfig::from(DriftSpec {
            window: 200,
            ..Default::default()
        }),
        ..ServerConfig::default()
    };
    let s = serve_with(config, Duration::ZERO).await;
    // Alcohol shifted far above the reference range; colors as in training.
    let alcohol: Vec<f64> = (0..200).map(|i| 13.0 + i as f64 / 100.0).collect();
    let colors: Vec<&str> = (0..200)
        .map(|i| if i % 2 == 0 { "red" } else { "white" })
        .collect();
    post(
        &s,
        "/v2/models/wine-quality/infer",
        per_feature(&alcohol[..150], &colors[..150]).to_string(),
    )
    .await;
    let (code, d) = get(&s, "/v2/models/wine-quality/drift").await;
    assert_eq!(code, 200);
    assert_eq!(d["modelName"], "wine-quality");
    assert_eq!(d["current"]["rows"], 150);
    assert_eq!(d["current"]["complete"], false);
    assert_eq!(d["recent"], json!([]));
    post(
        &s,
        "/v2/models/wine-quality/infer",
        per_feature(&alcohol[150..], &colors[150..]).to_string(),
    )
    .await;
    let (_, d) = get(&s, "/v2/models/wine-quality/drift").await;
    let window = &d["recent"][0];
    assert_eq!(window["complete"], true);
    assert_eq!(window["driftedFeatures"], json!(["alcohol"]));
    let alcohol = &window["features"][0];
    assert_eq!(alcohol["name"], "alcohol");
    assert_eq!(alcohol["statistic"], "jensenShannon");
    assert_eq!(alcohol["unseenShare"], 1.0);
    for key in [
        "jensenShannon",
        "psi",
        "ks",
        "wasserstein",
        "lInfinity",
        "chiSquare",
        "pValue",
        "adjustedPValue",
    ] {
        assert!(alcohol[key].is_number(), "{key} missing: {alcohol}");
    }
    // Every row above the training range lands in the overflow bin.
    let counts = window["sketch"]["features"][0]["counts"]
        .as_array()
        .unwrap();
    assert_eq!(counts.last().unwrap(), 200);
    let merged: driftline::drift::DatasetSketch =
        serde_json::from_value(window["sketch"].clone()).unwrap();
    assert_eq!(merged.rows, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_labels_join_their_request_and_land_as_jsonl_files() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("file://{}/feedback/wine-quality/", dir.path().display());
    let config = ServerConfig {
        feedback_sink: Some(Arc::new(StoreFeedbackSink::new(&prefix).unwrap())),
        feedback: FeedbackConfig {
            batch_rows: 3,
            ..FeedbackConfig::default()
        },
        ..ServerConfig::default()
    };
    let s = serve_with(config, Duration::ZERO).await;
    let mut one = per_feature(&[11.0], &["red"]);
    one["id"] = json!("a");
    let mut two = per_feature(&[9.0, 12.0], &["white", "red"]);
    two["id"] = json!("b");
    post(&s, "/v2/models/wine-quality/infer", one.to_string()).await;
    post(&s, "/v2/models/wine-quality/infer", two.to_string()).await;
    let (code, r) = post(
        &s,
        "/v2/models/wine-quality/feedback",
        json!({"id": "a", "label": "bad"}).to_string(),
    )
    .await;
    assert_eq!((code, r), (200, json!({"joined": 1, "unknown": []})));
    let (code, r) = post(
        &s,
        "/v2/models/wine-quality/feedback",
        json!({"id": "nope", "label": "bad"}).to_string(),
    )
    .await;
    // An id this server does not remember (expired, another replica's) is
    // kept as a late label under `labels/` for the join at training.
    assert_eq!(
        (code, r),
        (200, json!({"joined": 0, "unknown": [], "late": ["nope"]}))
    );
    let (code, r) = post(
        &s,
        "/v2/models/wine-quality/feedback",
        json!({"id": "b", "label": "excellent"}).to_string(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(r["error"].as_str().unwrap().contains("had 2 rows"), "{r}");
    // The third labelled row completes a batch of 3, which is written at once.
    let (code, r) = post(
        &s,
        "/v2/models/wine-quality/feedback",
        json!([{"id": "b", "label": ["bad", "good"]}]).to_string(),
    )
    .await;
    assert_eq!((code, r), (200, json!({"joined": 2, "unknown": []})));
    let (_, stats) = get(&s, "/v2/models/wine-quality/feedback").await;
    assert_eq!(stats["writtenRows"], 3);
    assert!(
        (stats["accuracy"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{stats}"
    );
    let files: Vec<_> = entries(&dir.path().join("feedback/wine-quality"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        dir.path()
            .join("feedback/wine-quality/predictions")
            .is_dir(),
        "the prediction log beside the labelled rows"
    );
    assert_eq!(files[0].extension().unwrap(), "jsonl");
    let rows = json_lines(&files[0]);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["alcohol"], 11.0);
    assert_eq!(rows[0]["color"], "red");
    assert_eq!(rows[0]["quality"], "bad");
    assert_eq!(rows[0]["_prediction"], "good");
    assert_eq!(rows[0]["_version"], "3");
    assert_eq!(rows[2]["_id"], "b");
    assert_eq!(rows[2]["quality"], "good");
    let metrics = client()
        .get(url(&s, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("driftline_serve_feedback_rows_written_total 3"),
        "{metrics}"
    );
    // The late label waits for a flush (one row, under the batch of 3); a
    // flush writes it under `labels/<date>/` as `id,label,row`, before the
    // directory goes (a server still holding it would otherwise write it
    // into a directory this test has removed, and leave it behind).
    s.flush_feedback().await.unwrap();
    let labels = dir.path().join("feedback/wine-quality/labels");
    let days = entries(&labels);
    assert_eq!(days.len(), 1, "{days:?}");
    let files = entries(&days[0]);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "jsonl");
    assert_eq!(
        json_lines(&files[0]),
        [json!({"id": "nope", "label": "bad", "row": 0})]
    );
}

/// The paths in a directory.
fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// A JSON Lines file's objects.
fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A binary-extension body: the JSON header, then alcohol as FP32 and color
/// as length-prefixed BYTES; `extra` goes into the JSON (outputs, parameters).
fn binary_body(alcohol: &[f32], color: &[&str], extra: Value) -> (Vec<u8>, usize) {
    let a: Vec<u8> = alcohol.iter().flat_map(|x| x.to_le_bytes()).collect();
    let c: Vec<u8> = color
        .iter()
        .flat_map(|s| [&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat())
        .collect();
    let mut header = json!({"id": "bin-1", "inputs": [
        {"name": "alcohol", "shape": [alcohol.len()], "datatype": "FP32", "parameters": {"binary_data_size": a.len()}},
        {"name": "color", "shape": [color.len()], "datatype": "BYTES", "parameters": {"binary_data_size": c.len()}},
    ]});
    if let Value::Object(extra) = extra {
        header.as_object_mut().unwrap().extend(extra);
    }
    let header = serde_json::to_vec(&header).unwrap();
    let length = header.len();
    ([header, a, c].concat(), length)
}

async fn post_binary(
    server: &RunningServer,
    body: Vec<u8>,
    header_length: usize,
    encoding: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .post(url(server, "/v2/models/wine-quality/infer"))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header_length.to_string());
    if let Some(e) = encoding {
        request = request.header("content-encoding", e);
    }
    request.body(body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_answer_as_json_ones_and_binary_outputs_come_back_when_asked() {
    let s = serve().await;
    let (_, json_answer) = post(
        &s,
        "/v2/models/wine-quality/infer",
        per_feature(&[11.0, 9.0], &["red", "white"]).to_string(),
    )
    .await;
    // Binary in, JSON out.
    let (body, length) = binary_body(&[11.0, 9.0], &["red", "white"], json!({}));
    let r = post_binary(&s, body, length, None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("inference-header-content-length").is_none());
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["id"], "bin-1");
    assert_eq!(answer["outputs"], json_answer["outputs"]);
    // Binary in, binary out for every output.
    let (body, length) = binary_body(
        &[11.0, 9.0],
        &["red", "white"],
        json!({"parameters": {"binary_data_output": true}}),
    );
    let r = post_binary(&s, body, length, None).await;
    assert_eq!(r.status(), 200);
    let json_length: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let header: Value = serde_json::from_slice(&bytes[..json_length]).unwrap();
    let predictions = &header["outputs"][0];
    assert_eq!(predictions["name"], "predictions");
    assert!(predictions.get("data").is_none(), "{header}");
    let p_size = predictions["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    let raw = &bytes[json_length..];
    // "good" and "bad", each behind a 4-byte little-endian length.
    assert_eq!(&raw[..p_size], b"\x04\x00\x00\x00good\x03\x00\x00\x00bad");
    let probabilities: Vec<f32> = raw[p_size..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let expected: Vec<f32> = json_answer["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(probabilities, expected);
    assert_eq!(
        header["outputs"][1]["parameters"]["binary_data_size"],
        json!(16)
    );
    // One output binary by its own parameter, the other JSON.
    let (body, length) = binary_body(
        &[11.0],
        &["red"],
        json!({"outputs": [{"name": "predictions", "parameters": {"binary_data": false}}, {"name": "probabilities", "parameters": {"binary_data": true}}]}),
    );
    let r = post_binary(&s, body, length, None).await;
    let json_length: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let header: Value = serde_json::from_slice(&bytes[..json_length]).unwrap();
    assert_eq!(header["outputs"][0]["data"], json!(["good"]));
    assert_eq!(bytes.len() - json_length, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_deflate_bodies_are_inflated_and_other_encodings_refused() {
    use std::io::Write;
    let s = serve().await;
    let (body, length) = binary_body(&[11.0, 9.0], &["red", "white"], json!({}));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let r = post_binary(&s, gz.finish().unwrap(), length, Some("gzip")).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["outputs"][0]["data"], json!(["good", "bad"]));
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&body).unwrap();
    let r = post_binary(&s, z.finish().unwrap(), length, Some("deflate")).await;
    assert_eq!(r.status(), 200);
    let r = post_binary(&s, body.clone(), length, Some("gzip")).await;
    assert_eq!(r.status(), 400);
    let r = post_binary(&s, body, length, Some("br")).await;
    assert_eq!(r.status(), 415);
    let error: Value = r.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("`br`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_binary_bodies_get_400_naming_the_input_and_the_server_stays_up() {
    let s = serve().await;
    let (body, length) = binary_body(&[11.0, 9.0], &["red", "white"], json!({}));
    let color = body[length + 8..].to_vec();
    // Alcohol's bytes and declared size, color's declared size, alcohol's shape, bytes appended.
    let custom = |alcohol: &[f32], a: usize, c: usize, shape: usize, tail: &[u8]| {
        let header = serde_json::to_vec(&json!({"inputs": [
            {"name": "alcohol", "shape": [shape], "datatype": "FP32", "parameters": {"binary_data_size": a}},
            {"name": "color", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": c}},
        ]}))
        .unwrap();
        let n = header.len();
        let a: Vec<u8> = alcohol.iter().flat_map(|x| x.to_le_bytes()).collect();
        ([header, a, color.clone(), tail.to_vec()].concat(), n)
    };
    let cases: Vec<((Vec<u8>, usize), &str)> = vec![
        // Cut inside the color tensor.
        (
            (body[..body.len() - 3].to_vec(), length),
            "input `color`: binary_data_size is 16 bytes but only 13 bytes are left",
        ),
        (
            custom(&[11.0, 9.0, 10.0], 12, 16, 2, &[]),
            "input `alcohol`: shape [2] holds 2 values but data has 3",
        ),
        (
            custom(&[11.0, 9.0], 6, 18, 2, &[]),
            "input `alcohol`: 6 bytes is not a whole number of FP32 values",
        ),
        (
            custom(&[11.0, 9.0], 8, 20, 2, &[]),
            "input `color`: binary_data_size is 20 bytes but only 16",
        ),
        (
            custom(&[11.0, 9.0], 8, 16, 2, &[0; 4]),
            "4 bytes follow the last binary input",
        ),
        (
            custom(&[11.0, 9.0], 8, 16, 3, &[]),
            "input `alcohol`: shape [3] holds 3 values but data has 2",
        ),
        (
            custom(&[11.0, 9.0], 8, 15, 2, &[]),
            "input `color`: BYTES element 1: length prefix says 5 bytes but only 4 remain",
        ),
        (
            (body.clone(), body.len() + 1),
            "Inference-Header-Content-Length is",
        ),
    ];
    for ((bad, header_length), needle) in cases {
        let r = post_binary(&s, bad, header_length, None).await;
        assert_eq!(r.status(), 400, "{needle}");
        let error: Value = r.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(needle), "`{message}` lacks `{needle}`");
    }
    // binary_data_size without the header, and a header that is not a number.
    let (code, error) = post(&s, "/v2/models/wine-quality/infer", body.clone()).await;
    assert_eq!(code, 400, "{error}");
    let r = client()
        .post(url(&s, "/v2/models/wine-quality/infer"))
        .header("inference-header-content-length", "many")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (header_only, _) = binary_body(&[11.0], &["red"], json!({}));
    let json_part = &header_only[..header_only.len() - 11];
    let (code, error) = post(&s, "/v2/models/wine-quality/infer", json_part.to_vec()).await;
    assert_eq!(code, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("input `alcohol` sets `binary_data_size` but the request has no Inference-Header-Content-Length"),
        "{error}"
    );
    assert_eq!(post_binary(&s, body, length, None).await.status(), 200);
}

/// Sends one unary gRPC call over HTTP/2 and returns the `grpc-status` and the reply.
async fn grpc_call<M: prost::Message, R: prost::Message + Default>(
    server: &RunningServer,
    method: &str,
    message: &M,
) -> (String, Option<R>) {
    let payload = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = http
        .post(url(
            server,
            &format!("/inference.GRPCInferenceService/{method}"),
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An error comes as a trailers-only answer: the status is in the headers.
    let status = r
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = r.bytes().await.unwrap();
    if bytes.len() < 5 {
        return (status.unwrap_or_default(), None);
    }
    let reply = R::decode(&bytes[5..]).unwrap();
    (status.unwrap_or_else(|| "0".into()), Some(reply))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_rest_share_one_model_and_its_metrics() {
    use driftline::serve::pb;
    let s = serve().await;
    let input = |name: &str, datatype: &str, raw: bool| pb::model_infer_request::InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![2],
        parameters: Default::default(),
        contents: (!raw).then(|| match name {
            "alcohol" => pb::InferTensorContents {
                fp32_contents: vec![11.0, 9.0],
                ..Default::default()
            },
            _ => pb::InferTensorContents {
                bytes_contents: vec![b"red".to_vec(), b"white".to_vec()],
                ..Default::default()
            },
        }),
    };
    let typed = pb::ModelInferRequest {
        model_name: "wine-quality".into(),
        id: "grpc-7".into(),
        inputs: vec![
            input("alcohol", "FP32", false),
            input("color", "BYTES", false),
        ],
        ..Default::default()
    };
    let (status, reply) = grpc_call::<_, pb::ModelInferResponse>(&s, "ModelInfer", &typed).await;
    let reply = reply.unwrap();
    assert_eq!(status, "0");
    assert_eq!(
        (
            reply.model_name.as_str(),
            reply.model_version.as_str(),
            reply.id.as_str()
        ),
        ("wine-quality", "3", "grpc-7")
    );
    assert_eq!(reply.outputs[0].name, "predictions");
    assert_eq!(reply.outputs[1].shape, vec![2, 2]);
    assert_eq!(
        reply.raw_output_contents[0],
        b"\x04\x00\x00\x00good\x03\x00\x00\x00bad"
    );
    // The same tensors in raw_input_contents answer the same.
    let raw = pb::ModelInferRequest {
        model_name: "wine-quality".into(),
        inputs: vec![
            input("alcohol", "FP32", true),
            input("color", "BYTES", true),
        ],
        raw_input_contents: vec![
            [11.0f32.to_le_bytes(), 9.0f32.to_le_bytes()].concat(),
            b"\x03\x00\x00\x00red\x05\x00\x00\x00white".to_vec(),
        ],
        ..Default::default()
    };
    let (_, raw_reply) = grpc_call::<_, pb::ModelInferResponse>(&s, "ModelInfer", &raw).await;
    assert_eq!(
        raw_reply.unwrap().raw_output_contents,
        reply.raw_output_contents
    );
    // Errors are gRPC codes with the REST message.
    let mut short = raw.clone();
    short.raw_input_contents[0].truncate(6);
    let (status, _) = grpc_call::<_, pb::ModelInferResponse>(&s, "ModelInfer", &short).await;
    assert_eq!(status, "3", "INVALID_ARGUMENT");
    let mut beer = raw.clone();
    beer.model_name = "beer".into();
    let (status, _) = grpc_call::<_, pb::ModelInferResponse>(&s, "ModelInfer", &beer).await;
    assert_eq!(status, "5", "NOT_FOUND");
    let (status, ready) = grpc_call::<_, pb::ModelReadyResponse>(
        &s,
        "ModelReady",
        &pb::ModelReadyRequest {
            name: "wine-quality".into(),
            version: "3".into(),
        },
    )
    .await;
    assert_eq!((status.as_str(), ready.unwrap().ready), ("0", true));
    let (_, meta) = grpc_call::<_, pb::ModelMetadataResponse>(
        &s,
        "ModelMetadata",
        &pb::ModelMetadataRequest {
            name: "wine-quality".into(),
            version: String::new(),
        },
    )
    .await;
    let meta = meta.unwrap();
    assert_eq!(meta.inputs[1].name, "color");
    assert_eq!(meta.inputs[1].datatype, "BYTES");
    // One REST inference too: the metrics count all of them together.
    post(
        &s,
        "/v2/models/wine-quality/infer",
        per_feature(&[11.0], &["red"]).to_string(),
    )
    .await;
    let text = client()
        .get(url(&s, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "driftline_serve_rows_total 5",
        r#"driftline_serve_requests_total{endpoint="infer",code="200"} 3"#,
        r#"driftline_serve_requests_total{endpoint="infer",code="400"} 1"#,
        r#"driftline_serve_requests_total{endpoint="infer",code="404"} 1"#,
        r#"driftline_serve_predictions_total{class="good"} 3"#,
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
}

// Logging is process-wide: the test runs in a child process of its own,
// with its own global subscriber, as `driftline serve --log-json` does.
#[test]
fn a_failed_inference_is_logged_once_with_model_version_trace_id_and_cause() {
    in_child_process(
        "serve_protocol::a_failed_inference_is_logged_once_with_model_version_trace_id_and_cause",
        failed_inference_is_logged_once,
    );
}

async fn failed_inference_is_logged_once(logs: CapturedLogs) {
    let server = serve().await;
    let response = client()
        .post(url(&server, "/v2/models/wine-quality/infer"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&per_feature(&[-999.0], &["red"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    let cause = "inference failed: the model cannot score alcohol -999";
    assert_eq!(body["error"], cause);

    let failures: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "one line per failed request: {failures:?}"
    );
    let line = &failures[0];
    assert_eq!(line["fields"]["error"], cause, "{line}");
    assert_eq!(line["fields"]["status"], 500, "{line}");
    assert_eq!(line["span"]["name"], "request", "{line}");
    assert_eq!(line["span"]["model"], "wine-quality", "{line}");
    assert_eq!(line["span"]["version"], "3", "{line}");
    assert_eq!(
        line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace id: {line}"
    );

    // A client's mistake (4xx) is the client's to see, not the server's log's.
    let (status, _) = post(
        &server,
        "/v2/models/wine-quality/infer",
        r#"{"inputs": []}"#,
    )
    .await;
    assert_eq!(status, 400);
    let errors = logs
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .count();
    assert_eq!(errors, 1);
}
