//! Done-when 5 on the embedded cluster (#20): labels that arrive as files
//! two days (operator clock) after their predictions are joined with the
//! prediction log by the operator and move the served version's realised
//! accuracy in status, per day of serving; a malformed label file is named
//! in a condition and an Event while the last numbers stay; and the next
//! training counts the late labels in its lineage.

use crate::operator_support;

use std::path::{Path, PathBuf};

use driftline::api::ConditionStatus;
use driftline::policy::conditions;
use operator_support::*;

/// Every row of the prediction log under `feedback`, in file order.
fn logged_rows(feedback: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = walk(&feedback.join("predictions"));
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("a log file")
                .lines()
                .map(|l| serde_json::from_str(l).expect("a logged row"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every row of the prediction log under `feedback`: (id, prediction).
fn logged(feedback: &Path) -> Vec<(String, String)> {
    let word = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    logged_rows(feedback)
        .iter()
        .map(|row| (word(&row["_id"]), word(&row["_prediction"])))
        .collect()
}

/// The mean confidence the prediction log holds its answers were given with.
fn mean_logged_confidence(feedback: &Path) -> f64 {
    let values: Vec<f64> = logged_rows(feedback)
        .iter()
        .map(|row| {
            row["_confidence"]
                .as_f64()
                .expect("a classifier logs its confidence")
        })
        .collect();
    values.iter().sum::<f64>() / values.len() as f64
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

/// A class other than `class` (wine quality runs 3..8).
fn other_than(class: &str) -> &'static str {
    if class == "5" { "6" } else { "5" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn labels_that_arrive_two_days_late_as_files_move_the_served_versions_accuracy() {
    let h = Harness::start(228, 1.0).await;
    let spec = quick_wine();
    assert!(
        spec.data.include_feedback,
        "the bundled Model keeps feedback"
    );
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    let gateway = h.service_url("wine-quality").await;
    // 1 000 unlabelled requests: one full batch of the prediction log.
    let report = load_labelled(
        h.http(),
        gateway,
        "wine-quality",
        &spec,
        (200.0, 60, Some(1000)),
        false,
    )
    .await;
    assert_eq!(report.ok, 1000, "{report:?}");
    let feedback = h.artifacts.join("ml/wine-quality/feedback");
    let mut rows = Vec::new();
    for _ in 0..240 {
        rows = logged(&feedback);
        if rows.len() >= 1000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(rows.len(), 1000, "the prediction log holds every request");
    let served = h.model_status("wine-quality").await;
    assert!(served.realised_accuracy.is_none(), "nothing labelled yet");
    // The 1 000 requests close one drift window: an estimate, no label yet.
    let estimate = h
        .wait_model("wine-quality", MINUTES, "an estimated accuracy", |m| {
            m.status.as_ref()?.estimated_accuracy.clone()
        })
        .await;
    assert_eq!((estimate.labelled, estimate.realised), (0, None));

    // Two days later on the operator's clock, the labels land as files: 700
    // of the answers were right. The first row is labelled twice, wrong in
    // the first file and right in the second (the last one counts), and one
    // label names a request never served.
    h.clock.advance(chrono::TimeDelta::days(2));
    // A reconcile that began before the jump would join on the old clock:
    // the labels land once one that began after it has finished.
    let seen = h.reconciles();
    h.poke("wine-quality").await;
    h.wait_reconciles(seen + 2, MINUTES).await;
    let labels = feedback.join("labels");
    std::fs::create_dir_all(&labels).expect("labels/");
    let mut first = String::from("id,label\n");
    for (i, (id, prediction)) in rows.iter().enumerate() {
        let label = if i == 0 || i >= 700 {
            other_than(prediction)
        } else {
            prediction.as_str()
        };
        first.push_str(&format!("{id},{label}\n"));
    }
    first.push_str("never-served,5\n");
    std::fs::write(labels.join("a.csv"), first).expect("label file");
    std::fs::write(
        labels.join("b.jsonl"),
        format!("{{\"id\":\"{}\",\"label\":\"{}\"}}\n", rows[0].0, rows[0].1),
    )
    .expect("label file");
    h.poke("wine-quality").await;
    let realised = h
        .wait_model("wine-quality", MINUTES, "late labels joined", |m| {
            let r = m.status.as_ref()?.realised_accuracy.clone()?;
            let labelled: u64 = r.windows.iter().map(|w| w.labelled).sum();
            (labelled == 1000 && r.label_files == 2).then_some(r)
        })
        .await;
    assert_eq!(
        (
            realised.label_files,
            realised.unknown_labels,
            realised.duplicate_labels
        ),
        (2, 1, 1),
        "{realised:?}"
    );
    assert!(
        realised.joined_at >= h.clock.now() - chrono::TimeDelta::hours(1)
            && realised.joined_at > chrono::Utc::now() + chrono::TimeDelta::days(1),
        "joined on the operator's clock, two days on: {realised:?}"
    );
    // Every request was served by v1, today (a run crossing midnight UTC
    // splits them over two days).
    assert!(
        realised.windows.iter().all(|w| w.version == "v1"),
        "{realised:?}"
    );
    let correct: u64 = realised.windows.iter().map(|w| w.correct).sum();
    assert_eq!(correct, 700, "{realised:?}");
    if let [day] = realised.windows.as_slice() {
        assert_eq!(day.accuracy, 0.7, "{day:?}");
    }
    println!("realised after the late labels: {:?}", realised.windows);
    // The estimate is judged on exactly these labels: what it said of the
    // requests (the confidence logged with each answer) against the 0.7
    // they realised, and EstimateUnreliable follows the tolerance (0.05).
    let said = mean_logged_confidence(&feedback);
    let judged = h
        .wait_model(
            "wine-quality",
            MINUTES,
            "the estimate judged on late labels",
            |m| {
                let e = m.status.as_ref()?.estimated_accuracy.clone()?;
                (e.labelled == 1000).then_some(e)
            },
        )
        .await;
    assert_eq!(judged.realised, Some(0.7), "{judged:?}");
    let on_labelled = judged
        .estimated_on_labelled
        .expect("estimated on the labelled");
    assert!((on_labelled - said).abs() < 1e-6, "{on_labelled} vs {said}");
    let unreliable = h
        .model_status("wine-quality")
        .await
        .condition(conditions::ESTIMATE_UNRELIABLE)
        .cloned()
        .expect("EstimateUnreliable judged");
    println!(
        "estimate on the late labels: {on_labelled:.4} said, 0.7 realised; {}={:?}",
        unreliable.type_, unreliable.status
    );
    let off = (said - 0.7).abs() > 0.05;
    assert_eq!(
        unreliable.status == ConditionStatus::True,
        off,
        "{unreliable:?} ({said} said, 0.7 realised)"
    );
    let status = h.model_status("wine-quality").await;
    let readable = status
        .condition(conditions::LABELS_READABLE)
        .expect("LabelsReadable");
    assert_eq!(readable.status, ConditionStatus::True, "{readable:?}");

    // More labels move it again: 100 of the right answers relabelled wrong.
    let mut third = String::from("id,label\n");
    for (id, prediction) in &rows[100..200] {
        third.push_str(&format!("{id},{}\n", other_than(prediction)));
    }
    std::fs::write(labels.join("c.csv"), third).expect("label file");
    h.poke("wine-quality").await;
    let moved = h
        .wait_model("wine-quality", MINUTES, "the accuracy moved", |m| {
            let r = m.status.as_ref()?.realised_accuracy.clone()?;
            (r.windows.iter().map(|w| w.correct).sum::<u64>() == 600).then_some(r)
        })
        .await;
    assert_eq!(moved.label_files, 3);
    assert_eq!(moved.duplicate_labels, 101, "{moved:?}");

    // A malformed file: named in LabelsUnreadable with its line, the last
    // numbers stay; removed, the join is back.
    std::fs::write(labels.join("d.csv"), "id,label,row\nx,5,first\n").expect("label file");
    h.poke("wine-quality").await;
    let refused = h
        .wait_model("wine-quality", MINUTES, "LabelsReadable=False", |m| {
            let s = m.status.as_ref()?;
            let c = s.condition(conditions::LABELS_READABLE)?;
            (c.status == ConditionStatus::False).then(|| (c.clone(), s.clone()))
        })
        .await;
    assert!(
        refused.0.message.contains("d.csv") && refused.0.message.contains("first"),
        "{:?}",
        refused.0
    );
    assert_eq!(refused.1.realised_accuracy, Some(moved.clone()));
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("LabelsUnreadable:") && e.contains("d.csv")),
        "{events:?}"
    );
    std::fs::remove_file(labels.join("d.csv")).expect("removed");
    h.poke("wine-quality").await;
    h.wait_model("wine-quality", MINUTES, "LabelsReadable=True", |m| {
        let c = m.status.as_ref()?.condition(conditions::LABELS_READABLE)?;
        (c.status == ConditionStatus::True).then_some(())
    })
    .await;

    // The next training joins the same labels: its lineage counts them.
    h.retrain("wine-quality", "with-late-labels").await;
    h.wait_model("wine-quality", MINUTES, "v2 trained", |m| {
        let s = m.status.as_ref()?;
        (s.training.is_none() && s.last_training.as_ref()?.version == "v2").then_some(())
    })
    .await;
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(h.artifacts.join("ml/wine-quality/v2/manifest.json"))
            .expect("v2's manifest"),
    )
    .expect("JSON");
    let late = &manifest["dataset"]["feedback"]["lateLabels"];
    assert_eq!(
        (&late["files"], &late["joined"], &late["unknown"]),
        (
            &serde_json::json!(3),
            &serde_json::json!(1000),
            &serde_json::json!(1)
        ),
        "{late}"
    );
    h.shutdown().await;
}
