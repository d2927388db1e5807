//! Dashboard benchmark: the server time and weight of a Model page with
//! 1 000 versions and 10 000 drift windows. Fills a SQLite registry, starts
//! the embedded API server with one Model (status: champion, traffic,
//! drift), serves the dashboard on loopback and times GETs of the Model page
//! (HTML and its JSON twin) and of the Models list. Prints one JSON line.
//!
//!   cargo run --example dashboard_bench -- [VERSIONS] [WINDOWS] [FEATURES] [REQUESTS]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use driftline::api::Model;
use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use driftline::registry::{
    AnalysisVerdict, CanaryAnalysis, ChampionAction, ChampionChange, DriftReading, EpochRecord,
    EvaluationRecord, ModelRef, Record, Registry, ValidationMetric, VersionRecord,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000 + seconds, 0).unwrap()
}

fn records(model: &ModelRef, versions: u32, windows: u32, features: u32) -> Vec<Record> {
    let mut out = Vec::new();
    for n in 1..=versions {
        let t = i64::from(n) * 3600;
        out.push(Record::from(VersionRecord {
            model: model.clone(),
            version: n,
            trigger: "Schedule".into(),
            reason: format!("nightly schedule slot {n}"),
            seed: 7,
            config_hash: "4f2a9c".into(),
            dataset_digest: Some(format!("sha256:{n:064x}")),
            artifact_uri: Some(format!("file:///nonexistent/ml/wine-quality/v{n}")),
            feedback_rows: Some(u64::from(n) * 10),
            code_version: "0.1.0".into(),
            created_at: at(t),
            start: None,
        }));
        let accuracy = 0.55 + f64::from(n % 50) / 1000.0;
        out.push(Record::from(EvaluationRecord {
            model: model.clone(),
            version: n,
            passed: n % 7 != 0,
            summary: if n % 7 != 0 {
                "passed 6/6"
            } else {
                "failed 1/6"
            }
            .into(),
            metrics: [
                ("accuracy", accuracy),
                ("macroF1", accuracy / 2.0),
                ("logLoss", 1.0 - accuracy),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            report: serde_json::json!({}),
            evaluated_at: at(t + 60),
        }));
        out.push(Record::from(ChampionChange {
            model: model.clone(),
            at: at(t + 600),
            action: ChampionAction::Promote,
            from: (n > 1).then(|| n - 1),
            to: Some(n),
            trigger: "CanaryPassed".into(),
            actor: None,
            reason: "all 3 steps passed".into(),
        }));
        for step in 0..3 {
            out.push(Record::from(CanaryAnalysis {
                model: model.clone(),
                version: n,
                step,
                weight: [5, 25, 50][step as usize],
                window_start: at(t + 120 + i64::from(step) * 120),
                window_end: at(t + 240 + i64::from(step) * 120),
                canary_requests: 600,
                stable_requests: 5400,
                canary_errors: 1,
                stable_errors: 3,
                canary_p99_ms: Some(4.0),
                stable_p99_ms: Some(3.8),
                divergence: Some(0.03),
                verdict: AnalysisVerdict::Passed,
                message: "error rate 0.002 ≤ 0.01, p99 4 ms ≤ 50 ms".into(),
                checks: Vec::new(),
            }));
        }
        if n + 3 > versions {
            for epoch in 1..=60 {
                out.push(Record::from(EpochRecord {
                    model: model.clone(),
                    version: n,
                    epoch,
                    train_loss: 1.5 / f64::from(epoch).sqrt(),
                    validation_loss: Some(1.6 / f64::from(epoch).sqrt()),
                    validation_metric: Some(ValidationMetric {
                        name: "accuracy".into(),
                        value: 0.6,
                    }),
                }));
            }
        }
    }
    for w in 0..windows {
        for f in 0..features {
            let value = 0.02 + f64::from((w * 7 + f * 13) % 100) / 1000.0;
            out.push(Record::from(DriftReading {
                model: model.clone(),
                version: versions,
                window_end: at(i64::from(w) * 60),
                feature: format!("feature_{f:02}"),
                statistic: "jensenShannon".into(),
                value,
                threshold: 0.1,
                drifted: value > 0.1,
            }));
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn time_get(
    http: &reqwest::Client,
    url: &str,
    n: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..n {
        let start = Instant::now();
        let body = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.95), bytes))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let versions = args.first().copied().unwrap_or(1_000);
    let windows = args.get(1).copied().unwrap_or(10_000);
    let features = args.get(2).copied().unwrap_or(11);
    let requests = args.get(3).copied().unwrap_or(30) as usize;
    let dir = tempfile::tempdir()?;

    let url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let registry = Registry::connect(&url).await?;
    let model = ModelRef::new("ml", "wine-quality");
    let all = records(&model, versions, windows, features);
    let fill = Instant::now();
    for chunk in all.chunks(5_000) {
        registry.write_all(chunk).await?;
    }
    eprintln!("registry: {} records in {:.1?}", all.len(), fill.elapsed());

    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path().join("cluster"))).await?;
    let client = cluster.client().await;
    driftline::operator::install_crds(&client).await?;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "ml"}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let yaml = std::fs::read_to_string("pipelines/wine-quality.yaml")?;
    let spec = driftline::api::load_model_config(&yaml)?;
    let mut object = Model::new("wine-quality", spec);
    object.metadata.namespace = Some("ml".into());
    let models: Api<Model> = Api::namespaced(client.clone(), "ml");
    // The CRD's schema needs a moment to be served after it is applied.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = models.create(&PostParams::default(), &object).await {
        anyhow::ensure!(Instant::now() < deadline, "cannot create the Model: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drifted: Vec<String> = (0..features / 2)
        .map(|f| format!("feature_{f:02}"))
        .collect();
    models
        .patch_status(
            "wine-quality",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "phase": "Serving",
                "champion": format!("v{versions}"),
                "traffic": [{"version": format!("v{versions}"), "weight": 100}],
                "nextVersion": versions + 1,
                "drift": {"score": 0.3, "driftedShare": 0.5, "driftedFeatures": drifted,
                          "driftedWeight": 0.6, "windowDrifted": true, "drivers": [],
                          "reason": "", "consecutiveWindows": 3, "summary": "drifted"}
            }})),
        )
        .await?;

    let (addr, _) = driftline::dashboard::serve(
        "127.0.0.1:0".parse()?,
        driftline::dashboard::DashboardConfig {
            client,
            namespace: None,
            registry: Some(url),
            hosts_file: None,
        },
    )
    .await?;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let page = format!("{base}/models/ml/wine-quality");
    // Warm up: registry connection, SQLite page cache.
    time_get(&http, &page, 3).await?;
    let (html_p50, html_p95, html_bytes) = time_get(&http, &page, requests).await?;
    let (json_p50, json_p95, json_bytes) =
        time_get(&http, &format!("{page}?format=json"), requests).await?;
    let (list_p50, _, list_bytes) = time_get(&http, &format!("{base}/"), requests).await?;
    let (version_p50, _, version_bytes) =
        time_get(&http, &format!("{page}/versions/v{versions}"), requests).await?;

    // The registry's share of the page: the queries the page makes, alone.
    let mut reads: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for _ in 0..requests {
        let mut lap = Instant::now();
        let mut split = |name, reads: &mut std::collections::BTreeMap<&str, Vec<f64>>| {
            reads
                .entry(name)
                .or_default()
                .push(lap.elapsed().as_secs_f64() * 1000.0);
            lap = Instant::now();
        };
        registry.history(&model, None).await?;
        split("history", &mut reads);
        registry.canary_history(&model, 500).await?;
        split("canaryHistory", &mut reads);
        registry.audit_trail(&model).await?;
        split("auditTrail", &mut reads);
        registry.drift_heatmap(&model, 2_000, 100).await?;
        split("driftHeatmap", &mut reads);
        for n in versions.saturating_sub(2)..=versions {
            registry.training_curve(&model, n).await?;
        }
        split("trainingCurves", &mut reads);
    }
    let reads: std::collections::BTreeMap<&str, f64> = reads
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, percentile(&v, 0.5))
        })
        .collect();

    println!(
        "{}",
        serde_json::json!({
            "versions": versions, "windows": windows, "features": features,
            "driftReadings": u64::from(windows) * u64::from(features),
            "requests": requests,
            "modelPage": {"p50Ms": html_p50, "p95Ms": html_p95, "bytes": html_bytes},
            "modelPageJson": {"p50Ms": json_p50, "p95Ms": json_p95, "bytes": json_bytes},
            "registryReadsP50Ms": reads,
            "modelsList": {"p50Ms": list_p50, "bytes": list_bytes},
            "versionPage": {"p50Ms": version_p50, "bytes": version_bytes},
        })
    );
    cluster.shutdown().await;
    Ok(())
}
