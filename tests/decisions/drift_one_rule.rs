//! One drift rule, two real paths. The model server (`driftline serve`,
//! started with the drift flags the operator gives its Deployment) judges
//! each window it closes; the operator scrapes the server's running totals,
//! merges them into windows over the champion's reference profile (read from
//! its manifest) and folds them into `status.drift`. On the same traffic the
//! two must reach the same verdict for the same reasons, feature by feature:
//! a drift setting the flags lose, or a threshold or weight lost between the
//! server, the operator and the decision core, shows here.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use driftline::api::{DriftControl, DriftThreshold, Model, ModelStatus, TrainingDevice};
use driftline::drift::{RunningTotal, WindowReport};
use driftline::operator::{DriftWindows, drift_flags};
use driftline::policy::Observations;
use driftline::policy::update_drift;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use crate::policy_support::{FIXTURE, model};

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// alcohol ~ N(10, 1), ph ~ N(3.3, 0.15), color 70 % red; quality is "good"
/// when alcohol > 10, so the model relies on alcohol and not on ph.
struct Rows {
    alcohol: Vec<f64>,
    ph: Vec<f64>,
    color: Vec<&'static str>,
}

fn rows(n: usize, seed: u64, alcohol_shift: f64, ph_shift: f64) -> Rows {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut r = Rows {
        alcohol: Vec::new(),
        ph: Vec::new(),
        color: Vec::new(),
    };
    for _ in 0..n {
        r.alcohol.push(10.0 + normal(&mut rng) + alcohol_shift);
        r.ph.push(3.3 + 0.15 * (normal(&mut rng) + ph_shift));
        r.color.push(if rng.random::<f64>() < 0.7 {
            "red"
        } else {
            "white"
        });
    }
    r
}

fn training_csv(r: &Rows) -> String {
    let mut csv = String::from("alcohol,ph,color,quality\n");
    for i in 0..r.alcohol.len() {
        let quality = if r.alcohol[i] > 10.0 { "good" } else { "bad" };
        csv.push_str(&format!(
            "{},{},{},{quality}\n",
            r.alcohol[i], r.ph[i], r.color[i]
        ));
    }
    csv
}

/// The north-star Model with drift settings away from every default, so
/// that a flag the server does not get changes its verdicts or thresholds:
/// calibrated thresholds under `falseDiscoveryRate` at 2 %, ph's own fixed
/// threshold, color ignored, windows of 1000 rows.
fn wine() -> Model {
    let mut spec = driftline::api::load_model_config(FIXTURE).expect("fixture parses");
    spec.training.device = TrainingDevice::Cpu;
    spec.training.epochs = 5;
    spec.drift.threshold = DriftThreshold::Auto;
    spec.drift.control = DriftControl::FalseDiscoveryRate;
    spec.drift.false_alarm_rate = 0.02;
    assert_eq!(spec.drift.window, 1000);
    model(spec)
}

/// `driftline serve`, stopped when dropped (its log printed if the test failed).
struct Server {
    child: Child,
    base: String,
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            for line in self.log.try_iter() {
                eprintln!("driftline serve: {line}");
            }
        }
    }
}

/// Starts `driftline serve` on `artifact` with the Model's drift flags, as
/// the operator's Deployment does, and waits until it says it is ready.
fn serve(artifact: &str, m: &Model) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["--log-json", "serve", "--artifact", artifact])
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--name", "wine-quality", "--model-version", "v1"])
        .args(drift_flags(&m.spec.drift))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("driftline runs");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = Server {
        child,
        base: String::new(),
        log: rx,
    };
    let mut ready = false;
    let mut log = Vec::new();
    while server.base.is_empty() || !ready {
        let line = server
            .log
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("driftline serve did not get ready ({e}): {log:#?}"));
        let entry: Value = serde_json::from_str(&line).unwrap_or_default();
        let fields = &entry["fields"];
        if let Some(addr) = fields["addr"].as_str() {
            server.base = format!("http://{addr}/v2/models/wine-quality");
        }
        ready |= fields["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("model loaded"));
        log.push(line);
    }
    server
}

async fn infer(http: &reqwest::Client, server: &Server, r: &Rows) {
    for start in (0..r.alcohol.len()).step_by(100) {
        let end = (start + 100).min(r.alcohol.len());
        let n = end - start;
        let body = json!({"inputs": [
            {"name": "alcohol", "shape": [n], "datatype": "FP64", "data": &r.alcohol[start..end]},
            {"name": "ph", "shape": [n], "datatype": "FP64", "data": &r.ph[start..end]},
            {"name": "color", "shape": [n], "datatype": "BYTES", "data": &r.color[start..end]},
        ]});
        let answer = http
            .post(format!("{}/infer", server.base))
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
    }
}

/// What `/v2/models/wine-quality/drift` says: the newest closed window and
/// the running total the operator scrapes.
async fn scrape(http: &reqwest::Client, server: &Server) -> (Option<WindowReport>, RunningTotal) {
    let drift: Value = http
        .get(format!("{}/drift", server.base))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON");
    let newest = drift["recent"]
        .get(0)
        .map(|w| serde_json::from_value(w.clone()).expect("a window report"));
    let total = serde_json::from_value(drift["total"].clone()).expect("a running total");
    (newest, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_verdict_and_status_drift_agree_window_by_window() {
    let dir = tempfile::tempdir().unwrap();
    let m = wine();
    let table = driftline::data::Table::from_csv(
        "train.csv",
        training_csv(&rows(1_000, 1, 0.0, 0.0)).as_bytes(),
    )
    .expect("training rows");
    let trained = driftline::ml::fit(&m.spec, &table, None, &candle_core::Device::Cpu, false)
        .expect("the model trains");
    let artifact = dir.path().join("v1").display().to_string();
    trained.save(&artifact).await.expect("artifact written");
    let server = serve(&artifact, &m);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // The operator's side: one replica's totals, merged as the drift poll does.
    let operator = DriftWindows::default();
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let (_, baseline) = scrape(&http, &server).await;
    let first = operator
        .readings(&m, 1, &artifact, &[("replica-0".into(), baseline)], t0)
        .await;
    assert!(first.is_empty(), "a replica's first read is its baseline");
    let mut status = ModelStatus::default();

    let mut verdicts = Vec::new();
    // Quiet, alcohol (what the model relies on) drifts, ph alone drifts, quiet.
    for (k, (alcohol_shift, ph_shift)) in [(0.0, 0.0), (1.0, 0.0), (0.0, 3.0), (0.0, 0.0)]
        .into_iter()
        .enumerate()
    {
        infer(
            &http,
            &server,
            &rows(1_000, 10 + k as u64, alcohol_shift, ph_shift),
        )
        .await;
        let (served, total) = scrape(&http, &server).await;
        let served = served.expect("1000 rows close the server's window");
        assert_eq!(served.rows, 1000);

        let now = t0 + chrono::Duration::minutes(10 * (k as i64 + 1));
        let readings = operator
            .readings(&m, 1, &artifact, &[("replica-0".into(), total)], now)
            .await;
        assert_eq!(readings.len(), k + 1, "one merged window per 1000 rows");
        let reading = readings.last().unwrap();
        assert_eq!(reading.rows, 1000);
        // Every column as the server measured and judged it (to the last
        // bits JSON may round away).
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
        assert_eq!(reading.features.len(), served.features.len(), "window {k}");
        for (ours, theirs) in reading.features.iter().zip(&served.features) {
            assert!(
                ours.name == theirs.name
                    && close(ours.value, theirs.value)
                    && close(ours.threshold, theirs.threshold)
                    && close(ours.weight, theirs.weight),
                "window {k}: the operator read {ours:?}, the server judged {theirs:?}"
            );
        }
        assert!(served.calibrated, "window {k}: calibrated thresholds");

        let mut obs = Observations::at(now);
        obs.drift = readings;
        update_drift(&mut status, &m.spec, &obs);
        let summary = status.drift.as_ref().expect("status.drift is set");
        assert_eq!(
            (summary.window_drifted, &summary.reason),
            (served.dataset_drifted, &served.reason),
            "window {k}"
        );
        assert_eq!(
            summary.drifted_features, served.drifted_features,
            "window {k}"
        );
        let mut drivers: Vec<String> = served.drifted_features.clone();
        if served.prediction.drifted {
            drivers.push(served.prediction.name.clone());
        }
        let named: Vec<&String> = summary.drivers.iter().map(|d| &d.name).collect();
        assert_eq!(named, drivers.iter().collect::<Vec<_>>(), "window {k}");
        verdicts.push(served.dataset_drifted);
    }
    assert!(verdicts[1], "a one-sd shift of alcohol drifts the window");
    assert!(
        !verdicts[0] || !verdicts[3],
        "some window is quiet: {verdicts:?}"
    );
}
