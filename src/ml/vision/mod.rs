//! Images as an image model sees them: the preprocessing it ships in its
//! artifact (resize, centre crop, channels, normalisation; augmentation in
//! training only) and the per-image statistics the drift monitor watches.
//! Decoding and reading image sets are the `data` room's.

pub mod preprocess;
pub mod stats;

pub use preprocess::ImagePreprocessing;
pub use stats::{IMAGE_STATISTICS, image_statistics};
