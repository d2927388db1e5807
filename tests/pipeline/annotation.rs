//! The annotation queue end to end (#23): a model server with a budget
//! (`spec.feedback.annotation`) sets aside its least certain rows and, once
//! a window drifted, rows from where traffic moved, each lane within its
//! budget; `driftline label` (a real process, answers piped through stdin)
//! refuses a malformed label, saves the rest, resumes where it stopped and
//! names a corrupt queue file; the next `driftline train` reads the labels
//! and counts them apart in its lineage; `driftline testset suggest`
//! proposes the labelled rows that cover what the test set lacks.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use driftline::api::{AnnotationSpec, DriftSpec};
use driftline::data::{Cell, Table, load_feedback, read_queue};
use driftline::drift::DriftConfig;
use driftline::ml::synth::{self, Shift};
use driftline::serve::{FeedbackConfig, ServerConfig, StoreFeedbackSink};
use serde_json::{Value, json};

use super::serve_artifact::{body, client, metadata_features, serve};

const MODEL: &str = "synthetic";

fn driftline(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("driftline runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("driftline ends")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Model file both trainings read: synthetic rows, feedback on.
fn model_yaml(dir: &Path, data: &str) -> String {
    let test = dir.join("test.csv");
    std::fs::write(&test, synth::generate(400, 21, Shift::None)).unwrap();
    let path = dir.join("model.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {{name: {MODEL}}}
spec:
  task: classification
  data: {{source: "file://{data}", target: label, includeFeedback: true}}
  architecture: {{type: mlp, hiddenLayers: [16]}}
  training: {{epochs: 6, batchSize: 32, learningRate: 0.01, seed: 3}}
  feedback:
    annotation: {{perDay: 480, uncertaintyShare: 0.5, driftShare: 0.5}}
  gate:
    testSet: "{}"
    metrics: [{{name: accuracy, min: 0.5}}]
"#,
            test.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertain_and_drifted_rows_are_queued_within_budget_labelled_and_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let root_s = root.display().to_string();
    let data = dir.path().join("train.csv");
    std::fs::write(&data, synth::generate(1500, 1, Shift::None)).unwrap();
    let config = model_yaml(dir.path(), &data.display().to_string());
    // v1 as the operator lays it out: <root>/<namespace>/<model>/v1.
    let v1 = root.join("default").join(MODEL).join("v1");
    let out = driftline(
        &[
            "train",
            "--config",
            &config,
            "--out",
            &v1.display().to_string(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Its gate leaves the test set's sketch beside the report, as a Job does.
    let out = driftline(
        &[
            "evaluate",
            "--candidate",
            &v1.display().to_string(),
            "--config",
            &config,
            "--report",
            &v1.join("gate.json").display().to_string(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Served with its Model's budget: 480 a day, half uncertain, half drifted,
    // so each lane holds an hour's worth, 10 rows.
    let prefix = format!("{root_s}/default/{MODEL}/feedback/");
    let annotation = AnnotationSpec {
        per_day: 480,
        uncertainty_share: 0.5,
        drift_share: 0.5,
    };
    let server = serve(
        &v1.display().to_string(),
        ServerConfig {
            name: Some(MODEL.into()),
            version: Some("v1".into()),
            drift: DriftConfig::from(DriftSpec {
                window: 500,
                ..Default::default()
            }),
            feedback_sink: Some(Arc::new(StoreFeedbackSink::new(&prefix).unwrap())),
            feedback: FeedbackConfig {
                annotation: Some(annotation),
                ..FeedbackConfig::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let features = metadata_features(&server).await;
    let url = format!("http://{}/v2/models/{MODEL}/infer", server.addr);
    // Training-like traffic, 1 000 rows: every row's margin from its answer.
    let calm =
        Table::from_csv("calm.csv", synth::generate(1000, 7, Shift::None).as_bytes()).unwrap();
    let mut margins: Vec<(f64, String)> = Vec::new();
    for (k, start) in (0..1000).step_by(100).enumerate() {
        let mut request = body(&calm, start..start + 100, &features);
        request["id"] = json!(format!("calm-{k}"));
        let answer: Value = client()
            .post(&url)
            .json(&request)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let p = answer["outputs"][1]["data"].as_array().unwrap();
        for row in 0..100 {
            let (a, b) = (
                p[2 * row].as_f64().unwrap(),
                p[2 * row + 1].as_f64().unwrap(),
            );
            margins.push(((a - b).abs(), format!("calm-{k}/{row}")));
        }
    }
    server.flush_feedback().await.unwrap();
    let queue = read_queue(&prefix).await.unwrap();
    assert!(queue.problems.is_empty(), "{:?}", queue.problems);
    let uncertain: BTreeSet<String> = queue
        .rows
        .iter()
        .map(|r| {
            assert_eq!(r.reason.to_string(), "uncertain", "no drift yet: {r:?}");
            assert_eq!(r.version, "v1");
            assert!(r.why.starts_with("margin "), "{}", r.why);
            format!("{}/{}", r.id, r.row)
        })
        .collect();
    // Exactly the ten least certain answers of the traffic.
    margins.sort_by(|a, b| a.0.total_cmp(&b.0));
    let least: BTreeSet<String> = margins[..10].iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(uncertain, least);

    // Covariate shift: the first 500 rows close a drifted window, the next
    // 500 are scored against where it moved.
    let shifted = Table::from_csv(
        "shift.csv",
        synth::generate(1000, 8, Shift::Covariate).as_bytes(),
    )
    .unwrap();
    for (k, start) in (0..1000).step_by(100).enumerate() {
        let mut request = body(&shifted, start..start + 100, &features);
        request["id"] = json!(format!("shift-{k}"));
        let r = client().post(&url).json(&request).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    server.flush_feedback().await.unwrap();
    let queue = read_queue(&prefix).await.unwrap();
    let counts: Vec<(String, usize)> = queue
        .counts()
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    // Each lane within its budget: no uncertain token came back in seconds.
    assert_eq!(
        counts,
        [("uncertain".to_string(), 10), ("drifted".to_string(), 10)]
    );
    for r in queue
        .rows
        .iter()
        .filter(|r| r.reason.to_string() == "drifted")
    {
        assert!(r.id.starts_with("shift-"), "{r:?}");
        assert!(
            r.why.starts_with("x1 ") || r.why.starts_with("x2 "),
            "{}",
            r.why
        );
        // The window closes on shift-4's rows (the 1 500th row served), before
        // they are offered: from then on rows are scored against where it moved.
        let k: usize = r.id["shift-".len()..].parse().unwrap();
        assert!(k >= 4, "served once the drifted window closed: {}", r.id);
    }

    // A torn queue file: named, left alone, the rest still labelled.
    let torn = root
        .join("default")
        .join(MODEL)
        .join("feedback/queue/2026-01-01/torn.jsonl");
    std::fs::create_dir_all(torn.parent().unwrap()).unwrap();
    std::fs::write(&torn, "{\"id\": \"x\", \"ro").unwrap();

    // A person labels five rows, after one malformed answer, then quits.
    let label_args = [
        "label",
        MODEL,
        "--artifact-root",
        &root_s,
        "--user",
        "alice",
    ];
    let out = driftline(&label_args, "maybe\n1\n0\n1\n1\n0\nq\n");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(stdout.contains("[1/20] uncertain · v1"), "{stdout}");
    assert!(
        stdout.contains(
            "`maybe`: \"maybe\" is not a class of this model; classes: 0, 1; nothing saved"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Labelled 5, skipped 0; 15 left"),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("torn.jsonl line 1: not a queued row"),
        "{stderr}"
    );
    assert!(
        torn.exists(),
        "the corrupt file is left for a person to look at"
    );
    // Resumed: the sixth row comes first, one skipped, three labelled, end of input.
    let out = driftline(&label_args, "s\n1\n1\n0\n");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("[1/15]"), "{stdout}");
    assert!(
        stdout.contains("Labelled 3, skipped 1; 12 left"),
        "{stdout}"
    );
    // Only the drifted rows: four labelled.
    let mut drifted_args = label_args.to_vec();
    drifted_args.extend(["--reason", "drifted"]);
    let out = driftline(&drifted_args, "1\n0\n1\n1\nq\n");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("[1/10] drifted · v1"), "{stdout}");
    assert!(stdout.contains("Labelled 4, skipped 0; 6 left"), "{stdout}");
    let labels_dir = root.join("default").join(MODEL).join("feedback/labels");
    let mut lines = Vec::new();
    for day in std::fs::read_dir(&labels_dir).unwrap() {
        for f in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let t = std::fs::read_to_string(f.unwrap().path()).unwrap();
            lines.extend(t.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    assert_eq!(lines.len(), 12);
    assert!(
        lines
            .iter()
            .all(|l| l["source"] == "annotation" && l["user"] == "alice")
    );

    // The next training reads them with the logged inputs and counts them apart.
    let v2 = root.join("default").join(MODEL).join("v2");
    let out = driftline(
        &[
            "train",
            "--config",
            &config,
            "--out",
            &v2.display().to_string(),
            "--feedback",
            &prefix,
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(v2.join("manifest.json")).unwrap()).unwrap();
    let late = &manifest["dataset"]["feedback"]["lateLabels"];
    assert_eq!(late["annotated"], 12, "{late}");
    assert_eq!(late["joined"], 12, "{late}");
    let fb = load_feedback(&prefix, "label").await.unwrap();
    assert_eq!(fb.late.annotated, 12);
    // Each training row is a labelled queue row: its logged inputs, the label given.
    let queued = read_queue(&prefix).await.unwrap();
    let x1_of = |id: &str, row: u64| -> String {
        let r = queued
            .rows
            .iter()
            .find(|r| r.id == id && r.row == row)
            .expect("a labelled row was queued");
        format!("{:.6}", r.features["x1"].as_f64().unwrap())
    };
    let given: Vec<(String, String)> = {
        let mut v: Vec<_> = lines
            .iter()
            .map(|l| {
                let (id, row) = (l["id"].as_str().unwrap(), l["row"].as_u64().unwrap());
                (x1_of(id, row), l["label"].as_str().unwrap().to_string())
            })
            .collect();
        v.sort();
        v
    };
    let x1 = fb.table.column("x1", "feedback").unwrap();
    let label = fb.table.column("label", "feedback").unwrap();
    let read: Vec<(String, String)> = {
        let mut v: Vec<_> = (0..fb.table.rows)
            .map(|i| {
                let Cell::Number(x) = x1[i] else {
                    panic!("x1 is a number: {:?}", x1[i])
                };
                (format!("{x:.6}"), label[i].as_text().unwrap())
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        read, given,
        "exactly the labelled rows, with the labels given"
    );

    // The labelled rows from the shifted traffic cover what the test set
    // (training-like) lacks; the calm ones do not.
    let out = driftline(
        &[
            "testset",
            "suggest",
            MODEL,
            "--artifact-root",
            &root_s,
            "--limit",
            "50",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (csv, stderr) = (text(&out.stdout), text(&out.stderr));
    let mut csv_lines = csv.lines();
    assert_eq!(
        csv_lines.next(),
        Some("x1,x2,x3,x4,x5,x6,x7,x8,segment,label")
    );
    assert!(csv_lines.count() >= 4, "{csv}\n{stderr}");
    assert!(stderr.contains("holds more than v1's test set"), "{stderr}");
    // Ranked: the four labelled rows from the shifted traffic come first.
    let ranked: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("request "))
        .collect();
    assert!(ranked.len() >= 4, "{stderr}");
    assert!(
        ranked[..4].iter().all(|r| r.starts_with("shift-")),
        "{stderr}"
    );
}
