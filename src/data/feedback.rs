//! Labelled traffic the model server captured (`*.jsonl` under a prefix),
//! read back as training rows, and labels that arrived too late for the
//! server's own join (files under `labels/`), joined here with the
//! prediction log (`predictions/`) by inference id.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::names::{LABELS_DIR, PREDICTION_LOG_DIR, QUEUE_DIR};

use super::error::DataError;
use super::queue::ANNOTATION_SOURCE;
use super::store;
use super::table::{Cell, Table};

/// Labelled traffic the model server captured under a prefix.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// All rows of all `*.jsonl` files, in file-name order.
    pub table: Table,
    /// How many files were read.
    pub files: usize,
    /// Rows dropped because their target was missing.
    pub skipped_rows: usize,
    /// Labels from `labels/` joined with the prediction log (their rows are
    /// in `table` too).
    pub late: LateLabels,
}

/// What came of the label files under `labels/`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LateLabels {
    /// Label files read.
    pub files: usize,
    /// Distinct (id, row) labels after duplicates.
    pub labels: usize,
    /// Labels matched to a logged prediction: training rows.
    pub joined: usize,
    /// Labels whose id (and row) no logged prediction has.
    pub unknown: usize,
    /// Labels given again for the same (id, row): the last one read wins
    /// (files in name order, lines in order).
    pub duplicates: usize,
    /// Of `joined`, the rows a person labelled from the annotation queue
    /// (`driftline label`, `source: annotation`).
    pub annotated: usize,
}

/// A request row: its inference id and the row in that request.
pub(super) type RowKey = (String, u64);

/// One parsed label line: id, row, label, and whether its `source` is the
/// annotation queue.
type LabelLine = (String, u64, Value, bool);

/// The late labels by request row: the label, and whether a person gave it
/// from the annotation queue.
pub(super) type Labels = BTreeMap<RowKey, (Value, bool)>;

fn malformed(uri: &str, line: u64, reason: impl Into<String>) -> DataError {
    DataError::Malformed {
        source_uri: uri.into(),
        line,
        reason: reason.into(),
    }
}

/// The labels of one file, in order: CSV with an `id` and a `label` column
/// (and optionally `row`, default 0, and `source`), or JSON Lines of
/// `{"id", "label", "row"?, "source"?}` objects. Anything else names the
/// file and the line.
fn parse_labels(uri: &str, data: &[u8]) -> Result<Vec<LabelLine>, DataError> {
    let mut out = Vec::new();
    let row_of = |line: u64, v: Option<&str>| -> Result<u64, DataError> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|_| malformed(uri, line, format!("row `{v}` is not a row number"))),
        }
    };
    if uri.ends_with(".csv") {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(data);
        let header = reader
            .headers()
            .map_err(|e| malformed(uri, 1, e.to_string()))?
            .clone();
        let col = |name: &str| header.iter().position(|h| h == name);
        let (Some(id), Some(label)) = (col("id"), col("label")) else {
            return Err(malformed(
                uri,
                1,
                format!(
                    "a label file needs `id` and `label` columns, found {:?}",
                    header.iter().collect::<Vec<_>>()
                ),
            ));
        };
        let row = col("row");
        let source = col("source");
        for (i, record) in reader.records().enumerate() {
            let line = i as u64 + 2;
            let record = record.map_err(|e| malformed(uri, line, e.to_string()))?;
            let id = record.get(id).unwrap_or_default();
            let text = record.get(label).unwrap_or_default();
            if id.is_empty() || text.is_empty() {
                return Err(malformed(uri, line, "empty id or label"));
            }
            // A number stays a number (regression targets, numeric classes).
            let value = text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(text.into()), Value::Number);
            let annotated = source.and_then(|s| record.get(s)) == Some(ANNOTATION_SOURCE);
            out.push((
                id.to_string(),
                row_of(line, row.and_then(|r| record.get(r)))?,
                value,
                annotated,
            ));
        }
        return Ok(out);
    }
    let text =
        std::str::from_utf8(data).map_err(|e| malformed(uri, 0, format!("not UTF-8: {e}")))?;
    for (i, line_text) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if line_text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line_text)
            .map_err(|e| malformed(uri, line, format!("not valid JSON: {e}")))?;
        let id = match value.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(malformed(
                    uri,
                    line,
                    "expected {\"id\": …, \"label\": …} with a non-empty id",
                ));
            }
        };
        let label = match value.get("label") {
            Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v.clone(),
            _ => {
                return Err(malformed(
                    uri,
                    line,
                    format!("label for `{id}` is missing or null"),
                ));
            }
        };
        let row = match value.get("row") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| malformed(uri, line, format!("row {v} is not a row number")))?,
        };
        let annotated = value.get("source").and_then(Value::as_str) == Some(ANNOTATION_SOURCE);
        out.push((id, row, label, annotated));
    }
    Ok(out)
}

/// Reads every label file under `labels/`, last label per (id, row) wins.
pub(super) async fn read_labels(
    prefix: &str,
    hasher: &mut Sha256,
) -> Result<(Labels, LateLabels), DataError> {
    let dir = format!("{}/{LABELS_DIR}/", prefix.trim_end_matches('/'));
    let files: Vec<String> = store::list(&dir, "")
        .await?
        .into_iter()
        .filter(|u| u.ends_with(".csv") || u.ends_with(".jsonl"))
        .collect();
    let mut labels = Labels::new();
    let mut late = LateLabels {
        files: files.len(),
        ..Default::default()
    };
    for uri in &files {
        let data = store::read_bytes(uri).await?;
        hasher.update(&data);
        for (id, row, label, annotated) in parse_labels(uri, &data)? {
            if labels.insert((id, row), (label, annotated)).is_some() {
                late.duplicates += 1;
            }
        }
    }
    late.labels = labels.len();
    Ok((labels, late))
}

/// One line of the prediction log: its (id, row) key and the whole row.
fn logged_prediction(
    uri: &str,
    line: u64,
    text: &str,
) -> Result<(RowKey, Map<String, Value>), DataError> {
    let row: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| malformed(uri, line, format!("not a logged prediction: {e}")))?;
    match (row.get("_id"), row.get("_row").and_then(Value::as_u64)) {
        (Some(Value::String(id)), Some(r)) => Ok(((id.clone(), r), row)),
        _ => Err(malformed(
            uri,
            line,
            "a logged prediction needs `_id` and `_row`",
        )),
    }
}

/// Joins late labels with the prediction log: one training row (the logged
/// features, the label as `target`) per label whose request was logged.
async fn join_late(
    prefix: &str,
    target: &str,
    mut labels: Labels,
    late: &mut LateLabels,
    hasher: &mut Sha256,
) -> Result<Option<Table>, DataError> {
    let mut joined = Vec::new();
    join_logged(
        prefix,
        &mut labels,
        hasher,
        |_, mut row, label, annotated| {
            row.insert(target.into(), label);
            late.annotated += usize::from(annotated);
            serde_json::to_writer(&mut joined, &row)
                .map_err(|e| malformed(prefix, 0, e.to_string()))?;
            joined.push(b'\n');
            late.joined += 1;
            Ok(())
        },
    )
    .await?;
    late.unknown = labels.len();
    if late.joined == 0 {
        return Ok(None);
    }
    Ok(Some(Table::from_jsonl(
        &format!("{prefix} (late labels)"),
        &joined,
    )?))
}

/// Walks the prediction log while labels wait: each logged row whose
/// (id, row) has a label is handed to `joined` with that label and whether
/// a person gave it from the annotation queue (the label is taken out of
/// `labels`, so what stays is unknown); the bytes read go into `hasher`.
/// The one join of late labels, for training and for realised accuracy.
pub(super) async fn join_logged(
    prefix: &str,
    labels: &mut Labels,
    hasher: &mut Sha256,
    mut joined: impl FnMut(RowKey, Map<String, Value>, Value, bool) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let dir = format!("{}/{PREDICTION_LOG_DIR}/", prefix.trim_end_matches('/'));
    for uri in store::list(&dir, ".jsonl").await? {
        if labels.is_empty() {
            break;
        }
        let data = store::read_bytes(&uri).await?;
        hasher.update(&data);
        let text = std::str::from_utf8(&data)
            .map_err(|e| malformed(&uri, 0, format!("not UTF-8: {e}")))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (key, row) = logged_prediction(&uri, i as u64 + 1, line)?;
            if let Some((label, annotated)) = labels.remove(&key) {
                joined(key, row, label, annotated)?;
            }
        }
    }
    Ok(())
}

/// The files of rows the servers joined with their labels: every `*.jsonl`
/// under `prefix` but the prediction log, the label files and the queue.
async fn joined_files(prefix: &str) -> Result<Vec<String>, DataError> {
    let dir = |d: &str| format!("{}/{d}/", prefix.trim_end_matches('/'));
    let skipped = [dir(PREDICTION_LOG_DIR), dir(LABELS_DIR), dir(QUEUE_DIR)];
    Ok(store::list(prefix, ".jsonl")
        .await?
        .into_iter()
        .filter(|uri| !skipped.iter().any(|d| uri.starts_with(d)))
        .collect())
}

/// Each row the servers joined with its label, in file order: the request
/// row it answers (`_id`, `_row`), the row as written, and its label (rows
/// without an id or a label are passed over); a malformed line is named.
pub(super) async fn joined_rows(
    prefix: &str,
    target: &str,
) -> Result<Vec<(RowKey, Map<String, Value>, Value)>, DataError> {
    let mut out = Vec::new();
    for uri in joined_files(prefix).await? {
        let data = store::read_bytes(&uri).await?;
        let text = std::str::from_utf8(&data)
            .map_err(|e| malformed(&uri, 0, format!("not UTF-8: {e}")))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: Map<String, Value> = serde_json::from_str(line)
                .map_err(|e| malformed(&uri, i as u64 + 1, format!("not a feedback row: {e}")))?;
            let (Some(Value::String(id)), Some(label)) = (row.get("_id"), row.get(target)) else {
                continue;
            };
            if label.is_null() {
                continue;
            }
            let key = (
                id.clone(),
                row.get("_row").and_then(Value::as_u64).unwrap_or(0),
            );
            let label = label.clone();
            out.push((key, row, label));
        }
    }
    Ok(out)
}

/// Every label known for a served request's row, by (inference id, row):
/// those the servers joined and the late label files, read after them (the
/// last label read wins, as at training). For showing labels beside served
/// rows (`driftline disagreements`).
pub async fn known_labels(
    prefix: &str,
    target: &str,
) -> Result<BTreeMap<(String, u64), Value>, DataError> {
    let mut out: BTreeMap<RowKey, Value> = joined_rows(prefix, target)
        .await?
        .into_iter()
        .map(|(key, _, label)| (key, label))
        .collect();
    let (late, _) = read_labels(prefix, &mut Sha256::new()).await?;
    out.extend(late.into_iter().map(|(key, (label, _))| (key, label)));
    Ok(out)
}

/// Reads every `*.jsonl` file under `prefix` but the prediction log
/// (`predictions/`, unlabelled by design), the label files (`labels/`) and
/// the annotation queue (`queue/`, rows waiting for a label).
/// Rows whose `target` is empty are skipped (a label that never arrived must
/// not block retraining); a prefix with no files gives an empty table. Then
/// joins the label files with the prediction log and adds those rows.
pub async fn load_feedback(prefix: &str, target: &str) -> Result<Feedback, DataError> {
    let files = joined_files(prefix).await?;
    let mut table = Table::empty(prefix, Vec::new());
    let mut hasher = Sha256::new();
    let mut skipped_rows = 0;
    for uri in &files {
        let data = store::read_bytes(uri).await?;
        hasher.update(&data);
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let part = Table::from_jsonl(uri, &data)?;
        let labelled: Vec<usize> = match part.position(target) {
            Some(t) => (0..part.rows)
                .filter(|&r| part.columns[t][r] != Cell::Missing)
                .collect(),
            None => Vec::new(),
        };
        skipped_rows += part.rows - labelled.len();
        let part = part.select(&labelled);
        for name in &part.names {
            if table.position(name).is_none() {
                table.names.push(name.clone());
                table.columns.push(vec![Cell::Missing; table.rows]);
            }
        }
        table.append(&part);
    }
    let (labels, mut late) = read_labels(prefix, &mut hasher).await?;
    if !labels.is_empty()
        && let Some(part) = join_late(prefix, target, labels, &mut late, &mut hasher).await?
    {
        for name in &part.names {
            if table.position(name).is_none() {
                table.names.push(name.clone());
                table.columns.push(vec![Cell::Missing; table.rows]);
            }
        }
        table.append(&part);
    }
    table.digest = hex::encode(hasher.finalize());
    Ok(Feedback {
        table,
        files: files.len(),
        skipped_rows,
        late,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn feedback_reads_every_jsonl_file_and_skips_unlabelled_rows() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("2026-01-02")).unwrap();
        std::fs::write(
            tmp.path().join("a.jsonl"),
            "{\"x\":1,\"y\":\"p\",\"_time\":3}\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("2026-01-02/b.jsonl"),
            "{\"x\":2,\"y\":\"q\"}\n{\"x\":3}\n{\"x\":4,\"y\":null}\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("ignored.csv"), "x,y\n9,z\n").unwrap();
        // The prediction log is no training data, labelled or not.
        std::fs::create_dir_all(tmp.path().join("predictions/2026-01-02")).unwrap();
        std::fs::write(
            tmp.path().join("predictions/2026-01-02/p.jsonl"),
            "{\"x\":5,\"y\":\"p\"}\n",
        )
        .unwrap();
        // Nor is the annotation queue: its rows wait for a label.
        std::fs::create_dir_all(tmp.path().join("queue/2026-01-02")).unwrap();
        std::fs::write(
            tmp.path().join("queue/2026-01-02/q.jsonl"),
            "{\"x\":6,\"y\":\"p\"}\n",
        )
        .unwrap();
        let fb = load_feedback(&tmp.path().display().to_string(), "y")
            .await
            .unwrap();
        assert_eq!(fb.files, 2);
        assert_eq!(fb.table.rows, 2);
        assert_eq!(fb.skipped_rows, 2);
        let x = fb.table.column("x", "test").unwrap();
        // File-name order: `2026-01-02/b.jsonl` sorts before `a.jsonl`.
        assert_eq!(x, &[Cell::Number(2.0), Cell::Number(1.0)]);
        let none = load_feedback(&tmp.path().join("none").display().to_string(), "y")
            .await
            .unwrap();
        assert_eq!(none.table.rows, 0);
    }

    fn logged(id: &str, row: u64, x: f64, prediction: &str) -> String {
        format!(
            "{{\"_id\":\"{id}\",\"_row\":{row},\"_version\":\"v1\",\"_time\":\"2026-01-01T00:00:00Z\",\"x\":{x},\"_prediction\":\"{prediction}\"}}\n"
        )
    }

    #[tokio::test]
    async fn late_label_files_join_the_prediction_log_last_label_winning() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("predictions/2026-01-01")).unwrap();
        std::fs::create_dir_all(root.join("labels")).unwrap();
        std::fs::write(
            root.join("predictions/2026-01-01/a.jsonl"),
            logged("r1", 0, 1.0, "p") + &logged("r2", 0, 2.0, "p") + &logged("r2", 1, 3.0, "q"),
        )
        .unwrap();
        // Two days later: r1 labelled twice (the later file wins), r2's
        // second row labelled, and an id never served.
        std::fs::write(
            root.join("labels/1.csv"),
            "id,label,row\nr1,p,\nr2,q,1\nnope,p,0\n",
        )
        .unwrap();
        std::fs::write(
            root.join("labels/2.jsonl"),
            "{\"id\":\"r1\",\"label\":\"q\",\"source\":\"annotation\",\"user\":\"alice\"}\n",
        )
        .unwrap();
        let fb = load_feedback(&root.display().to_string(), "y")
            .await
            .unwrap();
        assert_eq!(fb.files, 0, "no server-joined files");
        assert_eq!(
            fb.late,
            LateLabels {
                files: 2,
                labels: 3,
                joined: 2,
                unknown: 1,
                duplicates: 1,
                annotated: 1,
            }
        );
        assert_eq!(fb.table.rows, 2);
        let x = fb.table.column("x", "test").unwrap().to_vec();
        let y = fb.table.column("y", "test").unwrap().to_vec();
        assert_eq!(x, [Cell::Number(1.0), Cell::Number(3.0)]);
        assert_eq!(y, [Cell::Text("q".into()), Cell::Text("q".into())]);
        // The label files and the log count in the digest: a new label file
        // is new feedback.
        let before = fb.table.digest.clone();
        std::fs::write(root.join("labels/3.csv"), "id,label\nr2,p\n").unwrap();
        let after = load_feedback(&root.display().to_string(), "y")
            .await
            .unwrap();
        assert_ne!(after.table.digest, before);
        assert_eq!(after.late.joined, 3);
    }

    #[tokio::test]
    async fn a_malformed_label_file_is_named_with_its_line_and_nothing_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("labels")).unwrap();
        for (name, body, says) in [
            (
                "a.csv",
                "ident,label\nr1,p\n",
                "needs `id` and `label` columns",
            ),
            (
                "b.csv",
                "id,label,row\nr1,p,first\n",
                "row `first` is not a row number",
            ),
            (
                "c.jsonl",
                "{\"id\":\"r1\"}\n",
                "label for `r1` is missing or null",
            ),
            (
                "d.jsonl",
                "{\"id\":\"r1\",\"label\":\"p\"}\nnot json\n",
                "not valid JSON",
            ),
        ] {
            let dir = root.join(name.replace('.', "_"));
            std::fs::create_dir_all(dir.join("labels")).unwrap();
            std::fs::write(dir.join("labels").join(name), body).unwrap();
            let err = load_feedback(&dir.display().to_string(), "y")
                .await
                .expect_err(name)
                .to_string();
            assert!(err.contains(name) && err.contains(says), "{name}: {err}");
        }
    }

    #[tokio::test]
    async fn known_labels_are_the_joined_rows_then_the_late_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("labels")).unwrap();
        std::fs::create_dir_all(root.join("predictions/d")).unwrap();
        std::fs::write(
            root.join("a.jsonl"),
            "{\"_id\":\"r1\",\"x\":1,\"y\":\"p\"}\n{\"_id\":\"r2\",\"_row\":1,\"x\":2,\"y\":\"q\"}\n{\"_id\":\"r3\",\"x\":3,\"y\":null}\n",
        )
        .unwrap();
        // The log has no labels; a late label overrides r1's.
        std::fs::write(
            root.join("predictions/d/p.jsonl"),
            logged("r9", 0, 1.0, "p"),
        )
        .unwrap();
        std::fs::write(root.join("labels/1.csv"), "id,label\nr1,q\n").unwrap();
        let labels = known_labels(&root.display().to_string(), "y")
            .await
            .unwrap();
        let got: Vec<_> = labels
            .iter()
            .map(|((id, r), l)| (id.as_str(), *r, l.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("r1", 0, Value::String("q".into())),
                ("r2", 1, Value::String("q".into()))
            ]
        );
        std::fs::write(root.join("b.jsonl"), "not json\n").unwrap();
        let err = known_labels(&root.display().to_string(), "y")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.jsonl") && err.contains("not a feedback row"),
            "{err}"
        );
    }
}
