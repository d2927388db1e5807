//! A batch of rows column by column, typed as Arrow gave them: the one
//! encoder from Arrow arrays into numbers. Numeric columns are copied by
//! slice into `f64`, strings, booleans and dictionaries become category
//! codes (first-seen order), times stay times, nulls are missing; no value
//! becomes a [`Cell`] unless a caller asks for one. Every column reads, cell
//! by cell, exactly as the raw-cell path reads it ([`Column::cell`]), so
//! what is trained on does not depend on which path read it.

use std::borrow::Cow;
use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, Utc};

use super::error::DataError;
use super::table::{Cell, Table};
use super::window::parse_time;

/// The code of a missing value in [`Column::Codes`].
pub const MISSING: u32 = u32::MAX;

/// One column of a [`Frame`].
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers; `missing[i]` marks a null (no mask: none is missing).
    Numbers {
        values: Vec<f64>,
        missing: Option<Vec<bool>>,
    },
    /// Text (strings, booleans as `true`/`false`, dictionaries): each row's
    /// index into `names`, [`MISSING`] when null.
    Codes { codes: Vec<u32>, names: Vec<String> },
    /// Timestamps and dates (a date as its midnight, printed as the date).
    Times {
        values: Vec<Option<DateTime<Utc>>>,
        date_only: bool,
    },
    /// Raw cells: CSV and JSON Lines.
    Cells(Vec<Cell>),
}

/// A column read cell by cell without copying text per row: each code's
/// cell is made once.
pub struct CellReader<'a> {
    column: &'a Column,
    texts: Vec<Cell>,
}

static MISSING_CELL: Cell = Cell::Missing;

impl CellReader<'_> {
    /// The value at `row` as a cell, as [`Column::cell`] reads it.
    pub fn get(&self, row: usize) -> Cow<'_, Cell> {
        match self.column {
            Column::Codes { codes, .. } => {
                Cow::Borrowed(self.texts.get(codes[row] as usize).unwrap_or(&MISSING_CELL))
            }
            other => other.get(row),
        }
    }
}

/// What a time column holds at a row, for the window.
pub enum TimeAt {
    Missing,
    Time(DateTime<Utc>),
    /// A value that does not read as a time (its text).
    NotATime(String),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Numbers { values, .. } => values.len(),
            Column::Codes { codes, .. } => codes.len(),
            Column::Times { values, .. } => values.len(),
            Column::Cells(cells) => cells.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row` as the raw-cell path reads it.
    pub fn cell(&self, row: usize) -> Cell {
        self.get(row).into_owned()
    }

    /// The value at `row` as a cell, borrowed where one is held.
    pub fn get(&self, row: usize) -> Cow<'_, Cell> {
        match self {
            Column::Numbers { values, missing } => {
                if missing.as_ref().is_some_and(|m| m[row]) {
                    Cow::Owned(Cell::Missing)
                } else {
                    Cow::Owned(Cell::Number(values[row]))
                }
            }
            Column::Codes { codes, names } => match names.get(codes[row] as usize) {
                Some(name) => Cow::Owned(Cell::Text(name.clone())),
                None => Cow::Owned(Cell::Missing),
            },
            Column::Times { values, date_only } => Cow::Owned(match values[row] {
                Some(t) if *date_only => Cell::Text(t.date_naive().to_string()),
                Some(t) => Cell::Text(rfc3339(t)),
                None => Cell::Missing,
            }),
            Column::Cells(cells) => Cow::Borrowed(&cells[row]),
        }
    }

    /// A reader of this column's cells.
    pub fn reader(&self) -> CellReader<'_> {
        let texts = match self {
            Column::Codes { names, .. } => names.iter().map(|n| Cell::Text(n.clone())).collect(),
            _ => Vec::new(),
        };
        CellReader {
            column: self,
            texts,
        }
    }

    /// Every value as a cell.
    pub fn into_cells(self) -> Vec<Cell> {
        match self {
            Column::Cells(cells) => cells,
            other => (0..other.len()).map(|i| other.cell(i)).collect(),
        }
    }

    /// One value repeated `rows` times (a partition key's column).
    pub fn repeat(cell: Cell, rows: usize) -> Column {
        match cell {
            Cell::Number(x) => Column::Numbers {
                values: vec![x; rows],
                missing: None,
            },
            Cell::Text(t) => Column::Codes {
                codes: vec![0; rows],
                names: vec![t],
            },
            Cell::Missing => Column::Codes {
                codes: vec![MISSING; rows],
                names: Vec::new(),
            },
        }
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Column {
        match self {
            Column::Numbers { values, missing } => Column::Numbers {
                values: indices.iter().map(|&i| values[i]).collect(),
                missing: missing
                    .as_ref()
                    .map(|m| indices.iter().map(|&i| m[i]).collect()),
            },
            Column::Codes { codes, names } => Column::Codes {
                codes: indices.iter().map(|&i| codes[i]).collect(),
                names: names.clone(),
            },
            Column::Times { values, date_only } => Column::Times {
                values: indices.iter().map(|&i| values[i]).collect(),
                date_only: *date_only,
            },
            Column::Cells(cells) => {
                Column::Cells(indices.iter().map(|&i| cells[i].clone()).collect())
            }
        }
    }

    /// Whether the value at `row` satisfies a slice condition.
    pub fn matches(&self, row: usize, condition: &crate::api::SliceCondition) -> bool {
        match self {
            Column::Numbers { values, missing } => {
                !missing.as_ref().is_some_and(|m| m[row]) && condition.matches_number(values[row])
            }
            Column::Codes { codes, names } => names
                .get(codes[row] as usize)
                .is_some_and(|t| condition.matches_text(t)),
            other => other.get(row).matches(condition),
        }
    }

    /// The value at `row` read as a time, as the window reads its column's text.
    pub fn time_at(&self, row: usize) -> TimeAt {
        if let Column::Times { values, .. } = self {
            match values[row] {
                None => return TimeAt::Missing,
                // Inside years 0..=9999 the printed time reads back exactly;
                // outside, it is read from its text as any other.
                // (`naive_utc`: `DateTime::year` adds the zero offset first, per row.)
                Some(t) if (0..=9999).contains(&t.naive_utc().year()) => return TimeAt::Time(t),
                Some(_) => {}
            }
        }
        match self.get(row).as_ref() {
            Cell::Missing => TimeAt::Missing,
            Cell::Text(t) => {
                parse_time(t).map_or_else(|| TimeAt::NotATime(t.clone()), TimeAt::Time)
            }
            Cell::Number(x) => TimeAt::NotATime(x.to_string()),
        }
    }
}

/// A batch of rows, column by column.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Where the rows came from (for error messages).
    pub source: String,
    pub names: Vec<String>,
    /// One column per name, each `rows` long.
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Frame {
    /// Index of a column by name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// A column by name, or an error naming who needed it.
    pub fn column(&self, name: &str, needed_by: &str) -> Result<&Column, DataError> {
        self.position(name)
            .map(|i| &self.columns[i])
            .ok_or_else(|| DataError::MissingColumn {
                source_uri: self.source.clone(),
                column: name.into(),
                needed_by: needed_by.into(),
            })
    }

    /// A table of raw cells as a frame of cell columns.
    pub fn from_table(table: Table) -> Frame {
        Frame {
            source: table.source,
            names: table.names,
            columns: table.columns.into_iter().map(Column::Cells).collect(),
            rows: table.rows,
        }
    }

    /// The frame as raw cells.
    pub fn into_table(self, digest: String) -> Table {
        Table {
            source: self.source,
            names: self.names,
            columns: self.columns.into_iter().map(Column::into_cells).collect(),
            rows: self.rows,
            digest,
        }
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Frame {
        Frame {
            source: self.source.clone(),
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| c.select(indices)).collect(),
            rows: indices.len(),
        }
    }

    /// One Arrow record batch.
    pub fn from_batch(uri: &str, batch: &arrow_array::RecordBatch) -> Result<Frame, DataError> {
        let schema = batch.schema();
        let mut names = Vec::with_capacity(batch.num_columns());
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            columns.push(from_arrow(uri, field.name(), array.as_ref())?);
            names.push(field.name().clone());
        }
        Ok(Frame {
            source: uri.to_string(),
            names,
            columns,
            rows: batch.num_rows(),
        })
    }
}

/// A UTC time as RFC 3339 text (`2026-12-01T10:00:00Z`).
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The null mask of an array, `None` when nothing is null.
fn nulls(array: &dyn Array) -> Option<Vec<bool>> {
    array
        .nulls()
        .filter(|n| n.null_count() > 0)
        .map(|n| n.iter().map(|valid| !valid).collect())
}

fn numbers<T: ArrowPrimitiveType>(array: &dyn Array, to: impl Fn(T::Native) -> f64) -> Column {
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    Column::Numbers {
        values: a.values().iter().map(|&v| to(v)).collect(),
        missing: nulls(array),
    }
}

fn times<T: ArrowPrimitiveType>(
    array: &dyn Array,
    date_only: bool,
    to: impl Fn(T::Native) -> Option<DateTime<Utc>>,
) -> Column {
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    let values = (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                return None;
            }
            let t = to(a.value(i))?;
            if date_only {
                // A date reads as its day's midnight, whatever the time in it.
                t.date_naive().and_hms_opt(0, 0, 0).map(|m| m.and_utc())
            } else {
                Some(t)
            }
        })
        .collect();
    Column::Times { values, date_only }
}

/// Codes for text values in first-seen order: a short vocabulary is
/// searched in place (most category columns), a long one by hash.
#[derive(Default)]
struct Vocabulary {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocabulary {
    const SCAN: usize = 16;

    fn code(&mut self, text: &str) -> u32 {
        if self.names.len() <= Self::SCAN {
            if let Some(i) = self.names.iter().position(|n| n == text) {
                return i as u32;
            }
        } else if let Some(&i) = self.index.get(text) {
            return i;
        }
        let code = self.names.len() as u32;
        self.names.push(text.to_string());
        if self.names.len() > Self::SCAN {
            if self.index.is_empty() {
                for (i, n) in self.names.iter().enumerate() {
                    self.index.insert(n.clone(), i as u32);
                }
            } else {
                self.index.insert(text.to_string(), code);
            }
        }
        code
    }
}

fn texts<'a>(values: impl Iterator<Item = Option<&'a str>>, len: usize) -> Column {
    let mut vocabulary = Vocabulary::default();
    let mut codes = Vec::with_capacity(len);
    let mut last: Option<(&str, u32)> = None;
    for v in values {
        codes.push(match v {
            None => MISSING,
            // Runs of one value skip the lookup.
            Some(s) => match last {
                Some((l, c)) if l == s => c,
                _ => {
                    let c = vocabulary.code(s);
                    last = Some((s, c));
                    c
                }
            },
        });
    }
    Column::Codes {
        codes,
        names: vocabulary.names,
    }
}

/// A dictionary entry not yet given a code.
const UNSEEN: u32 = u32::MAX - 1;

/// One Arrow array as a column; a type driftline cannot train on is an
/// error naming the column.
pub fn from_arrow(uri: &str, column: &str, array: &dyn Array) -> Result<Column, DataError> {
    // 64-bit integers lose precision past 2^53, as a float feature must.
    Ok(match array.data_type() {
        DataType::Int8 => numbers::<Int8Type>(array, f64::from),
        DataType::Int16 => numbers::<Int16Type>(array, f64::from),
        DataType::Int32 => numbers::<Int32Type>(array, f64::from),
        DataType::Int64 => numbers::<Int64Type>(array, |v| v as f64),
        DataType::UInt8 => numbers::<UInt8Type>(array, f64::from),
        DataType::UInt16 => numbers::<UInt16Type>(array, f64::from),
        DataType::UInt32 => numbers::<UInt32Type>(array, f64::from),
        DataType::UInt64 => numbers::<UInt64Type>(array, |v| v as f64),
        DataType::Float16 => numbers::<Float16Type>(array, |v| f64::from(v.to_f32())),
        DataType::Float32 => numbers::<Float32Type>(array, f64::from),
        DataType::Float64 => numbers::<Float64Type>(array, |v| v),
        DataType::Decimal128(_, scale) => {
            let unit = 10f64.powi(i32::from(*scale));
            numbers::<Decimal128Type>(array, |v| v as f64 / unit)
        }
        // Booleans are the categories `true` and `false`, as in CSV.
        DataType::Boolean => {
            let a = array.as_boolean();
            texts(
                a.iter()
                    .map(|v| v.map(|b| if b { "true" } else { "false" })),
                a.len(),
            )
        }
        DataType::Utf8 => texts(array.as_string::<i32>().iter(), array.len()),
        DataType::LargeUtf8 => texts(array.as_string::<i64>().iter(), array.len()),
        DataType::Utf8View => texts(array.as_string_view().iter(), array.len()),
        DataType::Dictionary(..) => {
            let dict = array.as_any_dictionary();
            let values = dict.values();
            if values.is_empty() {
                return Ok(Column::Codes {
                    codes: vec![MISSING; array.len()],
                    names: Vec::new(),
                });
            }
            let keys = dict.normalized_keys();
            let mut vocabulary = Vocabulary::default();
            // Entry → code, assigned at the entry's first use so codes are in
            // first-seen order and an entry no row uses costs nothing (a
            // dictionary may be far larger than one batch: then by hash).
            let small = values.len() <= array.len().max(4096);
            let mut by_entry: Vec<u32> = if small {
                vec![UNSEEN; values.len()]
            } else {
                Vec::new()
            };
            let mut by_hash: HashMap<usize, u32> = HashMap::new();
            let mut codes = Vec::with_capacity(array.len());
            let nulls = array.nulls().filter(|n| n.null_count() > 0);
            for (i, &k) in keys.iter().enumerate().take(array.len()) {
                if nulls.is_some_and(|n| n.is_null(i)) {
                    codes.push(MISSING);
                    continue;
                }
                let known = if small {
                    Some(by_entry[k]).filter(|&c| c != UNSEEN)
                } else {
                    by_hash.get(&k).copied()
                };
                let code = match known {
                    Some(c) => c,
                    None => {
                        // The entry's text; a dictionary of numbers is still
                        // a set of categories.
                        let entry = from_arrow(uri, column, values.slice(k, 1).as_ref())?;
                        let c = entry
                            .cell(0)
                            .as_text()
                            .map_or(MISSING, |t| vocabulary.code(&t));
                        if small {
                            by_entry[k] = c;
                        } else {
                            by_hash.insert(k, c);
                        }
                        c
                    }
                };
                codes.push(code);
            }
            Column::Codes {
                codes,
                names: vocabulary.names,
            }
        }
        DataType::Date32 => times::<Date32Type>(array, true, |d| {
            DateTime::from_timestamp(i64::from(d) * 86_400, 0)
        }),
        DataType::Date64 => times::<Date64Type>(array, true, DateTime::from_timestamp_millis),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => {
                times::<TimestampSecondType>(array, false, |s| DateTime::from_timestamp(s, 0))
            }
            TimeUnit::Millisecond => {
                times::<TimestampMillisecondType>(array, false, DateTime::from_timestamp_millis)
            }
            TimeUnit::Microsecond => {
                times::<TimestampMicrosecondType>(array, false, DateTime::from_timestamp_micros)
            }
            TimeUnit::Nanosecond => times::<TimestampNanosecondType>(array, false, |v| {
                Some(DateTime::from_timestamp_nanos(v))
            }),
        },
        DataType::Null => Column::Codes {
            codes: vec![MISSING; array.len()],
            names: Vec::new(),
        },
        other => {
            return Err(DataError::UnsupportedType {
                source_uri: uri.into(),
                column: column.into(),
                type_name: other.to_string(),
            });
        }
    })
}
