//! The dashboard in a real browser: `driftline up` with shifted load drifts,
//! retrains on drift, and a user promotes then rolls back the new version;
//! headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `tests/browser/`) must then show the rollback, the drifted features and
//! the audit rows, and saves screenshots in `target/dashboard-screenshots/`.
//!
//! Without chromium, node or `tests/browser/node_modules` the test is
//! skipped, or fails under CI (`tests/support/require_tool.rs`; `.ci/run`
//! installs them).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::require_tool::require_tool;

use super::up::{
    args, client, driftline, serving_champion, stop, up_with, wait_status, wine_without_cooldown,
};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What the browser check needs, or why it cannot run.
fn browser_tools() -> Result<PathBuf, Vec<String>> {
    let mut missing = Vec::new();
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        missing.push(format!(
            "chromium at {} (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".into());
    }
    if !repo()
        .join("tests/browser/node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push("tests/browser/node_modules (cd tests/browser && npm ci)".into());
    }
    if missing.is_empty() {
        Ok(chromium)
    } else {
        Err(missing)
    }
}

/// The dashboard's JSON twin of the Model page.
async fn model_json(base: &str) -> Option<serde_json::Value> {
    reqwest::get(format!("{base}/models/ml/wine-quality?format=json"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_drift_the_retrain_and_the_rollback() {
    let tools = browser_tools().map_err(|missing| format!("missing {}", missing.join(", ")));
    let Some(chromium) = require_tool(
        "chromium_shows_the_drift_the_retrain_and_the_rollback",
        tools,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let model = wine_without_cooldown(dir.path());
    let mut child = up_with(
        &state,
        &[
            "-f",
            &model,
            "--load",
            "--load-rate",
            "400",
            "--drift-after",
            "8s",
            "--time-scale",
            "30",
        ],
    );
    // `up` prints the dashboard's URL; keep draining its output after that.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("Dashboard: ") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let client = client(&state).await;
    assert_eq!(serving_champion(&client).await, "v1");
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("up prints `Dashboard: URL`");
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    // Drift retrains: v2 passes its gate and enters its canary (or, at this
    // clock, is already promoted).
    wait_status(&client, "the drift-triggered v2 in its canary", |s| {
        s.canary.as_ref().is_some_and(|c| c.version == "v2") || s.champion.as_deref() == Some("v2")
    })
    .await;
    let kc = state.join("kubeconfig").display().to_string();
    let cmd = |list: &[&str]| {
        let mut a = args(list);
        a.extend(args(&["-n", "ml", "--kubeconfig", &kc]));
        a
    };
    let (ok, out, err) = driftline(cmd(&["promote", "wine-quality"])).await;
    assert!(
        ok || err.contains("no canary in progress"),
        "promote: {out}{err}"
    );
    let (ok, out, err) = driftline(cmd(&["rollback", "wine-quality"])).await;
    assert!(ok && out.contains("champion v1"), "rollback: {out}{err}");

    // The registry's writer is asynchronous: wait until the page has the rollback.
    let deadline = Instant::now() + Duration::from_secs(60);
    let json = loop {
        if let Some(j) = model_json(&base).await
            && j["audit"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r["action"] == "Rollback"))
            && j["drift"]["driftedFeatures"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed the rollback and the drift"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drifted: Vec<&str> = json["drift"]["driftedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(drifted.contains(&"alcohol"), "{drifted:?}");

    // `driftline status` links the Model to this page when told the dashboard's URL.
    let (ok, out, err) = driftline(cmd(&[
        "status",
        "wine-quality",
        "-o",
        "json",
        "--dashboard",
        &base,
    ]))
    .await;
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let link = status["dashboard"].as_str().expect("a dashboard link");
    assert_eq!(link, format!("{base}/models/ml/wine-quality"));
    let linked = reqwest::get(link).await.expect("the link answers");
    assert!(linked.status().is_success(), "{link}: {}", linked.status());

    let shots = repo().join("target/dashboard-screenshots");
    let browser = Command::new("node")
        .arg("tests/browser/dashboard.mjs")
        .arg(&base)
        .arg("ml/wine-quality")
        .arg(&shots)
        .env("CHROMIUM", &chromium)
        .current_dir(repo())
        .output()
        .expect("node runs");
    let seen = String::from_utf8_lossy(&browser.stdout).into_owned();
    assert!(
        browser.status.success(),
        "{seen}{}",
        String::from_utf8_lossy(&browser.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(seen.trim()).expect("the script's JSON");
    assert!(
        seen["rollback"].as_str().unwrap().contains("Rollback"),
        "{seen}"
    );
    assert!(seen["auditRows"].as_u64().unwrap() >= 3, "{seen}");
    assert!(
        seen["driftedFeatures"]
            .as_str()
            .unwrap()
            .contains("alcohol"),
        "{seen}"
    );
    for shot in ["models.png", "model.png", "version.png"] {
        let size = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    eprintln!("dashboard screenshots: {}", shots.display());
    stop(child, &state);
}
