//! Gate data shared by the evaluator (`ml`), the verdict (`policy`) and the
//! `ModelVersion` status: every check with its value and bound.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One check of the promotion gate, passed or failed, with its numbers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateCheck {
    /// What was checked: `metric`, `championDrop`, `slice`, `mustPass`,
    /// `calibration`, `budget`.
    pub kind: String,
    /// Metric or budget name (`accuracy`, `p99LatencyMs`).
    pub name: String,
    /// Slice name when the check is on a slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// Measured value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The bound it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    pub passed: bool,
    /// One human-readable sentence with the numbers.
    pub message: String,
}

/// The gate's decision on a candidate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateVerdict {
    pub passed: bool,
    /// Every check, in the order evaluated.
    pub checks: Vec<GateCheck>,
}

impl GateVerdict {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &GateCheck> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// Every number of one model's evaluation on the curated regression
/// test-set: what the gate verdict reads and what `kubectl describe` shows.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    /// Artifact URI of the evaluated model.
    pub model: String,
    /// Architecture fingerprint from its manifest.
    pub fingerprint: String,
    /// sha256 of its weights.
    pub weights_digest: String,
    /// URI of the test set and sha256 of its bytes.
    pub test_set: String,
    pub test_set_digest: String,
    /// Test-set rows evaluated.
    pub rows: u64,
    /// Whole-test-set metrics by name (`accuracy`, `macroF1`, `logLoss`,
    /// `rocAuc`, `recall:<class>`, `rmse`, `mae`, `r2`).
    pub metrics: BTreeMap<String, f64>,
    /// Metrics of each slice named in the gate.
    #[serde(default)]
    pub slices: Vec<SliceReport>,
    /// Golden examples, when the gate names a must-pass set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_pass: Option<MustPassReport>,
    /// Compute budgets measured where the evaluation ran.
    pub budgets: BudgetReport,
}

/// Metrics on the test-set rows one slice selects.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceReport {
    pub name: String,
    /// Rows the slice selected.
    pub rows: u64,
    pub metrics: BTreeMap<String, f64>,
}

/// Outcome of the must-pass golden examples.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MustPassReport {
    /// URI of the golden examples.
    pub source: String,
    pub total: u64,
    pub passed: u64,
    /// Each example the model got wrong, by row.
    #[serde(default)]
    pub failures: Vec<MustPassFailure>,
}

/// One golden example the model got wrong.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MustPassFailure {
    /// 1-based data row in the golden file (the header is not counted).
    pub row: u64,
    pub expected: String,
    pub predicted: String,
}

/// Compute budgets as measured.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetReport {
    /// Single-row prediction latency percentiles in milliseconds.
    pub p50_latency_ms: f64,
    pub p99_latency_ms: f64,
    /// Rows per second predicting the whole test set in one batch.
    pub throughput_rows_per_sec: f64,
    /// Artifact size (all files) in bytes and in megabytes (10^6 bytes).
    pub size_bytes: u64,
    pub size_mb: f64,
    pub parameters: u64,
    /// Image models: images per second, decoding included, in batches of
    /// `imageBatchSize` (what one request of that many images costs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_batch_size: Option<u32>,
}

/// What `driftline evaluate` prints: both reports and the verdict.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateEvaluation {
    pub candidate: GateReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<GateReport>,
    pub verdict: GateVerdict,
}

/// Whether a larger value of the metric is better (`logLoss`,
/// `expectedCalibrationError`, `rmse` and `mae` are errors: smaller is better).
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(
        metric,
        "logLoss" | "expectedCalibrationError" | "rmse" | "mae"
    )
}

/// The gate report's name of the expected calibration error, which
/// `gate.maxCalibrationError` bounds.
pub const CALIBRATION_ERROR_METRIC: &str = "expectedCalibrationError";
