//! `driftline demo` is the README's first command: the whole loop on a bundled
//! pipeline must run from a fresh checkout and report what it did.

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
    assert!(
        stdout.contains("gate passed") || stdout.contains("gate failed"),
        "{stdout}"
    );
    let accuracy: f64 = stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("accuracy on the test rows, as served: ")
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no served accuracy in:\n{stdout}"));
    assert!(accuracy > 0.8, "wine-good served accuracy {accuracy}");
    assert!(stdout.contains("Jensen-Shannon distance"), "{stdout}");

    // The run folder holds both versions, the gate report and the labelled traffic.
    let run = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
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
