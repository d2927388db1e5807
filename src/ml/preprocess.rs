//! Preprocessing fitted on the training split only and shipped in the
//! artifact: imputation (median / most frequent), standardisation, one-hot
//! with an unknown bucket, label encoding. One code path turns raw cells
//! into model inputs in training, evaluation and serving.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::FeatureKind;

use super::error::MlError;
use crate::data::{Cell, Column, DataError, Frame, Table};

/// One input column as the model expects it, with its fitted preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureSchema {
    pub name: String,
    pub kind: FeatureKind,
    /// Categorical: known categories in one-hot order; one unknown slot follows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Value used for a missing cell: the training median (numeric), the
    /// most frequent category, or the most frequent boolean (1 or 0).
    pub fill: Cell,
    /// Standardisation of numeric features: `(x - mean) / std`.
    pub mean: f64,
    pub std: f64,
}

impl FeatureSchema {
    /// Number of model inputs this feature becomes.
    pub fn width(&self) -> usize {
        match self.kind {
            FeatureKind::Categorical => self.categories.len() + 1,
            FeatureKind::Numeric | FeatureKind::Boolean => 1,
        }
    }
}

/// Raw input rows for a model: one vector of cells per feature, in the
/// manifest's feature order.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureBatch {
    pub rows: usize,
    pub columns: Vec<Vec<Cell>>,
}

impl FeatureBatch {
    /// Picks the model's features from named columns, in the model's order.
    /// A missing feature is an error naming it; extra columns are ignored.
    pub fn from_named<'a>(
        features: &[FeatureSchema],
        mut lookup: impl FnMut(&str) -> Option<&'a [Cell]>,
        source: &str,
    ) -> Result<FeatureBatch, MlError> {
        let mut columns = Vec::with_capacity(features.len());
        let mut rows = None;
        for f in features {
            let col = lookup(&f.name).ok_or_else(|| {
                MlError::Data(DataError::MissingColumn {
                    source_uri: source.into(),
                    column: f.name.clone(),
                    needed_by: "the model's feature schema".into(),
                })
            })?;
            match rows {
                None => rows = Some(col.len()),
                Some(n) if n != col.len() => {
                    return Err(MlError::RaggedBatch {
                        column: f.name.clone(),
                        got: col.len(),
                        expected: n,
                    });
                }
                Some(_) => {}
            }
            columns.push(col.to_vec());
        }
        Ok(FeatureBatch {
            rows: rows.unwrap_or(0),
            columns,
        })
    }

    /// The model's features taken from a table.
    pub fn from_table(features: &[FeatureSchema], table: &Table) -> Result<FeatureBatch, MlError> {
        FeatureBatch::from_named(
            features,
            |name| table.position(name).map(|i| table.columns[i].as_slice()),
            &table.source,
        )
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    // Compared without case and without a lower-cased copy: this runs once
    // per text cell of every column whose kind is inferred.
    let is = |words: &[&str]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
    if is(&["true", "yes", "y", "t", "1"]) {
        Some(true)
    } else if is(&["false", "no", "n", "f", "0"]) {
        Some(false)
    } else {
        None
    }
}

/// Turns a batch into a row-major `rows × width` matrix.
pub fn encode(
    features: &[FeatureSchema],
    batch: &FeatureBatch,
    source: &str,
) -> Result<Vec<f32>, MlError> {
    if batch.columns.len() != features.len() {
        return Err(MlError::BatchShape {
            got: batch.columns.len(),
            expected: features.len(),
            names: features
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let width: usize = features.iter().map(FeatureSchema::width).sum();
    let mut out = vec![0f32; batch.rows * width];
    let mut offset = 0;
    for (f, col) in features.iter().zip(&batch.columns) {
        if col.len() != batch.rows {
            return Err(MlError::RaggedBatch {
                column: f.name.clone(),
                got: col.len(),
                expected: batch.rows,
            });
        }
        for (row, cell) in col.iter().enumerate() {
            let (slot, value) = encode_cell(f, cell, source, row)?;
            out[row * width + offset + slot] = value;
        }
        offset += f.width();
    }
    Ok(out)
}

/// One cell as its feature's model input: the slot within the feature's
/// inputs and the value there (`row` is 0-based, for errors). The one rule
/// of encoding, for cells and frames alike.
fn encode_cell(
    f: &FeatureSchema,
    cell: &Cell,
    source: &str,
    row: usize,
) -> Result<(usize, f32), MlError> {
    let cell = if *cell == Cell::Missing {
        &f.fill
    } else {
        cell
    };
    Ok(match f.kind {
        FeatureKind::Numeric => {
            let x = numeric_value(cell, source, row, &f.name)?;
            (0, ((x - f.mean) / f.std) as f32)
        }
        FeatureKind::Boolean => (
            0,
            f32::from(u8::from(bool_value(cell, source, row, &f.name)?)),
        ),
        FeatureKind::Categorical => {
            let text = cell.as_text().unwrap_or_default();
            // Unseen categories share the last (unknown) slot.
            let slot = f
                .categories
                .iter()
                .position(|c| *c == text)
                .unwrap_or(f.categories.len());
            (slot, 1.0)
        }
    })
}

/// The rows `rows` of a frame as a row-major `rows.len() × width` matrix:
/// what [`encode`] makes of the same rows as cells, bit for bit (errors
/// name a row by its place in `rows`). Numbers are encoded in place, text
/// once per category and batch.
pub fn encode_frame(
    features: &[FeatureSchema],
    frame: &Frame,
    rows: &[usize],
    source: &str,
) -> Result<Vec<f32>, MlError> {
    let width: usize = features.iter().map(FeatureSchema::width).sum();
    let mut out = vec![0f32; rows.len() * width];
    // Every feature's column first: a missing one is named before any value.
    let columns = features
        .iter()
        .map(|f| frame.column(&f.name, "the model's feature schema"))
        .collect::<Result<Vec<_>, DataError>>()?;
    let mut offset = 0;
    for (f, column) in features.iter().zip(columns) {
        let mut put = |r: usize, (slot, value): (usize, f32)| {
            out[r * width + offset + slot] = value;
        };
        match (f.kind, column) {
            (FeatureKind::Numeric, Column::Numbers { values, missing }) => {
                for (r, &i) in rows.iter().enumerate() {
                    let x = values[i];
                    if missing.as_ref().is_some_and(|m| m[i]) || !x.is_finite() {
                        put(r, encode_cell(f, &column.get(i), source, r)?);
                    } else {
                        put(r, (0, ((x - f.mean) / f.std) as f32));
                    }
                }
            }
            (_, Column::Codes { codes, names }) => {
                // One input per code (the last entry for missing), worked
                // out at the code's first row so an error names that row.
                let mut by_code: Vec<Option<(usize, f32)>> = vec![None; names.len() + 1];
                for (r, &i) in rows.iter().enumerate() {
                    let k = (codes[i] as usize).min(names.len());
                    let encoded = match by_code[k] {
                        Some(e) => e,
                        None => {
                            let e = encode_cell(f, &column.get(i), source, r)?;
                            by_code[k] = Some(e);
                            e
                        }
                    };
                    put(r, encoded);
                }
            }
            _ => {
                for (r, &i) in rows.iter().enumerate() {
                    put(r, encode_cell(f, &column.get(i), source, r)?);
                }
            }
        }
        offset += f.width();
    }
    Ok(out)
}

/// A cell as `bool_value` reads it, without formatting a number as text:
/// a number is a boolean only as 1 or (unsigned) 0.
fn bool_of(cell: &Cell) -> Option<bool> {
    match cell {
        Cell::Number(x) if *x == 1.0 => Some(true),
        Cell::Number(x) if *x == 0.0 && x.is_sign_positive() => Some(false),
        Cell::Number(_) | Cell::Missing => None,
        Cell::Text(t) => parse_bool(t),
    }
}

fn numeric_value(cell: &Cell, source: &str, row: usize, column: &str) -> Result<f64, MlError> {
    let x = match cell {
        Cell::Number(x) => *x,
        Cell::Text(t) => t.parse::<f64>().map_err(|_| MlError::NotANumber {
            source_uri: source.into(),
            row: row + 1,
            column: column.into(),
            value: t.clone(),
            hint: String::new(),
        })?,
        Cell::Missing => 0.0,
    };
    if !x.is_finite() {
        return Err(MlError::NonFinite {
            source_uri: source.into(),
            row: row + 1,
            column: column.into(),
            value: x.to_string(),
        });
    }
    Ok(x)
}

fn bool_value(cell: &Cell, source: &str, row: usize, column: &str) -> Result<bool, MlError> {
    let text = cell.as_text().unwrap_or_default();
    parse_bool(&text).ok_or_else(|| MlError::NotABoolean {
        source_uri: source.into(),
        row: row + 1,
        column: column.into(),
        value: text,
    })
}

/// Infers a column's kind: all numbers → numeric, all true/false → boolean,
/// mostly text → categorical. Mostly numbers with some text is a data error
/// (a stray word in a numeric column), reported with its row.
pub fn infer_kind(source: &str, name: &str, cells: &[Cell]) -> Result<FeatureKind, MlError> {
    let mut counts = KindCounts::default();
    for (row, cell) in cells.iter().enumerate() {
        counts.observe(row, cell);
    }
    counts.decide(source, name)
}

/// What kind inference counts of a column, one cell at a time.
#[derive(Debug, Clone)]
struct KindCounts {
    numbers: u64,
    texts: u64,
    /// Whether every text cell so far reads as a boolean.
    texts_bool: bool,
    /// The first text cell (0-based row), for the stray-word error.
    first_text: Option<(usize, String)>,
}

impl Default for KindCounts {
    fn default() -> Self {
        KindCounts {
            numbers: 0,
            texts: 0,
            texts_bool: true,
            first_text: None,
        }
    }
}

impl KindCounts {
    fn observe(&mut self, row: usize, cell: &Cell) {
        match cell {
            Cell::Number(_) => self.numbers += 1,
            Cell::Text(t) => {
                self.texts += 1;
                self.texts_bool &= parse_bool(t).is_some();
                if self.first_text.is_none() {
                    self.first_text = Some((row, t.clone()));
                }
            }
            Cell::Missing => {}
        }
    }

    /// The one rule of kind inference.
    fn decide(&self, source: &str, name: &str) -> Result<FeatureKind, MlError> {
        if self.numbers == 0 && self.texts == 0 {
            return Err(MlError::EmptyColumn {
                source_uri: source.into(),
                column: name.into(),
            });
        }
        if self.texts == 0 {
            return Ok(FeatureKind::Numeric);
        }
        if self.numbers == 0 && self.texts_bool {
            return Ok(FeatureKind::Boolean);
        }
        if self.numbers > self.texts {
            let (row, value) = self.first_text.clone().unwrap_or_default();
            return Err(MlError::NotANumber {
                source_uri: source.into(),
                row: row + 1,
                column: name.into(),
                value,
                hint: " (inferred from its other values); fix the cell, or declare the column in data.featureKinds".into(),
            });
        }
        Ok(FeatureKind::Categorical)
    }
}

/// Checks every cell of a column against its kind, naming the first bad
/// row (1-based, as in the file).
pub fn check_column(
    source: &str,
    name: &str,
    kind: FeatureKind,
    cells: &[Cell],
) -> Result<(), MlError> {
    for (row, cell) in cells.iter().enumerate() {
        check_cell(source, name, kind, row, cell)?;
    }
    Ok(())
}

/// The one rule of which cells a kind accepts.
fn check_cell(
    source: &str,
    name: &str,
    kind: FeatureKind,
    row: usize,
    cell: &Cell,
) -> Result<(), MlError> {
    match (kind, cell) {
        (_, Cell::Missing) | (FeatureKind::Categorical, _) => Ok(()),
        (FeatureKind::Numeric, c) => numeric_value(c, source, row, name).map(|_| ()),
        (FeatureKind::Boolean, c) => bool_value(c, source, row, name).map(|_| ()),
    }
}

/// Fits one feature's preprocessing on training cells.
pub fn fit_feature(
    source: &str,
    name: &str,
    kind: FeatureKind,
    cells: &[Cell],
) -> Result<FeatureSchema, MlError> {
    let mut fit = ColumnFit::new(name, Some(kind), FitLimits::EXACT, 0);
    for (row, cell) in cells.iter().enumerate() {
        fit.observe(source, row, cell, true)?;
    }
    fit.finish(source)
}

/// Mean and standard deviation, one value at a time: the rule that
/// standardises numeric features and regression targets. The variance is
/// summed about the first value, which keeps it exact enough in one pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Moments {
    n: u64,
    sum: f64,
    shift: Option<f64>,
    sum_d: f64,
    sum_d2: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        let k = *self.shift.get_or_insert(x);
        let d = x - k;
        self.n += 1;
        self.sum += x;
        self.sum_d += d;
        self.sum_d2 += d * d;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }

    /// The standard deviation, 1 when the values (nearly) do not vary.
    pub fn std(&self) -> f64 {
        let n = self.n.max(1) as f64;
        let var = ((self.sum_d2 - self.sum_d * self.sum_d / n) / n).max(0.0);
        if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 }
    }
}

/// How much one feature's fit may hold: an exact fit (in memory, where the
/// column is held anyway) keeps every value; a streaming fit keeps a seeded
/// sample of numbers for the median and stops counting numbers as
/// categories once a column has this many distinct ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitLimits {
    pub median_sample: usize,
    pub number_categories: usize,
}

impl FitLimits {
    pub const EXACT: FitLimits = FitLimits {
        median_sample: usize::MAX,
        number_categories: usize::MAX,
    };

    /// Bytes a fit within these limits may hold per column, at most
    /// (a category's text counted at 64 bytes).
    pub fn bytes(&self) -> u64 {
        (self.median_sample as u64).saturating_mul(8)
            + (self.number_categories as u64).saturating_mul(64)
    }
}

/// One feature's preprocessing, fitted one cell at a time: kind inference
/// and the kind's checks over every row, the fit over the training rows.
/// The in-memory fit and the streaming pass both use it.
#[derive(Debug)]
pub struct ColumnFit {
    name: String,
    declared: Option<FeatureKind>,
    limits: FitLimits,
    counts: KindCounts,
    /// The first cell each kind refuses, over every row.
    bad_number: Option<MlError>,
    bad_bool: Option<MlError>,
    /// Over the training rows: present cells, numbers, booleans, categories.
    present: u64,
    moments: Moments,
    sample: Vec<f64>,
    numbers_seen: u64,
    sample_rng: rand_chacha::ChaCha8Rng,
    trues: u64,
    categories: BTreeMap<String, u64>,
    number_categories: BTreeMap<u64, u64>,
    numbers_overflowed: bool,
}

impl ColumnFit {
    /// A fit of column `name`; `declared` is `data.featureKinds`' kind, else
    /// the kind is inferred; `seed` draws the median's sample.
    pub fn new(name: &str, declared: Option<FeatureKind>, limits: FitLimits, seed: u64) -> Self {
        use rand::SeedableRng;
        ColumnFit {
            name: name.into(),
            declared,
            limits,
            counts: KindCounts::default(),
            bad_number: None,
            bad_bool: None,
            present: 0,
            moments: Moments::default(),
            sample: Vec::new(),
            numbers_seen: 0,
            sample_rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            trues: 0,
            categories: BTreeMap::new(),
            number_categories: BTreeMap::new(),
            numbers_overflowed: false,
        }
    }

    /// Counts one cell at `row` (0-based, for errors); `train` when the row
    /// is in the training split. A declared kind's refusal is returned at
    /// once; an inferred kind's when [`finish`](Self::finish) knows it.
    pub fn observe(
        &mut self,
        source: &str,
        row: usize,
        cell: &Cell,
        train: bool,
    ) -> Result<(), MlError> {
        use rand::Rng;
        if let Some(kind) = self.declared {
            check_cell(source, &self.name, kind, row, cell)?;
        } else {
            self.counts.observe(row, cell);
            if self.bad_number.is_none() {
                self.bad_number =
                    check_cell(source, &self.name, FeatureKind::Numeric, row, cell).err();
            }
            if self.bad_bool.is_none() && *cell != Cell::Missing && bool_of(cell).is_none() {
                self.bad_bool =
                    check_cell(source, &self.name, FeatureKind::Boolean, row, cell).err();
            }
        }
        if !train || *cell == Cell::Missing {
            return Ok(());
        }
        self.present += 1;
        let wants = |k: FeatureKind| self.declared.is_none_or(|d| d == k);
        if wants(FeatureKind::Numeric)
            && let Ok(x) = numeric_value(cell, source, row, &self.name)
        {
            self.moments.push(x);
            self.numbers_seen += 1;
            if self.sample.len() < self.limits.median_sample {
                self.sample.push(x);
            } else {
                // Reservoir sampling: every number has the same chance to be kept.
                let j = self.sample_rng.random_range(0..self.numbers_seen);
                if let Some(slot) = self.sample.get_mut(j as usize) {
                    *slot = x;
                }
            }
        }
        if wants(FeatureKind::Boolean) && bool_of(cell) == Some(true) {
            self.trues += 1;
        }
        if wants(FeatureKind::Categorical) {
            match cell {
                Cell::Number(x) if !self.numbers_overflowed => {
                    *self.number_categories.entry(x.to_bits()).or_default() += 1;
                    if self.number_categories.len() > self.limits.number_categories {
                        self.numbers_overflowed = true;
                        self.number_categories.clear();
                    }
                }
                Cell::Number(_) | Cell::Missing => {}
                Cell::Text(t) => match self.categories.get_mut(t) {
                    Some(n) => *n += 1,
                    None => {
                        self.categories.insert(t.clone(), 1);
                    }
                },
            }
        }
        Ok(())
    }

    /// The fitted schema: the kind (declared or inferred over every row),
    /// its first refused cell as the error, else the fit of the training rows.
    pub fn finish(self, source: &str) -> Result<FeatureSchema, MlError> {
        let name = self.name.clone();
        let kind = match self.declared {
            Some(k) => k,
            None => {
                let kind = self.counts.decide(source, &name)?;
                let refused = match kind {
                    FeatureKind::Numeric => self.bad_number,
                    FeatureKind::Boolean => self.bad_bool,
                    FeatureKind::Categorical => None,
                };
                if let Some(e) = refused {
                    return Err(e);
                }
                kind
            }
        };
        if self.present == 0 {
            return Err(MlError::EmptyColumn {
                source_uri: source.into(),
                column: name,
            });
        }
        match kind {
            FeatureKind::Numeric => {
                let mut values = self.sample;
                values.sort_by(f64::total_cmp);
                let mid = values.len() / 2;
                let median = if values.len().is_multiple_of(2) {
                    (values[mid - 1] + values[mid]) / 2.0
                } else {
                    values[mid]
                };
                Ok(FeatureSchema {
                    name,
                    kind,
                    categories: Vec::new(),
                    fill: Cell::Number(median),
                    mean: self.moments.mean(),
                    std: self.moments.std(),
                })
            }
            FeatureKind::Boolean => {
                let fill = if self.trues * 2 > self.present {
                    1.0
                } else {
                    0.0
                };
                Ok(FeatureSchema {
                    name,
                    kind,
                    categories: Vec::new(),
                    fill: Cell::Number(fill),
                    mean: 0.0,
                    std: 1.0,
                })
            }
            FeatureKind::Categorical => {
                if self.numbers_overflowed {
                    return Err(MlError::InvalidConfig {
                        field: format!("data.featureKinds.{name}"),
                        reason: format!(
                            "`{source}`: column `{name}` mixes text with more than {} distinct numbers, too many categories to stream; declare its kind or clean the column",
                            self.limits.number_categories
                        ),
                    });
                }
                let mut counts = self.categories;
                for (bits, n) in self.number_categories {
                    let text = Cell::Number(f64::from_bits(bits))
                        .as_text()
                        .unwrap_or_default();
                    *counts.entry(text).or_default() += n;
                }
                // Most frequent; ties go to the first in name order for determinism.
                let fill = counts
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
                Ok(FeatureSchema {
                    name,
                    kind,
                    categories: counts.into_keys().collect(),
                    fill: Cell::Text(fill),
                    mean: 0.0,
                    std: 1.0,
                })
            }
        }
    }
}

/// Sorts class labels: numerically when all are numbers, else by name.
pub fn sort_classes(classes: &mut [String]) {
    if classes.iter().all(|c| c.parse::<f64>().is_ok()) {
        classes.sort_by(|a, b| {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y)
        });
    } else {
        classes.sort();
    }
}

/// A target cell as a class label (classification); `row` is 0-based.
pub fn label_of(source: &str, target: &str, row: usize, cell: &Cell) -> Result<String, MlError> {
    match cell {
        Cell::Number(x) if !x.is_finite() => Err(MlError::NonFinite {
            source_uri: source.into(),
            row: row + 1,
            column: target.into(),
            value: x.to_string(),
        }),
        other => other.as_text().ok_or_else(|| MlError::MissingTarget {
            source_uri: source.into(),
            row: row + 1,
            target: target.into(),
        }),
    }
}

/// A target cell as a number (regression); `row` is 0-based.
pub fn value_of(source: &str, target: &str, row: usize, cell: &Cell) -> Result<f64, MlError> {
    if *cell == Cell::Missing {
        return Err(MlError::MissingTarget {
            source_uri: source.into(),
            row: row + 1,
            target: target.into(),
        });
    }
    numeric_value(cell, source, row, target)
}

/// Reads the target column as class labels (classification).
pub fn labels(table: &Table, target: &str) -> Result<Vec<String>, MlError> {
    let col = table.column(target, "data.target")?;
    col.iter()
        .enumerate()
        .map(|(row, cell)| label_of(&table.source, target, row, cell))
        .collect()
}

/// Reads the target column as numbers (regression).
pub fn values(table: &Table, target: &str) -> Result<Vec<f64>, MlError> {
    let col = table.column(target, "data.target")?;
    col.iter()
        .enumerate()
        .map(|(row, cell)| value_of(&table.source, target, row, cell))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(xs: &[&str]) -> Vec<Cell> {
        xs.iter().map(|x| Cell::parse(x)).collect()
    }

    #[test]
    fn kinds_are_inferred_and_a_stray_word_in_a_numeric_column_is_named() {
        assert_eq!(
            infer_kind("s", "a", &cells(&["1", "2", ""])).unwrap(),
            FeatureKind::Numeric
        );
        assert_eq!(
            infer_kind("s", "b", &cells(&["true", "False"])).unwrap(),
            FeatureKind::Boolean
        );
        assert_eq!(
            infer_kind("s", "c", &cells(&["red", "white", "3"])).unwrap(),
            FeatureKind::Categorical
        );
        let e = infer_kind("s.csv", "alcohol", &cells(&["9.4", "10.1", "abc", "11"])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("row 3") && msg.contains("`alcohol`") && msg.contains("`abc`"),
            "{msg}"
        );
    }

    #[test]
    fn missing_cells_are_imputed_and_numbers_standardised() {
        let f = fit_feature(
            "s",
            "x",
            FeatureKind::Numeric,
            &cells(&["1", "2", "3", "", "10"]),
        )
        .unwrap();
        assert_eq!(f.fill, Cell::Number(2.5));
        let batch = FeatureBatch {
            rows: 2,
            columns: vec![cells(&["", "4"])],
        };
        let out = encode(std::slice::from_ref(&f), &batch, "s").unwrap();
        assert!((out[0] as f64 - (2.5 - f.mean) / f.std).abs() < 1e-6);
        assert!((out[1] as f64 - (4.0 - f.mean) / f.std).abs() < 1e-6);
    }

    #[test]
    fn unseen_categories_go_to_the_unknown_slot() {
        let f = fit_feature(
            "s",
            "color",
            FeatureKind::Categorical,
            &cells(&["red", "white", "red", ""]),
        )
        .unwrap();
        assert_eq!(f.categories, vec!["red", "white"]);
        assert_eq!(f.fill, Cell::Text("red".into()));
        let batch = FeatureBatch {
            rows: 3,
            columns: vec![cells(&["white", "rosé", ""])],
        };
        let out = encode(&[f], &batch, "s").unwrap();
        assert_eq!(out, vec![0., 1., 0., 0., 0., 1., 1., 0., 0.]);
    }

    #[test]
    fn text_or_infinity_in_a_numeric_feature_is_refused_with_row_and_column() {
        let f = fit_feature("s", "x", FeatureKind::Numeric, &cells(&["1", "2"])).unwrap();
        let batch = FeatureBatch {
            rows: 2,
            columns: vec![cells(&["1", "inf"])],
        };
        let e = encode(std::slice::from_ref(&f), &batch, "req")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 2") && e.contains("`x`") && e.contains("not finite"),
            "{e}"
        );
        let batch = FeatureBatch {
            rows: 1,
            columns: vec![cells(&["heavy"])],
        };
        let e = encode(&[f], &batch, "req").unwrap_err().to_string();
        assert!(e.contains("`heavy` is not a number"), "{e}");
    }

    #[test]
    fn a_missing_feature_column_is_named() {
        let f = fit_feature("s", "alcohol", FeatureKind::Numeric, &cells(&["1"])).unwrap();
        let t = Table::from_csv("req", b"ph\n3.1\n").unwrap();
        let e = FeatureBatch::from_table(&[f], &t).unwrap_err().to_string();
        assert!(e.contains("column `alcohol` missing"), "{e}");
    }

    /// A mixed-type Parquet file with nulls (ints, floats, booleans, a
    /// dictionary and a plain string column, several row groups) read by
    /// the Arrow encoder (`data::scan`'s frames, `encode_frame`, the data
    /// check's statistics) gives the same matrix, bit for bit, and the same
    /// statistics as the same values written as CSV and read as cells.
    #[tokio::test]
    async fn the_arrow_encoder_and_the_cell_path_give_the_same_matrix_and_statistics() {
        use std::sync::Arc;

        use arrow_array::types::Int32Type;
        use arrow_array::{
            ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, RecordBatch,
            StringArray,
        };

        let rows = 60;
        let gap = |i: usize, every: usize| i % every == every - 1;
        let n: Vec<Option<i32>> = (0..rows)
            .map(|i| (!gap(i, 7)).then_some(i as i32 * 3 - 40))
            .collect();
        let f: Vec<Option<f64>> = (0..rows)
            .map(|i| (!gap(i, 5)).then_some(i as f64 * 0.37 - 9.1))
            .collect();
        let b: Vec<Option<bool>> = (0..rows)
            .map(|i| (!gap(i, 6)).then_some(i % 3 == 0))
            .collect();
        let colors = ["red", "white", "rosé"];
        let d: Vec<Option<&str>> = (0..rows)
            .map(|i| (!gap(i, 4)).then_some(colors[(i * 7 / 3) % 3]))
            .collect();
        let shops: Vec<String> = (0..rows)
            .map(|i| format!("shop-{}", (i * 5) % 11))
            .collect();
        let s: Vec<Option<&str>> = (0..rows)
            .map(|i| (!gap(i, 9)).then_some(shops[i].as_str()))
            .collect();
        let label: Vec<&str> = (0..rows)
            .map(|i| if i % 4 < 2 { "yes" } else { "no" })
            .collect();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.parquet");
        let batch = RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int32Array::from(n.clone())) as ArrayRef),
            ("f", Arc::new(Float64Array::from(f.clone()))),
            ("b", Arc::new(BooleanArray::from(b.clone()))),
            (
                "d",
                Arc::new(d.iter().copied().collect::<DictionaryArray<Int32Type>>()),
            ),
            ("s", Arc::new(StringArray::from(s.clone()))),
            ("label", Arc::new(StringArray::from(label.clone()))),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(13))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            Some(props),
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        // The same values as CSV, read as raw cells.
        let text = |v: Option<String>| v.unwrap_or_default();
        let mut csv = String::from("n,f,b,d,s,label\n");
        for i in 0..rows {
            csv.push_str(&format!(
                "{},{},{},{},{},{}\n",
                text(n[i].map(|x| x.to_string())),
                text(f[i].map(|x| x.to_string())),
                text(b[i].map(|x| x.to_string())),
                text(d[i].map(str::to_string)),
                text(s[i].map(str::to_string)),
                label[i]
            ));
        }
        let table = Table::from_csv("mixed.csv", csv.as_bytes()).unwrap();
        let names = ["n", "f", "b", "d", "s"];
        let schemas: Vec<FeatureSchema> = names
            .iter()
            .map(|name| {
                let cells = table.column(name, "test").unwrap();
                let kind = infer_kind("mixed.csv", name, cells).unwrap();
                fit_feature("mixed.csv", name, kind, cells).unwrap()
            })
            .collect();
        let kinds: Vec<FeatureKind> = schemas.iter().map(|s| s.kind).collect();
        use FeatureKind::{Boolean, Categorical, Numeric};
        assert_eq!(kinds, [Numeric, Numeric, Boolean, Categorical, Categorical]);
        let from_cells = encode(
            &schemas,
            &FeatureBatch::from_table(&schemas, &table).unwrap(),
            "mixed.csv",
        )
        .unwrap();
        let features: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut cell_stats = crate::data::Statistics::new("label", Default::default());
        cell_stats.add_table(&table, &features);

        // The Parquet file through the reader training and the data check use.
        let spec: crate::api::DataSpec =
            serde_yaml::from_str(&format!("{{source: '{}', target: label}}", path.display()))
                .unwrap();
        let listing = crate::data::list(&spec, chrono::Utc::now()).await.unwrap();
        let mut from_frames = Vec::new();
        let mut frame_stats = crate::data::Statistics::new("label", Default::default());
        let mut batches = 0;
        crate::data::scan::<MlError>(&spec, &listing, &[0], None, &mut |_, _| Ok(()), |r| {
            batches += 1;
            let all: Vec<usize> = (0..r.table.rows).collect();
            from_frames.extend(encode_frame(&schemas, r.table, &all, "mixed.parquet")?);
            frame_stats.add(r.table, &features);
            Ok(())
        })
        .await
        .unwrap();
        assert!(batches >= 5, "one batch per row group at least: {batches}");
        let bits = |m: &[f32]| m.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(from_frames.len(), rows * (3 + 4 + 12));
        assert_eq!(bits(&from_frames), bits(&from_cells));
        assert_eq!(frame_stats.finish(), cell_stats.finish());
    }

    #[test]
    fn integer_classes_sort_numerically() {
        let mut c = vec!["10".to_string(), "9".into(), "3".into()];
        sort_classes(&mut c);
        assert_eq!(c, vec!["3", "9", "10"]);
    }
}
