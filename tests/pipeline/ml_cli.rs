//! `driftline train` and `driftline evaluate` as a training Job runs them:
//! exit 0 on success, 1 when the gate fails (with the report), 2 on bad
//! input, and never a partial artifact.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use driftline::ml::synth::{self, Shift};

fn driftline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("driftline runs")
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
    /// A Model YAML training on `data` (with any extra training fields).
    fn config(&self, name: &str, data: &str, training: &str, architecture: &str) -> String {
        let test = self.write("test.csv", &synth::generate(300, 21, Shift::None));
        self.write(
            name,
            &format!(
                r#"apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {{name: synth}}
spec:
  task: classification
  data: {{source: "file://{data}", target: label}}
  architecture: {architecture}
  training: {training}
  gate:
    testSet: "{test}"
    metrics:
      - {{name: accuracy, min: 0.75, maxDropFromChampion: 0.02}}
    slices:
      - {{name: segment-a, where: {{segment: a}}, metrics: [{{name: accuracy, min: 0.6}}]}}
    budgets: {{p99LatencyMs: 50, maxSizeMB: 5}}
"#
            ),
        )
    }
}

const GOOD_TRAINING: &str = "{epochs: 8, batchSize: 32, learningRate: 0.01, seed: 3}";
const MLP: &str = "{type: mlp, hiddenLayers: [16]}";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_nothing_at(path: &Path) {
    assert!(
        !path.exists(),
        "{} must not exist after a failed run",
        path.display()
    );
    let parent = path.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn train_then_evaluate_passes_and_a_shuffled_label_candidate_fails_with_exit_1() {
    let ws = Workspace::new();
    let data = ws.write("train.csv", &synth::generate(1000, 1, Shift::None));
    let config = ws.config("model.yaml", &data, GOOD_TRAINING, MLP);
    let good = ws.path("good").display().to_string();
    let out = driftline(&["train", "--config", &config, "--out", &good]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["weightsDigest"].as_str().unwrap().len(), 64);
    assert!(ws.path("good/manifest.json").exists() && ws.path("good/weights.safetensors").exists());

    let out = driftline(&["evaluate", "--candidate", &good, "--config", &config]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"]["passed"], true);
    assert!(report["candidate"]["metrics"]["accuracy"].as_f64().unwrap() > 0.75);
    assert!(report["candidate"]["slices"][0]["rows"].as_u64().unwrap() > 0);

    // The same rows with labels shuffled.
    let mut lines: Vec<String> = synth::generate(1000, 1, Shift::None)
        .lines()
        .map(str::to_string)
        .collect();
    let mut labels: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect();
    labels.rotate_left(7);
    labels.reverse();
    for (line, label) in lines[1..].iter_mut().zip(labels) {
        let cut = line.rfind(',').unwrap();
        line.truncate(cut + 1);
        line.push_str(&label);
    }
    let shuffled = ws.write("shuffled.csv", &(lines.join("\n") + "\n"));
    let bad_config = ws.config("bad.yaml", &shuffled, GOOD_TRAINING, MLP);
    let bad = ws.path("bad").display().to_string();
    assert!(
        driftline(&["train", "--config", &bad_config, "--out", &bad])
            .status
            .success()
    );
    let report_path = ws.path("reports/gate.json");
    let out = driftline(&[
        "evaluate",
        "--candidate",
        &bad,
        "--champion",
        &good,
        "--config",
        &config,
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"]["passed"], false);
    assert!(report["champion"]["metrics"]["accuracy"].as_f64().is_some());
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(written, report);
    let err = stderr(&out);
    assert!(
        err.contains("FAIL  accuracy is") && err.contains("gate failed"),
        "{err}"
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_error_and_leaves_nothing_at_the_artifact_location() {
    let ws = Workspace::new();
    let good_rows = synth::generate(60, 1, Shift::None);
    let mut nan_rows = good_rows.clone();
    nan_rows.push_str("NaN,0,0,0,0,0,0,0,a,1\n");
    let mut text_rows = good_rows.clone();
    for _ in 0..1 {
        text_rows.push_str("heavy,0,0,0,0,0,0,0,a,1\n");
    }
    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        ("empty CSV", String::new(), GOOD_TRAINING, MLP, "is empty"),
        (
            "header only",
            "x1,label\n".into(),
            GOOD_TRAINING,
            MLP,
            "no data rows",
        ),
        (
            "ragged rows",
            "x1,x2,label\n1,2,1\n3,0\n".into(),
            GOOD_TRAINING,
            MLP,
            "line 3: row has 2 fields; the header has 3",
        ),
        (
            "text in a numeric column",
            text_rows,
            GOOD_TRAINING,
            MLP,
            "column `x1`: `heavy` is not a number",
        ),
        (
            "NaN",
            nan_rows,
            GOOD_TRAINING,
            MLP,
            "column `x1`: `NaN` is not finite",
        ),
        (
            "zero epochs",
            good_rows.clone(),
            "{epochs: 0, batchSize: 8, learningRate: 0.01, seed: 1}",
            MLP,
            "training.epochs",
        ),
        (
            "unknown architecture",
            good_rows.clone(),
            GOOD_TRAINING,
            "{type: transformer}",
            "spec.architecture.type: architecture type must be a known architecture: mlp",
        ),
    ];
    for (i, (what, csv, training, arch, expected)) in cases.into_iter().enumerate() {
        let data = ws.write(&format!("data-{i}.csv"), &csv);
        let config = ws.config(&format!("model-{i}.yaml"), &data, training, arch);
        let out_dir = ws.path(&format!("artifacts/{i}"));
        std::fs::create_dir_all(out_dir.parent().unwrap()).unwrap();
        let out = driftline(&[
            "train",
            "--config",
            &config,
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{what}: expected `{expected}` in: {}",
            stderr(&out)
        );
        assert_nothing_at(&out_dir);
    }

    // Unknown target.
    let data = ws.write("unknown-target.csv", &good_rows);
    let config = ws.write(
        "unknown-target.yaml",
        &format!("task: classification\ndata: {{source: \"{data}\", target: quality}}\ntraining: {GOOD_TRAINING}\n"),
    );
    let out_dir = ws.path("artifacts/unknown-target");
    let out = driftline(&[
        "train",
        "--config",
        &config,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("column `quality` missing; expected by data.target"),
        "{}",
        stderr(&out)
    );
    assert_nothing_at(&out_dir);

    // Unreadable data URI and config.
    let config = ws.config("missing.yaml", "/nonexistent/train.csv", GOOD_TRAINING, MLP);
    let out = driftline(&[
        "train",
        "--config",
        &config,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`file:///nonexistent/train.csv` does not exist"),
        "{}",
        stderr(&out)
    );
    let out = driftline(&[
        "train",
        "--config",
        "/nonexistent/model.yaml",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/model.yaml"),
        "{}",
        stderr(&out)
    );
    assert_nothing_at(&out_dir);

    // Usage errors are exit 2 as well.
    assert_eq!(driftline(&["train"]).status.code(), Some(2));
}

#[test]
fn evaluate_refuses_a_test_set_missing_a_model_column_and_a_missing_artifact() {
    let ws = Workspace::new();
    let data = ws.write("train.csv", &synth::generate(200, 1, Shift::None));
    let config = ws.config(
        "model.yaml",
        &data,
        "{epochs: 2, batchSize: 32, learningRate: 0.01, seed: 3}",
        MLP,
    );
    let model = ws.path("m").display().to_string();
    assert!(
        driftline(&["train", "--config", &config, "--out", &model])
            .status
            .success()
    );
    // A test set lacking a feature (also the slice's column).
    let csv = synth::generate(50, 4, Shift::None).replace("segment", "region");
    let test = ws.write("no-segment.csv", &csv);
    let out = driftline(&[
        "evaluate",
        "--candidate",
        &model,
        "--config",
        &config,
        "--test-set",
        &test,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("column `segment` missing"),
        "{}",
        stderr(&out)
    );
    let out = driftline(&[
        "evaluate",
        "--candidate",
        &ws.path("absent").display().to_string(),
        "--config",
        &config,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("manifest.json` is missing"),
        "{}",
        stderr(&out)
    );
}

/// A training Job's retried pod runs `train --resume` again: the artifact
/// its first attempt wrote is kept (not retrained, not refused); without
/// `--resume` a written version is refused; a damaged one is never reused.
#[test]
fn a_retried_training_keeps_the_verified_artifact_and_refuses_a_damaged_one() {
    let ws = Workspace::new();
    let data = ws.write("train.csv", &synth::generate(600, 1, Shift::None));
    let config = ws.config("model.yaml", &data, GOOD_TRAINING, MLP);
    let v1 = ws.path("v1").display().to_string();
    let first = driftline(&["train", "--config", &config, "--out", &v1, "--resume"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let manifest = std::fs::read(ws.path("v1/manifest.json")).unwrap();

    let again = driftline(&["train", "--config", &config, "--out", &v1, "--resume"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["resumed"], true);
    let trained: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(summary["weightsDigest"], trained["weightsDigest"]);
    assert_eq!(
        std::fs::read(ws.path("v1/manifest.json")).unwrap(),
        manifest,
        "kept as it was"
    );

    let refused = driftline(&["train", "--config", &config, "--out", &v1]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("already holds an artifact"),
        "{}",
        stderr(&refused)
    );

    // Damaged weights: --resume does not take them for a finished version.
    let weights = ws.path("v1/weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let damaged = driftline(&["train", "--config", &config, "--out", &v1, "--resume"]);
    assert_eq!(damaged.status.code(), Some(2), "{}", stderr(&damaged));
    assert!(stderr(&damaged).contains("v1"), "{}", stderr(&damaged));
}

/// `driftline datacheck --champion`: the new window's drift from what the
/// champion was trained on, by the Model's drift rule: reported (a warning
/// per drifted column and the window's verdict) and passing by default,
/// refused with `gate.data.blockOnDrift`; a window like the champion's has
/// no drift to report.
#[test]
fn the_data_check_reports_the_windows_drift_from_the_champion_and_blocks_only_when_asked() {
    let ws = Workspace::new();
    let data = ws.write("train.csv", &synth::generate(1000, 1, Shift::None));
    let config = ws.config("model.yaml", &data, GOOD_TRAINING, MLP);
    let champion = ws.path("champion").display().to_string();
    let out = driftline(&["train", "--config", &config, "--out", &champion]);
    assert!(out.status.success(), "{}", stderr(&out));

    let check = |config: &str| {
        let out = driftline(&["datacheck", "--config", config, "--champion", &champion]);
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
        (out.status.code(), report)
    };
    let named = |report: &serde_json::Value, name: &str| -> Vec<serde_json::Value> {
        report["verdict"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == name)
            .cloned()
            .collect()
    };

    let same = ws.write("same.csv", &synth::generate(1000, 2, Shift::None));
    let (code, report) = check(&ws.config("same.yaml", &same, GOOD_TRAINING, MLP));
    assert_eq!(code, Some(0), "{report:#}");
    let window = named(&report, "windowDrift");
    assert_eq!(window.len(), 1, "{report:#}");
    assert_eq!(window[0]["passed"], true, "{window:#?}");
    assert!(named(&report, "featureDrift").is_empty(), "{report:#}");

    // The covariate shift also moves the class mix and the value ranges,
    // which the data check refuses on its own: loosened here, so that the
    // drift alone is judged.
    let moved = ws.write("moved.csv", &synth::generate(1000, 3, Shift::Covariate));
    let with_gate_data = |name: &str, data: &str| {
        let text = std::fs::read_to_string(ws.config(name, &moved, GOOD_TRAINING, MLP))
            .unwrap()
            .replace("    testSet:", &format!("    data: {data}\n    testSet:"));
        ws.write(name, &text)
    };
    let loose = "{maxClassShareChange: 1.0, maxOutOfRangeRate: 1.0";
    let (code, report) = check(&with_gate_data("moved.yaml", &format!("{loose}}}")));
    assert_eq!(code, Some(0), "drift is reported, not blocking: {report:#}");
    assert_eq!(report["verdict"]["passed"], true);
    let window = named(&report, "windowDrift");
    assert_eq!(window[0]["passed"], false, "{window:#?}");
    assert_eq!(window[0]["blocking"], false);
    assert!(
        window[0]["message"]
            .as_str()
            .unwrap()
            .contains("set gate.data.blockOnDrift"),
        "{window:#?}"
    );
    let columns: Vec<String> = named(&report, "featureDrift")
        .iter()
        .map(|c| c["column"].as_str().unwrap().to_string())
        .collect();
    assert!(
        columns.iter().any(|c| c == "x1") && columns.iter().any(|c| c == "x2"),
        "the covariate shift moves x1 and x2: {columns:?}"
    );

    // The same window with `blockOnDrift`: refused, exit 1.
    let (code, report) = check(&with_gate_data(
        "blocking.yaml",
        &format!("{loose}, blockOnDrift: true}}"),
    ));
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["verdict"]["passed"], false);
    assert_eq!(named(&report, "windowDrift")[0]["blocking"], true);
}
