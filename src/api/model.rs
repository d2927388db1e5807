//! The `Model` custom resource: what a team applies with kubectl.
//!
//! Spec field names follow the north-star YAML in DESIGN.md. Defaults are
//! the safe choice a user would expect; `validate()` in `config.rs` refuses
//! what the schema cannot express.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::data_window::{DataWindow, Partitioning};
use super::images::{ConvBlock, ImageDataSpec, WarmStart};
use super::rollout::{RolloutSpec, ServingSpec};
use super::validate::time_zone_rule;
use super::validate::{DURATION_RULE, UNIT_METRIC_RULE, architecture_rule, cron_rule, msg};
use super::validate::{
    ESTIMATED_ACCURACY_CLASSIFIER_RULE, SHADOW_SLICES_RULE, SHADOW_TOLERANCE_RULE,
};
use super::{data_check::DataCheckSpec, duration::SpecDuration, status::ModelStatus};

/// A model that driftline trains, gates, serves and keeps healthy.
// kube's repeated `printcolumn(type_ = ...)` is not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "driftline.dev",
    version = "v1alpha1",
    kind = "Model",
    doc = "A model that driftline trains, gates, serves and keeps healthy",
    namespaced,
    status = "ModelStatus",
    shortname = "mdl",
    category = "driftline",
    cel,
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Champion", type_ = "string", json_path = ".status.champion"),
    printcolumn(name = "Candidate", type_ = "string", json_path = ".status.candidate"),
    printcolumn(
        name = "Traffic",
        type_ = "string",
        json_path = ".status.trafficSummary"
    ),
    printcolumn(name = "Drift", type_ = "string", json_path = ".status.drift.summary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(SHADOW_TOLERANCE_RULE).message(msg::SHADOW_TOLERANCE_REQUIRED).field_path(".rollout.shadow.tolerance"))]
#[x_kube(validation = Rule::new(ESTIMATED_ACCURACY_CLASSIFIER_RULE).message(msg::ESTIMATED_ACCURACY_CLASSIFIER).field_path(".rollout.analysis.maxEstimatedAccuracyDrop"))]
#[x_kube(validation = Rule::new(SHADOW_SLICES_RULE).message(msg::SHADOW_SLICE_UNKNOWN).field_path(".rollout.shadow.slices"))]
#[x_kube(validation = Rule::new(super::annotation::ANNOTATION_NEEDS_FEEDBACK_RULE).message(msg::ANNOTATION_NEEDS_FEEDBACK).field_path(".feedback.annotation"))]
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
    /// Where this Model's lifecycle steps are sent (CloudEvents or Slack),
    /// beside the operator-wide sinks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub notify: Vec<super::notify::NotifySink>,
    /// What becomes of served traffic beyond `data.includeFeedback`: the
    /// annotation queue's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<super::annotation::FeedbackSpec>,
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
    /// Apache Parquet (uncompressed, snappy or zstd); strings are categories.
    Parquet,
    /// PNG and JPEG files: class folders or a CSV index (`data.images`).
    Images,
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
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.features) || !(self.target in self.features)").message(msg::TARGET_IN_FEATURES))]
#[serde(rename_all = "camelCase")]
pub struct DataSpec {
    /// A file, a prefix ending in `/` or a glob (`s3://b/events/*/*.parquet`):
    /// `file://`, a plain path, `s3://`, `gs://`, `az://`; `https://` one file.
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::SOURCE_EMPTY))]
    pub source: String,
    /// `csv`, `jsonl`, `parquet` or `images`; inferred from the file extensions when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// `hive`: the prefix holds `key=value/` directories whose keys are columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<Partitioning>,
    /// Only rows of the last `last` before the training start, by `column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DataWindow>,
    /// Column → condition (`eu`, `a|b`, `>=10`): only matching rows (partitions) are read.
    #[serde(rename = "where", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub where_: BTreeMap<String, String>,
    /// The column to predict.
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::TARGET_EMPTY))]
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
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) < 1.0").message(msg::VALIDATION_FRACTION))]
    pub validation_fraction: f64,
    /// How image files become the model's input (`format: images`; 32×32 RGB when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageDataSpec>,
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

/// The network. `type` names an architecture in the registry (`mlp`, `cnn`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.type != 'cnn' || (has(self.convBlocks) && size(self.convBlocks) > 0)").message(msg::CONV_BLOCKS_NEEDED))]
#[serde(rename_all = "camelCase")]
pub struct ArchitectureSpec {
    /// Registered architecture name: `mlp` or `cnn`.
    #[serde(rename = "type", default = "default_architecture")]
    #[x_kube(validation = Rule::new(architecture_rule()).message(msg::ARCHITECTURE_UNKNOWN))]
    pub kind: String,
    /// Width of each hidden layer; empty gives logistic / linear regression.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(w, w > 0)").message(msg::HIDDEN_LAYER_EMPTY))]
    pub hidden_layers: Vec<u32>,
    #[serde(default)]
    pub activation: Activation,
    /// Dropout probability after each hidden layer, in [0, 1).
    #[serde(default)]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) < 1.0").message(msg::DROPOUT_RANGE))]
    pub dropout: f64,
    /// `cnn`: convolutional blocks, then global average pooling and the
    /// head (`hiddenLayers`, then the output layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub conv_blocks: Vec<ConvBlock>,
    /// A base checkpoint to start from: a driftline artifact directory or a
    /// safetensors file whose tensor names and shapes match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::INIT_EMPTY))]
    pub init: Option<String>,
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
            conv_blocks: Vec::new(),
            init: None,
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
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping.
    #[x_kube(validation = Rule::new("self > 0").message(msg::PATIENCE))]
    pub patience: u32,
    /// Smallest decrease of validation loss that counts as improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Resources of a training Job's container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// CPU request and limit, Kubernetes quantity (`2`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message(msg::CPU_QUANTITY))]
    pub cpu: Option<String>,
    /// Memory request and limit, Kubernetes quantity (`8Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message(msg::MEMORY_QUANTITY))]
    pub memory: Option<String>,
    /// Number of `nvidia.com/gpu` to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
}

/// Hyper-parameters and placement of the training Job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSpec {
    /// Passes over the training data.
    #[x_kube(validation = Rule::new("self > 0").message(msg::EPOCHS_POSITIVE))]
    pub epochs: u32,
    /// Rows per optimiser step.
    #[x_kube(validation = Rule::new("self > 0").message(msg::BATCH_SIZE_POSITIVE))]
    pub batch_size: u32,
    /// Optimiser step size.
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::LEARNING_RATE_POSITIVE))]
    pub learning_rate: f64,
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Decoupled weight decay for AdamW, L2 for SGD.
    #[serde(default)]
    #[x_kube(validation = Rule::new("double(self) >= 0.0").message(msg::WEIGHT_DECAY))]
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
    #[x_kube(validation = Rule::new(DURATION_RULE).message(msg::DEADLINE_DURATION))]
    pub deadline: Option<SpecDuration>,
    /// Retries of a failed training Job (its backoffLimit).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// `champion`: start from the champion's weights when its architecture matches.
    #[serde(default, skip_serializing_if = "WarmStart::is_none")]
    pub warm_start: WarmStart,
    /// Tensors kept as loaded: layer names or prefixes (`conv`, `conv0.`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.all(f, size(f) > 0)").message(msg::FREEZE_EMPTY))]
    pub freeze: Vec<String>,
    /// Learning rate of the output layer (`head`); `learningRate` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::HEAD_LEARNING_RATE))]
    pub head_learning_rate: Option<f64>,
    /// Rows held by the seeded shuffle buffer: when set, a Parquet source
    /// is streamed in record batches instead of loaded whole (see README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::SHUFFLE_BUFFER_POSITIVE))]
    pub shuffle_buffer: Option<u32>,
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
            warm_start: WarmStart::None,
            freeze: Vec::new(),
            head_learning_rate: None,
            shuffle_buffer: None,
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
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.timeZone) || has(self.schedule)").message(msg::TIME_ZONE_NEEDS_SCHEDULE))]
#[serde(rename_all = "camelCase")]
pub struct RetrainSpec {
    /// 5-field cron (`0 2 * * *`; day-of-week 0-7, Sunday = 0 or 7), or 6
    /// fields with seconds first, or `@daily`, `@hourly`, `@weekly`, `@monthly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new(cron_rule()).message(msg::SCHEDULE_SHAPE))]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule (`Europe/London`); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(time_zone_rule()).message(msg::TIME_ZONE))]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub missed_runs: MissedRunPolicy,
    /// Retrain when drift exceeds the threshold for `consecutiveWindows` windows.
    #[serde(default)]
    pub on_drift: bool,
    /// Retrain when the data source's digest changes.
    #[serde(default)]
    pub on_new_data: bool,
    /// Least time between two drift-, estimate- or data-triggered retrains (`6h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(msg::COOLDOWN_DURATION))]
    pub cooldown: Option<SpecDuration>,
    /// Most drift-, estimate- or data-triggered retrains in any 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::MAX_PER_DAY))]
    pub max_per_day: Option<u32>,
    /// Retrain when the champion's accuracy estimated without labels falls
    /// more than `maxDrop` below its validation accuracy (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_estimated_drop: Option<super::estimate::EstimatedDropTrigger>,
}

impl RetrainSpec {
    /// The parsed schedule in its time zone; `None` without a schedule or
    /// when it does not parse (`validate()` reports that on its own field).
    pub fn parsed_schedule(&self) -> Option<super::schedule::RetrainSchedule> {
        let expression = self.schedule.as_deref()?;
        super::schedule::RetrainSchedule::parse(expression, self.time_zone.as_deref()).ok()
    }
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

/// How drifted features add up to a drifted window.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftTrigger {
    /// The drifted features carry at least `driftedShare` of the model's
    /// importance (permutation importance, measured at training), or the
    /// predictions drifted.
    #[default]
    Weighted,
    /// At least `driftedShare` of the features drifted.
    Share,
    /// Any feature, or the predictions, drifted.
    Any,
}

/// Which false-flag rate `falseAlarmRate` bounds for calibrated thresholds.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftControl {
    /// The chance that any feature of a drift-free window is flagged (Bonferroni).
    #[default]
    FamilyWise,
    /// The expected share of flagged features that did not drift (Benjamini-Hochberg).
    FalseDiscoveryRate,
    /// Each feature's own chance of a false flag, uncorrected.
    PerFeature,
}

/// A drift threshold: `auto`, or a fixed number for every feature.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum DriftThreshold {
    /// Each feature's null quantile for the window's size, calibrated at
    /// training on held-out rows, at `falseAlarmRate` under `control`.
    #[default]
    Auto,
    Fixed(f64),
}

impl Serialize for DriftThreshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(t) => s.serialize_f64(*t),
        }
    }
}

impl<'de> Deserialize<'de> for DriftThreshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(t) => Ok(Self::Fixed(t)),
            Raw::Word(w) if w == "auto" => Ok(Self::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "drift threshold `{w}`: expected `auto` or a number"
            ))),
        }
    }
}

impl JsonSchema for DriftThreshold {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DriftThreshold".into()
    }

    fn inline_schema() -> bool {
        true
    }

    // A number or the word `auto`: structural schemas allow two types on one
    // field only by leaving it untyped, and CEL cannot read an untyped field
    // (a real API server refuses such a rule), so `Model::validate` checks it:
    // a bad threshold shows as `SpecValid=False` with an Event.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`auto` (calibrated at training, the default) or a number > 0 for every feature",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// Per-feature override of the drift threshold.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDriftOverride {
    /// This feature's threshold instead of `drift.threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::FEATURE_THRESHOLD))]
    pub threshold: Option<f64>,
    /// Never count this feature as drifted.
    #[serde(default)]
    pub ignore: bool,
}

/// Drift monitoring.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSpec {
    #[serde(default)]
    pub statistic: DriftStatistic,
    /// A feature drifts when its statistic exceeds this: `auto` (each
    /// feature's calibrated null quantile for the window's size) or a number.
    #[serde(default)]
    pub threshold: DriftThreshold,
    /// With `threshold: auto`: the false-flag rate allowed per window.
    #[serde(default = "default_false_alarm_rate")]
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) < 1.0").message(msg::FALSE_ALARM_RATE))]
    pub false_alarm_rate: f64,
    /// With `threshold: auto`: which rate `falseAlarmRate` bounds.
    #[serde(default)]
    pub control: DriftControl,
    /// Rows per window.
    #[serde(default = "default_drift_window")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::DRIFT_WINDOW))]
    pub window: u32,
    /// Windows in a row over the threshold before drift counts.
    #[serde(default = "default_consecutive_windows")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::CONSECUTIVE_WINDOWS))]
    pub consecutive_windows: u32,
    /// How drifted features add up to a drifted window: `weighted` (by the
    /// model's feature importance, or drifted predictions), `share` or `any`.
    #[serde(default)]
    pub trigger: DriftTrigger,
    /// Share of the features (`share`) or of their importance weight
    /// (`weighted`) that must drift for a window to drift.
    #[serde(default = "default_drifted_share")]
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) <= 1.0").message(msg::DRIFTED_SHARE))]
    pub drifted_share: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureDriftOverride>,
}

fn default_false_alarm_rate() -> f64 {
    0.01
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
            threshold: DriftThreshold::Auto,
            false_alarm_rate: default_false_alarm_rate(),
            control: DriftControl::FamilyWise,
            window: default_drift_window(),
            consecutive_windows: default_consecutive_windows(),
            trigger: DriftTrigger::Weighted,
            drifted_share: default_drifted_share(),
            features: BTreeMap::new(),
        }
    }
}

/// One metric check of the gate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || double(self.min) <= double(self.max)").message(msg::MIN_ABOVE_MAX))]
#[x_kube(validation = Rule::new(UNIT_METRIC_RULE).message(msg::UNIT_METRIC_RANGE))]
#[serde(rename_all = "camelCase")]
pub struct MetricThreshold {
    /// `accuracy`, `macroF1`, `logLoss`, `rocAuc`, `recall:<class>`, `rmse`, `mae`, `r2`.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::METRIC_NAME_EMPTY))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Largest allowed worsening against the champion, in the metric's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0").message(msg::MAX_DROP))]
    pub max_drop_from_champion: Option<f64>,
    /// Largest allowed worsening against the champion, as a fraction of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MAX_RELATIVE_DROP))]
    pub max_relative_drop_from_champion: Option<f64>,
}

/// Rows of the test set selected by column conditions, with their own checks.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceSpec {
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::SLICE_NAME_EMPTY))]
    pub name: String,
    /// Column → condition: `red`, `a|b`, `>=10`, `<5`, `10..12`.
    #[serde(rename = "where")]
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::SLICE_WHERE_EMPTY))]
    pub where_: BTreeMap<String, String>,
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::SLICE_METRICS_EMPTY))]
    pub metrics: Vec<MetricThreshold>,
}

/// Compute budgets measured where the evaluation runs.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// Single-row p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::BUDGET_POSITIVE))]
    pub p99_latency_ms: Option<f64>,
    /// Batch throughput in rows per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::BUDGET_POSITIVE))]
    pub min_throughput_rows_per_sec: Option<f64>,
    /// Artifact size in megabytes (10^6 bytes); `maxSizeMB` as in DESIGN.md.
    #[serde(rename = "maxSizeMB", default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::BUDGET_POSITIVE))]
    pub max_size_mb: Option<f64>,
    /// Most trainable parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::BUDGET_POSITIVE))]
    pub max_parameters: Option<u64>,
    /// Image models: least images per second, decoding included, on the
    /// test set in batches of `imageBatchSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::BUDGET_POSITIVE))]
    pub min_images_per_second: Option<f64>,
    /// Images per request `minImagesPerSecond` is measured at (32 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::BUDGET_POSITIVE))]
    pub image_batch_size: Option<u32>,
}

/// The promotion gate: a curated regression test-set and its thresholds.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateSpec {
    /// The data check before training (on by default).
    #[serde(default, skip_serializing_if = "DataCheckSpec::is_default")]
    pub data: DataCheckSpec,
    /// URI of the regression test-set (same formats as `data.source`).
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::TEST_SET_EMPTY))]
    pub test_set: String,
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub metrics: Vec<MetricThreshold>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message(msg::SLICE_NAMES_UNIQUE))]
    pub slices: Vec<SliceSpec>,
    /// URI of golden examples every candidate must get right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_pass: Option<String>,
    /// Absolute tolerance for must-pass regression examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0").message(msg::MUST_PASS_TOLERANCE))]
    pub must_pass_tolerance: Option<f64>,
    /// Largest expected calibration error (`expectedCalibrationError` on
    /// the test set, at the served temperature) a classifier may have: its
    /// estimated accuracy without labels is only as good as its calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MAX_CALIBRATION_ERROR))]
    pub max_calibration_error: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<BudgetSpec>,
}

/// serde's default for the spec's switches that are on unless turned off.
pub(super) fn default_true() -> bool {
    true
}
