//! GitOps health: the Argo CD health check shipped in the chart
//! (`charts/driftline/health/model.lua`, run in gopher-lua as Argo CD runs
//! it) and kstatus (sigs.k8s.io/cli-utils) read the same Model objects, the
//! ones the decision core writes in each scenario, and tell the same story.
//! Both run in `tools/health`, a small Go program built here with `go`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::Duration;
use driftline::api::Model;
use driftline::policy::{JobState, ManualAction, TrainingJob};

use crate::policy_support::*;

/// Builds tools/health once per test run; `Err` says what is missing.
fn health_tool() -> Result<PathBuf, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("driftline-health");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(root.join("tools/health"))
        .status()
        .map_err(|e| format!("go is not on PATH ({e}); .ci/run installs it"))?;
    if !status.success() {
        return Err(format!("`go build` of tools/health failed ({status})"));
    }
    Ok(out)
}

/// (Argo CD health, kstatus status) of each Model.
fn read(tool: &PathBuf, models: &[Model]) -> Vec<(String, String)> {
    let lua = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/driftline/health/model.lua");
    let mut child = Command::new(tool)
        .arg(lua)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("health tool runs");
    let objects: Vec<serde_json::Value> = models
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).unwrap();
            v["apiVersion"] = driftline::api::API_VERSION.into();
            v["kind"] = "Model".into();
            v
        })
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&objects).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("health tool output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["health"].as_str().unwrap().to_string(),
                v["kstatus"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn argo_cd_and_kstatus_read_every_model_state_alike() {
    let Some(tool) = crate::require_tool::require_tool(
        "argo_cd_and_kstatus_read_every_model_state_alike",
        health_tool(),
    ) else {
        return;
    };
    let start = t("2026-06-01T08:00:00Z");
    let mut scenarios: Vec<(&str, Model)> = Vec::new();

    let mut w = World::new(quiet_spec(), start);
    w.step();
    scenarios.push(("first version checking its data", w.model.clone()));
    let mut w = World::new(quiet_spec(), start);
    w.bootstrap();
    scenarios.push(("champion serving", w.model.clone()));

    let canary = crate::policy_decide::canary_world();
    scenarios.push(("canary in progress", canary.model.clone()));
    let mut w = crate::policy_decide::awaiting_promotion_world();
    scenarios.push(("canary awaiting driftline promote", w.model.clone()));
    let shadow = crate::policy_shadow::shadow_world();
    scenarios.push(("candidate in shadow", shadow.model.clone()));
    let (refused, _) = crate::policy_shadow::shadow_failed_world();
    scenarios.push(("candidate failed its shadow stage", refused.model.clone()));
    w.request("rb", ManualAction::Rollback);
    scenarios.push(("canary rolled back", w.model.clone()));

    let mut w = World::new(quiet_spec(), start);
    w.step();
    w.jobs = vec![TrainingJob {
        version: 1,
        state: JobState::Pending,
        unschedulable: Some("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".into()),
    }];
    w.step();
    scenarios.push(("stalled: no node takes the training", w.model.clone()));

    let mut w = World::new(quiet_spec(), start);
    w.bootstrap();
    w.model.spec.paused = true;
    w.advance(Duration::minutes(1));
    w.step();
    scenarios.push(("paused", w.model.clone()));

    let got = read(
        &tool,
        &scenarios.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
    );
    let table: Vec<(&str, &str, &str)> = scenarios
        .iter()
        .zip(&got)
        .map(|((name, _), (argo, kstatus))| (*name, argo.as_str(), kstatus.as_str()))
        .collect();
    // The README's table. Argo CD's Suspended has no kstatus twin: a canary
    // waiting for a person is still on its way (InProgress), a paused Model
    // is settled (Current).
    assert_eq!(
        table,
        [
            (
                "first version checking its data",
                "Progressing",
                "InProgress"
            ),
            ("champion serving", "Healthy", "Current"),
            ("canary in progress", "Progressing", "InProgress"),
            (
                "canary awaiting driftline promote",
                "Suspended",
                "InProgress"
            ),
            ("candidate in shadow", "Progressing", "InProgress"),
            ("candidate failed its shadow stage", "Degraded", "Failed"),
            ("canary rolled back", "Degraded", "Failed"),
            ("stalled: no node takes the training", "Degraded", "Failed"),
            ("paused", "Suspended", "Current"),
        ]
    );
}
