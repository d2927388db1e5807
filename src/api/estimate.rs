//! Accuracy estimated without labels (confidence-based performance
//! estimation): the retrain trigger on an estimated drop
//! (`spec.retrain.onEstimatedDrop`) and what status shows of the estimate
//! (`status.estimatedAccuracy`).

use chrono::{DateTime, Utc};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::date_time_schema;
use super::validate::msg;

/// The metric an estimate is of. Only accuracy can be estimated from a
/// classifier's calibrated confidence alone.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EstimatedMetric {
    #[default]
    Accuracy,
}

/// Retrain when the champion's estimated accuracy over a drift window falls
/// more than `maxDrop` below its validation accuracy, while the estimate is
/// reliable (its error against late labels within `tolerance`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimatedDropTrigger {
    #[serde(default)]
    pub metric: EstimatedMetric,
    /// Largest allowed fall below the validation accuracy, e.g. `0.03`.
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) <= 1.0").message(msg::ESTIMATE_MAX_DROP))]
    pub max_drop: f64,
    /// Largest |estimated − realised| accuracy, over the requests labelled
    /// so far, before the estimate is called unreliable (`EstimateUnreliable`)
    /// and stops triggering. Default 0.05.
    #[serde(default = "default_tolerance")]
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) <= 1.0").message(msg::ESTIMATE_TOLERANCE))]
    pub tolerance: f64,
    /// Labelled requests needed before the estimate is compared with them.
    /// Default 100.
    #[serde(default = "default_min_labels")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::ESTIMATE_MIN_LABELS))]
    pub min_labels: u64,
}

pub const DEFAULT_ESTIMATE_TOLERANCE: f64 = 0.05;
pub const DEFAULT_ESTIMATE_MIN_LABELS: u64 = 100;

fn default_tolerance() -> f64 {
    DEFAULT_ESTIMATE_TOLERANCE
}

fn default_min_labels() -> u64 {
    DEFAULT_ESTIMATE_MIN_LABELS
}

/// The serving champion's accuracy estimated from its calibrated confidence
/// over its latest complete drift window, beside the validation accuracy it
/// is compared with and, once labels arrived, the accuracy they realised.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimatedAccuracy {
    /// The version it was estimated for (`v3`).
    pub version: String,
    /// Mean top-class probability of the window's requests.
    pub value: f64,
    /// End of the window.
    #[schemars(schema_with = "date_time_schema")]
    pub window: DateTime<Utc>,
    /// Rows (requests) in the window.
    pub requests: u64,
    /// The version's accuracy on its validation split (its manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_accuracy: Option<f64>,
    /// Accuracy of the latest batch of the version's labelled requests (at
    /// least `minLabels` labelled since the batch before), when one was
    /// complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realised: Option<f64>,
    /// What the estimate said of those same labelled requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_on_labelled: Option<f64>,
    /// Labelled requests in that batch.
    #[serde(default)]
    pub labelled: u64,
    /// The version's label counts (over all its replicas) when that batch
    /// was judged: the next batch is what came after them, so a stretch
    /// the estimate got wrong is not carried into every later verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_through: Option<LabelCounts>,
}

/// Label counts of a version: requests labelled, right, and the sum of the
/// confidence they were answered with.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelCounts {
    pub labelled: u64,
    pub correct: u64,
    pub confidence_sum: f64,
}

/// The accuracy labels realised for the versions that served, per window
/// of serving time: every label under the Model's feedback prefix (the
/// requests its servers labelled, and label files under `labels/` joined
/// with the prediction log however late they came), set against the answer
/// logged with it. Classifiers with `data.includeFeedback`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealisedAccuracy {
    /// When the operator last joined the labels (its clock).
    #[schemars(schema_with = "date_time_schema")]
    pub joined_at: DateTime<Utc>,
    /// Label files read under `labels/`.
    #[serde(default)]
    pub label_files: u64,
    /// Labels in those files whose request no logged prediction has (yet).
    #[serde(default)]
    pub unknown_labels: u64,
    /// Labels given again for the same request: the last one counts.
    #[serde(default)]
    pub duplicate_labels: u64,
    /// One entry per version and window (one UTC day), oldest first; the
    /// latest [`REALISED_WINDOWS_KEPT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<RealisedWindow>,
}

impl EstimatedAccuracy {
    /// In one line, as the dashboard and `driftline status` show it, e.g.
    /// `0.585 over 320 requests of v1 to 2026-12-04 21:20 UTC (validation
    /// 0.598; 0.610 realised by 200 labelled)`.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{:.3} over {} requests of {} to {}",
            self.value,
            self.requests,
            self.version,
            self.window.format("%Y-%m-%d %H:%M UTC")
        );
        let mut notes = Vec::new();
        if let Some(v) = self.validation_accuracy {
            notes.push(format!("validation {v:.3}"));
        }
        if let Some(r) = self.realised {
            notes.push(format!("{r:.3} realised by {} labelled", self.labelled));
        }
        if !notes.is_empty() {
            out.push_str(&format!(" ({})", notes.join("; ")));
        }
        out
    }
}

impl RealisedAccuracy {
    /// The newest window in one line, e.g. `0.700 by 1000 labelled requests
    /// of v1 served 2026-12-02 (UTC day)`; `None` before any label joined.
    pub fn summary(&self) -> Option<String> {
        let w = self.windows.last()?;
        Some(format!(
            "{:.3} by {} labelled requests of {} served {} (UTC day)",
            w.accuracy,
            w.labelled,
            w.version,
            w.start.format("%Y-%m-%d")
        ))
    }
}

/// Most windows `status.realisedAccuracy` keeps.
pub const REALISED_WINDOWS_KEPT: usize = 30;

/// What the labels of one version's requests served in one window realised.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealisedWindow {
    /// The version that served the requests (`v3`).
    pub version: String,
    /// The window of serving time: `[start, end)`.
    #[schemars(schema_with = "date_time_schema")]
    pub start: DateTime<Utc>,
    #[schemars(schema_with = "date_time_schema")]
    pub end: DateTime<Utc>,
    /// Requests (rows) labelled, and those the version answered right.
    pub labelled: u64,
    pub correct: u64,
    /// `correct / labelled`.
    pub accuracy: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_and_realised_accuracy_read_as_one_line() {
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let e = EstimatedAccuracy {
            version: "v1".into(),
            value: 0.5851,
            window: at("2026-12-04T21:20:00Z"),
            requests: 320,
            validation_accuracy: Some(0.598),
            realised: Some(0.61),
            labelled: 200,
            ..serde_json::from_value(serde_json::json!({
                "version": "v1", "value": 0.0, "window": "2026-12-04T21:20:00Z", "requests": 0
            }))
            .unwrap()
        };
        assert_eq!(
            e.summary(),
            "0.585 over 320 requests of v1 to 2026-12-04 21:20 UTC (validation 0.598; 0.610 realised by 200 labelled)"
        );
        let mut r = RealisedAccuracy {
            joined_at: at("2026-12-05T00:00:00Z"),
            label_files: 1,
            unknown_labels: 0,
            duplicate_labels: 0,
            windows: Vec::new(),
        };
        assert_eq!(r.summary(), None);
        for (day, accuracy) in [("2026-12-01", 0.9), ("2026-12-02", 0.7)] {
            r.windows.push(RealisedWindow {
                version: "v1".into(),
                start: at(&format!("{day}T00:00:00Z")),
                end: at(&format!("{day}T23:59:59Z")),
                labelled: 1000,
                correct: (accuracy * 1000.0) as u64,
                accuracy,
            });
        }
        assert_eq!(
            r.summary().as_deref(),
            Some("0.700 by 1000 labelled requests of v1 served 2026-12-02 (UTC day)")
        );
    }
}
