//! Done-when 6 on the embedded cluster: a classifier with no labels at all
//! gets an estimated accuracy per drift window in its status, and an
//! estimated drop below its validation accuracy retrains it; and a canary
//! whose estimated accuracy is clearly below stable's is rolled back.

use crate::operator_support;

use std::time::Duration;

use driftline::api::{AnalysisOutcome, Evidence, VersionPhase};
use driftline::registry::{ModelRef, Registry, RegistryWriter, WriterOptions};
use kube::api::{Patch, PatchParams};
use operator_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_estimated_accuracy_drop_without_labels_retrains() {
    let h = Harness::start(183, 1.0).await;
    let mut spec = live_evidence_wine();
    let retrain = spec.retrain.as_mut().expect("retrain");
    // Only the estimate may retrain: the shift below also drifts.
    retrain.on_drift = false;
    retrain.on_estimated_drop = Some(driftline::api::EstimatedDropTrigger {
        metric: Default::default(),
        max_drop: 0.03,
        tolerance: 0.05,
        min_labels: 100,
    });
    spec.drift.window = 320;
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    let gateway = h.service_url("wine-quality").await;

    // The test set, unlabelled as far as the server knows: an estimate
    // close to the validation accuracy, and no retraining.
    let quiet = load_labelled(
        h.http(),
        gateway.clone(),
        "wine-quality",
        &spec,
        (200.0, 30, Some(960)),
        false,
    )
    .await;
    assert_eq!(quiet.ok, 960, "{quiet:?}");
    let estimate = h
        .wait_model("wine-quality", MINUTES, "an estimated accuracy", |m| {
            m.status.as_ref()?.estimated_accuracy.clone()
        })
        .await;
    assert_eq!(estimate.version, "v1");
    assert!(estimate.requests >= 320, "{estimate:?}");
    let validation = estimate.validation_accuracy.expect("from v1's manifest");
    assert!(
        (estimate.value - validation).abs() < 0.03,
        "in-distribution estimate {estimate:?}"
    );
    assert!(estimate.realised.is_none(), "no label was sent");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = h.model_status("wine-quality").await;
    assert!(
        status.training.is_none(),
        "in-distribution traffic started {:?}",
        status.training
    );

    // The same rows two degrees stronger: the model is less sure of them.
    let shifted_spec = shifted_test_set(&h, &spec, "alcohol", 2.0, "stronger.csv");
    let stronger = load_labelled(
        h.http(),
        gateway,
        "wine-quality",
        &shifted_spec,
        (200.0, 30, Some(960)),
        false,
    )
    .await;
    assert_eq!(stronger.ok, 960, "{stronger:?}");

    let run = h
        .wait_run("wine-quality", "v2", "an estimate-triggered v2")
        .await;
    assert_eq!(
        run.trigger,
        driftline::api::TrainingTrigger::EstimatedDrop,
        "{}",
        run.reason
    );
    assert!(
        run.reason.contains("below its validation accuracy") && run.reason.contains("maxDrop 0.03"),
        "{}",
        run.reason
    );
    let status = h.model_status("wine-quality").await;
    let dropped = status.estimated_accuracy.expect("estimate");
    println!(
        "in-distribution estimate {:.3}, shifted {:.3}, validation accuracy {validation:.3}",
        estimate.value, dropped.value
    );
    assert!(dropped.value < validation - 0.03, "{dropped:?}");
    h.shutdown().await;
}

/// #20's estimated accuracy as a canary check: no request is ever
/// labelled, and a candidate whose calibrated confidence says it is
/// clearly less accurate than the champion is rolled back by
/// `maxEstimatedAccuracyDrop` inside its step's pause, with the check in
/// status, in the registry and in the Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_estimated_clearly_less_accurate_is_rolled_back_without_any_label() {
    // 20x: the operator reads the canary every 1.5 s of wall time.
    let mut h = Harness::start_idle(227, 20.0).await;
    let registry_url = format!("sqlite://{}", h.dir.path().join("registry.db").display());
    let writer = std::sync::Arc::new(
        RegistryWriter::start(&registry_url, WriterOptions::default()).expect("registry URL"),
    );
    h.registry = Some(writer.clone());
    h.start_operator();
    let mut spec = quick_wine();
    // The gate lets any trained model through: the canary, not the gate,
    // is under test.
    let gate = spec.gate.as_mut().expect("gate");
    gate.metrics.retain(|m| m.name == "accuracy");
    gate.metrics[0].min = Some(0.0);
    gate.metrics[0].max_drop_from_champion = None;
    for slice in &mut gate.slices {
        slice.metrics[0].min = Some(0.0);
    }
    // One step whose pause outlasts the test: only harm shown by the
    // sequential analysis can end it, and only the estimate is checked.
    spec.rollout.steps = vec![driftline::api::CanaryStep {
        weight: 30,
        pause: "600m".parse().expect("duration"),
    }];
    spec.rollout.analysis = driftline::api::AnalysisSpec {
        method: driftline::api::AnalysisMethod::Sequential,
        min_requests: 50,
        max_error_rate: None,
        max_estimated_accuracy_drop: Some(0.05),
        failure_limit: 0,
        ..Default::default()
    };
    spec.validate().expect("a valid spec");
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    let gateway = h.service_url("wine-quality").await;
    let (http, url, unlabelled) = (h.http(), gateway.clone(), spec.clone());
    let background = tokio::spawn(async move {
        load_labelled(
            http,
            url,
            "wine-quality",
            &unlabelled,
            (60.0, 900, None),
            false,
        )
        .await
    });
    // A barely trained candidate: one epoch at a tiny learning rate, whose
    // calibrated confidence (and accuracy) is far below the champion's.
    let patch = serde_json::json!({"spec": {
        "architecture": {"hiddenLayers": []},
        "training": {"epochs": 1, "learningRate": 0.000001, "earlyStopping": null},
    }});
    h.models()
        .patch(
            "wine-quality",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("patch the training settings");

    let status = h
        .wait_model("wine-quality", MINUTES, "v2 rolled back", |m| {
            let s = m.status.as_ref()?;
            (s.canary.is_none()
                && s.candidate.is_none()
                && s.last_training.as_ref()?.version == "v2")
                .then(|| s.clone())
        })
        .await;
    background.abort();
    assert_eq!(status.champion.as_deref(), Some("v1"));
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:100"));
    let v2 = h.version_status("wine-quality", 2).await;
    assert_eq!(v2.phase, VersionPhase::RolledBack, "{:?}", v2.message);
    let rollout = v2.rollout.expect("the rollout is recorded");
    let failed = rollout
        .analyses
        .iter()
        .find(|a| a.outcome == AnalysisOutcome::Failed)
        .unwrap_or_else(|| panic!("a failed analysis: {:?}", rollout.analyses));
    println!("rolled back without labels: {}", failed.message);
    let check = failed
        .checks
        .iter()
        .find(|c| c.name == "maxEstimatedAccuracyDrop")
        .unwrap_or_else(|| panic!("the estimated-accuracy check: {failed:?}"));
    assert_eq!(check.evidence, Some(Evidence::Harm), "{check:?}");
    assert!(
        check.value > 0.05 && check.lower.expect("lower") > 0.0,
        "{check:?}"
    );
    // Nothing was labelled: no online-accuracy check was read.
    assert!(
        rollout
            .analyses
            .iter()
            .flat_map(|a| &a.checks)
            .all(|c| !c.name.contains("OnlineAccuracy")),
        "{:?}",
        rollout.analyses
    );
    assert!(failed.message.contains("no labels"), "{}", failed.message);
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("RolledBack:") && e.contains("estimated accuracy drop")),
        "{events:?}"
    );
    // The registry's analysis rows carry the check with its evidence.
    tokio::time::timeout(MINUTES, writer.flush())
        .await
        .expect("the registry rows are written");
    let registry = Registry::connect(&registry_url).await.expect("registry");
    let rows = registry
        .canary_analyses(&ModelRef::new(NS, "wine-quality"), 2)
        .await
        .expect("canary analyses");
    assert!(
        rows.iter().flat_map(|r| &r.checks).any(|c| {
            c.name == "maxEstimatedAccuracyDrop"
                && !c.passed
                && c.evidence.as_deref() == Some("harm")
        }),
        "{rows:?}"
    );
    h.shutdown().await;
}
