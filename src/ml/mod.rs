//! Datasets, preprocessing, architectures, candle training, evaluation and
//! the artifact format.
//!
//! Other rooms use: [`LoadedModel`] (load a verified artifact, predict),
//! [`FeatureBatch`] (raw rows in), [`Predictions`] (out), [`Manifest`]
//! (schema, classes, drift reference, lineage), [`train`] / [`fit`] and
//! [`evaluate`]. Rows, files and the object store are the `data` room's.

mod arch;
mod artifact;
mod error;
mod eval;
mod metrics;
mod outputs;
mod preprocess;
pub mod synth;
mod train;
mod vision;
mod window_drift;

pub use artifact::{
    DatasetLineage, EpochRecord, LoadedModel, MANIFEST_FILE, Manifest, Predictions, Predictor,
    StartFrom, StartLineage, WEIGHTS_FILE, parse_manifest,
};
pub use error::{ArtifactError, MlError};
pub use eval::{evaluate, evaluate_images, evaluate_with_test_set_sketch};
pub use preprocess::{FeatureBatch, FeatureRows, FeatureSchema, encode, encode_frame};
pub use train::{TrainOptions, TrainedModel, fit, train};
pub use window_drift::{WindowDrift, observation};

/// The manifest of the artifact at `artifact` (its `manifest.json`), read
/// and checked, without its weights: the one read of a manifest for those
/// that only describe a version (the operator, the dashboard, user commands).
pub async fn read_manifest(artifact: &str) -> Result<Manifest, ArtifactError> {
    let bytes = crate::data::store::read_bytes(&crate::api::names::manifest_uri(artifact)).await?;
    parse_manifest(artifact, &bytes)
}
