//! Where a Model's rows come from beyond one file: the layout of the files
//! under a prefix and the time window a run reads.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::SpecDuration;
use super::validate::{DURATION_RULE, msg};

/// How the files under a prefix are laid out.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Partitioning {
    /// `key=value/` directories (`date=2026-12-01/part-0.parquet`): each key
    /// is a column of its files' rows, usable as a feature, in `where` and
    /// as the window's column; a key whose values are dates prunes whole
    /// days outside the window before any file is opened.
    Hive,
}

/// Train on recent rows only, counted back from the training start.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataWindow {
    /// The column holding each row's time: a timestamp, a date, RFC 3339
    /// text or a Hive partition key such as `date`.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::WINDOW_COLUMN_EMPTY))]
    pub column: String,
    /// How far back rows count (`30d`); older partitions are not read.
    #[x_kube(validation = Rule::new(DURATION_RULE).message(msg::WINDOW_LAST_DURATION))]
    pub last: SpecDuration,
    /// The newest span of the window (`1d`) is the validation split instead
    /// of a random `validationFraction` share: a time-aware holdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(msg::WINDOW_HOLDOUT_DURATION))]
    pub holdout: Option<SpecDuration>,
}
