//! Done-when 6 on the embedded cluster: a classifier with no labels at all
//! gets an estimated accuracy per drift window in its status, and an
//! estimated drop below its validation accuracy retrains it.

use crate::operator_support;

use std::time::Duration;

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
