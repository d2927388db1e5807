//! Mergeable sketches of live inputs and predictions, and the drift
//! statistics that compare them with the training reference.
//!
//! This room imports only the drift settings users write (`api`'s
//! `DriftSpec` and its words), so a Model's `spec.drift`, the model server's
//! flags and the monitor are one definition: `ml` fits a
//! [`profile::ReferenceProfile`] at training time and `serve` fills sketches
//! keyed to its bins.

mod calibrate;
mod confidence;
mod embedding;
mod monitor;
mod profile;
mod region;
mod replicas;
mod rule;
mod sketch;
mod stats;

pub use calibrate::{Calibration, ColumnNull, DEFAULT_RESAMPLES, NullFit, WindowNull, calibrate};
pub use confidence::ConfidenceTally;
pub use embedding::{EMBEDDING_DIRECTIONS, EmbeddingProjection, direction_name};
pub use monitor::{
    ColumnDrift, DriftConfig, DriftError, DriftMonitor, DriftReport, RunningTotal, WindowReport,
    compare,
};
pub use profile::{
    CategoricalProfile, DEFAULT_BINS, FeatureImportance, FeatureProfile, NumericProfile,
    ProfileError, ReferenceProfile,
};
pub use region::DriftRegion;
pub use replicas::{MergedWindow, ReplicaWindows};
pub use rule::{ColumnReading, ColumnVerdict, DriftRule, Verdict, window_verdict};
pub use sketch::{
    ColumnSketch, DatasetSketch, Observation, SketchError, bin_of, number_as_category,
};
pub use stats::{jensen_shannon_distance, ln_gamma, shares};
