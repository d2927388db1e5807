//! The `ml` room's errors: every message names what was wrong and where.

use crate::api::{ConfigError, SliceConditionError};
use crate::drift::ProfileError;

use crate::data::DataError;
use crate::data::store::StoreError;

/// Why training, evaluation or prediction was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(
        "streaming `{source_uri}` needs at least {need_mib} MiB but the memory bound is {bound_mib} MiB (the training pod's memory request): {parts}; lower training.shuffleBuffer, write the Parquet files with smaller row groups, or raise training.resources.memory"
    )]
    MemoryBound {
        source_uri: String,
        need_mib: u64,
        bound_mib: u64,
        /// Each part of the need with its size.
        parts: String,
    },
    #[error(
        "dataset `{source_uri}` row {row}, column `{column}`: `{value}` is not a number, but the column is numeric{hint}"
    )]
    NotANumber {
        source_uri: String,
        row: usize,
        column: String,
        value: String,
        hint: String,
    },
    #[error(
        "dataset `{source_uri}` row {row}, column `{column}`: `{value}` is not finite; remove NaN/inf or leave the cell empty to impute it"
    )]
    NonFinite {
        source_uri: String,
        row: usize,
        column: String,
        value: String,
    },
    #[error(
        "dataset `{source_uri}` row {row}, column `{column}`: `{value}` is not a boolean (true/false, yes/no, 1/0)"
    )]
    NotABoolean {
        source_uri: String,
        row: usize,
        column: String,
        value: String,
    },
    #[error(
        "dataset `{source_uri}` row {row}: target `{target}` is empty; every training and test row needs a label"
    )]
    MissingTarget {
        source_uri: String,
        row: usize,
        target: String,
    },
    #[error("dataset `{source_uri}`: column `{column}` has no values at all")]
    EmptyColumn { source_uri: String, column: String },
    #[error(
        "target `{target}` has a single class `{class}` in the training data; classification needs at least two"
    )]
    SingleClass { target: String, class: String },
    #[error("unknown architecture `{name}`; known: {known}")]
    UnknownArchitecture { name: String, known: String },
    #[error(
        "base checkpoint `{uri}` does not fit architecture `{architecture}`: {problems}; train the base with this architecture, or change architecture.init"
    )]
    Checkpoint {
        uri: String,
        architecture: String,
        problems: String,
    },
    #[error(
        "`{file}` (architecture.init) is not a safetensors file; point architecture.init at a driftline artifact or a .safetensors file"
    )]
    NotSafetensors {
        file: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("config `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("feature batch has {got} columns; the model expects {expected} ({names})")]
    BatchShape {
        got: usize,
        expected: usize,
        names: String,
    },
    #[error("feature batch column `{column}` has {got} values; expected {expected} rows")]
    RaggedBatch {
        column: String,
        got: usize,
        expected: usize,
    },
    #[error("device: {0}")]
    Device(String),
    #[error("tensor computation failed")]
    Tensor(#[from] candle_core::Error),
    #[error("cannot build the drift reference profile")]
    Profile(#[from] ProfileError),
    #[error("gate slice `{slice}`")]
    Slice {
        slice: String,
        #[source]
        source: SliceConditionError,
    },
    #[error("training diverged at epoch {epoch}: loss is {loss}; lower training.learningRate")]
    Diverged { epoch: u32, loss: f64 },
    #[error("cannot encode the report as JSON")]
    Json(#[from] serde_json::Error),
}

/// Why an artifact could not be written or was refused at load time.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("artifact `{uri}`: `{file}` is missing")]
    MissingFile { uri: String, file: String },
    #[error("artifact `{uri}`: manifest.json is not a valid manifest: {reason}")]
    ManifestInvalid { uri: String, reason: String },
    #[error(
        "artifact `{uri}`: manifest format {found} is not supported (this driftline reads {supported})"
    )]
    UnsupportedFormat {
        uri: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "artifact `{uri}`: manifest.json was edited after training (digest {actual} ≠ recorded {expected})"
    )]
    ManifestEdited {
        uri: String,
        expected: String,
        actual: String,
    },
    #[error(
        "artifact `{uri}`: architecture fingerprint mismatch: manifest records {expected}, its architecture and tensors give {actual}"
    )]
    FingerprintMismatch {
        uri: String,
        expected: String,
        actual: String,
    },
    #[error(
        "artifact `{uri}`: `{file}` is {actual} bytes; the manifest records {expected} (truncated or replaced)"
    )]
    SizeMismatch {
        uri: String,
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "artifact `{uri}`: `{file}` sha256 {actual} does not match the manifest's {expected} (corrupted or replaced)"
    )]
    DigestMismatch {
        uri: String,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("artifact `{uri}`: weights do not match architecture `{architecture}`: {reason}")]
    TensorMismatch {
        uri: String,
        architecture: String,
        reason: String,
    },
    #[error("artifact `{uri}`: weights.safetensors is unreadable: {reason}")]
    Weights { uri: String, reason: String },
}
