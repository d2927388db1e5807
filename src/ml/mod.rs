//! Datasets, preprocessing, architectures, candle training, evaluation and
//! the artifact format.
//!
//! Other rooms use: [`LoadedModel`] (load a verified artifact, predict),
//! [`FeatureBatch`] / [`Cell`] (raw rows in), [`Predictions`] (out),
//! [`Manifest`] (schema, classes, drift reference), [`store`] (bytes at a URI)
//! and [`load_feedback`] (the last four from the `data` room).

pub mod arch;
pub mod artifact;
pub mod error;
pub mod eval;
pub mod metrics;
pub mod preprocess;
pub mod synth;
pub mod train;
pub mod vision;

/// Bytes at a URI: the `data` room's, which training data and artifacts share.
pub use crate::data::store;

pub use crate::data::{Cell, Feedback, Table, load_feedback, read_table};
pub use artifact::{LoadedModel, Manifest, Predictions, Predictor};
pub use error::{ArtifactError, MlError};
pub use eval::evaluate;
pub use preprocess::{FeatureBatch, FeatureSchema};
pub use train::{TrainOptions, TrainedModel, fit, train};
