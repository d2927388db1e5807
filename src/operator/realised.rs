//! The late-label join: the accuracy each served version realised per day,
//! from every label under the Model's feedback prefix (the servers' own
//! joins, and label files under `labels/` matched with the prediction log
//! however late they came, #20).
//!
//! The join reads every label and, when there are label files, the
//! prediction log: it runs again only when the listing of the labels
//! changed (and, while some labels matched no logged request, of the
//! prediction log too), at most once per drift poll. What it found is kept
//! in memory and offered to the decision core at every reconcile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::runtime::reflector::ObjectRef;
use sha2::{Digest, Sha256};

use crate::api::names::PREDICTION_LOG_DIR;
use crate::api::{LabelCounts, Model, REALISED_WINDOWS_KEPT, RealisedAccuracy, RealisedWindow};
use crate::data::RealisedLabels;

/// The window of serving time realised accuracy is counted in.
pub const REALISED_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// What one join found: what status shows, and each version's labels that
/// were logged with the confidence they were answered with, over all its
/// windows (what the estimate's reliability is judged on).
#[derive(Clone, Debug, PartialEq)]
pub struct Joined {
    pub status: RealisedAccuracy,
    pub scored: BTreeMap<String, LabelCounts>,
}

/// The last join of one Model.
#[derive(Clone)]
struct Join {
    /// Digests of the listing it read: the labels, and the prediction log.
    labels: String,
    log: String,
    /// When the listing was last compared (real time).
    checked: Instant,
    /// What it found, or why it could not.
    outcome: Result<Joined, String>,
}

impl Join {
    /// Whether what lies under the prefix now calls for another join: new
    /// labels, or a longer log while some labels matched no logged request.
    fn stale(&self, labels: &str, log: &str) -> bool {
        let unmatched = self
            .outcome
            .as_ref()
            .map_or(true, |r| r.status.unknown_labels > 0);
        self.labels != labels || (unmatched && self.log != log)
    }
}

/// Every Model's last join, shared by all reconciles.
#[derive(Default)]
pub struct RealisedJoins {
    models: Mutex<HashMap<ObjectRef<Model>, Join>>,
}

impl RealisedJoins {
    /// The accuracy `model`'s labels under `prefix` realised, joined again
    /// when they changed; `Err` says why they could not be read (a
    /// malformed label file names its line).
    pub async fn read(
        &self,
        model: &Model,
        prefix: &str,
        now: DateTime<Utc>,
        poll: Duration,
    ) -> Result<Joined, String> {
        let key = ObjectRef::from_obj(model);
        let last = self.lock().get(&key).cloned();
        if let Some(last) = last.as_ref().filter(|l| l.checked.elapsed() < poll) {
            return last.outcome.clone();
        }
        let (labels, log) = listing_digests(prefix).await?;
        let outcome = match last.filter(|l| !l.stale(&labels, &log)) {
            Some(last) => last.outcome,
            None => {
                tracing::debug!(prefix, "joining the labels under the feedback prefix");
                crate::data::realised_labels(prefix, &model.spec.data.target, REALISED_WINDOW)
                    .await
                    .map(|found| Joined {
                        status: status_of(&found, now),
                        scored: scored_by_version(&found),
                    })
                    .map_err(|e| crate::error_chain(&e))
            }
        };
        self.lock().insert(
            key,
            Join {
                labels,
                log,
                checked: Instant::now(),
                outcome: outcome.clone(),
            },
        );
        outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Model>, Join>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Digests of what lies under `prefix` (names, sizes, version tags): the
/// labels (all but the prediction log), and the prediction log.
async fn listing_digests(prefix: &str) -> Result<(String, String), String> {
    let log_dir = format!("{}/{PREDICTION_LOG_DIR}/", prefix.trim_end_matches('/'));
    let objects = crate::data::store::list_objects(prefix)
        .await
        .map_err(|e| crate::error_chain(&e))?;
    let (mut labels, mut log) = (Sha256::new(), Sha256::new());
    for o in &objects {
        let line = format!("{}\t{}\t{}\n", o.uri, o.size, o.tag);
        if o.uri.starts_with(&log_dir) {
            log.update(line);
        } else {
            labels.update(line);
        }
    }
    Ok((hex::encode(labels.finalize()), hex::encode(log.finalize())))
}

/// Each version's scored labels over all its windows.
pub fn scored_by_version(labels: &RealisedLabels) -> BTreeMap<String, LabelCounts> {
    let mut out: BTreeMap<String, LabelCounts> = BTreeMap::new();
    for ((version, _), c) in &labels.windows {
        let total = out.entry(version.clone()).or_default();
        total.labelled += c.scored.labelled;
        total.correct += c.scored.correct;
        total.confidence_sum += c.scored.confidence_sum;
    }
    out
}

/// What status shows of a join at `now`: each version's windows, the
/// latest [`REALISED_WINDOWS_KEPT`], oldest first.
pub fn status_of(labels: &RealisedLabels, now: DateTime<Utc>) -> RealisedAccuracy {
    let mut windows: Vec<RealisedWindow> = labels
        .windows
        .iter()
        .filter(|(_, c)| c.labelled > 0)
        .map(|((version, start), c)| RealisedWindow {
            version: version.clone(),
            start: *start,
            end: *start + REALISED_WINDOW,
            labelled: c.labelled,
            correct: c.correct,
            accuracy: c.correct as f64 / c.labelled as f64,
        })
        .collect();
    windows.sort_by(|a, b| (a.start, &a.version).cmp(&(b.start, &b.version)));
    let excess = windows.len().saturating_sub(REALISED_WINDOWS_KEPT);
    windows.drain(..excess);
    RealisedAccuracy {
        joined_at: now,
        label_files: labels.late.files as u64,
        unknown_labels: labels.late.unknown as u64,
        duplicate_labels: labels.late.duplicates as u64,
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{RealisedCount, window_start};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn status_shows_each_versions_days_oldest_first_and_only_the_latest() {
        let mut labels = RealisedLabels::default();
        let day = |d: i64| {
            window_start(at("2026-01-01T12:00:00Z"), REALISED_WINDOW) + chrono::TimeDelta::days(d)
        };
        for d in 0..40 {
            labels.windows.insert(
                ("v1".into(), day(d)),
                RealisedCount {
                    labelled: 10,
                    correct: 6,
                    scored: LabelCounts {
                        labelled: 5,
                        correct: 3,
                        confidence_sum: 3.5,
                    },
                },
            );
        }
        labels.windows.insert(
            ("v2".into(), day(39)),
            RealisedCount {
                labelled: 4,
                correct: 1,
                scored: LabelCounts::default(),
            },
        );
        labels.late.files = 3;
        labels.late.unknown = 2;
        let now = at("2026-02-12T00:00:00Z");
        let s = status_of(&labels, now);
        assert_eq!(s.joined_at, now);
        assert_eq!((s.label_files, s.unknown_labels), (3, 2));
        assert_eq!(s.windows.len(), REALISED_WINDOWS_KEPT);
        let last = s.windows.last().expect("windows");
        assert_eq!(
            (
                last.version.as_str(),
                last.start,
                last.end,
                last.labelled,
                last.correct
            ),
            ("v2", day(39), day(40), 4, 1)
        );
        assert_eq!(last.accuracy, 0.25);
        assert_eq!(s.windows[0].start, day(11), "the oldest are dropped");
        assert!(s.windows.windows(2).all(|w| w[0].start <= w[1].start));
        // The scored totals count every window, also those status drops.
        let scored = scored_by_version(&labels);
        assert_eq!(
            scored["v1"],
            LabelCounts {
                labelled: 200,
                correct: 120,
                confidence_sum: 140.0,
            }
        );
        assert_eq!(scored["v2"], LabelCounts::default());
    }

    #[tokio::test]
    async fn a_join_runs_again_only_when_the_labels_change() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("predictions/2026-01-01")).expect("dir");
        std::fs::create_dir_all(root.join("labels")).expect("dir");
        std::fs::write(
            root.join("predictions/2026-01-01/a.jsonl"),
            "{\"_id\":\"r1\",\"_row\":0,\"_version\":\"v1\",\"_time\":\"2026-01-01T10:00:00Z\",\"_prediction\":\"5\"}\n",
        )
        .expect("log");
        std::fs::write(root.join("labels/a.csv"), "id,label\nr1,6\nr2,5\n").expect("labels");
        let prefix = format!("{}/", root.display());
        let model = crate::operator::fixtures::wine();
        let joins = RealisedJoins::default();
        let now = at("2026-01-03T10:00:00Z");
        let first = joins
            .read(&model, &prefix, now, Duration::ZERO)
            .await
            .expect("joined")
            .status;
        assert_eq!(first.windows.len(), 1);
        assert_eq!(
            (first.windows[0].labelled, first.windows[0].correct),
            (1, 0)
        );
        assert_eq!(first.unknown_labels, 1);
        // r2's request is logged after its label came: the log is read again.
        std::fs::write(
            root.join("predictions/2026-01-01/b.jsonl"),
            "{\"_id\":\"r2\",\"_row\":0,\"_version\":\"v1\",\"_time\":\"2026-01-01T11:00:00Z\",\"_prediction\":\"5\"}\n",
        )
        .expect("log");
        let later = at("2026-01-03T11:00:00Z");
        let second = joins
            .read(&model, &prefix, later, Duration::ZERO)
            .await
            .expect("joined")
            .status;
        assert_eq!(
            (second.windows[0].labelled, second.windows[0].correct),
            (2, 1)
        );
        assert_eq!((second.unknown_labels, second.joined_at), (0, later));
        // Nothing changed: the last join stands (its time too).
        let third = joins
            .read(&model, &prefix, at("2026-01-03T12:00:00Z"), Duration::ZERO)
            .await
            .expect("joined")
            .status;
        assert_eq!(third, second);
        // A malformed label file is named, with its line.
        std::fs::write(root.join("labels/b.csv"), "id,label,row\nr1,5,first\n").expect("labels");
        let err = joins
            .read(&model, &prefix, later, Duration::ZERO)
            .await
            .expect_err("refused");
        assert!(err.contains("b.csv") && err.contains("first"), "{err}");
    }
}
