//! `driftline demo` runs the whole loop without a cluster: on a bundled
//! pipeline it must run from a fresh checkout and report what it did.

use std::process::Command;

#[test]
fn demo_trains_gates_serves_and_reports_on_a_bundled_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["demo", "-f", "pipelines/wine-good.yaml", "--dir"])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("[3/5] gate v2 against champion v1"),
        "{stdout}"
    );
    let run = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // What the demo says about the gate is what the gate report says, and
    // the version it then serves is the one the verdict picked.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("gate-report.json")).unwrap()).unwrap();
    let passed = report["verdict"]["passed"].as_bool().expect("verdict");
    let (line, served) = if passed {
        ("gate passed: v2 is the new champion", &report["candidate"])
    } else {
        ("gate failed: v1 stays champion", &report["champion"])
    };
    assert!(
        stdout.contains(line),
        "report says passed={passed}:\n{stdout}"
    );
    // The served model ranks well (a constant model has rocAuc 0.5, and the
    // test set is 83 % one class, so accuracy alone would not tell)...
    let roc_auc = served["metrics"]["rocAuc"].as_f64().expect("rocAuc");
    assert!(roc_auc >= 0.8, "served rocAuc {roc_auc}: {served}");
    // ...and answers the test rows over HTTP exactly as the evaluator scored
    // them offline: the same rows, the same correct count.
    let (correct, total): (u64, u64) = stdout
        .lines()
        .find_map(|l| {
            let rest = l
                .trim()
                .strip_prefix("accuracy on the test rows, as served: ")?;
            let counts = rest.split_once('(')?.1.trim_end_matches(')');
            let (c, t) = counts.split_once('/')?;
            Some((c.parse().ok()?, t.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no served accuracy in:\n{stdout}"));
    let rows = served["rows"].as_u64().expect("rows");
    assert_eq!(total, rows, "every test row served once");
    let offline = served["metrics"]["accuracy"].as_f64().expect("accuracy");
    assert!(
        (correct as f64 / total as f64 - offline).abs() < 1e-9,
        "served {correct}/{total}, evaluated {offline}"
    );
    assert!(stdout.contains("Jensen-Shannon distance"), "{stdout}");

    // The run folder holds both versions, the gate report and the labelled traffic.
    for artifact in ["v1/manifest.json", "v2/manifest.json", "gate-report.json"] {
        assert!(
            run.join(artifact).is_file(),
            "missing {artifact} in {}",
            run.display()
        );
    }
    let feedback: Vec<_> = std::fs::read_dir(run.join("feedback")).unwrap().collect();
    assert!(!feedback.is_empty(), "no feedback file written");
}

#[test]
fn demo_refuses_a_pipeline_that_is_not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Deployment\nspec: {}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["demo", "-f"])
        .arg(&bad)
        .args(["--dir"])
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a valid Model"), "{stderr}");
    assert!(
        !dir.path().join("runs").exists(),
        "nothing may be written for a bad pipeline"
    );
}
