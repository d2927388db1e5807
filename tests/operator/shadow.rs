//! The shadow stage (#20) on the embedded cluster, the real driftline
//! binary in every pod: the gateway mirrors live requests to a candidate
//! that passed its gate, pairs the two answers, and the operator rejects a
//! candidate that disagrees before any user request reaches it, or sends one
//! that agrees into its canary.

use crate::operator_support;

use std::time::Duration;

use driftline::api::scrape::{GatewayCounters, parse_shadow_tallies};
use driftline::api::{AnalysisOutcome, ModelSpec, ModelStatus, ShadowSpec, VersionPhase};
use driftline::registry::{RegistryWriter, WriterOptions};
use kube::api::{Patch, PatchParams};
use operator_support::*;

/// The bundled wine Model with a gate any trained model passes (the
/// shadow, not the gate, is under test), its `strong` slice kept, and a
/// shadow stage of 2 (test-clock) minutes.
fn shadowed_wine(max_disagreement: f64) -> ModelSpec {
    let mut spec = quick_wine();
    let gate = spec.gate.as_mut().expect("gate");
    gate.metrics.retain(|m| m.name == "accuracy");
    gate.metrics[0].min = Some(0.0);
    gate.metrics[0].max_drop_from_champion = None;
    for slice in &mut gate.slices {
        slice.metrics[0].min = Some(0.0);
    }
    with_shadow(
        spec,
        serde_json::json!({"maxDisagreement": max_disagreement, "slices": ["strong"]}),
    )
}

/// `spec` with a shadow stage of 2 (test-clock) minutes that mirrors every
/// request and needs 100 pairs, plus the `settings` given, and one long
/// canary step, in which a candidate that passed its shadow holds.
fn with_shadow(mut spec: ModelSpec, settings: serde_json::Value) -> ModelSpec {
    let mut shadow = serde_json::json!({"duration": "2m", "minRequests": 100, "sample": 1.0});
    let (Some(all), Some(given)) = (shadow.as_object_mut(), settings.as_object()) else {
        panic!("shadow settings are an object: {settings}");
    };
    all.extend(given.clone());
    spec.rollout.shadow = Some(serde_json::from_value::<ShadowSpec>(shadow).expect("shadow spec"));
    spec.rollout.steps = vec![driftline::api::CanaryStep {
        weight: 20,
        pause: "600m".parse().expect("duration"),
    }];
    spec.validate().expect("a valid spec");
    spec
}

/// Trains v2 of Model `name` barely (one epoch at a tiny learning rate: it
/// answers from its random start, unlike the champion) and waits until its
/// shadow stage has judged it; the Model's status then.
async fn barely_trained_v2_judged_in_shadow(h: &Harness, name: &str) -> ModelStatus {
    let patch = serde_json::json!({"spec": {
        "architecture": {"hiddenLayers": []},
        "training": {"epochs": 1, "learningRate": 0.000001, "earlyStopping": null},
    }});
    h.models()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the training settings");
    h.wait_model(name, MINUTES, "v2 judged in shadow", |m| {
        let s = m.status.as_ref()?;
        (s.training.is_none() && s.last_training.as_ref()?.version == "v2" && s.candidate.is_none())
            .then(|| s.clone())
    })
    .await
}

/// The gateway's own `/metrics`: what it proxied to users, and the shadow.
async fn gateway_metrics(h: &Harness, gateway: &str) -> String {
    h.http()
        .get(format!("{gateway}/metrics"))
        .send()
        .await
        .expect("gateway /metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_candidate_that_disagrees_is_rejected_in_shadow_and_no_user_request_reaches_it() {
    // 20x: the 2-minute shadow passes in 6 s.
    let mut h = Harness::start_idle(195, 20.0).await;
    let registry_url = format!("sqlite://{}", h.dir.path().join("registry.db").display());
    let writer = std::sync::Arc::new(
        RegistryWriter::start(&registry_url, WriterOptions::default()).expect("registry URL"),
    );
    h.registry = Some(writer.clone());
    h.start_operator();
    let spec = shadowed_wine(0.05);
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    let gateway = h.service_url("wine-quality").await;
    let background = h.load_in_background(&gateway, "wine-quality", &spec, 60.0);
    let status = barely_trained_v2_judged_in_shadow(&h, "wine-quality").await;
    background.abort();
    assert_eq!(status.champion.as_deref(), Some("v1"));
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:100"));
    assert!(status.shadow.is_none() && status.canary.is_none());
    let v2 = h.version_status("wine-quality", 2).await;
    assert_eq!(v2.phase, VersionPhase::Rejected, "{:?}", v2.message);
    assert!(
        v2.message
            .as_deref()
            .is_some_and(|m| m.starts_with("ShadowFailed")),
        "{:?}",
        v2.message
    );
    let rollout = v2.rollout.expect("the verdict is recorded");
    assert_eq!(rollout.result, "ShadowFailed");
    let verdict = &rollout.analyses[0];
    assert_eq!(
        (verdict.weight, verdict.outcome),
        (0, AnalysisOutcome::Failed)
    );
    // The numbers, for the record (`--nocapture`).
    println!("rejected in shadow: {}", verdict.message);
    let failed = verdict
        .checks
        .iter()
        .find(|c| !c.passed && c.name.starts_with("maxDisagreement"))
        .unwrap_or_else(|| panic!("a failed disagreement check: {verdict:?}"));
    assert!(failed.value > 0.05, "{failed:?}");
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("ShadowFailed:") && e.contains("v1 keeps 100 %")),
        "{events:?}"
    );
    // Recorded like a canary analysis: `driftline history` shows it.
    tokio::time::timeout(MINUTES, writer.flush())
        .await
        .expect("the registry rows are written");
    let (v2_line, shown) = history_line("wine-quality", "ml", &registry_url, "v2");
    assert!(v2_line.contains("shadow failed ("), "{shown}");
    // And the dashboard: the read in its own section, not as a canary step.
    let (addr, _dashboard) = driftline::dashboard::serve(
        "127.0.0.1:0".parse().unwrap(),
        driftline::dashboard::DashboardConfig {
            client: h.client.clone(),
            namespace: None,
            registry: Some(registry_url.clone()),
            hosts_file: Some(h.hosts_file()),
        },
    )
    .await
    .expect("dashboard starts");
    let page: serde_json::Value = h
        .http()
        .get(format!("http://{addr}/models/ml/wine-quality?format=json"))
        .send()
        .await
        .expect("dashboard answers")
        .json()
        .await
        .expect("JSON page");
    let reads = page["shadow"]["reads"].as_array().expect("shadow reads");
    let last = reads.last().unwrap_or_else(|| panic!("{page}"));
    assert_eq!(
        (&last["version"], &last["verdict"]),
        (&"v2".into(), &"Failed".into()),
        "{last}"
    );
    assert!(
        last["agreement"].as_f64().is_some_and(|a| a < 0.95),
        "{last}"
    );
    assert_eq!(
        page["canaryAnalyses"],
        serde_json::json!([]),
        "no user traffic moved"
    );

    // Measured at the gateway: every user request went to v1, while v2
    // answered mirrored copies that were paired and disagreed.
    let text = gateway_metrics(&h, &gateway).await;
    let users = GatewayCounters::from_metrics(&text);
    assert!(users.backend("v1").answered > 0, "{text}");
    let to_v2 = users.backend("v2");
    assert_eq!((to_v2.answered, to_v2.unreachable), (0, 0), "{text}");
    let tally = parse_shadow_tallies(&text)
        .remove("v2")
        .unwrap_or_else(|| panic!("no shadow tally for v2:\n{text}"));
    assert!(tally.paired >= verdict.canary_requests, "{tally:?}");
    // (This candidate is told apart within a few requests, too few to be
    // sure of any in slice `strong`; the agreeing one's test needs them.)
    assert!(tally.disagreements() > 0, "{tally:?}");

    // The rows they disagreed on are kept under the artifact root, exactly
    // those: once the last mirrors are paired and written, one line per
    // disagreeing row, each with two different answers.
    let file = h
        .artifacts
        .join("ml/wine-quality/shadow/v2/disagreements.jsonl");
    let mut last = (0, u64::MAX);
    for _ in 0..100 {
        let kept = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count());
        let tally = parse_shadow_tallies(&gateway_metrics(&h, &gateway).await)
            .remove("v2")
            .expect("tally");
        if kept as u64 == tally.disagreements() && last == (kept, tally.disagreements()) {
            break;
        }
        last = (kept, tally.disagreements());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = std::fs::read_to_string(&file).expect("disagreements written");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    assert_eq!(rows.len() as u64, last.1, "{last:?}");
    for row in &rows {
        assert_ne!(row["champion"], row["shadow"], "{row}");
        assert!(row["inputs"]["alcohol"].is_number(), "{row}");
    }
    // `driftline disagreements` exports them as CSV for curation.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args([
            "disagreements",
            "wine-quality",
            "v2",
            "-n",
            "ml",
            "-o",
            "csv",
        ])
        .arg("--artifact-root")
        .arg(&h.artifacts)
        .output()
        .expect("driftline disagreements runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).expect("UTF-8");
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("id,row,champion,shadow,") && h.contains("alcohol")),
        "{csv}"
    );
    assert_eq!(lines.count(), rows.len(), "{csv}");
    println!(
        "gateway: v1 answered {} user requests, v2 none; {} mirrored pairs, {} disagreeing rows kept",
        users.backend("v1").answered,
        tally.paired,
        rows.len()
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_candidate_that_agrees_passes_its_shadow_and_goes_into_its_canary() {
    let h = Harness::start(196, 20.0).await;
    // Two trainings of the same settings differ on a few rows only.
    let spec = shadowed_wine(0.3);
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    let gateway = h.service_url("wine-quality").await;
    let background = h.load_in_background(&gateway, "wine-quality", &spec, 60.0);
    h.retrain("wine-quality", "agreeing").await;
    let canary = h
        .wait_model("wine-quality", MINUTES, "v2 in its canary", |m| {
            let c = m.status.as_ref()?.canary.as_ref()?;
            (c.version == "v2" && c.step_started_at.is_some()).then(|| c.clone())
        })
        .await;
    background.abort();
    let verdict = &canary.analyses[0];
    assert_eq!(
        (verdict.weight, verdict.outcome),
        (0, AnalysisOutcome::Passed),
        "{verdict:?}"
    );
    assert!(verdict.canary_requests >= 100, "{verdict:?}");
    println!("passed its shadow: {}", verdict.message);
    // The gate slice `strong` is computed from the requests' inputs: its
    // own check needs mirrored rows of it.
    assert!(
        verdict
            .checks
            .iter()
            .any(|c| c.name == "maxDisagreement[strong]" && c.passed),
        "{verdict:?}"
    );
    let events = h.events("wine-quality").await;
    for reason in ["ShadowStarted:", "ShadowPassed:", "CanaryStarted:"] {
        assert!(
            events.iter().any(|e| e.starts_with(reason)),
            "{reason} {events:?}"
        );
    }
    let status = h.model_status("wine-quality").await;
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:80 v2:20"));
    h.shutdown().await;
}

/// The diabetes pipeline (regression) with a gate any trained model passes
/// and a shadow stage in which a row disagrees when the two predictions
/// differ by more than `tolerance` (in the target's units).
fn shadowed_diabetes(tolerance: f64) -> ModelSpec {
    let mut spec = pipeline("diabetes.yaml");
    spec.training.epochs = 30;
    spec.retrain = None;
    let gate = spec.gate.as_mut().expect("gate");
    gate.metrics.retain(|m| m.name == "r2");
    gate.metrics[0].min = Some(-1000.0);
    gate.metrics[0].max_drop_from_champion = None;
    for slice in &mut gate.slices {
        slice.metrics[0].min = Some(-1000.0);
    }
    gate.must_pass = None;
    gate.must_pass_tolerance = None;
    with_shadow(
        spec,
        serde_json::json!({"maxDisagreement": 0.1, "tolerance": tolerance, "slices": ["older"]}),
    )
}

/// Done-when 2 for a regression Model: the pairs are numbers, judged by
/// their absolute difference against the shadow's tolerance; the verdict
/// reports the mean and p95 absolute difference; the candidate is rejected
/// before any user request reaches it, and the rows kept are exactly those
/// whose two predictions are further apart than the tolerance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_regression_candidate_whose_predictions_move_is_rejected_in_shadow() {
    const TOLERANCE: f64 = 5.0;
    let h = Harness::start(197, 20.0).await;
    let spec = shadowed_diabetes(TOLERANCE);
    h.apply("diabetes", spec.clone()).await;
    h.wait_champion("diabetes", 1).await;
    let gateway = h.service_url("diabetes").await;
    let background = h.load_in_background(&gateway, "diabetes", &spec, 60.0);
    let status = barely_trained_v2_judged_in_shadow(&h, "diabetes").await;
    background.abort();
    assert_eq!(status.champion.as_deref(), Some("v1"));
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:100"));
    let v2 = h.version_status("diabetes", 2).await;
    assert_eq!(v2.phase, VersionPhase::Rejected, "{:?}", v2.message);
    let rollout = v2.rollout.expect("the verdict is recorded");
    assert_eq!(rollout.result, "ShadowFailed");
    let verdict = &rollout.analyses[0];
    println!("rejected in shadow: {}", verdict.message);
    assert_eq!(
        (verdict.weight, verdict.outcome),
        (0, AnalysisOutcome::Failed)
    );
    for measure in [
        "mean |difference| ",
        "p95 |difference| ≤ ",
        "Jensen-Shannon",
    ] {
        assert!(
            verdict.message.contains(measure),
            "{measure}: {}",
            verdict.message
        );
    }
    let failed = verdict
        .checks
        .iter()
        .find(|c| c.name == "maxDisagreement" && !c.passed)
        .unwrap_or_else(|| panic!("the overall disagreement fails: {verdict:?}"));
    assert!(failed.value > 0.1, "{failed:?}");

    // No user request reached v2; its mirrored answers were paired as numbers.
    let text = gateway_metrics(&h, &gateway).await;
    let users = GatewayCounters::from_metrics(&text);
    assert!(users.backend("v1").answered > 0, "{text}");
    assert_eq!(users.backend("v2").answered, 0, "{text}");
    let tally = parse_shadow_tallies(&text).remove("v2").expect("a tally");
    assert!(tally.flips.is_empty(), "no classes: {tally:?}");
    assert!(tally.regression_disagreements > 0, "{tally:?}");
    assert!(
        tally.abs_difference_sum / tally.rows as f64 > TOLERANCE,
        "{tally:?}"
    );

    // The rows kept are those further apart than the tolerance, every one.
    let file = h
        .artifacts
        .join("ml/diabetes/shadow/v2/disagreements.jsonl");
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for _ in 0..100 {
        let tally = parse_shadow_tallies(&gateway_metrics(&h, &gateway).await)
            .remove("v2")
            .expect("tally");
        rows = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON row"))
            .collect();
        if rows.len() as u64 == tally.regression_disagreements {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!rows.is_empty());
    for row in &rows {
        let (c, s) = (row["champion"].as_f64(), row["shadow"].as_f64());
        let (Some(c), Some(s)) = (c, s) else {
            panic!("numbers: {row}");
        };
        assert!((c - s).abs() > TOLERANCE, "{row}");
        assert!(row["inputs"]["body_mass_index"].is_number(), "{row}");
    }
    h.shutdown().await;
}
