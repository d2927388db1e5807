//! The `ModelVersion` custom resource: one trained (or training) version of a
//! Model, owned by it. The history `kubectl get modelversions` shows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::gate::GateCheck;
use super::status::{AnalysisRecord, Condition, TrainingTrigger, date_time_schema};
use super::validate::msg;

/// One version of a Model: its lineage (spec, immutable) and what became of
/// it (status).
// kube's repeated `printcolumn(type_ = ...)` is not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "driftline.dev",
    version = "v1alpha1",
    kind = "ModelVersion",
    doc = "One trained (or training) version of a Model: lineage and outcome",
    namespaced,
    status = "ModelVersionStatus",
    shortname = "mv",
    category = "driftline",
    cel,
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model"),
    printcolumn(name = "Version", type_ = "integer", json_path = ".spec.version"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Trigger",
        type_ = "string",
        json_path = ".spec.lineage.trigger"
    ),
    printcolumn(name = "Gate", type_ = "string", json_path = ".status.gate.summary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message(msg::VERSION_SPEC_IMMUTABLE))]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionSpec {
    /// Name of the owning Model.
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::VERSION_MODEL_EMPTY))]
    pub model: String,
    /// The version number `n` of `v<n>`.
    #[x_kube(validation = Rule::new("self > 0").message(msg::VERSION_NUMBER))]
    pub version: u32,
    /// Where and why it was trained.
    pub lineage: Lineage,
}

/// Where a version came from: enough to reproduce it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub trigger: TrainingTrigger,
    /// Why it was trained, with the numbers.
    pub reason: String,
    /// Training seed.
    pub seed: u64,
    /// Hash of the training-relevant spec (task, data, architecture, training).
    pub config_hash: String,
    /// Version of the driftline binary that trained it.
    pub driftline_version: String,
    /// Digest of the data source at the time training started, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
}

/// Lifecycle of a version.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum VersionPhase {
    /// Its data check Job reads the training window; no training Job yet.
    CheckingData,
    /// Its training Job runs.
    #[default]
    Training,
    /// Trained; waiting for (or holding) its gate report.
    Trained,
    /// The gate refused it (see `status.gate.failedChecks`), or its shadow
    /// stage failed (`ShadowFailed`, see `status.rollout`).
    Rejected,
    /// Answers mirrored live requests no user sees, compared with the champion.
    Shadow,
    /// Takes part of the traffic while being analysed.
    Canary,
    /// Serves the traffic.
    Champion,
    /// Was champion; replaced by a newer version.
    Superseded,
    /// Its canary failed analysis, or a user rolled it back.
    RolledBack,
    /// Its training Job failed.
    Failed,
    /// The data check refused its training window (see
    /// `status.dataCheck.failedChecks`); it was never trained.
    DataRejected,
}

impl VersionPhase {
    /// Whether its run (data check, then training) is still going.
    pub fn is_running(self) -> bool {
        matches!(self, VersionPhase::CheckingData | VersionPhase::Training)
    }

    /// Whether nothing more happens to a version in this phase on its own.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            VersionPhase::Rejected
                | VersionPhase::Superseded
                | VersionPhase::RolledBack
                | VersionPhase::Failed
                | VersionPhase::DataRejected
        )
    }
}

/// The artifact a training produced.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// Object-store URI of the version directory.
    pub uri: String,
    /// Architecture fingerprint the weights belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// sha256 of every file in the artifact, by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
    /// sha256 of the training data as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// Where a version's first weights came from: `warm` (the champion's,
/// `training.warmStart: champion`), `init` (a base checkpoint,
/// `architecture.init`) or `cold` (drawn from the seed).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StartKind {
    Warm,
    Init,
    #[default]
    Cold,
}

/// The short form of a version's start lineage, copied from its artifact's
/// manifest once training finished (the registry keeps the same).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartSummary {
    pub from: StartKind,
    /// The parent weights: the champion's artifact or the base checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// sha256 of the parent weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_digest: Option<String>,
    /// Why `warmStart: champion` did not start from the champion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StartSummary {
    /// From the registry's columns (`from` as its word); `None` when the
    /// word is not one of [`StartKind`]'s.
    pub fn from_words(
        from: &str,
        parent: Option<String>,
        parent_digest: Option<String>,
        reason: Option<String>,
    ) -> Option<StartSummary> {
        Some(StartSummary {
            from: from.parse().ok()?,
            parent,
            parent_digest,
            reason,
        })
    }

    /// The version a warm start's parent artifact is (`…/v3` → 3).
    pub fn parent_version(&self) -> Option<u32> {
        match self.from {
            StartKind::Warm => super::names::artifact_version(self.parent.as_deref()?),
            _ => None,
        }
    }

    /// One line for tables: `warm from v2 (weights 1a2b3c4d5e6f)`,
    /// `init from s3://b/base (weights …)`, `cold: <why>` or `cold`.
    pub fn short(&self) -> String {
        let weights = self
            .parent_digest
            .as_deref()
            .map(|d| format!(" (weights {})", &d[..d.len().min(12)]))
            .unwrap_or_default();
        let parent = match (self.parent_version(), &self.parent) {
            (Some(n), _) => format!(" from {}", super::status::version_name(n)),
            (None, Some(uri)) => format!(" from {uri}"),
            (None, None) => String::new(),
        };
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        format!("{}{parent}{weights}{reason}", self.from)
    }
}

/// How the training Job ended.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingOutcome {
    /// Name of the Job, `<model>-train-<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Validation metrics reported by the trainer, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Why the Job failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The gate's decision, with every failed check.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateSummary {
    pub passed: bool,
    /// `passed 7/7` or `failed 2/7`.
    pub summary: String,
    /// Every check that failed, with its value and bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<GateCheck>,
    /// The champion it was compared with, `v<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
}

/// The data check's decision on a version's training window.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataCheckSummary {
    pub passed: bool,
    /// `passed 9/9` or `failed 2/9: <the first failure>`.
    pub summary: String,
    /// Every check that failed (value, bound, column), blocking or reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<super::data_check::DataCheck>,
}

impl DataCheckSummary {
    /// The summary of a verdict: its failed checks.
    pub fn of(verdict: &super::data_check::DataVerdict) -> Self {
        DataCheckSummary {
            passed: verdict.passed,
            summary: verdict.summary(),
            failed_checks: verdict
                .checks
                .iter()
                .filter(|c| !c.passed)
                .cloned()
                .collect(),
        }
    }
}

/// How the canary ended.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutOutcome {
    /// `Promoted`, `RolledBack` or `ManuallyPromoted`.
    pub result: String,
    /// Steps whose analysis passed.
    #[serde(default)]
    pub steps_passed: u32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisRecord>,
}

/// `ModelVersion.status`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionStatus {
    #[serde(default)]
    pub phase: VersionPhase,
    /// Why it is in this phase, with the numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingOutcome>,
    /// Where its first weights came from (warm, init or cold, and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_check: Option<DataCheckSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutOutcome>,
    /// When it became champion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub champion_since: Option<DateTime<Utc>>,
    /// When it stopped being champion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub champion_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_reads_as_one_line_naming_the_parent_version_and_weights() {
        let warm = StartSummary {
            from: StartKind::Warm,
            parent: Some("s3://models/ml/digits/v2".into()),
            parent_digest: Some("0123456789abcdef0123".into()),
            reason: None,
        };
        assert_eq!(warm.short(), "warm from v2 (weights 0123456789ab)");
        assert_eq!(warm.parent_version(), Some(2));
        let cold = StartSummary {
            reason: Some("there is no champion yet".into()),
            ..Default::default()
        };
        assert_eq!(cold.short(), "cold: there is no champion yet");
        assert_eq!(cold.parent_version(), None);
        let init =
            StartSummary::from_words("init", Some("s3://base/w.safetensors".into()), None, None)
                .unwrap();
        assert_eq!(init.short(), "init from s3://base/w.safetensors");
        assert!(StartSummary::from_words("lukewarm", None, None, None).is_none());
    }
}
