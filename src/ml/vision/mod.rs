//! Images: decoding PNG and JPEG within bounds, the preprocessing an image
//! model ships in its artifact (resize, centre crop, channels,
//! normalisation; augmentation in training only), the per-image statistics
//! the drift monitor watches, and reading labelled image sets.

pub mod dataset;
pub mod decode;
pub mod preprocess;
pub mod stats;

pub use dataset::{ImageSet, read_image_set};
pub use decode::{DecodeLimits, ImageError, Pixels, decode};
pub use preprocess::ImagePreprocessing;
pub use stats::{IMAGE_STATISTICS, image_statistics};
