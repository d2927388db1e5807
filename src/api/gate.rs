//! Gate data shared by the evaluator (`ml`), the verdict (`policy`) and the
//! `ModelVersion` status: every check with its value and bound.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One check of the promotion gate, passed or failed, with its numbers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateCheck {
    /// What was checked: `metric`, `championDrop`, `slice`, `mustPass`, `budget`.
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
