//! Estimated accuracy without labels (Done-when 6), through the real model
//! server: a classifier's calibrated confidence over each drift window,
//! merged as the operator merges replicas (`ReplicaWindows`), follows the
//! accuracy its traffic really has as a covariate shift takes that
//! traffic towards the decision boundary.

use chrono::{Duration, TimeZone, Utc};
use driftline::api::DriftSpec;
use driftline::api::scrape::ServingCounters;
use driftline::data::Table;
use driftline::drift::{DriftConfig, DriftReport, ReplicaWindows};
use driftline::ml::synth::{self, Shift};
use driftline::serve::ServerConfig;

use crate::serve_artifact::{
    artifact_of, body, client, drift_report, infer, metadata_features, serve,
};

const WINDOW: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimated_accuracy_follows_the_real_accuracy_down_a_covariate_shift() {
    let dir = tempfile::tempdir().unwrap();
    let uri = artifact_of(dir.path(), 4_000).await;
    let config = ServerConfig {
        drift: DriftConfig::from(DriftSpec {
            window: WINDOW as u32,
            ..Default::default()
        }),
        ..ServerConfig::default()
    };
    let server = serve(&uri, config).await;
    let features = metadata_features(&server).await;
    let mut windows = ReplicaWindows::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let mut now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let read = |report: serde_json::Value| -> DriftReport {
        serde_json::from_value(report).expect("the drift report's shape")
    };
    // The first read is the replica's baseline, as for the operator.
    let total = read(drift_report(&server).await).total;
    assert!(
        windows
            .advance(&[("r".into(), total)], WINDOW as u64, None, now)
            .unwrap()
            .is_none()
    );

    // The two informative inputs narrowed step by step: no labels change
    // their rule, but more rows sit where it is hard to call.
    let spreads = [1.0, 0.7, 0.5, 0.35, 0.2, 0.1];
    let mut rows = Vec::new();
    for (k, spread) in spreads.iter().enumerate() {
        let csv = synth::generate_narrowed(WINDOW, 100 + k as u64, Shift::None, *spread);
        let table = Table::from_csv("synthetic.csv", csv.as_bytes()).unwrap();
        let answer = infer(&server, &body(&table, 0..table.rows, &features)).await;
        let labels = table.column("label", "the traffic").unwrap();
        let correct = answer["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .zip(labels)
            .filter(|(p, l)| p.as_str().map(str::to_string) == l.as_text())
            .count();
        let realised = correct as f64 / table.rows as f64;
        now += Duration::minutes(5);
        let total = read(drift_report(&server).await).total;
        let window = windows
            .advance(&[("r".into(), total)], WINDOW as u64, None, now)
            .unwrap()
            .expect("one window per batch");
        assert_eq!(window.sketch.confidence.rows, WINDOW as u64);
        let estimate = window
            .sketch
            .confidence
            .estimated_accuracy()
            .expect("a classifier's window has an estimate");
        rows.push((*spread, realised, estimate));
    }

    let errors: Vec<f64> = rows.iter().map(|(_, r, e)| (r - e).abs()).collect();
    let mae = errors.iter().sum::<f64>() / errors.len() as f64;
    for (spread, realised, estimate) in &rows {
        println!("spread {spread:.2}: realised {realised:.3}, estimated {estimate:.3}");
    }
    println!("mean absolute error of the estimate per window: {mae:.4}");

    let (first, last) = (rows[0], rows[rows.len() - 1]);
    // The shift does what it is for: the real accuracy falls.
    assert!(
        last.1 < first.1 - 0.1,
        "realised accuracy {:.3} → {:.3}",
        first.1,
        last.1
    );
    // And the estimate falls with it (a constant estimate cannot), close to
    // the real accuracy in every window.
    assert!(
        last.2 < first.2 - 0.1,
        "estimated accuracy {:.3} → {:.3}",
        first.2,
        last.2
    );
    assert!(mae < 0.05, "mean absolute error {mae:.4}: {rows:?}");
    assert!(
        errors.iter().all(|e| *e < 0.1),
        "every window within 0.1: {rows:?}"
    );

    // `/metrics` carries the same tally, for the operator's scrape.
    let text = client()
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counters = ServingCounters::from_metrics(&text);
    assert_eq!(counters.confidence_rows, (WINDOW * spreads.len()) as u64);
    let overall = counters.estimated_accuracy().unwrap();
    let mean_estimate = rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64;
    assert!(
        (overall - mean_estimate).abs() < 1e-4,
        "{overall} vs {mean_estimate}"
    );
}
