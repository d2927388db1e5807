//! `Model.status`: what the operator observed and decided, written by the
//! decision core (`policy`) so a restarted operator resumes where it was and
//! `kubectl describe` explains every decision.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Schema of a timestamp: an RFC 3339 string, as Kubernetes writes them.
pub fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

/// Schema of a list of timestamps.
pub fn date_time_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": {"type": "string", "format": "date-time"}})
}

/// Where a Model stands, in one word (`kubectl get models`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ModelPhase {
    /// Nothing trained yet and nothing running.
    #[default]
    Pending,
    /// A training Job is running.
    Training,
    /// A trained candidate waits for its gate report.
    Gating,
    /// A candidate answers mirrored live requests that no user sees, and its
    /// answers are compared with the champion's on the same requests.
    Shadow,
    /// A candidate takes part of the traffic and is being analysed.
    Canary,
    /// A champion serves all traffic.
    Serving,
    /// Automatic work is stopped by `spec.paused`.
    Paused,
    /// No champion and the last attempt failed (see conditions).
    Failed,
}

/// Whether a condition holds, as in Kubernetes conditions.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A Kubernetes-style condition (`type`, `status`, `reason`, `message`,
/// `lastTransitionTime`, `observedGeneration`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Training`, `TrainingUnschedulable`, `Progressing`, `Paused`,
    /// `SpecValid`, `DriftDetected`, `TestSetStale`, `EstimateUnreliable`,
    /// `LabelsReadable`, `DataValid`, `SourceReadable`, `Reconciled`, `RegistryAvailable`,
    /// `NotificationsDegraded`, and kstatus's `Reconciling` and `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase reason, e.g. `GateFailed`.
    pub reason: String,
    /// One human-readable sentence with the numbers.
    pub message: String,
    /// When `status` last changed.
    #[schemars(schema_with = "date_time_schema")]
    pub last_transition_time: DateTime<Utc>,
    /// The spec generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One version's share of live traffic; the gateway reads `status.traffic`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeight {
    /// Version name, `v<n>`.
    pub version: String,
    /// Percent of requests, 0..=100; all weights sum to 100.
    pub weight: u32,
}

/// What started a training run.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TrainingTrigger {
    /// The first version of a Model.
    Initial,
    /// Data, architecture or training settings changed in the spec.
    ConfigChanged,
    /// A slot of `retrain.schedule` came due.
    Schedule,
    /// Live inputs drifted for `consecutiveWindows` windows.
    Drift,
    /// The data source's digest changed.
    NewData,
    /// The champion's estimated accuracy fell more than
    /// `retrain.onEstimatedDrop.maxDrop` below its validation accuracy.
    EstimatedDrop,
    /// A user asked (`driftline retrain`).
    Manual,
}

/// Where a running training stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RunStage {
    /// Its data check Job reads the window; the training Job waits for it.
    CheckingData,
    /// Its training Job runs.
    #[default]
    Training,
}

impl RunStage {
    /// The phase a version has while its run is at this stage.
    pub fn phase(self) -> super::VersionPhase {
        match self {
            RunStage::CheckingData => super::VersionPhase::CheckingData,
            RunStage::Training => super::VersionPhase::Training,
        }
    }
}

/// A training run: started, or finished with its outcome.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRun {
    /// Version being trained, `v<n>`.
    pub version: String,
    pub trigger: TrainingTrigger,
    /// Why it started, with the numbers.
    pub reason: String,
    /// Checking its data, or training (the default).
    #[serde(default)]
    pub stage: RunStage,
    #[schemars(schema_with = "date_time_schema")]
    pub started_at: DateTime<Utc>,
    /// Hash of the training-relevant spec (task, data, architecture, training).
    pub config_hash: String,
    /// The spec generation it was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// `Succeeded` or `Failed` once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The next training the operator expects to start on its own.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextTraining {
    #[schemars(schema_with = "date_time_schema")]
    pub at: DateTime<Utc>,
    /// Why then, e.g. `schedule "0 2 * * *" in Europe/London`.
    pub reason: String,
}

/// Drift as last measured, always with values (not only alarms).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSummary {
    /// Largest feature statistic in the latest complete window.
    #[serde(default)]
    pub score: f64,
    /// Share of monitored features over their threshold in that window.
    #[serde(default)]
    pub drifted_share: f64,
    /// Features over their threshold in that window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted_features: Vec<String>,
    /// Share of the model's feature importance that drifted in that window.
    #[serde(default)]
    pub drifted_weight: f64,
    /// Whether the drift rule counted that window as drifted.
    #[serde(default)]
    pub window_drifted: bool,
    /// Why: the features over their threshold with weight, value and threshold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<DriftDriver>,
    /// The drift rule's reason for that window, with the numbers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Drifted windows in a row, up to now.
    #[serde(default)]
    pub consecutive_windows: u32,
    /// End of the latest window taken into account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_window_end: Option<DateTime<Utc>>,
    /// One line for `kubectl get models`, e.g. `0.14 (2/3 windows)`.
    #[serde(default)]
    pub summary: String,
}

/// The gate's regression test-set against live traffic, as last measured.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestSetFreshness {
    /// Per feature: the drift statistic between the latest live window and
    /// the test set, with the threshold it is judged by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<DriftDriver>,
    /// Features on which live traffic has left the test set in that window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_features: Vec<String>,
    /// Share of the monitored features that left the test set in that window.
    #[serde(default)]
    pub stale_share: f64,
    /// Whether the drift rule counts that window as having left the test set.
    #[serde(default)]
    pub window_stale: bool,
    /// Such windows in a row, up to now.
    #[serde(default)]
    pub consecutive_windows: u32,
    /// End of the latest window taken into account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_window_end: Option<DateTime<Utc>>,
    /// One line, e.g. `covers traffic (0/3 windows)` or `stale: alcohol (3/3 windows)`.
    #[serde(default)]
    pub summary: String,
}

/// A feature (or the predictions) over its threshold in the latest window.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftDriver {
    pub name: String,
    /// Share of the model's importance it carries (1 for the predictions).
    pub weight: f64,
    /// The statistic's value in the window.
    pub value: f64,
    /// The threshold it exceeded (calibrated at training, or fixed).
    pub threshold: f64,
}

/// The verdict of one canary analysis.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AnalysisOutcome {
    /// Every check within its bound, on at least `minRequests` requests.
    Passed,
    /// At least one check out of bounds.
    Failed,
    /// Too few requests to judge; never counts as a pass.
    Inconclusive,
}

/// What a sequential check's evidence says so far.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Evidence {
    /// The canary is worse than its bound (or than stable): roll back now.
    Harm,
    /// Harm beyond the bound is ruled out at `alpha`: this check lets the step advance.
    NoHarm,
    /// Not enough evidence either way: neither a pass nor a failure.
    KeepWatching,
}

/// One check of a canary analysis with the numbers behind it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisCheck {
    /// `minRequests`, `maxErrorRate`, `maxP99LatencyMs`, `maxErrorRateIncrease`,
    /// `maxP99LatencyRatio`, `maxPredictionDivergence`, `minOnlineAccuracy`,
    /// `maxOnlineAccuracyDrop`, `maxEstimatedAccuracyDrop`, `maxSlowShareIncrease`.
    pub name: String,
    /// Measured value (canary, or canary relative to stable).
    pub value: f64,
    /// The bound from `spec.rollout.analysis`.
    pub bound: f64,
    pub passed: bool,
    /// One sentence with value, bound and sample counts.
    pub message: String,
    /// Sequential checks: the evidence so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Sequential checks: the always-valid 1 − alpha interval of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
}

/// One analysis of one canary step, as recorded in status; the shadow
/// stage's verdict is recorded the same way, with weight 0 (no user
/// traffic) and the paired requests as both sides' requests.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRecord {
    /// Index of the step (0-based) in `spec.rollout.steps`; 0 for the shadow.
    pub step: u32,
    /// Canary weight during the window; 0: the shadow stage.
    pub weight: u32,
    pub outcome: AnalysisOutcome,
    #[serde(default)]
    pub canary_requests: u64,
    #[serde(default)]
    pub stable_requests: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<AnalysisCheck>,
    #[schemars(schema_with = "date_time_schema")]
    pub window_start: DateTime<Utc>,
    #[schemars(schema_with = "date_time_schema")]
    pub window_end: DateTime<Utc>,
    /// One sentence with the numbers.
    pub message: String,
    /// Jensen-Shannon distance between the two versions' answers in the
    /// window, when both answered (whether or not a check bounds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<f64>,
}

/// A canary in progress.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Candidate version, `v<n>`.
    pub version: String,
    /// Index of the current step (0-based).
    pub step: u32,
    /// When the current step's weight was set (start of its analysis window);
    /// absent while the canary's Deployment is not ready and stable keeps 100 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// Failed analyses so far, against `failureLimit`.
    #[serde(default)]
    pub failures: u32,
    /// Every step passed; waiting for `driftline promote` (autoPromote off).
    #[serde(default)]
    pub awaiting_promotion: bool,
    /// Analyses of this canary, oldest first (the last 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisRecord>,
}

/// A candidate in its shadow stage: the gateway mirrors `sample` of live
/// requests to it while `startedAt` is set; users get the champion's answers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// Candidate version, `v<n>`.
    pub version: String,
    /// Share of live requests mirrored to it.
    pub sample: f64,
    /// When mirroring began; absent while the candidate's Deployment is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub started_at: Option<DateTime<Utc>>,
    /// The latest read of the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRecord>,
}

/// `Model.status`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub phase: ModelPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The version serving (or sharing with a canary) live traffic, `v<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    /// The trained version on its way through gate and canary, `v<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Traffic split the gateway applies; weights sum to 100 (empty: nothing serves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficWeight>,
    /// `traffic` in one line, e.g. `v3:90 v4:10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_summary: Option<String>,
    /// Number of the next version to train (`v<n>`), from 1.
    #[serde(default = "first_version")]
    pub next_version: u32,
    /// The running training, if any (never more than one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRun>,
    /// The last finished training with its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_training: Option<TrainingRun>,
    /// The next training expected from the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_training: Option<NextTraining>,
    /// The latest schedule slot already acted on (run or skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_schedule_slot: Option<DateTime<Utc>>,
    /// Start times of drift- and data-triggered trainings in the last 24 hours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "date_time_list_schema")]
    pub automatic_retrains: Vec<DateTime<Utc>>,
    /// Digest of the data source the latest training used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSummary>,
    /// Whether the gate's regression test-set still looks like live
    /// traffic: each of the champion's drift windows compared with the test
    /// set, by the drift rule and calibrated thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_set_freshness: Option<TestSetFreshness>,
    /// The champion's accuracy estimated without labels (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_accuracy: Option<super::estimate::EstimatedAccuracy>,
    /// The accuracy labels realised per served version and day, late
    /// labels included (classifiers with `data.includeFeedback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realised_accuracy: Option<super::estimate::RealisedAccuracy>,
    /// A candidate in its shadow stage, before its canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Id of the last manual request acted on (`driftline promote` etc.).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
}

fn first_version() -> u32 {
    1
}

impl Default for ModelStatus {
    fn default() -> Self {
        Self {
            observed_generation: None,
            phase: ModelPhase::Pending,
            conditions: Vec::new(),
            champion: None,
            candidate: None,
            traffic: Vec::new(),
            traffic_summary: None,
            next_version: first_version(),
            training: None,
            last_training: None,
            next_training: None,
            last_schedule_slot: None,
            automatic_retrains: Vec::new(),
            data_digest: None,
            drift: None,
            test_set_freshness: None,
            estimated_accuracy: None,
            realised_accuracy: None,
            shadow: None,
            canary: None,
            handled_request: None,
        }
    }
}

impl ModelStatus {
    /// The condition of this type, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The name of version `n`: `v<n>`.
pub fn version_name(n: u32) -> String {
    format!("v{n}")
}

/// The number in a version name `v<n>`: the one version grammar (`v1`,
/// `v12`; not `3`, `v03`, `v+3` or `v0`), for names, annotations, flags and
/// the gateway's per-version routes.
pub fn version_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('v')?;
    let canonical = digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    canonical.then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_v_and_a_positive_number_written_plainly() {
        assert_eq!(version_number("v1"), Some(1));
        assert_eq!(version_number("v12"), Some(12));
        assert_eq!(version_name(12), "v12");
        for bad in [
            "3",
            "v",
            "v0",
            "v03",
            "v+3",
            "v-1",
            "V3",
            "v3 ",
            "v1.0",
            "v99999999999",
        ] {
            assert_eq!(version_number(bad), None, "{bad:?}");
        }
    }
}
