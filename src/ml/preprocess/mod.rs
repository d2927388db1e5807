//! Preprocessing fitted on the training split only and shipped in the
//! artifact: imputation (median / most frequent), standardisation, one-hot
//! with an unknown bucket, label encoding. One code path turns raw cells
//! into model inputs in training, evaluation and serving.

use serde::{Deserialize, Serialize};

use crate::api::FeatureKind;

use super::error::MlError;
use crate::data::{Cell, CellRef, Column, DataError, Frame, Table};

mod fit;
pub use fit::{ColumnFit, FitLimits, Moments, check_column, fit_feature, infer_kind};

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

/// Raw input rows, column by column in the manifest's feature order:
/// what [`encode`] reads. A [`FeatureBatch`] is one; the model server's
/// decoded request is another, read in place.
pub trait FeatureRows {
    /// Rows in the batch.
    fn rows(&self) -> usize;
    /// Feature columns in the batch.
    fn columns(&self) -> usize;
    /// Cells in column `j` (a ragged batch is refused by name).
    fn column_len(&self, j: usize) -> usize;
    /// The cell of column `j` in `row`.
    fn cell(&self, j: usize, row: usize) -> CellRef<'_>;
}

impl FeatureRows for FeatureBatch {
    fn rows(&self) -> usize {
        self.rows
    }

    fn columns(&self) -> usize {
        self.columns.len()
    }

    fn column_len(&self, j: usize) -> usize {
        self.columns[j].len()
    }

    fn cell(&self, j: usize, row: usize) -> CellRef<'_> {
        self.columns[j][row].view()
    }
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
    batch: &impl FeatureRows,
    source: &str,
) -> Result<Vec<f32>, MlError> {
    if batch.columns() != features.len() {
        return Err(MlError::BatchShape {
            got: batch.columns(),
            expected: features.len(),
            names: features
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let width: usize = features.iter().map(FeatureSchema::width).sum();
    let rows = batch.rows();
    let mut out = vec![0f32; rows * width];
    let mut offset = 0;
    for (j, f) in features.iter().enumerate() {
        if batch.column_len(j) != rows {
            return Err(MlError::RaggedBatch {
                column: f.name.clone(),
                got: batch.column_len(j),
                expected: rows,
            });
        }
        for row in 0..rows {
            let (slot, value) = encode_cell(f, batch.cell(j, row), source, row)?;
            out[row * width + offset + slot] = value;
        }
        offset += f.width();
    }
    Ok(out)
}

/// One cell as its feature's model input: the slot within the feature's
/// inputs and the value there (`row` is 0-based, for errors). The one rule
/// of encoding, for cells and frames alike.
#[inline]
fn encode_cell(
    f: &FeatureSchema,
    cell: CellRef<'_>,
    source: &str,
    row: usize,
) -> Result<(usize, f32), MlError> {
    let cell = if cell == CellRef::Missing {
        f.fill.view()
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
            let text = cell.text().unwrap_or_default();
            // Unseen categories share the last (unknown) slot.
            let slot = f
                .categories
                .iter()
                .position(|c| *c == *text)
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
                        put(r, encode_cell(f, column.get(i).view(), source, r)?);
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
                            let e = encode_cell(f, column.get(i).view(), source, r)?;
                            by_code[k] = Some(e);
                            e
                        }
                    };
                    put(r, encoded);
                }
            }
            _ => {
                for (r, &i) in rows.iter().enumerate() {
                    put(r, encode_cell(f, column.get(i).view(), source, r)?);
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

/// A numeric cell's value: a finite number as it is (inlined: the common
/// cell of every request), anything else by [`parsed_numeric_value`].
#[inline]
fn numeric_value(
    cell: CellRef<'_>,
    source: &str,
    row: usize,
    column: &str,
) -> Result<f64, MlError> {
    match cell {
        CellRef::Number(x) if x.is_finite() => Ok(x),
        _ => parsed_numeric_value(cell, source, row, column),
    }
}

/// A numeric cell that is text, missing or not finite: parsed, or the
/// error naming where it is. Out of line, so the common cell does not set
/// up the errors' arguments.
#[cold]
#[inline(never)]
fn parsed_numeric_value(
    cell: CellRef<'_>,
    source: &str,
    row: usize,
    column: &str,
) -> Result<f64, MlError> {
    let x = match cell {
        CellRef::Number(x) => x,
        CellRef::Text(t) => t.parse::<f64>().map_err(|_| MlError::NotANumber {
            source_uri: source.into(),
            row: row + 1,
            column: column.into(),
            value: t.to_string(),
            hint: String::new(),
        })?,
        CellRef::Missing => 0.0,
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

fn bool_value(cell: CellRef<'_>, source: &str, row: usize, column: &str) -> Result<bool, MlError> {
    let text = cell.text().unwrap_or_default();
    parse_bool(&text).ok_or_else(|| MlError::NotABoolean {
        source_uri: source.into(),
        row: row + 1,
        column: column.into(),
        value: text.into_owned(),
    })
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
    numeric_value(cell.view(), source, row, target)
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
