//! What the registry keeps: plain records, independent of the CRD types so the
//! room needs nothing but sqlx. Each record has a natural key; writing it
//! again (a restarted operator) changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A Model, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    pub namespace: String,
    pub name: String,
}

impl ModelRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ModelRef {
        ModelRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One version and its lineage. Key: (model, version). Written when training
/// starts, and again when it ends: the later write fills in what became known
/// (artifact, dataset digest, feedback rows) and never erases a known value.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionRecord {
    pub model: ModelRef,
    /// `n` of `v<n>`.
    pub version: u32,
    /// What started the training: `Initial`, `Schedule`, `Drift`, `Manual`…
    pub trigger: String,
    /// Why, with the numbers.
    pub reason: String,
    pub seed: u64,
    /// Hash of the training-relevant spec.
    pub config_hash: String,
    /// sha256 of the training data, once read.
    pub dataset_digest: Option<String>,
    /// Object-store URI of the artifact, once written.
    pub artifact_uri: Option<String>,
    /// Labelled feedback rows included in the training data.
    pub feedback_rows: Option<u64>,
    /// Version of the driftline binary that trained it.
    pub code_version: String,
    pub created_at: DateTime<Utc>,
    /// Where its first weights came from, once training finished.
    pub start: Option<StartRecord>,
}

/// A version's start lineage (the manifest's `start`).
#[derive(Clone, Debug, PartialEq)]
pub struct StartRecord {
    /// `warm`, `init` or `cold`.
    pub from: String,
    /// The parent weights: the champion's artifact or the base checkpoint.
    pub parent: Option<String>,
    /// sha256 of the parent weights file.
    pub parent_digest: Option<String>,
    /// Why a warm start fell back to cold.
    pub reason: Option<String>,
}

/// The gate's evaluation of one version. Key: (model, version).
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationRecord {
    pub model: ModelRef,
    pub version: u32,
    pub passed: bool,
    /// `passed 7/7` or `failed 2/7`.
    pub summary: String,
    /// Whole-test-set metrics of the candidate by name, for `history`.
    pub metrics: BTreeMap<String, f64>,
    /// The whole gate evaluation as JSON (reports, verdict, every check).
    pub report: serde_json::Value,
    pub evaluated_at: DateTime<Utc>,
}

/// One epoch of a training curve. Key: (model, version, epoch).
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    pub model: ModelRef,
    pub version: u32,
    /// From 1.
    pub epoch: u32,
    pub train_loss: f64,
    pub validation_loss: Option<f64>,
    /// The task's validation metric (`accuracy`, `r2`…), when measured.
    pub validation_metric: Option<ValidationMetric>,
}

/// A named validation metric value.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationMetric {
    pub name: String,
    pub value: f64,
}

/// One feature's drift statistic in one window, as a served version measured
/// it. Key: (model, version, window end, feature).
#[derive(Clone, Debug, PartialEq)]
pub struct DriftReading {
    pub model: ModelRef,
    /// The version whose server measured it.
    pub version: u32,
    pub window_end: DateTime<Utc>,
    pub feature: String,
    /// `jensenShannon`, `psi`, `ks` or `wasserstein`.
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    pub drifted: bool,
}

/// Verdict of one canary analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalysisVerdict {
    Passed,
    Failed,
    /// Too few requests to judge.
    Inconclusive,
}

impl AnalysisVerdict {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisVerdict::Passed => "Passed",
            AnalysisVerdict::Failed => "Failed",
            AnalysisVerdict::Inconclusive => "Inconclusive",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<AnalysisVerdict> {
        match text {
            "Passed" => Some(AnalysisVerdict::Passed),
            "Failed" => Some(AnalysisVerdict::Failed),
            "Inconclusive" => Some(AnalysisVerdict::Inconclusive),
            _ => None,
        }
    }
}

/// One check of a canary analysis as recorded: the statistic, its bound,
/// and for a sequential check the evidence so far and its always-valid
/// interval.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub value: f64,
    pub bound: f64,
    pub passed: bool,
    /// `harm`, `noHarm` or `keepWatching` (sequential checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
}

/// One analysis of one canary step. Key: (model, version, step, window end).
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryAnalysis {
    pub model: ModelRef,
    /// The canary version.
    pub version: u32,
    /// 0-based index in `spec.rollout.steps`.
    pub step: u32,
    /// Canary traffic weight during the window, percent.
    pub weight: u32,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub canary_requests: u64,
    pub stable_requests: u64,
    pub canary_errors: u64,
    pub stable_errors: u64,
    pub canary_p99_ms: Option<f64>,
    pub stable_p99_ms: Option<f64>,
    /// Prediction divergence between canary and stable, when measured.
    pub divergence: Option<f64>,
    pub verdict: AnalysisVerdict,
    /// One sentence with the numbers.
    pub message: String,
    /// Every check of the read (empty in rows recorded before schema 3).
    pub checks: Vec<CheckRecord>,
}

/// What happened to the champion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChampionAction {
    /// `to` became champion, replacing `from`.
    Promote,
    /// `from` lost its traffic; `to` (if any) serves again.
    Rollback,
}

impl ChampionAction {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChampionAction::Promote => "Promote",
            ChampionAction::Rollback => "Rollback",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<ChampionAction> {
        match text {
            "Promote" => Some(ChampionAction::Promote),
            "Rollback" => Some(ChampionAction::Rollback),
            _ => None,
        }
    }
}

/// One change of champion: the audit trail MLflow's aliases lack. Key:
/// (model, time, to). `at` should be the time the operator stored in status
/// (`championSince`), so a rewrite after a restart has the same key.
#[derive(Clone, Debug, PartialEq)]
pub struct ChampionChange {
    pub model: ModelRef,
    pub at: DateTime<Utc>,
    pub action: ChampionAction,
    /// Champion before (`None`: nothing served).
    pub from: Option<u32>,
    /// Champion after (`None`: nothing serves).
    pub to: Option<u32>,
    /// What caused it: `CanaryPassed`, `CanaryFailed`, `Manual`…
    pub trigger: String,
    /// The user who asked, for manual changes; `None` for the operator.
    pub actor: Option<String>,
    /// Why, with the numbers.
    pub reason: String,
}

/// One version as `driftline history` shows it: lineage and gate outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionHistory {
    pub version: VersionRecord,
    /// `None` until the gate has evaluated it.
    pub gate: Option<GateOutcome>,
}

/// The gate's outcome without the full report.
#[derive(Clone, Debug, PartialEq)]
pub struct GateOutcome {
    pub passed: bool,
    pub summary: String,
    pub metrics: BTreeMap<String, f64>,
    pub evaluated_at: DateTime<Utc>,
}

/// The newest windows of a model's drift series folded into time columns:
/// feature × column cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DriftHeatmap {
    /// End of the earliest window recorded at all (`None`: no readings).
    pub earliest_window_end: Option<DateTime<Utc>>,
    /// End of the first and the last window folded in.
    pub first_window_end: Option<DateTime<Utc>>,
    pub last_window_end: Option<DateTime<Utc>>,
    /// Distinct windows folded in.
    pub windows: u64,
    /// Columns the span was folded into (at most the number of windows).
    pub columns: u32,
    /// One cell per feature and column that has readings, by feature then column.
    pub cells: Vec<DriftCell>,
}

/// One feature in one column of a [`DriftHeatmap`].
#[derive(Clone, Debug, PartialEq)]
pub struct DriftCell {
    pub feature: String,
    /// From 0, in time order.
    pub column: u32,
    /// Readings folded into the cell.
    pub readings: u64,
    /// The largest statistic among them.
    pub max_value: f64,
    /// The largest threshold among them.
    pub threshold: f64,
    /// How many of them were over their threshold.
    pub drifted: u64,
    /// End of the latest window in the cell.
    pub last_window_end: DateTime<Utc>,
}

/// A notification every delivery attempt failed to deliver. Key: (model,
/// event id, sink URL); written again when a re-sent event fails again.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub model: ModelRef,
    /// The CloudEvent `id` (the receiver's idempotency key).
    pub event_id: String,
    /// Where it was sent, without userinfo or query string.
    pub sink_url: String,
    /// The version the event was about, if any.
    pub version: Option<u32>,
    /// The CloudEvents `type` (`io.driftline.model.rolledback`).
    pub event_type: String,
    pub attempts: u32,
    /// What the last attempt met (a status code, a connection error).
    pub last_error: String,
    pub failed_at: DateTime<Utc>,
}

/// Any record the registry keeps: what the buffered writer queues.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Version(VersionRecord),
    Evaluation(EvaluationRecord),
    Epoch(EpochRecord),
    Drift(DriftReading),
    Canary(CanaryAnalysis),
    ChampionChange(ChampionChange),
    DeadLetter(DeadLetter),
}

impl Record {
    /// The model the record belongs to.
    pub fn model(&self) -> &ModelRef {
        match self {
            Record::Version(r) => &r.model,
            Record::Evaluation(r) => &r.model,
            Record::Epoch(r) => &r.model,
            Record::Drift(r) => &r.model,
            Record::Canary(r) => &r.model,
            Record::ChampionChange(r) => &r.model,
            Record::DeadLetter(r) => &r.model,
        }
    }
}

macro_rules! record_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for Record {
            fn from(r: $ty) -> Record {
                Record::$variant(r)
            }
        }
    )*};
}

record_from!(
    Version(VersionRecord),
    Evaluation(EvaluationRecord),
    Epoch(EpochRecord),
    Drift(DriftReading),
    Canary(CanaryAnalysis),
    ChampionChange(ChampionChange),
    DeadLetter(DeadLetter),
);
