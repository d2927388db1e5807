//! The annotation queue's files (`<feedback prefix>/queue/<date>/….jsonl`):
//! the one row format the model servers and the gateway write and
//! `driftline label`, the dashboard and `driftline testset suggest` read,
//! and the label line a person's answer becomes (under `labels/`, joined
//! with the prediction log by training like any late label, and counted
//! apart in the lineage by its `source`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::QueueReason;
use crate::api::names::{LABELS_DIR, QUEUE_DIR, feedback_file};

use super::error::DataError;
use super::store;

/// `source` of a label a person gave through `driftline label`.
pub const ANNOTATION_SOURCE: &str = "annotation";

/// One served row set aside for a person's label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRow {
    /// The inference id of the request, and the row within it: the key of
    /// the prediction log a label joins.
    pub id: String,
    #[serde(default)]
    pub row: u64,
    /// The version that answered (`v3`).
    pub version: String,
    pub time: DateTime<Utc>,
    pub reason: QueueReason,
    /// Why, in the reason's words and numbers (`margin 0.04 between good
    /// and bad`, `alcohol 31× more common than in training`).
    pub why: String,
    /// Higher is more worth a label, within one reason.
    pub score: f64,
    /// The row's inputs by feature name.
    pub features: Map<String, Value>,
    /// What the served version answered.
    pub prediction: Value,
    /// Disagreements: what the shadow candidate answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Value>,
}

impl QueuedRow {
    /// The key a label is written and joined under.
    pub fn key(&self) -> (String, u64) {
        (self.id.clone(), self.row)
    }
}

/// What the queue holds: the rows in file order, then the lines that could
/// not be read (each named by file and line; the file is left as it is).
#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub rows: Vec<QueuedRow>,
    pub problems: Vec<String>,
}

impl Queue {
    /// Rows by reason.
    pub fn counts(&self) -> BTreeMap<QueueReason, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.rows {
            *counts.entry(r.reason).or_default() += 1;
        }
        counts
    }
}

/// The queue folder under a feedback prefix.
pub fn queue_prefix(feedback_prefix: &str) -> String {
    format!("{}/{QUEUE_DIR}/", feedback_prefix.trim_end_matches('/'))
}

/// Parses one queue file; a line that is no queued row is reported and
/// skipped, the others kept.
pub fn parse_queue_file(uri: &str, data: &[u8], queue: &mut Queue) {
    let text = String::from_utf8_lossy(data);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<QueuedRow>(line) {
            Ok(row) => queue.rows.push(row),
            Err(e) => queue
                .problems
                .push(format!("{uri} line {}: not a queued row: {e}", i + 1)),
        }
    }
}

/// Reads every queue file under the feedback prefix, oldest file first;
/// the same row queued twice (by two replicas) is kept once.
pub async fn read_queue(feedback_prefix: &str) -> Result<Queue, DataError> {
    let mut queue = Queue::default();
    for uri in store::list(&queue_prefix(feedback_prefix), ".jsonl").await? {
        let data = store::read_bytes(&uri).await?;
        parse_queue_file(&uri, &data, &mut queue);
    }
    let mut seen = BTreeSet::new();
    queue.rows.retain(|r| seen.insert(r.key()));
    Ok(queue)
}

/// The labels a person gave through `driftline label` (label files whose
/// lines carry `source: annotation`), by (id, row); the last one read wins,
/// as at training. Unreadable lines are skipped here: training reports them
/// when it reads the files.
pub async fn annotated_labels(
    feedback_prefix: &str,
) -> Result<BTreeMap<(String, u64), Value>, DataError> {
    let dir = format!("{}/{LABELS_DIR}/", feedback_prefix.trim_end_matches('/'));
    let mut labels = BTreeMap::new();
    for uri in store::list(&dir, ".jsonl").await? {
        let data = store::read_bytes(&uri).await?;
        for line in String::from_utf8_lossy(&data).lines() {
            let Ok(Value::Object(o)) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if o.get("source").and_then(Value::as_str) != Some(ANNOTATION_SOURCE) {
                continue;
            }
            if let (Some(id), Some(label)) = (o.get("id").and_then(Value::as_str), o.get("label")) {
                let row = o.get("row").and_then(Value::as_u64).unwrap_or(0);
                labels.insert((id.to_string(), row), label.clone());
            }
        }
    }
    Ok(labels)
}

/// A person's label for a queued row, as one JSON Lines label line: the
/// late-label shape (`id`, `row`, `label`) plus where it came from.
pub fn annotation_label(row: &QueuedRow, label: Value, user: &str, at: DateTime<Utc>) -> Vec<u8> {
    let mut line = Map::new();
    line.insert("id".into(), Value::String(row.id.clone()));
    line.insert("row".into(), Value::from(row.row));
    line.insert("label".into(), label);
    line.insert("source".into(), Value::String(ANNOTATION_SOURCE.into()));
    line.insert("user".into(), Value::String(user.into()));
    line.insert("reason".into(), Value::String(row.reason.to_string()));
    line.insert("time".into(), Value::String(at.to_rfc3339()));
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Where one answer is written: its own file under `labels/<date>/`, so
/// that each answer is stored the moment it is given (an interrupted
/// session loses nothing) and two labellers never write the same file.
pub fn annotation_label_uri(feedback_prefix: &str, at: DateTime<Utc>) -> String {
    let unique = format!("annotation-{}", uuid::Uuid::new_v4().simple());
    format!(
        "{}/{}",
        feedback_prefix.trim_end_matches('/'),
        feedback_file(LABELS_DIR, at, &unique)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, reason: QueueReason) -> QueuedRow {
        let mut features = Map::new();
        features.insert("alcohol".into(), Value::from(11.5));
        QueuedRow {
            id: id.into(),
            row: 0,
            version: "v1".into(),
            time: "2026-12-01T10:00:00Z".parse().unwrap(),
            reason,
            why: "margin 0.02".into(),
            score: 0.98,
            features,
            prediction: Value::String("good".into()),
            shadow: None,
        }
    }

    #[tokio::test]
    async fn queue_files_are_read_duplicates_once_and_bad_lines_named_without_losing_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = format!("{}/fb/", tmp.path().display());
        let dir = tmp.path().join("fb/queue/2026-12-01");
        std::fs::create_dir_all(&dir).unwrap();
        let line = |r: &QueuedRow| serde_json::to_string(r).unwrap() + "\n";
        let a = row("a", QueueReason::Uncertain);
        let b = row("b", QueueReason::Drifted);
        std::fs::write(dir.join("1.jsonl"), line(&a) + &line(&b)).unwrap();
        // A second replica queued `a` too; a torn line follows.
        std::fs::write(dir.join("2.jsonl"), line(&a) + "{\"id\": \"c\", \"ro").unwrap();
        let q = read_queue(&prefix).await.unwrap();
        assert_eq!(q.rows, [a.clone(), b]);
        assert_eq!(q.problems.len(), 1, "{:?}", q.problems);
        assert!(
            q.problems[0].contains("2.jsonl line 2: not a queued row"),
            "{:?}",
            q.problems
        );
        assert_eq!(
            q.counts().into_iter().collect::<Vec<_>>(),
            [(QueueReason::Uncertain, 1), (QueueReason::Drifted, 1)]
        );
        // Nothing was rewritten.
        assert!(
            std::fs::read_to_string(dir.join("2.jsonl"))
                .unwrap()
                .ends_with("\"ro")
        );
        assert!(
            read_queue(&format!("{}/none/", tmp.path().display()))
                .await
                .unwrap()
                .rows
                .is_empty()
        );
    }

    #[tokio::test]
    async fn answers_are_label_lines_with_their_source_and_known_as_done() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = format!("{}/fb/", tmp.path().display());
        let at: DateTime<Utc> = "2026-12-02T08:00:00Z".parse().unwrap();
        let uri = annotation_label_uri(&prefix, at);
        assert!(
            uri.contains("/fb/labels/2026-12-02/20261202T080000.000000Z-annotation-"),
            "{uri}"
        );
        let r = row("a", QueueReason::Uncertain);
        let line = annotation_label(&r, Value::String("bad".into()), "alice", at);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], "a");
        assert_eq!(v["row"], 0);
        assert_eq!(v["label"], "bad");
        assert_eq!(v["source"], "annotation");
        assert_eq!(v["user"], "alice");
        store::write_object(&uri, line.into()).await.unwrap();
        // A plain late label is no annotation.
        store::write_object(
            &format!("{prefix}labels/x.jsonl"),
            "{\"id\":\"z\",\"label\":\"bad\"}\n".into(),
        )
        .await
        .unwrap();
        let done = annotated_labels(&prefix).await.unwrap();
        assert_eq!(
            done.into_iter().collect::<Vec<_>>(),
            [(("a".to_string(), 0), Value::String("bad".into()))]
        );
    }
}
