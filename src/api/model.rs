//! The `Model` custom resource: what a team applies with kubectl.
//!
//! Spec field names follow the north-star YAML in DESIGN.md. Defaults are
//! the safe choice a user would expect; `validate()` in `config.rs` refuses
//! what the schema cannot express.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A model that driftline trains, gates, serves and keeps healthy.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "driftline.dev",
    version = "v1alpha1",
    kind = "Model",
    namespaced,
    status = "ModelStatus",
    shortname = "mdl"
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// What the model predicts: a class (`classification`) or a number (`regression`).
    pub task: Task,
    /// Where the training data lives and which column is the target.
    pub data: DataSpec,
    /// The network to train.
    #[serde(default)]
    pub architecture: ArchitectureSpec,
    /// Hyper-parameters and where the training Job runs.
    #[serde(default)]
    pub training: TrainingSpec,
    /// When to retrain: schedule, drift, new data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<RetrainSpec>,
    /// How live inputs are compared with the training reference.
    #[serde(default)]
    pub drift: DriftSpec,
    /// The curated regression test-set every candidate must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSpec>,
    /// How a candidate that passed the gate takes traffic.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Serving replicas and resources.
    #[serde(default)]
    pub serving: ServingSpec,
    /// Stops new training runs and rollout steps until set back to false.
    #[serde(default)]
    pub paused: bool,
}

/// Filled by the operator; see the decision core in `policy`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The kind of prediction.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Task {
    Classification,
    Regression,
}

/// File format of a dataset.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DataFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// How a feature column is treated.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FeatureKind {
    Numeric,
    Categorical,
    Boolean,
}

/// Training data.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSpec {
    /// `file://`, a plain path, `s3://`, `gs://`, `az://` or `https://`.
    pub source: String,
    /// `csv` or `jsonl`; inferred from the extension when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// The column to predict.
    pub target: String,
    /// Feature columns to use; all columns but the target when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Declared column kinds; undeclared ones are inferred from the data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_kinds: BTreeMap<String, FeatureKind>,
    /// Also train on labelled traffic captured by the model server.
    #[serde(default)]
    pub include_feedback: bool,
    /// Share of rows held out for validation (early stopping, reported metrics).
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
}

fn default_validation_fraction() -> f64 {
    0.2
}

/// Activation between hidden layers.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    Silu,
}

/// The network. `type` names an architecture in the registry (`mlp`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchitectureSpec {
    /// Registered architecture name; `mlp` is built in.
    #[serde(rename = "type", default = "default_architecture")]
    pub kind: String,
    /// Width of each hidden layer; empty gives logistic / linear regression.
    #[serde(default)]
    pub hidden_layers: Vec<u32>,
    #[serde(default)]
    pub activation: Activation,
    /// Dropout probability after each hidden layer, in [0, 1).
    #[serde(default)]
    pub dropout: f64,
}

fn default_architecture() -> String {
    "mlp".to_string()
}

impl Default for ArchitectureSpec {
    fn default() -> Self {
        Self {
            kind: default_architecture(),
            hidden_layers: vec![64, 32],
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }
}

/// Optimiser used by the training loop.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Optimizer {
    #[default]
    Adamw,
    Sgd,
}

/// Where training runs.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TrainingDevice {
    /// CUDA when built with the `cuda` feature and a GPU is present, else CPU.
    Auto,
    #[default]
    Cpu,
    Cuda,
}

/// Early stopping on validation loss.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping.
    pub patience: u32,
    /// Smallest decrease of validation loss that counts as improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Resources of a training Job's container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// CPU request and limit, Kubernetes quantity (`2`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory request and limit, Kubernetes quantity (`8Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Number of `nvidia.com/gpu` to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
}

/// Hyper-parameters and placement of the training Job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSpec {
    pub epochs: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Decoupled weight decay for AdamW, L2 for SGD.
    #[serde(default)]
    pub weight_decay: f64,
    /// Seed for the split, initialisation, shuffling and dropout.
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    #[serde(default)]
    pub device: TrainingDevice,
    /// Container image of the training Job (the driftline binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ComputeResources>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Longest a training Job may run (`2h`); the Job's activeDeadlineSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// Retries of a failed training Job (its backoffLimit).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_retries() -> u32 {
    2
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            epochs: 40,
            batch_size: 64,
            learning_rate: 0.001,
            optimizer: Optimizer::Adamw,
            weight_decay: 0.0,
            seed: 0,
            early_stopping: None,
            device: TrainingDevice::Cpu,
            image: None,
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            deadline: None,
            retries: default_retries(),
        }
    }
}

/// What to do with schedule slots missed while the operator was down.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub enum MissedRunPolicy {
    /// Start nothing for missed slots; wait for the next one.
    Skip,
    /// Start exactly one run for all missed slots.
    #[default]
    RunLatest,
}

/// When to retrain.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrainSpec {
    /// 5-field cron (`0 2 * * *`), or 6 fields with seconds first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub missed_runs: MissedRunPolicy,
    /// Retrain when drift exceeds the threshold for `consecutiveWindows` windows.
    #[serde(default)]
    pub on_drift: bool,
    /// Retrain when the data source's digest changes.
    #[serde(default)]
    pub on_new_data: bool,
    /// Least time between two automatic retrains (`6h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// Most automatic retrains per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u32>,
}

/// Drift statistic compared against the threshold.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftStatistic {
    /// Jensen-Shannon distance, base 2, in [0, 1].
    #[default]
    JensenShannon,
    /// Population stability index.
    Psi,
    /// Kolmogorov-Smirnov statistic (numeric features).
    Ks,
    /// Wasserstein distance normalised by the reference spread.
    Wasserstein,
}

/// Per-feature override of the drift threshold.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDriftOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Never count this feature as drifted.
    #[serde(default)]
    pub ignore: bool,
}

/// Drift monitoring.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSpec {
    #[serde(default)]
    pub statistic: DriftStatistic,
    /// A feature drifts when its statistic exceeds this.
    #[serde(default = "default_drift_threshold")]
    pub threshold: f64,
    /// Rows per window.
    #[serde(default = "default_drift_window")]
    pub window: u32,
    /// Windows in a row over the threshold before drift counts.
    #[serde(default = "default_consecutive_windows")]
    pub consecutive_windows: u32,
    /// Share of features that must drift for the dataset to drift.
    #[serde(default = "default_drifted_share")]
    pub drifted_share: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureDriftOverride>,
}

fn default_drift_threshold() -> f64 {
    0.1
}
fn default_drift_window() -> u32 {
    1000
}
fn default_consecutive_windows() -> u32 {
    3
}
fn default_drifted_share() -> f64 {
    0.5
}

impl Default for DriftSpec {
    fn default() -> Self {
        Self {
            statistic: DriftStatistic::JensenShannon,
            threshold: default_drift_threshold(),
            window: default_drift_window(),
            consecutive_windows: default_consecutive_windows(),
            drifted_share: default_drifted_share(),
            features: BTreeMap::new(),
        }
    }
}

/// One metric check of the gate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricThreshold {
    /// `accuracy`, `macroF1`, `logLoss`, `rocAuc`, `recall:<class>`, `rmse`, `mae`, `r2`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Largest allowed worsening against the champion, in the metric's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drop_from_champion: Option<f64>,
    /// Largest allowed worsening against the champion, as a fraction of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relative_drop_from_champion: Option<f64>,
}

/// Rows of the test set selected by column conditions, with their own checks.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceSpec {
    pub name: String,
    /// Column → condition: `red`, `a|b`, `>=10`, `<5`, `10..12`.
    #[serde(rename = "where")]
    pub where_: BTreeMap<String, String>,
    pub metrics: Vec<MetricThreshold>,
}

/// Compute budgets measured where the evaluation runs.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// Single-row p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<f64>,
    /// Batch throughput in rows per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_throughput_rows_per_sec: Option<f64>,
    /// Artifact size in megabytes (10^6 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parameters: Option<u64>,
}

/// The promotion gate: a curated regression test-set and its thresholds.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateSpec {
    /// URI of the regression test-set (same formats as `data.source`).
    pub test_set: String,
    #[serde(default)]
    pub metrics: Vec<MetricThreshold>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<SliceSpec>,
    /// URI of golden examples every candidate must get right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_pass: Option<String>,
    /// Absolute tolerance for must-pass regression examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_pass_tolerance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<BudgetSpec>,
}

/// One canary step: set the weight, then wait and analyse.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic for the candidate, 1..=100.
    pub weight: u32,
    /// How long to hold this weight before the analysis (`10m`).
    pub pause: String,
}

/// Checks of the canary against the stable version on the same window.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Fewer canary requests than this make a step inconclusive, never a pass.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency_ms: Option<f64>,
    /// Largest allowed canary error rate above stable's, absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_increase: Option<f64>,
    /// Largest allowed canary p99 as a multiple of stable's (1.2 = 20 % slower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency_ratio: Option<f64>,
    /// Largest Jensen-Shannon distance between canary and stable predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prediction_divergence: Option<f64>,
    /// Least online accuracy on labelled canary traffic, when labels exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_online_accuracy: Option<f64>,
    /// Failed analyses tolerated before rolling back.
    #[serde(default)]
    pub failure_limit: u32,
}

fn default_min_requests() -> u64 {
    100
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            min_requests: default_min_requests(),
            max_error_rate: Some(0.01),
            max_p99_latency_ms: None,
            max_error_rate_increase: None,
            max_p99_latency_ratio: None,
            max_prediction_divergence: None,
            min_online_accuracy: None,
            failure_limit: 0,
        }
    }
}

/// How a candidate that passed the gate takes traffic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    pub steps: Vec<CanaryStep>,
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// Promote after the last step passes; otherwise wait for `driftline promote`.
    #[serde(default = "default_true")]
    pub auto_promote: bool,
    /// Superseded versions kept (artifacts and ModelVersion objects).
    #[serde(default = "default_retain")]
    pub retain_superseded: u32,
}

fn default_true() -> bool {
    true
}
fn default_retain() -> u32 {
    3
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            steps: vec![
                CanaryStep {
                    weight: 10,
                    pause: "5m".into(),
                },
                CanaryStep {
                    weight: 50,
                    pause: "10m".into(),
                },
            ],
            analysis: AnalysisSpec::default(),
            auto_promote: true,
            retain_superseded: default_retain(),
        }
    }
}

/// The serving Deployment of each version.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServingSpec {
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ComputeResources>,
    /// Container image of the model server (the driftline binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

fn default_replicas() -> u32 {
    1
}

impl Default for ServingSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            resources: None,
            image: None,
        }
    }
}
