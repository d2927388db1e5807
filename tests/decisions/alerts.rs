//! The chart's alerts (`charts/driftline/files/alerts.yaml`) under
//! `promtool test rules` (Prometheus built from its Go module; `.ci/run`
//! builds it and sets `DRIFTLINE_PROMTOOL`): each alert fires on a
//! synthetic series and stays quiet on a healthy one
//! (`tests/alerts/alerts_test.yaml`). That the rules and the Grafana
//! dashboard query only metrics the operator exports is checked beside the
//! operator's telemetry.

use std::path::PathBuf;
use std::process::Command;

fn promtool() -> Result<PathBuf, String> {
    std::env::var_os("DRIFTLINE_PROMTOOL")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).map(|d| d.join("promtool")).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "promtool is neither DRIFTLINE_PROMTOOL nor on PATH (.ci/run builds it: see its promtool block)"
                .to_string()
        })
}

#[test]
fn every_alert_fires_on_its_series_and_stays_quiet_on_a_healthy_one() {
    let Some(promtool) = crate::require_tool::require_tool(
        "every_alert_fires_on_its_series_and_stays_quiet_on_a_healthy_one",
        promtool(),
    ) else {
        return;
    };
    let out = Command::new(promtool)
        .args(["test", "rules", "tests/alerts/alerts_test.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    // Every alert of the chart is exercised by the test file.
    let rules = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/driftline/files/alerts.yaml"),
    )
    .unwrap();
    let tests = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/alerts/alerts_test.yaml"),
    )
    .unwrap();
    for line in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {line}")),
            "{line} has no promtool test"
        );
    }
}
