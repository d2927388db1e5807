//! Mergeable sketches of live inputs and predictions, and the drift
//! statistics that compare them with the training reference.
//!
//! This room imports nothing project-specific: `ml` fits a
//! [`profile::ReferenceProfile`] at training time and `serve` fills sketches
//! keyed to its bins.

pub mod profile;

pub use profile::{
    CategoricalProfile, FeatureProfile, NumericProfile, ProfileError, ReferenceProfile,
};
