//! Parquet files through arrow-rs: the async reader over `object_store`
//! (or a local file), only the columns asked for, one row group's batches
//! at a time, each batch handed on as a typed [`Frame`] (the type mapping
//! lives in `frame.rs`; which Arrow types can be read is `class_of` here).

use std::sync::Arc;

use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::error::DataError;
use super::frame::Frame;
use super::store::{self, Location};
use super::table::{Table, sha256_hex};

/// How a Parquet column reads, for comparing the schemas of a dataset's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    Number,
    Boolean,
    Text,
    Time,
}

impl std::fmt::Display for ColumnClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ColumnClass::Number => "numeric",
            ColumnClass::Boolean => "boolean",
            ColumnClass::Text => "text",
            ColumnClass::Time => "a time",
        })
    }
}

/// The class an Arrow type reads as, `None` for types driftline cannot train on.
fn class_of(data_type: &DataType) -> Option<ColumnClass> {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..) => Some(ColumnClass::Number),
        DataType::Boolean => Some(ColumnClass::Boolean),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(ColumnClass::Text),
        DataType::Dictionary(_, values) => class_of(values).map(|c| match c {
            // A dictionary is categorical whatever its values are.
            ColumnClass::Number | ColumnClass::Boolean => ColumnClass::Text,
            other => other,
        }),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => Some(ColumnClass::Time),
        DataType::Null => Some(ColumnClass::Text),
        _ => None,
    }
}

/// The columns of one file as driftline reads them, in file order.
pub type FileSchema = Vec<(String, ColumnClass)>;

/// The readable columns of `schema` among `wanted` (all when `None`); a
/// wanted column of a type driftline cannot read is an error naming it.
fn project(
    uri: &str,
    schema: &Schema,
    wanted: Option<&[String]>,
) -> Result<(Vec<usize>, FileSchema), DataError> {
    let mut indices = Vec::new();
    let mut classes = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if wanted.is_some_and(|w| !w.iter().any(|n| n == field.name())) {
            continue;
        }
        let class = class_of(field.data_type()).ok_or_else(|| DataError::UnsupportedType {
            source_uri: uri.into(),
            column: field.name().clone(),
            type_name: field.data_type().to_string(),
        })?;
        indices.push(i);
        classes.push((field.name().clone(), class));
    }
    Ok((indices, classes))
}

fn parquet_err(uri: &str) -> impl Fn(parquet::errors::ParquetError) -> DataError + '_ {
    move |e| DataError::Parquet {
        source_uri: uri.into(),
        source: e.into(),
    }
}

/// Bytes the largest row group's projected columns take, compressed (as
/// fetched) plus uncompressed (as decoded): what reading it holds at once.
fn largest_row_group(metadata: &ParquetMetaData, mask: &ProjectionMask) -> u64 {
    metadata
        .row_groups()
        .iter()
        .map(|rg| {
            rg.columns()
                .iter()
                .enumerate()
                .filter(|(i, _)| mask.leaf_included(*i))
                .map(|(_, c)| {
                    u64::try_from(c.compressed_size() + c.uncompressed_size()).unwrap_or(0)
                })
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// Reads the `wanted` columns (all when `None`) of the Parquet file at
/// `uri`, whose size the listing gave, streaming its row groups; `on_open`
/// learns how many bytes reading it holds at once (its largest row group
/// once read, see `largest_row_group`, times the row groups decoded at
/// once) before any is fetched, so a memory bound can refuse it first;
/// `on_batch` sees each batch as a typed frame as it arrives. Returns the
/// file's schema.
pub async fn read_file(
    uri: &str,
    size: u64,
    wanted: Option<&[String]>,
    on_open: &mut dyn FnMut(u64) -> Result<(), DataError>,
    mut on_batch: impl FnMut(Frame) -> Result<(), DataError>,
) -> Result<FileSchema, DataError> {
    let reader: Box<dyn AsyncFileReader> = match store::parse(uri)? {
        Location::Local(path) => return read_local(uri, path, wanted, on_open, on_batch).await,
        Location::Remote { store, path } => Box::new(StoreReader { store, path, size }),
        Location::Http(_) => {
            let data = store::read_bytes(uri).await?;
            return read_bytes_streaming(uri, data, wanted, on_open, on_batch);
        }
    };
    let mut reader = reader;
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .and_then(with_dictionaries)
        .map_err(parquet_err(uri))?;
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
        .with_batch_size(BATCH_ROWS);
    let (indices, classes) = project(uri, builder.schema(), wanted)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    on_open(largest_row_group(builder.metadata(), &mask))?;
    let mut stream = builder
        .with_projection(mask)
        .build()
        .map_err(parquet_err(uri))?;
    while let Some(batch) = stream.try_next().await.map_err(parquet_err(uri))? {
        on_batch(Frame::from_batch(uri, &batch)?)?;
    }
    Ok(classes)
}

/// Rows per record batch: large enough that per-batch work is small
/// beside per-row work (what is read does not depend on it).
const BATCH_ROWS: usize = 8192;

/// Row groups of a local file decoded at once, each on the blocking pool:
/// the machine's cores (up to 4) share the decoding while the batches are
/// still handed on in file order.
fn in_flight() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// The file's metadata with its string columns read as dictionaries: a
/// dictionary-encoded column (Parquet's default for text) then arrives as
/// its keys and distinct values, never one string per row. The values read
/// are the same.
fn with_dictionaries(
    metadata: ArrowReaderMetadata,
) -> parquet::errors::Result<ArrowReaderMetadata> {
    let schema = metadata.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8))
    {
        return Ok(metadata);
    }
    let fields: Vec<arrow_schema::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => Arc::new(f.as_ref().clone().with_data_type(
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone())),
            )),
            _ => f.clone(),
        })
        .collect();
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(
        metadata.metadata().clone(),
        ArrowReaderOptions::new().with_schema(hinted),
    )
}

fn open_local(uri: &str, path: &std::path::Path) -> Result<std::fs::File, DataError> {
    std::fs::File::open(path).map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::NotFound => store::StoreError::NotFound { uri: uri.into() },
            _ => store::StoreError::Read {
                uri: uri.into(),
                source: e.into(),
            },
        }
        .into()
    })
}

/// A local file: its row groups decoded [`in_flight`] at a time on the
/// blocking pool, into frames there, handed to `on_batch` in file order.
async fn read_local(
    uri: &str,
    path: std::path::PathBuf,
    wanted: Option<&[String]>,
    on_open: &mut dyn FnMut(u64) -> Result<(), DataError>,
    mut on_batch: impl FnMut(Frame) -> Result<(), DataError>,
) -> Result<FileSchema, DataError> {
    let file = open_local(uri, &path)?;
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        .and_then(with_dictionaries)
        .map_err(parquet_err(uri))?;
    let (indices, classes) = project(uri, metadata.schema(), wanted)?;
    let mask = ProjectionMask::roots(metadata.parquet_schema(), indices);
    let groups = metadata.metadata().num_row_groups();
    // Up to `in_flight` row groups are held at once, decoded or being handed on.
    let held = in_flight().min(groups.max(1)) as u64;
    on_open(largest_row_group(metadata.metadata(), &mask) * held)?;
    let path = Arc::new(path);
    let mut pending = std::collections::VecDeque::new();
    let mut next = 0;
    loop {
        while pending.len() < in_flight() && next < groups {
            let (uri, path, metadata, mask) = (
                uri.to_string(),
                path.clone(),
                metadata.clone(),
                mask.clone(),
            );
            let group = next;
            pending.push_back(tokio::task::spawn_blocking(
                move || -> Result<Vec<Frame>, DataError> {
                    // Its own handle: a shared one would share the seek position.
                    let file = open_local(&uri, &path)?;
                    let chunks = ColumnChunks::read(&uri, file, metadata.metadata(), group, &mask)?;
                    let reader =
                        ParquetRecordBatchReaderBuilder::new_with_metadata(chunks, metadata)
                            .with_projection(mask)
                            .with_row_groups(vec![group])
                            .with_batch_size(BATCH_ROWS)
                            .build()
                            .map_err(parquet_err(&uri))?;
                    reader
                        .map(|batch| {
                            let batch = batch.map_err(|e| DataError::Parquet {
                                source_uri: uri.clone(),
                                source: e.into(),
                            })?;
                            Frame::from_batch(&uri, &batch)
                        })
                        .collect()
                },
            ));
            next += 1;
        }
        let Some(task) = pending.pop_front() else {
            break;
        };
        let frames = task.await.map_err(|e| DataError::Source {
            source_uri: uri.into(),
            reason: format!("decoding a row group stopped: {e}"),
        })??;
        for frame in frames {
            on_batch(frame)?;
        }
    }
    Ok(classes)
}

/// A row group's projected column chunks of a local file, each read whole
/// in one request: the decoder's reads are then slices of memory. Read
/// through the file itself it made a system call per 8 KiB (50,000 for a
/// 10-million-row window), about a quarter of a streamed pass's time.
/// The bytes held are the compressed chunks `largest_row_group` counts.
struct ColumnChunks {
    /// Each chunk's offset in the file and its bytes, by offset.
    chunks: Vec<(u64, Bytes)>,
    file_len: u64,
}

impl ColumnChunks {
    fn read(
        uri: &str,
        mut file: std::fs::File,
        metadata: &ParquetMetaData,
        group: usize,
        mask: &ProjectionMask,
    ) -> Result<ColumnChunks, DataError> {
        use std::io::{Read, Seek, SeekFrom};
        let failed = |e: std::io::Error| {
            DataError::from(store::StoreError::Read {
                uri: uri.into(),
                source: e.into(),
            })
        };
        let file_len = file.metadata().map_err(failed)?.len();
        let mut chunks = Vec::new();
        for (i, column) in metadata.row_group(group).columns().iter().enumerate() {
            if !mask.leaf_included(i) {
                continue;
            }
            let (start, len) = column.byte_range();
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.seek(SeekFrom::Start(start)).map_err(failed)?;
            (&mut file)
                .take(len)
                .read_to_end(&mut bytes)
                .map_err(failed)?;
            if bytes.len() as u64 != len {
                return Err(DataError::Parquet {
                    source_uri: uri.into(),
                    source: parquet::errors::ParquetError::EOF(format!(
                        "row group {group}'s column `{}` runs past the end of the file ({len} bytes at {start}, the file has {file_len})",
                        column.column_path()
                    ))
                    .into(),
                });
            }
            chunks.push((start, Bytes::from(bytes)));
        }
        chunks.sort_by_key(|(start, _)| *start);
        Ok(ColumnChunks { chunks, file_len })
    }

    /// The chunk holding `start`, from there on.
    fn from(&self, start: u64) -> parquet::errors::Result<Bytes> {
        let at = self.chunks.partition_point(|(offset, _)| *offset <= start);
        at.checked_sub(1)
            .map(|k| &self.chunks[k])
            .filter(|(offset, bytes)| start < offset + bytes.len() as u64)
            .map(|(offset, bytes)| bytes.slice((start - offset) as usize..))
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!(
                    "offset {start} is outside the row group's projected columns"
                ))
            })
    }
}

impl parquet::file::reader::Length for ColumnChunks {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl parquet::file::reader::ChunkReader for ColumnChunks {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self.from(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let rest = self.from(start)?;
        if length > rest.len() {
            return Err(parquet::errors::ParquetError::General(format!(
                "{length} bytes at offset {start} run past the row group's column chunk"
            )));
        }
        Ok(rest.slice(..length))
    }
}

/// Ranges of one object, for the async reader: the footer in one request
/// (its size is known from the listing, so no HEAD), then the projected
/// columns' pages of each row group.
struct StoreReader {
    store: Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    size: u64,
}

/// Bytes fetched with the footer, enough for most footers in one request.
const FOOTER_PREFETCH: usize = 64 * 1024;

fn store_err(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            object_store::ObjectStoreExt::get_range(self.store.as_ref(), &self.path, range)
                .await
                .map_err(store_err)
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(store_err)
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

fn read_bytes_streaming(
    uri: &str,
    data: Bytes,
    wanted: Option<&[String]>,
    on_open: &mut dyn FnMut(u64) -> Result<(), DataError>,
    mut on_batch: impl FnMut(Frame) -> Result<(), DataError>,
) -> Result<FileSchema, DataError> {
    let whole = data.len() as u64;
    let metadata = ArrowReaderMetadata::load(&data, ArrowReaderOptions::new())
        .and_then(with_dictionaries)
        .map_err(parquet_err(uri))?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(data, metadata)
        .with_batch_size(BATCH_ROWS);
    let (indices, classes) = project(uri, builder.schema(), wanted)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    // Over HTTP the whole file is held, not one row group of it.
    on_open(whole + largest_row_group(builder.metadata(), &mask))?;
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(parquet_err(uri))?;
    for batch in reader {
        let batch = batch.map_err(|e| DataError::Parquet {
            source_uri: uri.into(),
            source: e.into(),
        })?;
        on_batch(Frame::from_batch(uri, &batch)?)?;
    }
    Ok(classes)
}

/// A whole Parquet file already in memory, as a table.
pub fn table_from_bytes(uri: &str, data: &[u8]) -> Result<Table, DataError> {
    let mut names: Option<Vec<String>> = None;
    let mut columns: Vec<Vec<super::table::Cell>> = Vec::new();
    let mut rows = 0;
    let classes = read_bytes_streaming(
        uri,
        Bytes::copy_from_slice(data),
        None,
        &mut |_| Ok(()),
        |batch| {
            if names.is_none() {
                names = Some(batch.names.clone());
                columns = vec![Vec::new(); batch.names.len()];
            }
            rows += batch.rows;
            for (all, column) in columns.iter_mut().zip(batch.columns) {
                all.extend(column.into_cells());
            }
            Ok(())
        },
    )?;
    if rows == 0 {
        return Err(DataError::NoRows {
            source_uri: uri.into(),
        });
    }
    Ok(Table {
        source: uri.into(),
        names: names.unwrap_or_else(|| classes.iter().map(|(n, _)| n.clone()).collect()),
        columns,
        rows,
        digest: sha256_hex(data),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use parquet::file::reader::{ChunkReader, Length};

    use super::*;

    #[test]
    fn a_row_groups_chunks_answer_reads_inside_them_and_refuse_the_rest() {
        let chunks = ColumnChunks {
            chunks: vec![
                (10, Bytes::from_static(b"abcdef")),
                (100, Bytes::from_static(b"xyz")),
            ],
            file_len: 200,
        };
        assert_eq!(chunks.len(), 200);
        assert_eq!(chunks.get_bytes(12, 3).unwrap(), Bytes::from_static(b"cde"));
        assert_eq!(
            chunks.get_bytes(100, 3).unwrap(),
            Bytes::from_static(b"xyz")
        );
        let mut rest = String::new();
        chunks
            .get_read(13)
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        assert_eq!(rest, "def", "a reader runs to its chunk's end");
        for (start, length) in [(9, 1), (16, 1), (50, 1), (103, 1), (14, 3), (0, 0)] {
            let e = chunks.get_bytes(start, length).unwrap_err();
            assert!(e.to_string().contains("row group"), "{start}+{length}: {e}");
        }
        assert!(chunks.get_read(16).is_err());
    }
}
