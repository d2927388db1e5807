//! What the operator observed, handed to the decision core as plain data.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{DataVerdict, GateVerdict, ModelVersionStatus, VersionPhase};
use crate::drift::{ColumnDrift, ColumnReading, WindowReport};

/// State of one training Job (`<model>-train-<n>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    /// Created, not yet running (image pull, scheduling).
    Pending,
    Running,
    Succeeded,
    /// Failed after its retries; `message` says why (last container message).
    Failed {
        message: String,
    },
}

/// A training Job as observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingJob {
    /// Version number `n` the Job trains.
    pub version: u32,
    pub state: JobState,
    /// Why its pod cannot be placed on a node, in the scheduler's words (e.g.
    /// "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."), while the
    /// Job is Pending for that reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<String>,
}

/// Whether the decision core still needs a gate verdict for a version in
/// this status: the operator reads the gate reports of these versions only.
/// A verdict is recorded in the same status write that moves the version
/// on, so a version kept in `Trained` with a recorded gate would never be
/// read again.
pub fn awaits_gate(status: &ModelVersionStatus) -> bool {
    status.phase == VersionPhase::Trained && status.gate.is_none()
}

/// The gate verdict on one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub version: u32,
    pub verdict: GateVerdict,
}

/// What came of one version's data check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataCheckOutcome {
    /// The report it left (`<artifact>.datacheck.json`).
    Verdict(DataVerdict),
    /// Its Job failed without leaving a report; why, in its last words.
    JobFailed(String),
}

/// The data check of version `version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataCheckResult {
    pub version: u32,
    pub outcome: DataCheckOutcome,
}

/// Request counts and latency of one version over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServingMetrics {
    pub requests: u64,
    /// Requests answered with an error (5xx or a failed inference).
    pub errors: u64,
    /// p99 latency in milliseconds, when any request was served.
    pub p99_latency_ms: Option<f64>,
    /// Requests whose true label arrived as feedback.
    pub labelled: u64,
    /// Of those, how many the version predicted correctly.
    pub correct: u64,
    /// For the canary: requests slower than the stable's p99 over the same
    /// window (from both latency histograms), when both were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<u64>,
    /// Classifiers: rows whose calibrated top-class probability was counted.
    #[serde(default)]
    pub confidence_rows: u64,
    /// Sum of those probabilities: the right answers expected of them
    /// (over `confidence_rows`, the estimated accuracy without labels).
    #[serde(default)]
    pub expected_correct: f64,
}

impl ServingMetrics {
    /// Mean calibrated top-class probability: the accuracy expected without
    /// labels; `None` without classified rows.
    pub fn estimated_accuracy(&self) -> Option<f64> {
        (self.confidence_rows > 0).then(|| self.expected_correct / self.confidence_rows as f64)
    }

    /// Errors per request; 0 without requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// What the gateways paired for a candidate in shadow since its stage's
/// first scrape (the window: [`crate::api::ShadowTally::since`]), summed
/// over every gateway replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowObservation {
    /// Candidate version number.
    pub version: u32,
    pub tally: crate::api::ShadowTally,
}

/// Merged canary and stable metrics over the same window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryMetrics {
    /// Canary version number.
    pub version: u32,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub canary: ServingMetrics,
    pub stable: ServingMetrics,
    /// Jensen-Shannon distance between canary and stable prediction distributions.
    pub prediction_divergence: Option<f64>,
}

/// Drift of one complete window of live inputs against the training
/// reference, as the model server measured it (`/v2/models/{name}/drift`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReading {
    pub window_end: DateTime<Utc>,
    /// Rows in the window; windows shorter than `spec.drift.window` are ignored.
    pub rows: u64,
    /// Per feature: the statistic's value (as `spec.drift.statistic`), the
    /// threshold the server applied (calibrated or fixed) and the feature's
    /// importance weight; `spec.drift.features` overrides still apply.
    pub features: Vec<ColumnReading>,
    /// The predictions' reading, when the server reported one.
    #[serde(default)]
    pub prediction: Option<ColumnReading>,
    /// The same window compared with the gate's regression test-set
    /// instead of the training reference, when the champion's artifact
    /// holds the test set's sketch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_set: Option<TestSetReading>,
    /// Classifiers: the window's confidence, whose mean is its estimated accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<WindowEstimate>,
}

/// A window's readings against the gate's test set: its features, and the
/// champion's predictions on live rows against its predictions on the test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestSetReading {
    pub features: Vec<ColumnReading>,
    #[serde(default)]
    pub prediction: Option<ColumnReading>,
}

/// A window's accuracy estimated without labels, and what it is compared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowEstimate {
    /// Rows whose top-class probability was counted.
    pub rows: u64,
    /// Sum of those probabilities: the expected number of right answers.
    pub expected_correct: f64,
    /// The champion's accuracy on its validation split (its manifest).
    pub validation_accuracy: Option<f64>,
}

impl WindowEstimate {
    /// The estimated accuracy; `None` without rows.
    pub fn accuracy(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.expected_correct / self.rows as f64)
    }
}

impl DriftReading {
    /// The reading of a closed window as the model server reports it at
    /// `/v2/models/{name}/drift` (`recent[]`); `None` for the open window.
    pub fn from_window(window: &WindowReport) -> Option<Self> {
        let column = |c: &ColumnDrift| ColumnReading {
            name: c.name.clone(),
            value: c.value,
            threshold: c.threshold,
            weight: c.weight,
        };
        Some(Self {
            window_end: window.ended?,
            rows: window.rows,
            features: window.features.iter().map(column).collect(),
            prediction: (window.prediction.rows > 0).then(|| column(&window.prediction)),
            test_set: None,
            estimate: None,
        })
    }
}

/// What a user asked for through the CLI or an annotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ManualAction {
    /// Train a new version now.
    Retrain { reason: Option<String> },
    /// Promote the canary, or the named version (an audited gate override).
    Promote { version: Option<u32> },
    /// Roll back the canary, or the champion to the previous champion.
    Rollback,
}

/// A manual request with its id; each id is acted on once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManualRequest {
    pub id: String,
    pub action: ManualAction,
}

/// Everything the decision core may look at besides the Model and its versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    /// The time of this decision; the core never reads a clock.
    pub now: DateTime<Utc>,
    /// `metadata.generation` of the Model.
    pub generation: Option<i64>,
    pub jobs: Vec<TrainingJob>,
    pub gate_results: Vec<GateResult>,
    /// Data checks that finished, for versions checking their data.
    #[serde(default)]
    pub data_checks: Vec<DataCheckResult>,
    /// Versions whose serving Deployment is ready.
    pub ready_versions: BTreeSet<u32>,
    /// The Model's gateway Deployment is ready: requests to its Service
    /// are answered.
    #[serde(default)]
    pub gateway_ready: bool,
    pub canary_metrics: Option<CanaryMetrics>,
    /// The shadow stage's paired answers, while a candidate is in shadow.
    #[serde(default)]
    pub shadow: Option<ShadowObservation>,
    /// Drift windows, any order; windows already counted are skipped.
    pub drift: Vec<DriftReading>,
    /// The champion's labelled requests so far, summed over its replicas,
    /// when they reported them: how many, how many it got right, and the
    /// sum of the confidence it answered them with (what the estimate said
    /// of exactly those requests).
    #[serde(default)]
    pub champion_labels: Option<crate::api::LabelCounts>,
    /// The latest join of every label under the feedback prefix with the
    /// prediction log: the accuracy each served version realised per day.
    #[serde(default)]
    pub realised_accuracy: Option<crate::api::RealisedAccuracy>,
    /// Why the labels could not be joined, when they could not.
    #[serde(default)]
    pub labels_error: Option<String>,
    /// Current digest of `spec.data.source` (what a run started now would
    /// read), when the operator could list it.
    pub source_digest: Option<String>,
    /// The digest "new data" compares with the last run's: the last run's
    /// window as listed now when only days left it (`data::DataVersion`).
    #[serde(default)]
    pub source_digest_against_last: Option<String>,
    /// Why `spec.data.source` could not be listed, when it could not.
    #[serde(default)]
    pub source_error: Option<String>,
    pub request: Option<ManualRequest>,
}

impl Observations {
    /// Nothing observed yet, at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            generation: None,
            jobs: Vec::new(),
            gate_results: Vec::new(),
            data_checks: Vec::new(),
            ready_versions: BTreeSet::new(),
            gateway_ready: false,
            canary_metrics: None,
            shadow: None,
            drift: Vec::new(),
            champion_labels: None,
            realised_accuracy: None,
            labels_error: None,
            source_digest: None,
            source_digest_against_last: None,
            source_error: None,
            request: None,
        }
    }

    /// The observed state of version `n`'s training Job.
    pub fn job(&self, n: u32) -> Option<&JobState> {
        self.jobs.iter().find(|j| j.version == n).map(|j| &j.state)
    }

    /// Why version `n`'s training pod cannot be scheduled, if it cannot.
    pub fn unschedulable(&self, n: u32) -> Option<&str> {
        self.jobs
            .iter()
            .find(|j| j.version == n)
            .and_then(|j| j.unschedulable.as_deref())
    }

    /// What came of version `n`'s data check, once it finished.
    pub fn data_check(&self, n: u32) -> Option<&DataCheckOutcome> {
        self.data_checks
            .iter()
            .find(|d| d.version == n)
            .map(|d| &d.outcome)
    }

    /// The gate verdict on version `n`.
    pub fn gate(&self, n: u32) -> Option<&GateVerdict> {
        self.gate_results
            .iter()
            .find(|g| g.version == n)
            .map(|g| &g.verdict)
    }
}
