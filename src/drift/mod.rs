//! Mergeable sketches of live inputs and predictions, and the drift
//! statistics that compare them with the training reference.
//!
//! This room imports nothing project-specific: `ml` fits a
//! [`profile::ReferenceProfile`] at training time and `serve` fills sketches
//! keyed to its bins.

pub mod calibrate;
pub mod monitor;
pub mod profile;
pub mod replicas;
pub mod rule;
pub mod sketch;
pub mod stats;

pub use calibrate::{Calibration, ColumnNull, NullFit, WindowNull, calibrate};
pub use monitor::{
    ColumnDrift, DriftConfig, DriftError, DriftMonitor, DriftReport, RunningTotal, Statistic,
    WindowReport,
};
pub use profile::{
    CategoricalProfile, FeatureImportance, FeatureProfile, NumericProfile, ProfileError,
    ReferenceProfile,
};
pub use replicas::{MergedWindow, ReplicaWindows};
pub use rule::{
    ColumnReading, ColumnVerdict, DriftRule, FeatureOverride, Trigger, Verdict, window_verdict,
};
pub use sketch::{ColumnSketch, DatasetSketch, Observation, SketchError};
