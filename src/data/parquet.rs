//! Parquet files through arrow-rs: the async reader over `object_store`
//! (or a local file), only the columns asked for, one row group's batches
//! at a time. The type mapping lives here: numbers and booleans as they
//! are, strings and dictionaries as categories, dates and timestamps as
//! RFC 3339 text, nulls as missing cells; any other type is an error
//! naming its column.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, TimeUnit};
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::error::DataError;
use super::store::{self, Location};
use super::table::{Cell, Table, sha256_hex};

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
/// learns how many bytes its largest row group holds once read (see
/// `largest_row_group`) before any is fetched, so a memory bound can refuse
/// it first; `on_batch` sees each batch's cells as they arrive. Returns the
/// file's schema.
pub async fn read_file(
    uri: &str,
    size: u64,
    wanted: Option<&[String]>,
    on_open: &mut dyn FnMut(u64) -> Result<(), DataError>,
    mut on_batch: impl FnMut(&Table) -> Result<(), DataError>,
) -> Result<FileSchema, DataError> {
    let reader: Box<dyn AsyncFileReader> = match store::parse(uri)? {
        Location::Local(path) => {
            Box::new(
                tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            store::StoreError::NotFound { uri: uri.into() }
                        }
                        _ => store::StoreError::Read {
                            uri: uri.into(),
                            source: e.into(),
                        },
                    })?,
            )
        }
        Location::Remote { store, path } => Box::new(StoreReader { store, path, size }),
        Location::Http(_) => {
            let data = store::read_bytes(uri).await?;
            return read_bytes_streaming(uri, data, wanted, on_open, on_batch);
        }
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(parquet_err(uri))?;
    let (indices, classes) = project(uri, builder.schema(), wanted)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    on_open(largest_row_group(builder.metadata(), &mask))?;
    let mut stream = builder
        .with_projection(mask)
        .build()
        .map_err(parquet_err(uri))?;
    while let Some(batch) = stream.try_next().await.map_err(parquet_err(uri))? {
        on_batch(&batch_table(uri, &batch)?)?;
    }
    Ok(classes)
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
    mut on_batch: impl FnMut(&Table) -> Result<(), DataError>,
) -> Result<FileSchema, DataError> {
    let whole = data.len() as u64;
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(parquet_err(uri))?;
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
        on_batch(&batch_table(uri, &batch)?)?;
    }
    Ok(classes)
}

/// A whole Parquet file already in memory, as a table.
pub fn table_from_bytes(uri: &str, data: &[u8]) -> Result<Table, DataError> {
    let mut table: Option<Table> = None;
    let classes = read_bytes_streaming(
        uri,
        Bytes::copy_from_slice(data),
        None,
        &mut |_| Ok(()),
        |batch| {
            match &mut table {
                Some(t) => t.append(batch),
                None => table = Some(batch.clone()),
            }
            Ok(())
        },
    )?;
    let mut table = table
        .unwrap_or_else(|| Table::empty(uri, classes.iter().map(|(n, _)| n.clone()).collect()));
    if table.rows == 0 {
        return Err(DataError::NoRows {
            source_uri: uri.into(),
        });
    }
    table.digest = sha256_hex(data);
    Ok(table)
}

/// One record batch as raw cells.
fn batch_table(uri: &str, batch: &RecordBatch) -> Result<Table, DataError> {
    let schema = batch.schema();
    let mut table = Table::empty(
        uri,
        schema.fields().iter().map(|f| f.name().clone()).collect(),
    );
    for (i, column) in batch.columns().iter().enumerate() {
        table.columns[i] = cells(uri, schema.field(i).name(), column.as_ref())?;
    }
    table.rows = batch.num_rows();
    Ok(table)
}

/// Each value of `array` as a cell; nulls are missing.
fn cells(uri: &str, column: &str, array: &dyn Array) -> Result<Vec<Cell>, DataError> {
    // One cell per value, nulls missing; `$cell` turns a present value into its cell.
    macro_rules! column {
        ($t:ty, $cell:expr) => {{
            let a = array.as_primitive::<$t>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Cell::Missing
                    } else {
                        $cell(a.value(i))
                    }
                })
                .collect()
        }};
    }
    macro_rules! numbers {
        ($t:ty) => {
            column!($t, |v| Cell::Number(f64::from(v)))
        };
    }
    // 64-bit integers lose precision past 2^53, as a float feature must.
    macro_rules! wide_numbers {
        ($t:ty) => {
            column!($t, |v| Cell::Number(v as f64))
        };
    }
    macro_rules! times {
        ($t:ty, $to:expr) => {
            column!($t, |v| $to(v).map_or(Cell::Missing, Cell::Text))
        };
    }
    let text = |values: &mut dyn Iterator<Item = Option<&str>>| -> Vec<Cell> {
        values
            .map(|v| v.map_or(Cell::Missing, |s| Cell::Text(s.to_string())))
            .collect()
    };
    Ok(match array.data_type() {
        DataType::Int8 => numbers!(Int8Type),
        DataType::Int16 => numbers!(Int16Type),
        DataType::Int32 => numbers!(Int32Type),
        DataType::Int64 => wide_numbers!(Int64Type),
        DataType::UInt8 => numbers!(UInt8Type),
        DataType::UInt16 => numbers!(UInt16Type),
        DataType::UInt32 => numbers!(UInt32Type),
        DataType::UInt64 => wide_numbers!(UInt64Type),
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Cell::Missing
                    } else {
                        Cell::Number(f64::from(a.value(i).to_f32()))
                    }
                })
                .collect()
        }
        DataType::Float32 => numbers!(Float32Type),
        DataType::Float64 => numbers!(Float64Type),
        DataType::Decimal128(_, scale) => {
            let a = array.as_primitive::<Decimal128Type>();
            let unit = 10f64.powi(i32::from(*scale));
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Cell::Missing
                    } else {
                        Cell::Number(a.value(i) as f64 / unit)
                    }
                })
                .collect()
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            a.iter()
                .map(|v| v.map_or(Cell::Missing, |b| Cell::Text(b.to_string())))
                .collect()
        }
        DataType::Utf8 => text(&mut array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => text(&mut array.as_string::<i64>().iter()),
        DataType::Utf8View => text(&mut array.as_string_view().iter()),
        DataType::Dictionary(..) => {
            let dict = array.as_any_dictionary();
            let values = cells(uri, column, dict.values().as_ref())?;
            let keys = dict.normalized_keys();
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        return Cell::Missing;
                    }
                    // A dictionary of numbers is still a set of categories.
                    match values.get(keys[i]) {
                        Some(Cell::Number(x)) => {
                            Cell::Text(Cell::Number(*x).as_text().unwrap_or_default())
                        }
                        Some(c) => c.clone(),
                        None => Cell::Missing,
                    }
                })
                .collect()
        }
        DataType::Date32 => times!(Date32Type, |d: i32| {
            chrono::DateTime::from_timestamp(i64::from(d) * 86_400, 0)
                .map(|t| t.date_naive().to_string())
        }),
        DataType::Date64 => times!(Date64Type, |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms).map(|t| t.date_naive().to_string())
        }),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => times!(TimestampSecondType, |s: i64| {
                chrono::DateTime::from_timestamp(s, 0).map(rfc3339)
            }),
            TimeUnit::Millisecond => times!(TimestampMillisecondType, |v: i64| {
                chrono::DateTime::from_timestamp_millis(v).map(rfc3339)
            }),
            TimeUnit::Microsecond => times!(TimestampMicrosecondType, |v: i64| {
                chrono::DateTime::from_timestamp_micros(v).map(rfc3339)
            }),
            TimeUnit::Nanosecond => times!(TimestampNanosecondType, |v: i64| {
                Some(rfc3339(chrono::DateTime::from_timestamp_nanos(v)))
            }),
        },
        DataType::Null => vec![Cell::Missing; array.len()],
        other => {
            return Err(DataError::UnsupportedType {
                source_uri: uri.into(),
                column: column.into(),
                type_name: other.to_string(),
            });
        }
    })
}

/// A UTC time as RFC 3339 text (`2026-12-01T10:00:00Z`).
fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
