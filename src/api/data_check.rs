//! The data check's contract: the statistics a CPU step computes over a
//! run's training window (`data` computes them, the artifact keeps the
//! champion's), and the checks the verdict (`policy::data_check`) makes
//! of them, as `driftline datacheck` leaves them in `datacheck.json` and a
//! `ModelVersion` shows them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kube::KubeSchema;

use super::model::{ModelSpec, default_true};
use super::validate::msg;

/// One column of a training window, counted.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnStats {
    /// Empty cells.
    pub nulls: u64,
    /// Cells that are numbers.
    pub numbers: u64,
    /// Cells that are text (categories, booleans, a stray word).
    pub texts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Rows per category (text cells; every value of the target), the first
    /// [`MAX_CATEGORIES`] distinct ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, u64>,
    /// Numbers outside the champion's training range, when one was given.
    #[serde(default)]
    pub out_of_range: u64,
}

/// Distinct categories counted per column (an ID column must not grow the
/// report without bound).
pub const MAX_CATEGORIES: usize = 1000;

impl ColumnStats {
    /// Share of `rows` that are empty.
    pub fn null_rate(&self, rows: u64) -> f64 {
        ratio(self.nulls, rows)
    }

    /// Whether every present cell is a number (a numeric column).
    pub fn numeric(&self) -> bool {
        self.numbers > 0 && self.texts == 0
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The statistics of one training window: what the check compares.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataStats {
    pub rows: u64,
    /// Rows equal to an earlier row in every counted column.
    pub duplicate_rows: u64,
    /// Duplicates were not counted (`duplicateRows` is 0 then): a training
    /// streamed past memory records its window's statistics without them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicates_uncounted: bool,
    /// The target column's name.
    pub target: String,
    /// The features and the target, by name.
    pub columns: BTreeMap<String, ColumnStats>,
}

impl DataStats {
    /// Share of rows that repeat an earlier one.
    pub fn duplicate_rate(&self) -> f64 {
        ratio(self.duplicate_rows, self.rows)
    }

    /// Share of each target class among the labelled rows.
    pub fn class_shares(&self) -> BTreeMap<String, f64> {
        let Some(target) = self.columns.get(&self.target) else {
            return BTreeMap::new();
        };
        let labelled: u64 = target.categories.values().sum();
        target
            .categories
            .iter()
            .map(|(class, n)| (class.clone(), ratio(*n, labelled)))
            .collect()
    }
}

/// One check of the data check, with its numbers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataCheck {
    /// The bound's name in `gate.data` (`minRows`, `maxNullRateIncrease`,
    /// `maxClassShareChange`, …) or the schema check (`missingColumn`,
    /// `retypedColumn`, `newColumn`, `classVanished`).
    pub name: String,
    /// The column it is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The target's class it is about (`classVanished`,
    /// `maxClassShareChange`); `column` is then the target. Its own field so
    /// a class name is never parsed back out of a column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The measured value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The bound it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    pub passed: bool,
    /// Whether a failure stops training (`false`: reported only).
    pub blocking: bool,
    /// One sentence with the numbers.
    pub message: String,
}

/// The data check's decision on one training window.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVerdict {
    /// No blocking check failed.
    pub passed: bool,
    pub checks: Vec<DataCheck>,
}

impl DataVerdict {
    /// Failed checks that stop training.
    pub fn blocking_failures(&self) -> impl Iterator<Item = &DataCheck> {
        self.checks.iter().filter(|c| !c.passed && c.blocking)
    }

    /// `passed 9/9`, or `failed 2/9: <first failure>`.
    pub fn summary(&self) -> String {
        let failed: Vec<&DataCheck> = self.blocking_failures().collect();
        match failed.first() {
            None => format!("passed {}/{}", self.checks.len(), self.checks.len()),
            Some(first) => format!(
                "failed {}/{}: {}",
                failed.len(),
                self.checks.len(),
                first.message
            ),
        }
    }
}

/// What `driftline datacheck` leaves beside the version's artifact
/// (`datacheck.json`) for the operator to read.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataCheckReport {
    /// The data source and the digest of the files in the window.
    pub source: String,
    pub digest: String,
    /// The files read.
    pub files: Vec<String>,
    pub stats: DataStats,
    /// The champion's artifact compared with, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    pub verdict: DataVerdict,
    /// Why the data could not be read at all (a corrupt file, a missing
    /// prefix, refused credentials), naming the file; the verdict then fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The data check before any training: the new training window against
/// these bounds and against the champion's training data, on a CPU, before
/// a GPU is requested. On by default, for Models without a `gate` too.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataCheckSpec {
    /// `false` trains without checking.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Fewest rows the training window must hold.
    #[serde(default = "default_min_rows")]
    pub min_rows: u64,
    /// Largest share of rows without a target value.
    #[serde(default)]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::DATA_RATE_RANGE))]
    pub max_target_null_rate: f64,
    /// Largest rise of a feature's null rate over the champion's training data.
    #[serde(default = "default_null_rate_increase")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::DATA_RATE_RANGE))]
    pub max_null_rate_increase: f64,
    /// Largest change of a class's share from the champion's; a class the
    /// champion learnt that has no rows now always fails.
    #[serde(default = "default_class_share_change")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::DATA_RATE_RANGE))]
    pub max_class_share_change: f64,
    /// Largest share of a numeric feature's values outside the range the
    /// champion was trained on.
    #[serde(default = "default_out_of_range_rate")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::DATA_RATE_RANGE))]
    pub max_out_of_range_rate: f64,
    /// Largest share of rows repeating an earlier row; unset reports them only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::DATA_RATE_RANGE))]
    pub max_duplicate_rate: Option<f64>,
    /// `true` refuses a window that the drift rule (`spec.drift`) calls
    /// drifted from the champion's training data; by default that drift is
    /// reported with the window's other checks, not blocking: new data is
    /// expected to move, and a retrain is how the model follows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_on_drift: bool,
}

fn default_min_rows() -> u64 {
    10
}
fn default_null_rate_increase() -> f64 {
    0.1
}
fn default_class_share_change() -> f64 {
    0.2
}
fn default_out_of_range_rate() -> f64 {
    0.05
}

impl Default for DataCheckSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            min_rows: default_min_rows(),
            max_target_null_rate: 0.0,
            max_null_rate_increase: default_null_rate_increase(),
            max_class_share_change: default_class_share_change(),
            max_out_of_range_rate: default_out_of_range_rate(),
            max_duplicate_rate: None,
            block_on_drift: false,
        }
    }
}

impl DataCheckSpec {
    pub(super) fn is_default(&self) -> bool {
        *self == DataCheckSpec::default()
    }
}

impl ModelSpec {
    /// The data check this Model gets: `gate.data`, or the defaults (on)
    /// when it has no gate or the gate does not say. An image set
    /// (`data.format: images`) gets none: the check compares table columns,
    /// which an image set does not have; undecodable images are counted by
    /// the trainer against `maxBadImages` instead.
    pub fn data_check(&self) -> DataCheckSpec {
        let mut check = self
            .gate
            .as_ref()
            .map(|g| g.data.clone())
            .unwrap_or_default();
        if self.data.format == Some(super::DataFormat::Images) {
            check.enabled = false;
        }
        check
    }

    /// Where a new run of this Model starts: at its data check when it has
    /// one, else straight at training. Also where a run is taken back from a
    /// version whose status was never written (it cannot have been checked).
    pub fn first_run_stage(&self) -> super::RunStage {
        if self.data_check().enabled {
            super::RunStage::CheckingData
        } else {
            super::RunStage::Training
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api::{DataFormat, load_model_config};

    #[test]
    fn tables_get_the_data_check_by_default_and_image_sets_none() {
        let table =
            load_model_config("task: classification\ndata: {source: d.csv, target: y}\n").unwrap();
        assert!(table.data_check().enabled);
        let mut images = table.clone();
        images.data.format = Some(DataFormat::Images);
        assert!(!images.data_check().enabled);
    }
}
