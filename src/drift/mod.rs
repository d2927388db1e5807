//! Mergeable sketches of live inputs and predictions, and the drift
//! statistics that compare them with the training reference.
//!
//! This room imports nothing project-specific: `ml` fits a
//! [`profile::ReferenceProfile`] at training time and `serve` fills sketches
//! keyed to its bins.

pub mod monitor;
pub mod profile;
pub mod sketch;
pub mod stats;

pub use monitor::{
    ColumnDrift, DriftConfig, DriftError, DriftMonitor, DriftReport, FeatureOverride, Statistic,
    WindowReport,
};
pub use profile::{
    CategoricalProfile, FeatureProfile, NumericProfile, ProfileError, ReferenceProfile,
};
pub use sketch::{ColumnSketch, DatasetSketch, Observation, SketchError};
