//! Datasets, preprocessing, architectures, candle training, evaluation and
//! the artifact format.

pub mod cli;
