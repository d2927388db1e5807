//! Mergeable sketches of live inputs and predictions, and the drift
//! statistics that compare them with the training reference.
//!
//! This room imports only the drift settings users write (`api`'s
//! `DriftSpec` and its words), so a Model's `spec.drift`, the model server's
//! flags and the monitor are one definition: `ml` fits a
//! [`profile::ReferenceProfile`] at training time and `serve` fills sketches
//! keyed to its bins.

pub mod calibrate;
pub mod embedding;
pub mod monitor;
pub mod profile;
pub mod replicas;
pub mod rule;
pub mod sketch;
pub mod stats;

pub use calibrate::{Calibration, ColumnNull, NullFit, WindowNull, calibrate};
pub use embedding::{EMBEDDING_DIRECTIONS, EmbeddingProjection, direction_name};
pub use monitor::{
    ColumnDrift, DriftConfig, DriftError, DriftMonitor, DriftReport, RunningTotal, WindowReport,
};
pub use profile::{
    CategoricalProfile, FeatureImportance, FeatureProfile, NumericProfile, ProfileError,
    ReferenceProfile,
};
pub use replicas::{MergedWindow, ReplicaWindows};
pub use rule::{ColumnReading, ColumnVerdict, DriftRule, Verdict, window_verdict};
pub use sketch::{ColumnSketch, DatasetSketch, Observation, SketchError};
