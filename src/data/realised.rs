//! The accuracy labels realised, per served version and window of serving
//! time: every label under a Model's feedback prefix — the rows its servers
//! labelled themselves and the label files under `labels/`, joined with the
//! prediction log by inference id — set against the answer logged with it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::error::DataError;
use super::feedback::{LateLabels, RowKey, join_logged, joined_rows, read_labels};

/// Labelled and right answers of one version in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealisedCount {
    pub labelled: u64,
    pub correct: u64,
    /// Those logged with the confidence they were answered with: what the
    /// estimated accuracy said of them, set against what they realised.
    pub scored: crate::api::LabelCounts,
}

/// What the labels under a feedback prefix realised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealisedLabels {
    /// (version, window start) → its counts.
    pub windows: BTreeMap<(String, DateTime<Utc>), RealisedCount>,
    /// Labels the servers joined to requests they still remembered.
    pub served: usize,
    /// What came of the label files (as a training's join counts them).
    pub late: LateLabels,
}

/// A labelled answer: which version gave it, when, what it said, the label.
struct Labelled {
    version: String,
    time: DateTime<Utc>,
    prediction: Value,
    confidence: Option<f64>,
    label: Value,
}

/// The answer and serving time logged in `row` (a prediction-log or
/// labelled-feedback row), with `label`; `None` for a row without them.
fn labelled(row: &Map<String, Value>, label: Value) -> Option<Labelled> {
    let time = row.get("_time")?.as_str()?;
    Some(Labelled {
        version: row.get("_version")?.as_str()?.to_string(),
        time: DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc),
        prediction: row.get("_prediction")?.clone(),
        confidence: row.get("_confidence").and_then(Value::as_f64),
        label,
    })
}

/// A class as a word: `5`, `5.0` and `"5"` are one class (a CSV label file
/// reads numbers as numbers; a classifier answers with its class names).
fn class_word(v: &Value) -> Option<String> {
    let word = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    Some(match word.parse::<f64>() {
        Ok(x) if x.is_finite() => format!("{x}"),
        _ => word,
    })
}

fn same_class(a: &Value, b: &Value) -> bool {
    matches!((class_word(a), class_word(b)), (Some(x), Some(y)) if x == y)
}

/// The start of the window of length `window` that holds `t`, windows
/// counted from the Unix epoch (whole UTC days for one day).
pub fn window_start(t: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    let w = window.num_seconds().max(1);
    DateTime::from_timestamp(t.timestamp().div_euclid(w) * w, 0).unwrap_or(t)
}

/// Reads every label under `prefix` and counts each labelled row against
/// the answer logged with it, by version and window of `window` serving
/// time. A label given twice for one (id, row) counts once: a label file
/// wins over the server's own join, the last file over earlier ones.
pub async fn realised_labels(
    prefix: &str,
    target: &str,
    window: Duration,
) -> Result<RealisedLabels, DataError> {
    let mut answers: BTreeMap<RowKey, Labelled> = BTreeMap::new();
    // Rows the servers labelled themselves: the logged row with its label.
    for (key, row, label) in joined_rows(prefix, target).await? {
        if let Some(answer) = labelled(&row, label) {
            answers.insert(key, answer);
        }
    }
    let served = answers.len();
    let (mut labels, mut late) = read_labels(prefix, &mut Sha256::default()).await?;
    join_logged(
        prefix,
        &mut labels,
        &mut Sha256::default(),
        |key, row, label, _| {
            if let Some(answer) = labelled(&row, label) {
                answers.insert(key, answer);
                late.joined += 1;
            }
            Ok(())
        },
    )
    .await?;
    late.unknown = labels.len();
    let mut windows: BTreeMap<(String, DateTime<Utc>), RealisedCount> = BTreeMap::new();
    for answer in answers.into_values() {
        let count = windows
            .entry((answer.version, window_start(answer.time, window)))
            .or_default();
        let right = u64::from(same_class(&answer.prediction, &answer.label));
        count.labelled += 1;
        count.correct += right;
        if let Some(confidence) = answer.confidence {
            count.scored.labelled += 1;
            count.scored.correct += right;
            count.scored.confidence_sum += confidence;
        }
    }
    Ok(RealisedLabels {
        windows,
        served,
        late,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(id: &str, row: u64, version: &str, time: &str, prediction: &str) -> String {
        format!(
            "{{\"_id\":\"{id}\",\"_row\":{row},\"_version\":\"{version}\",\"_time\":\"{time}\",\"x\":1.5,\"_prediction\":\"{prediction}\"}}\n"
        )
    }

    /// A logged row with the confidence it was answered with.
    fn scored(id: &str, version: &str, time: &str, prediction: &str, confidence: f64) -> String {
        logged(id, 0, version, time, prediction)
            .replace("\"x\":", &format!("\"_confidence\":{confidence},\"x\":"))
    }

    #[tokio::test]
    async fn labels_from_files_and_from_the_servers_count_against_the_logged_answer_by_version_and_day()
     {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for dir in ["predictions/2026-01-01", "labels", "2026-01-01"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let (day1, day2) = ("2026-01-01T10:00:00Z", "2026-01-02T09:30:00+01:00");
        std::fs::write(
            root.join("predictions/2026-01-01/a.jsonl"),
            scored("r1", "v1", day1, "5", 0.875)
                + &scored("r2", "v1", day1, "6", 0.625)
                + &logged("r3", 0, "v2", day1, "5")
                + &logged("r4", 0, "v1", day2, "5")
                + &logged("r5", 0, "v1", day2, "7"),
        )
        .unwrap();
        // A server joined r5 itself (its label `7`: right), and r2 (`5`:
        // wrong, but a later label file says `6`).
        std::fs::write(
            root.join("2026-01-01/fb.jsonl"),
            "{\"_id\":\"r5\",\"quality\":7,\"_version\":\"v1\",\"_time\":\"2026-01-02T08:30:00Z\",\"_prediction\":\"7\",\"_confidence\":0.5}\n\
             {\"_id\":\"r2\",\"quality\":5,\"_version\":\"v1\",\"_time\":\"2026-01-01T10:00:00Z\",\"_prediction\":\"6\"}\n",
        )
        .unwrap();
        // Two days later, as files: numbers and words name the same classes.
        std::fs::write(
            root.join("labels/late.csv"),
            "id,label\nr1,5\nr2,6\nr3,6\nr4,6.0\nghost,5\n",
        )
        .unwrap();
        let r = realised_labels(&root.display().to_string(), "quality", Duration::days(1))
            .await
            .unwrap();
        let at = |d: &str| DateTime::parse_from_rfc3339(d).unwrap().with_timezone(&Utc);
        let count = |labelled, correct, scored: (u64, u64, f64)| RealisedCount {
            labelled,
            correct,
            scored: crate::api::LabelCounts {
                labelled: scored.0,
                correct: scored.1,
                confidence_sum: scored.2,
            },
        };
        // Only rows logged with their confidence are scored: r1 and r2 (the
        // log), r5 (the server's own join); r3 and r4 were logged without.
        assert_eq!(
            r.windows,
            BTreeMap::from([
                (
                    ("v1".into(), at("2026-01-01T00:00:00Z")),
                    count(2, 2, (2, 2, 1.5))
                ),
                (
                    ("v1".into(), at("2026-01-02T00:00:00Z")),
                    count(2, 1, (1, 1, 0.5))
                ),
                (
                    ("v2".into(), at("2026-01-01T00:00:00Z")),
                    count(1, 0, (0, 0, 0.0))
                ),
            ])
        );
        assert_eq!(r.served, 2);
        assert_eq!(
            r.late,
            LateLabels {
                files: 1,
                labels: 5,
                joined: 4,
                unknown: 1,
                duplicates: 0,
                annotated: 0,
            }
        );
    }

    #[tokio::test]
    async fn a_malformed_label_file_is_named_and_no_count_is_given() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("labels")).unwrap();
        std::fs::write(tmp.path().join("labels/bad.csv"), "ident,label\nr1,5\n").unwrap();
        let err = realised_labels(&tmp.path().display().to_string(), "y", Duration::days(1))
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("bad.csv") && err.contains("`id` and `label`"),
            "{err}"
        );
    }

    #[test]
    fn windows_are_counted_from_the_epoch_and_classes_compare_as_words() {
        let t = DateTime::parse_from_rfc3339("2026-03-04T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            window_start(t, Duration::days(1)).to_rfc3339(),
            "2026-03-04T00:00:00+00:00"
        );
        assert_eq!(
            window_start(t, Duration::hours(6)).to_rfc3339(),
            "2026-03-04T18:00:00+00:00"
        );
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert!(same_class(&v("5"), &v("\"5\"")));
        assert!(same_class(&v("5.0"), &v("\"5\"")));
        assert!(same_class(&v("\"good\""), &v("\" good\"")));
        assert!(!same_class(&v("\"5\""), &v("\"6\"")));
        assert!(!same_class(&v("null"), &v("null")));
    }
}
