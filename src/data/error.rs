//! The `data` room's errors: each names the file (or source) and, where
//! there is one, the column, row or line, and what to do.

use super::store::StoreError;

/// A cause from another library (parquet, arrow), kept whole.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why training data could not be listed, read or windowed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A streaming reader's consumer stopped it with its own error, which
    /// is what the caller sees (this never reaches a user).
    #[error("the reader was stopped by its consumer")]
    Stopped,
    #[error("dataset `{source_uri}` is empty; expected a header row and at least one data row")]
    EmptyData { source_uri: String },
    #[error("dataset `{source_uri}` has a header but no data rows")]
    NoRows { source_uri: String },
    #[error("dataset `{source_uri}` line {line}: {reason}")]
    Malformed {
        source_uri: String,
        line: u64,
        reason: String,
    },
    #[error("dataset `{source_uri}`: column `{column}` missing; expected by {needed_by}")]
    MissingColumn {
        source_uri: String,
        column: String,
        needed_by: String,
    },
    #[error(
        "`{source_uri}` is not a readable Parquet file (truncated, corrupt, or another format); \
         rewrite it or remove it from the source"
    )]
    Parquet {
        source_uri: String,
        #[source]
        source: Cause,
    },
    #[error(
        "`{source_uri}`: column `{column}` has Parquet type {type_name}, which driftline cannot \
         train on (numbers, booleans, strings, dictionaries, dates and timestamps can); cast it \
         upstream or leave it out of data.features"
    )]
    UnsupportedType {
        source_uri: String,
        column: String,
        type_name: String,
    },
    #[error(
        "`{source_uri}`: column `{column}` is {found}, but it is {expected} in `{first_uri}`; \
         every file of a dataset must share one schema"
    )]
    SchemaMismatch {
        source_uri: String,
        column: String,
        found: String,
        expected: String,
        first_uri: String,
    },
    #[error(
        "data source `{source_uri}` holds no {what} files; check the prefix (a missing prefix lists as empty) \
         or set data.format"
    )]
    NoFiles { source_uri: String, what: String },
    #[error("data source `{source_uri}` mixes formats ({formats}); set data.format to pick one")]
    MixedFormats { source_uri: String, formats: String },
    #[error(
        "data source `{source_uri}`: no rows in the window {window} ({files} file(s) listed, {read} read); \
         widen data.window.last or check that new data arrives"
    )]
    EmptyWindow {
        source_uri: String,
        window: String,
        files: usize,
        read: usize,
    },
    #[error(
        "`{source_uri}` row {row}, column `{column}`: `{value}` is not a time; the window column \
         needs timestamps, dates or RFC 3339 text"
    )]
    NotATime {
        source_uri: String,
        row: usize,
        column: String,
        value: String,
    },
    #[error(
        "`{path}` in data source `{source_uri}` is not a Hive partition (`key=value/`): {reason}"
    )]
    Partition {
        source_uri: String,
        path: String,
        reason: String,
    },
    #[error("data source `{source_uri}`: {reason}")]
    Source { source_uri: String, reason: String },
    #[error("data `where` condition on `{column}`")]
    Where {
        column: String,
        #[source]
        source: crate::api::SliceConditionError,
    },
    #[error(
        "image set `{source_uri}` has no images; expected `<prefix>/<class>/*.png` (or .jpg) or a CSV index `path,<target>,…`"
    )]
    NoImages { source_uri: String },
    #[error(
        "image set `{source_uri}`: {count} undecodable image(s), but data.images.maxBadImages is {max}: {listed}"
    )]
    BadImages {
        source_uri: String,
        count: usize,
        max: u32,
        listed: String,
    },
}
