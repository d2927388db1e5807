//! A dataset as a Model names it: one file, a prefix, a glob or a Hive
//! layout; listed once, pruned by partition keys (the window, `where`)
//! before any file is opened, then read file by file with rows outside the
//! window or `where` dropped. The digest of the files inside the window is
//! what "new data" compares, and the files are the run's lineage.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{DataFormat, DataSpec, Partitioning, SliceCondition};

use super::error::DataError;
use super::frame::{Column, Frame, TimeAt};
use super::parquet::{self, FileSchema};
use super::store::{self, ObjectInfo};
use super::table::{Cell, Table, known_format};
use super::window::{WindowBounds, parse_day, parse_time};

/// One file of a dataset as listed: where, how big, which version, and the
/// values of its Hive partition keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFile {
    pub uri: String,
    pub size: u64,
    /// The store's ETag, else size and modification time.
    pub tag: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partition: BTreeMap<String, String>,
}

/// What a run would read, from the listing alone (no file opened).
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub source: String,
    pub format: DataFormat,
    /// Files inside the window and `where`, by URI.
    pub files: Vec<DataFile>,
    /// Files listed but left out by their partition keys.
    pub pruned: Vec<DataFile>,
    pub window: Option<WindowBounds>,
}

impl Listing {
    /// sha256 over the URIs, sizes and versions of the files to read: it
    /// changes when a partition arrives, is rewritten, or leaves the window.
    pub fn digest(&self) -> String {
        digest_of(self.files.iter())
    }
}

/// The digest of a set of files, whatever order they were listed in.
fn digest_of<'a>(files: impl Iterator<Item = &'a DataFile>) -> String {
    let mut lines: Vec<String> = files
        .map(|f| format!("{}\t{}\t{}\n", f.uri, f.size, f.tag))
        .collect();
    lines.sort();
    let mut hasher = Sha256::new();
    for line in lines {
        hasher.update(line);
    }
    hex::encode(hasher.finalize())
}

/// The version of a source, for "new data".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVersion {
    /// What a run started now would read: stored when a run starts.
    pub current: String,
    /// What to compare with the stored version of the last run started at
    /// `since`. When every file of the window now was already inside that
    /// run's window (days only left it), it is the digest of the last run's
    /// window as listed now, which equals the stored one unless one of its
    /// files changed: a day leaving a rolling window is recorded in the next
    /// run's lineage but is not new data. Otherwise it is `current`.
    pub against_last: String,
}

/// What a run read: the rows, which of them are the time-aware holdout,
/// and the files behind them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub table: Table,
    /// Rows (ascending) of `data.window.holdout`, the validation split.
    pub holdout: Option<Vec<usize>>,
    pub files: Vec<DataFile>,
    pub pruned: Vec<DataFile>,
    pub window: Option<WindowBounds>,
    /// Rows dropped because their window column was empty.
    pub rows_without_time: usize,
}

impl Dataset {
    /// One table already in memory, all of it training data.
    pub fn whole(table: Table) -> Dataset {
        Dataset {
            table,
            holdout: None,
            files: Vec::new(),
            pruned: Vec::new(),
            window: None,
            rows_without_time: 0,
        }
    }
}

/// Where the source points.
enum Shape {
    /// One file, read whole.
    File,
    /// Every data file under a prefix.
    Prefix(String),
    /// The files under `prefix` whose path below it matches `pattern`.
    Glob {
        prefix: String,
        pattern: regex::Regex,
    },
}

fn shape(spec: &DataSpec) -> Result<Shape, DataError> {
    let source = spec.source.as_str();
    let remote_or_local = !source.starts_with("http://") && !source.starts_with("https://");
    if remote_or_local && let Some(at) = source.find(['*', '?', '[']) {
        let cut = source[..at].rfind('/').map_or(0, |i| i + 1);
        let prefix = source[..cut].to_string();
        let pattern = glob_regex(&source[cut..]).map_err(|e| DataError::Source {
            source_uri: source.into(),
            reason: format!("the glob does not compile: {e}"),
        })?;
        return Ok(Shape::Glob { prefix, pattern });
    }
    if source.ends_with('/') || spec.partitioning.is_some() {
        return Ok(Shape::Prefix(source.to_string()));
    }
    Ok(Shape::File)
}

/// `*` any name part, `**` any path, `?` one character; the rest literal.
fn glob_regex(glob: &str) -> Result<regex::Regex, regex::Error> {
    let mut out = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out.push('$');
    regex::Regex::new(&out)
}

/// A file a dataset never reads: hidden, or a marker such as `_SUCCESS`.
fn hidden(relative: &str) -> bool {
    relative
        .split('/')
        .any(|part| part.starts_with('.') || part.starts_with('_'))
}

/// The `key=value` directories of a file's path below the prefix.
fn partition_of(source: &str, relative: &str) -> Result<BTreeMap<String, String>, DataError> {
    let mut parts = BTreeMap::new();
    let dirs: Vec<&str> = relative.split('/').collect();
    for dir in &dirs[..dirs.len().saturating_sub(1)] {
        let Some((key, value)) = dir.split_once('=') else {
            return Err(DataError::Partition {
                source_uri: source.into(),
                path: relative.into(),
                reason: format!("directory `{dir}` has no `key=value`"),
            });
        };
        if key.is_empty() {
            return Err(DataError::Partition {
                source_uri: source.into(),
                path: relative.into(),
                reason: format!("directory `{dir}` has an empty key"),
            });
        }
        parts.insert(key.to_string(), value.to_string());
    }
    Ok(parts)
}

/// The cell a partition value stands for in its files' rows.
fn partition_cell(value: &str) -> Cell {
    // Hive writes a null key as this directory name.
    if value == "__HIVE_DEFAULT_PARTITION__" {
        Cell::Missing
    } else {
        Cell::parse(value)
    }
}

/// Parsed `data.where` conditions.
pub(super) fn conditions(spec: &DataSpec) -> Result<Vec<(String, SliceCondition)>, DataError> {
    spec.where_
        .iter()
        .map(|(column, text)| {
            SliceCondition::parse(text)
                .map(|c| (column.clone(), c))
                .map_err(|source| DataError::Where {
                    column: column.clone(),
                    source,
                })
        })
        .collect()
}

/// Whether a file's partition values can hold rows of the window and `where`.
fn keep(
    partition: &BTreeMap<String, String>,
    window: Option<&WindowBounds>,
    wheres: &[(String, SliceCondition)],
) -> bool {
    for (column, condition) in wheres {
        if let Some(value) = partition.get(column)
            && !partition_cell(value).matches(condition)
        {
            return false;
        }
    }
    let Some(window) = window else {
        return true;
    };
    if let Some(value) = partition.get(&window.column) {
        return parse_time(value).is_some_and(|t| window.contains(t));
    }
    // A key whose value is a date bounds its files' rows to that UTC day.
    partition
        .values()
        .filter_map(|v| parse_day(v))
        .all(|day| window.touches_day(day))
}

/// Lists what a run started at `as_of` would read, without opening a file.
/// One file is listed as itself (its version read from the store); a prefix
/// or glob lists the data files under it, pruned by partition keys.
pub async fn list(spec: &DataSpec, as_of: DateTime<Utc>) -> Result<Listing, DataError> {
    let source = spec.source.clone();
    let window = spec
        .window
        .as_ref()
        .map(|w| WindowBounds::of(w, &source, as_of))
        .transpose()?;
    let (prefix, pattern) = match shape(spec)? {
        Shape::File => {
            let tag = store::version_tag(&source).await?;
            let format = spec
                .format
                .unwrap_or_else(|| super::table::format_of(&source));
            let size = store::size_of(&source).await.unwrap_or(0);
            return Ok(Listing {
                files: vec![DataFile {
                    uri: source.clone(),
                    size,
                    tag,
                    partition: BTreeMap::new(),
                }],
                source,
                format,
                pruned: Vec::new(),
                window,
            });
        }
        Shape::Prefix(prefix) => (prefix, None),
        Shape::Glob { prefix, pattern } => (prefix, Some(pattern)),
    };
    let objects = store::list_objects(&prefix).await?;
    let base = prefix.trim_end_matches('/');
    let relative = |o: &ObjectInfo| {
        o.uri
            .strip_prefix(base)
            .unwrap_or(&o.uri)
            .trim_start_matches('/')
            .to_string()
    };
    let candidates: Vec<(String, &ObjectInfo)> = objects
        .iter()
        .map(|o| (relative(o), o))
        .filter(|(rel, _)| !hidden(rel))
        .filter(|(rel, _)| pattern.as_ref().is_none_or(|p| p.is_match(rel)))
        .collect();
    let format = match spec.format {
        Some(f) => f,
        None => {
            let found: BTreeSet<String> = candidates
                .iter()
                .filter_map(|(rel, _)| known_format(rel))
                .map(|f| f.to_string())
                .collect();
            match found.len() {
                0 => {
                    return Err(DataError::NoFiles {
                        source_uri: source,
                        what: "csv, jsonl or parquet".into(),
                    });
                }
                1 => candidates
                    .iter()
                    .find_map(|(rel, _)| known_format(rel))
                    .unwrap_or(DataFormat::Csv),
                _ => {
                    return Err(DataError::MixedFormats {
                        source_uri: source,
                        formats: found.into_iter().collect::<Vec<_>>().join(", "),
                    });
                }
            }
        }
    };
    let wheres = conditions(spec)?;
    let hive = spec.partitioning == Some(Partitioning::Hive);
    let mut files = Vec::new();
    let mut pruned = Vec::new();
    let mut keys: Option<(String, BTreeSet<String>)> = None;
    for (rel, object) in candidates {
        if known_format(&rel) != Some(format) {
            continue;
        }
        let partition = if hive {
            partition_of(&source, &rel)?
        } else {
            BTreeMap::new()
        };
        let these: BTreeSet<String> = partition.keys().cloned().collect();
        match &keys {
            None => keys = Some((rel.clone(), these)),
            Some((first, expected)) if *expected != these => {
                return Err(DataError::Partition {
                    source_uri: source,
                    path: rel,
                    reason: format!(
                        "its keys ({}) differ from those of `{first}` ({})",
                        these.into_iter().collect::<Vec<_>>().join(", "),
                        expected.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            Some(_) => {}
        }
        let file = DataFile {
            uri: object.uri.clone(),
            size: object.size,
            tag: object.tag.clone(),
            partition,
        };
        if keep(&file.partition, window.as_ref(), &wheres) {
            files.push(file);
        } else {
            pruned.push(file);
        }
    }
    if files.is_empty() && pruned.is_empty() {
        return Err(DataError::NoFiles {
            source_uri: source,
            what: format.to_string(),
        });
    }
    Ok(Listing {
        source,
        format,
        files,
        pruned,
        window,
    })
}

/// The version of the data a run started at `as_of` would read: one file's
/// store version as it is, or the digest of the listing. The operator
/// compares it with the last run's to notice new data without reading rows.
/// `since` is when the last run started (its `--as-of`), if any.
pub async fn version(
    spec: &DataSpec,
    as_of: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<DataVersion, DataError> {
    let listing = list(spec, as_of).await?;
    if let Shape::File = shape(spec)? {
        let tag = listing.files[0].tag.clone();
        return Ok(DataVersion {
            current: tag.clone(),
            against_last: tag,
        });
    }
    let current = format!("files:{}", listing.digest());
    let against_last = match (spec.window.as_ref(), since) {
        (Some(window), Some(since)) if since < as_of => {
            let then = WindowBounds::of(window, &spec.source, since)?;
            let wheres = conditions(spec)?;
            let last_window: Vec<&DataFile> = listing
                .files
                .iter()
                .chain(&listing.pruned)
                .filter(|f| keep(&f.partition, Some(&then), &wheres))
                .collect();
            if listing.files.iter().all(|f| last_window.contains(&f)) {
                format!("files:{}", digest_of(last_window.into_iter()))
            } else {
                current.clone()
            }
        }
        _ => current.clone(),
    };
    Ok(DataVersion {
        current,
        against_last,
    })
}

/// The feature columns of a table with these column names: `data.features`
/// when listed, else every column but the target and the window's time
/// column (which picks rows; it is a feature only when listed).
pub fn feature_columns(spec: &DataSpec, names: &[String]) -> Vec<String> {
    if !spec.features.is_empty() {
        return spec.features.clone();
    }
    let window = spec.window.as_ref().map(|w| w.column.as_str());
    names
        .iter()
        .filter(|n| **n != spec.target && Some(n.as_str()) != window)
        .cloned()
        .collect()
}

/// The columns a run needs from each file, `None` for all of them.
pub(super) fn wanted(spec: &DataSpec) -> Option<Vec<String>> {
    if spec.features.is_empty() {
        return None;
    }
    let mut names: Vec<String> = spec.features.clone();
    names.push(spec.target.clone());
    if let Some(w) = &spec.window {
        names.push(w.column.clone());
    }
    names.extend(spec.where_.keys().cloned());
    names.sort();
    names.dedup();
    Some(names)
}

/// Rows kept so far, with each kept row's time when there is a window.
struct Collected {
    names: Option<Vec<String>>,
    columns: Vec<Vec<Cell>>,
    rows: usize,
    times: Vec<DateTime<Utc>>,
    rows_without_time: usize,
}

/// The error of a window that kept no row: which window, how many files
/// were listed and read.
pub fn empty_window(listing: &Listing) -> DataError {
    DataError::EmptyWindow {
        source_uri: listing.source.clone(),
        window: listing
            .window
            .as_ref()
            .map_or_else(|| "and `where`".to_string(), WindowBounds::describe),
        files: listing.files.len() + listing.pruned.len(),
        read: listing.files.len(),
    }
}

/// Reads the dataset a run started at `as_of` trains on: the listed files
/// inside the window and `where`, their rows filtered by them, the
/// partition keys the run needs as columns, and the time-aware holdout.
pub async fn read(spec: &DataSpec, as_of: DateTime<Utc>) -> Result<Dataset, DataError> {
    if matches!(shape(spec)?, Shape::File) && spec.window.is_none() && spec.where_.is_empty() {
        let table = super::table::read_table(&spec.source, spec.format).await?;
        let listing = list(spec, as_of).await?;
        let mut dataset = Dataset::whole(table);
        dataset.files = listing.files;
        return Ok(dataset);
    }
    let listing = list(spec, as_of).await?;
    let wheres = conditions(spec)?;
    let wanted = wanted(spec);
    let key_columns = key_columns(spec, &listing);
    let mut collected = Collected {
        names: None,
        columns: Vec::new(),
        rows: 0,
        times: Vec::new(),
        rows_without_time: 0,
    };
    let mut first_schema: Option<(String, FileSchema)> = None;
    for file in &listing.files {
        let mut add = |part: Frame| -> Result<(), DataError> {
            let part = with_keys(part, file, &key_columns);
            let (kept, times) = filter_rows(
                part,
                listing.window.as_ref(),
                &wheres,
                &mut collected.rows_without_time,
            )?;
            collected.times.extend(times);
            // The first file's columns name the table; a later file's
            // columns are matched by name (its schema was checked).
            let names = collected.names.get_or_insert_with(|| kept.names.clone());
            if collected.columns.is_empty() {
                collected.columns = vec![Vec::new(); names.len()];
            }
            let Frame {
                names: part_names,
                columns,
                rows,
                ..
            } = kept;
            let mut columns: Vec<Option<Column>> = columns.into_iter().map(Some).collect();
            for (name, all) in names.iter().zip(collected.columns.iter_mut()) {
                match part_names.iter().position(|n| n == name) {
                    Some(j) => all.extend(
                        columns[j]
                            .take()
                            .map(Column::into_cells)
                            .unwrap_or_default(),
                    ),
                    None => all.extend(std::iter::repeat_n(Cell::Missing, rows)),
                }
            }
            collected.rows += rows;
            Ok(())
        };
        read_file(
            &listing,
            file,
            wanted.as_deref(),
            &mut first_schema,
            &mut |_| Ok(()),
            &mut add,
        )
        .await?;
    }
    let Collected {
        names,
        columns,
        rows,
        times,
        rows_without_time,
    } = collected;
    let table = match names {
        Some(names) if rows > 0 => Table {
            source: listing.source.clone(),
            names,
            columns,
            rows,
            digest: String::new(),
        },
        _ => return Err(empty_window(&listing)),
    };
    if rows_without_time > 0 {
        tracing::warn!(
            rows_without_time,
            source = %listing.source,
            "rows with an empty window column were left out"
        );
    }
    let holdout = listing.window.as_ref().and_then(|w| {
        let after = w.holdout_after(*times.iter().max()?)?;
        Some((0..times.len()).filter(|&i| times[i] > after).collect())
    });
    let mut table = table;
    table.source = listing.source.clone();
    table.digest = listing.digest();
    Ok(Dataset {
        table,
        holdout,
        files: listing.files,
        pruned: listing.pruned,
        window: listing.window,
        rows_without_time,
    })
}

/// The partition keys a run uses (as a feature, the target, the window
/// column or in `where`), which become columns of every row.
pub(super) fn key_columns(spec: &DataSpec, listing: &Listing) -> Vec<String> {
    listing
        .files
        .first()
        .map(|f| {
            f.partition
                .keys()
                .filter(|k| {
                    spec.features.contains(k)
                        || spec.window.as_ref().is_some_and(|w| &w.column == *k)
                        || spec.where_.contains_key(*k)
                        || spec.target == **k
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// `part` with its file's partition keys as columns.
pub(super) fn with_keys(mut part: Frame, file: &DataFile, key_columns: &[String]) -> Frame {
    for key in key_columns {
        let cell = file
            .partition
            .get(key)
            .map_or(Cell::Missing, |v| partition_cell(v));
        part.names.push(key.clone());
        part.columns.push(Column::repeat(cell, part.rows));
    }
    part
}

/// Reads one listed file batch by batch (Parquet) or whole (CSV, JSON
/// Lines), checking its schema against the first file's.
pub(super) async fn read_file(
    listing: &Listing,
    file: &DataFile,
    wanted: Option<&[String]>,
    first_schema: &mut Option<(String, FileSchema)>,
    on_open: &mut dyn FnMut(u64) -> Result<(), DataError>,
    add: &mut dyn FnMut(Frame) -> Result<(), DataError>,
) -> Result<(), DataError> {
    match listing.format {
        DataFormat::Parquet => {
            let schema = parquet::read_file(&file.uri, file.size, wanted, on_open, add).await?;
            check_schema(&file.uri, &schema, first_schema)?;
        }
        format => {
            let part = super::table::read_table(&file.uri, Some(format)).await?;
            let schema: FileSchema = part
                .names
                .iter()
                .map(|n| (n.clone(), parquet::ColumnClass::Text))
                .collect();
            if format == DataFormat::Csv {
                check_schema(&file.uri, &schema, first_schema)?;
            }
            add(Frame::from_table(part))?;
        }
    }
    Ok(())
}

/// The rows of `part` inside the window and `where`, with each kept row's
/// time when there is a window; rows with an empty time are counted.
pub(super) fn filter_rows(
    part: Frame,
    window: Option<&WindowBounds>,
    wheres: &[(String, SliceCondition)],
    rows_without_time: &mut usize,
) -> Result<(Frame, Vec<DateTime<Utc>>), DataError> {
    let mut keep: Vec<usize> = Vec::with_capacity(part.rows);
    let mut times = Vec::new();
    let time_column = match window {
        Some(w) => Some(part.column(&w.column, "data.window.column")?),
        None => None,
    };
    let where_columns: Vec<(&Column, &SliceCondition)> = wheres
        .iter()
        .filter_map(|(c, cond)| part.position(c).map(|i| (&part.columns[i], cond)))
        .collect();
    'rows: for row in 0..part.rows {
        for (column, condition) in &where_columns {
            if !column.matches(row, condition) {
                continue 'rows;
            }
        }
        if let (Some(w), Some(column)) = (window, time_column) {
            let time = match column.time_at(row) {
                TimeAt::Missing => {
                    *rows_without_time += 1;
                    continue;
                }
                TimeAt::Time(t) => t,
                TimeAt::NotATime(value) => {
                    return Err(DataError::NotATime {
                        source_uri: part.source.clone(),
                        row: row + 1,
                        column: w.column.clone(),
                        value,
                    });
                }
            };
            if !w.contains(time) {
                continue;
            }
            times.push(time);
        }
        keep.push(row);
    }
    let kept = if keep.len() == part.rows {
        part
    } else {
        part.select(&keep)
    };
    Ok((kept, times))
}

/// Refuses a file whose columns differ from the first file's.
fn check_schema(
    uri: &str,
    schema: &FileSchema,
    first: &mut Option<(String, FileSchema)>,
) -> Result<(), DataError> {
    let Some((first_uri, expected)) = first else {
        *first = Some((uri.to_string(), schema.clone()));
        return Ok(());
    };
    let mismatch = |column: &str, found: String, expected: String| DataError::SchemaMismatch {
        source_uri: uri.into(),
        column: column.into(),
        found,
        expected,
        first_uri: first_uri.clone(),
    };
    for (name, class) in expected.iter() {
        match schema.iter().find(|(n, _)| n == name) {
            None => return Err(mismatch(name, "missing".into(), class.to_string())),
            Some((_, c)) if c != class => {
                return Err(mismatch(name, c.to_string(), class.to_string()));
            }
            Some(_) => {}
        }
    }
    if let Some((name, class)) = schema
        .iter()
        .find(|(n, _)| !expected.iter().any(|(e, _)| e == n))
    {
        return Err(mismatch(name, class.to_string(), "absent".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use ::parquet::arrow::ArrowWriter;
    use arrow_array::{
        ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, ListArray, RecordBatch,
        StringArray, TimestampMillisecondArray, types::Int32Type,
    };

    use super::*;
    use crate::api::DataWindow;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    /// One day's partition: `rows` events spread over the day, `x` numbered
    /// from `first`, `label` alternating.
    fn day(root: &Path, date: &str, rows: usize, first: f64) {
        let start = at(date).timestamp_millis();
        let step = 86_400_000 / rows as i64;
        write(
            &root.join(format!("date={date}/part-0.parquet")),
            vec![
                (
                    "event_time",
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            (0..rows as i64).map(|i| start + i * step),
                        )
                        .with_timezone("UTC"),
                    ) as ArrayRef,
                ),
                (
                    "x",
                    Arc::new(Float64Array::from_iter_values(
                        (0..rows).map(|i| first + i as f64),
                    )),
                ),
                (
                    "label",
                    Arc::new(StringArray::from_iter_values(
                        (0..rows).map(|i| if i % 2 == 0 { "a" } else { "b" }),
                    )),
                ),
            ],
        );
    }

    fn spec(source: &str, last: &str, holdout: Option<&str>) -> DataSpec {
        let mut spec: DataSpec =
            serde_yaml::from_str(&format!("{{source: '{source}', target: label}}")).unwrap();
        spec.partitioning = Some(Partitioning::Hive);
        spec.window = Some(DataWindow {
            column: "event_time".into(),
            last: last.parse().unwrap(),
            holdout: holdout.map(|h| h.parse().unwrap()),
        });
        spec
    }

    fn events(days: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (i, d) in days.iter().enumerate() {
            day(dir.path(), d, 4, (i * 100) as f64);
        }
        dir
    }

    fn prefix(dir: &tempfile::TempDir) -> String {
        format!("{}/", dir.path().display())
    }

    #[tokio::test]
    async fn days_outside_the_window_are_never_opened_and_the_edge_day_is_filtered_by_row() {
        let dir = events(&["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]);
        // Unreadable bytes in a day outside the window: reading it would fail.
        std::fs::write(
            dir.path().join("date=2026-11-29/part-0.parquet"),
            b"not parquet",
        )
        .unwrap();
        let s = spec(&prefix(&dir), "36h", None);
        let dataset = read(&s, at("2026-12-02T12:00:00Z")).await.unwrap();
        let days: Vec<&str> = dataset
            .files
            .iter()
            .map(|f| f.partition["date"].as_str())
            .collect();
        assert_eq!(days, ["2026-12-01", "2026-12-02"]);
        let pruned: Vec<&str> = dataset
            .pruned
            .iter()
            .map(|f| f.partition["date"].as_str())
            .collect();
        assert_eq!(pruned, ["2026-11-29", "2026-11-30"]);
        // 2026-12-01 is cut at 00:00 (rows at 00, 06, 12, 18 h keep 06 h on);
        // 2026-12-02 up to the run's start at 12:00.
        let x: Vec<f64> = dataset
            .table
            .column("x", "test")
            .unwrap()
            .iter()
            .map(|c| match c {
                Cell::Number(x) => *x,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(x, [201.0, 202.0, 203.0, 300.0, 301.0, 302.0]);
        assert_eq!(
            dataset.table.names,
            ["event_time", "x", "label"],
            "no key column unless used"
        );
        assert_eq!(dataset.holdout, None);
    }

    #[tokio::test]
    async fn the_holdout_is_the_newest_day_of_the_window() {
        let dir = events(&["2026-12-01", "2026-12-02", "2026-12-03"]);
        let s = spec(&prefix(&dir), "30d", Some("1d"));
        let dataset = read(&s, at("2026-12-04T00:00:00Z")).await.unwrap();
        assert_eq!(dataset.table.rows, 12);
        // Newest row 2026-12-03T18:00: the day before it is held out.
        assert_eq!(dataset.holdout, Some(vec![8, 9, 10, 11]));
    }

    #[tokio::test]
    async fn a_day_arriving_is_new_data_and_a_day_leaving_the_window_is_not() {
        let dir = events(&["2026-12-01", "2026-12-02"]);
        let s = spec(&prefix(&dir), "2d", None);
        let noon = at("2026-12-02T12:00:00Z");
        // The first run starts at noon and stores what it reads.
        let first = version(&s, noon, None).await.unwrap();
        assert_eq!(first.against_last, first.current);
        let stored = first.current.clone();
        let an_hour_later = version(&s, at("2026-12-02T13:00:00Z"), Some(noon))
            .await
            .unwrap();
        assert_eq!(an_hour_later.against_last, stored, "nothing changed");

        // Two days later 2026-12-01 has left the window and nothing arrived:
        // what a run would read changed, but there is no new data.
        let later = at("2026-12-04T12:00:00Z");
        let left = version(&s, later, Some(noon)).await.unwrap();
        assert_ne!(left.current, stored, "a run now would read fewer files");
        assert_eq!(left.against_last, stored, "a day leaving is not new data");
        let listing = list(&s, later).await.unwrap();
        assert_eq!(listing.pruned.len(), 1);
        assert!(
            listing.pruned[0].uri.contains("date=2026-12-01"),
            "{listing:?}"
        );

        // A day after the last run's window arrives: new data.
        day(dir.path(), "2026-12-03", 4, 900.0);
        let arrived = version(&s, later, Some(noon)).await.unwrap();
        assert_ne!(arrived.against_last, stored, "a new partition is new data");
        assert_eq!(arrived.against_last, arrived.current);

        // A file of the last run's window rewritten is new data too.
        let dir = events(&["2026-12-01", "2026-12-02"]);
        let s = spec(&prefix(&dir), "2d", None);
        let stored = version(&s, noon, None).await.unwrap().current;
        day(dir.path(), "2026-12-02", 5, 700.0);
        let rewritten = version(&s, at("2026-12-02T13:00:00Z"), Some(noon))
            .await
            .unwrap();
        assert_ne!(
            rewritten.against_last, stored,
            "a rewritten day is new data"
        );
    }

    #[tokio::test]
    async fn a_file_whose_schema_differs_from_the_first_is_named() {
        let dir = events(&["2026-12-01"]);
        write(
            &dir.path().join("date=2026-12-02/part-0.parquet"),
            vec![
                (
                    "event_time",
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values([
                            at("2026-12-02T01:00:00Z").timestamp_millis()
                        ])
                        .with_timezone("UTC"),
                    ) as ArrayRef,
                ),
                ("x", Arc::new(StringArray::from(vec!["high"]))),
                ("label", Arc::new(StringArray::from(vec!["a"]))),
            ],
        );
        let s = spec(&prefix(&dir), "30d", None);
        let err = read(&s, at("2026-12-03T00:00:00Z")).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, DataError::SchemaMismatch { .. }), "{text}");
        assert!(
            text.contains("date=2026-12-02/part-0.parquet")
                && text.contains("column `x` is text, but it is numeric in")
                && text.contains("date=2026-12-01/part-0.parquet"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_truncated_file_an_empty_window_and_a_missing_prefix_are_named() {
        let dir = events(&["2026-12-01", "2026-12-02"]);
        let broken = dir.path().join("date=2026-12-02/part-0.parquet");
        let bytes = std::fs::read(&broken).unwrap();
        std::fs::write(&broken, &bytes[..bytes.len() - 6]).unwrap();
        let s = spec(&prefix(&dir), "30d", None);
        let err = read(&s, at("2026-12-03T00:00:00Z")).await.unwrap_err();
        assert!(matches!(err, DataError::Parquet { .. }), "{err}");
        assert!(
            err.to_string().contains("date=2026-12-02/part-0.parquet"),
            "{err}"
        );

        let err = read(&s, at("2027-02-01T00:00:00Z")).await.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::EmptyWindow {
                    files: 2,
                    read: 0,
                    ..
                }
            ),
            "{err}"
        );

        let gone = spec(&format!("{}/nothing/", dir.path().display()), "30d", None);
        let err = read(&gone, at("2026-12-03T00:00:00Z")).await.unwrap_err();
        assert!(matches!(err, DataError::NoFiles { .. }), "{err}");
        assert!(err.to_string().contains("nothing/"), "{err}");
    }

    #[tokio::test]
    async fn where_on_a_partition_key_prunes_and_a_glob_picks_files() {
        let dir = tempfile::tempdir().unwrap();
        for region in ["eu", "us"] {
            day(
                &dir.path().join(format!("region={region}")),
                "2026-12-01",
                2,
                0.0,
            );
        }
        let mut s = spec(&prefix(&dir), "30d", None);
        s.where_.insert("region".into(), "eu".into());
        s.features = vec!["x".into(), "region".into()];
        let dataset = read(&s, at("2026-12-02T00:00:00Z")).await.unwrap();
        assert_eq!(dataset.files.len(), 1);
        assert!(dataset.files[0].uri.contains("region=eu"));
        assert_eq!(
            dataset.table.column("region", "test").unwrap(),
            [Cell::Text("eu".into()), Cell::Text("eu".into())],
            "a partition key listed in features is a column"
        );

        let mut g = spec(
            &format!("{}/region=*/date=*/*.parquet", dir.path().display()),
            "30d",
            None,
        );
        g.partitioning = None;
        let listing = list(&g, at("2026-12-02T00:00:00Z")).await.unwrap();
        assert_eq!(listing.files.len(), 2);
    }

    #[tokio::test]
    async fn parquet_types_map_to_cells_and_an_unsupported_one_names_its_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let list =
            ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)]), None]);
        let dict: DictionaryArray<Int32Type> = vec![Some("red"), None].into_iter().collect();
        write(
            &path,
            vec![
                (
                    "n",
                    Arc::new(Int32Array::from(vec![Some(3), None])) as ArrayRef,
                ),
                ("f", Arc::new(Float64Array::from(vec![1.5, 2.0]))),
                (
                    "b",
                    Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
                ),
                ("s", Arc::new(StringArray::from(vec![Some("7"), None]))),
                ("d", Arc::new(dict)),
                ("tags", Arc::new(list)),
            ],
        );
        let uri = path.display().to_string();
        let size = std::fs::metadata(&path).unwrap().len();
        let wanted: Vec<String> = ["n", "f", "b", "s", "d"].map(String::from).to_vec();
        let mut seen = Vec::new();
        super::super::parquet::read_file(&uri, size, Some(&wanted), &mut |_| Ok(()), |t| {
            seen.push(t);
            Ok(())
        })
        .await
        .unwrap();
        let t = &seen[0];
        assert_eq!(
            t.names,
            ["n", "f", "b", "s", "d"],
            "only the columns asked for"
        );
        let row = |r: usize| t.columns.iter().map(|c| c.cell(r)).collect::<Vec<_>>();
        assert_eq!(
            row(0),
            [
                Cell::Number(3.0),
                Cell::Number(1.5),
                Cell::Text("true".into()),
                Cell::Text("7".into()),
                Cell::Text("red".into())
            ],
            "a string is a category even when it looks like a number"
        );
        assert_eq!(
            row(1),
            [
                Cell::Missing,
                Cell::Number(2.0),
                Cell::Text("false".into()),
                Cell::Missing,
                Cell::Missing
            ]
        );
        let bytes = std::fs::read(&path).unwrap();
        let err = super::super::parquet::table_from_bytes("t.parquet", &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`t.parquet`: column `tags` has Parquet type List(Int32), which driftline cannot \
             train on (numbers, booleans, strings, dictionaries, dates and timestamps can); \
             cast it upstream or leave it out of data.features"
        );
    }
}
