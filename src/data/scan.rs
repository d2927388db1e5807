//! A dataset read as a stream, for training past memory: the listed files
//! in a given order, one record batch at a time, each batch's rows filtered
//! by the window and `where` and given the partition keys it needs (the
//! same rules [`read`](super::read) applies, from `dataset.rs`). Nothing
//! but the batch in hand is held.

use chrono::{DateTime, Utc};

use crate::api::DataSpec;

use super::dataset::{self, Listing};
use super::error::DataError;
use super::frame::Frame;
use super::parquet::FileSchema;

/// Rows of one batch after filtering.
pub struct Rows<'a> {
    /// The file's index in the listing.
    pub file: usize,
    /// The index of the batch's first row among its file's kept rows: with
    /// `file`, a row's identity whatever order the files are read in.
    pub first: u64,
    pub table: &'a Frame,
    /// Each row's time when there is a window.
    pub times: &'a [DateTime<Utc>],
}

/// What a scan saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Rows kept.
    pub rows: u64,
    /// Rows left out because their window column was empty.
    pub rows_without_time: u64,
}

/// Reads `listing`'s files in `order` (indices into `listing.files`),
/// projected to `columns` (the run's columns when `None`), handing each
/// batch's kept rows to `on_rows`. `on_open` sees each Parquet file's
/// bytes reading it holds at once (its largest row group, times the row
/// groups decoded at once) before it is read.
pub async fn scan<E: From<DataError>>(
    spec: &DataSpec,
    listing: &Listing,
    order: &[usize],
    columns: Option<&[String]>,
    on_open: &mut dyn FnMut(&str, u64) -> Result<(), E>,
    mut on_rows: impl FnMut(Rows<'_>) -> Result<(), E>,
) -> Result<Scanned, E> {
    let wheres = dataset::conditions(spec)?;
    let wanted = match columns {
        Some(c) => Some(c.to_vec()),
        None => dataset::wanted(spec),
    };
    let key_columns = dataset::key_columns(spec, listing);
    let mut first_schema: Option<(String, FileSchema)> = None;
    let mut scanned = Scanned::default();
    for &index in order {
        let Some(file) = listing.files.get(index) else {
            continue;
        };
        let mut kept_in_file = 0u64;
        let mut rows_without_time = 0usize;
        // A callback's own error is carried out of the reader, which only knows DataError.
        let failed: std::cell::RefCell<Option<E>> = std::cell::RefCell::new(None);
        let stop = |e: E| {
            *failed.borrow_mut() = Some(e);
            DataError::Stopped
        };
        let mut add = |part: Frame| -> Result<(), DataError> {
            let part = dataset::with_keys(part, file, &key_columns);
            let (kept, times) = dataset::filter_rows(
                part,
                listing.window.as_ref(),
                &wheres,
                &mut rows_without_time,
            )?;
            if kept.rows == 0 {
                return Ok(());
            }
            let rows = Rows {
                file: index,
                first: kept_in_file,
                table: &kept,
                times: &times,
            };
            kept_in_file += kept.rows as u64;
            on_rows(rows).map_err(stop)
        };
        let uri = file.uri.clone();
        let read = dataset::read_file(
            listing,
            file,
            wanted.as_deref(),
            &mut first_schema,
            &mut |bytes| on_open(&uri, bytes).map_err(stop),
            &mut add,
        )
        .await;
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        read?;
        scanned.rows += kept_in_file;
        scanned.rows_without_time += rows_without_time as u64;
    }
    Ok(scanned)
}
