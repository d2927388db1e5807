//! A failed reconcile, seen the way an operator's on-call reads it: one
//! JSON log line with the Model, the version and the whole cause, plus the
//! `Reconciled=False` condition and a Warning Event naming that cause.

use std::time::Duration;

use driftline::api::{ConditionStatus, version_name};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::Value;

use crate::json_logs::{CapturedLogs, in_child_process};
use crate::operator_support::{Harness, quick_wine};

#[test]
fn a_failed_reconcile_is_logged_once_with_model_version_and_cause() {
    in_child_process(
        "reconcile_log::a_failed_reconcile_is_logged_once_with_model_version_and_cause",
        failed_reconcile_is_logged_once,
    );
}

async fn failed_reconcile_is_logged_once(logs: CapturedLogs) {
    let mut h = Harness::start(171, 60.0).await;
    // The operator's caches are complete; then the ModelVersion CRD goes
    // (a chart half uninstalled), so creating the first version fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !h.telemetry.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    crds.delete("modelversions.driftline.dev", &DeleteParams::default())
        .await
        .expect("the ModelVersion CRD is deleted");
    h.apply("logged", quick_wine()).await;

    let message = h
        .wait_model("logged", Duration::from_secs(60), "Reconciled=False", |m| {
            let status = m.status.as_ref()?;
            let c = status.conditions.iter().find(|c| c.type_ == "Reconciled")?;
            (c.status == ConditionStatus::False).then(|| c.message.clone())
        })
        .await;
    // Let a retry or two happen: each failed reconcile is logged once.
    let failures = failed_reconciles(&h);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while failed_reconciles(&h) < failures + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retry of the failed reconcile"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.kill_operator().await;
    let failed = failed_reconciles(&h);

    let action = format!("create ModelVersion ml/logged-{}", version_name(1));
    assert!(
        message.starts_with(&format!("{action}: ")),
        "the condition names what failed, then why: {message}"
    );
    let lines: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .filter(|l| l["span"]["name"] == "reconcile")
        .collect();
    assert_eq!(
        lines.len() as u64,
        failed,
        "one line per failed reconcile ({failed}), nothing else at WARN in its span: {lines:#?}"
    );
    for line in &lines {
        assert_eq!(line["fields"]["message"], "reconcile failed", "{line}");
        assert_eq!(line["span"]["model"], "ml/logged", "{line}");
        assert_eq!(line["span"]["version"], version_name(1), "{line}");
        let trace_id = line["span"]["trace_id"].as_str().unwrap_or_default();
        assert_eq!(trace_id.len(), 32, "a trace id per reconcile: {line}");
        let error = line["fields"]["error"].as_str().unwrap_or_default();
        assert_eq!(
            error, message,
            "the log and the condition say the same: {line}"
        );
    }
    // The cause (the API server's answer) is printed once, not again by the
    // error that wraps it.
    let cause = message.strip_prefix(&format!("{action}: ")).unwrap();
    assert!(
        !cause.is_empty() && message.matches(cause).count() == 1,
        "{message}"
    );
    let trace_ids: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["span"]["trace_id"].as_str())
        .collect();
    assert_eq!(
        trace_ids.len(),
        lines.len(),
        "each reconcile its own trace id"
    );
    assert!(
        h.events("logged").await.iter().any(|e| e.contains(&action)),
        "a Warning Event names the failure: {:?}",
        h.events("logged").await
    );
    h.shutdown().await;
}

/// `driftline_operator_reconcile_errors_total`, all kinds together.
fn failed_reconciles(h: &Harness) -> u64 {
    h.telemetry
        .render()
        .lines()
        .filter(|l| l.starts_with("driftline_operator_reconcile_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
