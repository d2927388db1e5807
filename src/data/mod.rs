//! Reading training data: CSV, JSON Lines and Parquet (arrow-rs over
//! `object_store`) from a file, a prefix, a glob or a Hive layout; time
//! windows with partition pruning before any file is opened; the digest of
//! the files a run reads; labelled image sets (class folders or a CSV index)
//! and the one PNG/JPEG decoder, bounded in pixels. Imports `api` only.
//!
//! Other rooms use: [`Table`] / [`Cell`] (raw rows), [`Frame`] / [`Column`]
//! (typed rows as Parquet gives them, the one Arrow encoder), [`read`] (a Model's
//! data for a run), [`list`] / [`version`] (what it would read, and that
//! listing's digest), [`read_table`] (one file), [`load_feedback`],
//! [`realised_labels`] (the accuracy a Model's labels realised, per served
//! version and window), [`known_labels`] (every label by request row), the
//! annotation queue ([`read_queue`], [`QueuedRow`]), and
//! [`store`] (bytes at a URI), [`statistics`] (what the data check compares),
//! [`scan`] (a dataset batch by batch, for streaming training),
//! [`read_image_set`] (a labelled image set) and [`decode_image`] (bytes to
//! [`Pixels`] within [`DecodeLimits`]).

mod dataset;
mod error;
mod feedback;
mod frame;
mod image;
mod image_set;
mod parquet;
mod queue;
mod realised;
mod scan;
mod stats;
pub mod store;
mod table;
mod window;

pub use dataset::{
    DataFile, DataVersion, Dataset, Listing, empty_window, feature_columns, list, read, version,
};
pub use error::DataError;
pub use feedback::{Feedback, LateLabels, known_labels, load_feedback};
pub use frame::{CellReader, Column, Frame, MISSING};
pub use image::{DecodeLimits, ImageError, Pixels, decode as decode_image};
pub use image_set::{BadImage, ImageSet, read_image_set};
pub use parquet::{ColumnClass, table_from_bytes};
pub use queue::{
    ANNOTATION_SOURCE, Queue, QueuedRow, annotated_labels, annotation_label, annotation_label_uri,
    parse_queue_file, queue_prefix, read_queue,
};
pub use realised::{RealisedCount, RealisedLabels, realised_labels, window_start};
pub use scan::{Rows, Scanned, scan};
pub use stats::{Statistics, compute as statistics};
pub use table::{Cell, CellRef, Table, format_of, known_format, read_table, sha256_hex};
pub use window::{WindowBounds, parse_day, parse_time};
