//! Preprocessing fitted on the training split only and shipped in the
//! artifact: imputation (median / most frequent), standardisation, one-hot
//! with an unknown bucket, label encoding. One code path turns raw cells
//! into model inputs in training, evaluation and serving.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::FeatureKind;

use super::error::MlError;
use crate::data::{Cell, DataError, Table};

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
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "t" | "1" => Some(true),
        "false" | "no" | "n" | "f" | "0" => Some(false),
        _ => None,
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
            let cell = if *cell == Cell::Missing {
                &f.fill
            } else {
                cell
            };
            let base = row * width + offset;
            match f.kind {
                FeatureKind::Numeric => {
                    let x = numeric_value(cell, source, row, &f.name)?;
                    out[base] = ((x - f.mean) / f.std) as f32;
                }
                FeatureKind::Boolean => {
                    out[base] = f32::from(u8::from(bool_value(cell, source, row, &f.name)?));
                }
                FeatureKind::Categorical => {
                    let text = cell.as_text().unwrap_or_default();
                    // Unseen categories share the last (unknown) slot.
                    let slot = f
                        .categories
                        .iter()
                        .position(|c| *c == text)
                        .unwrap_or(f.categories.len());
                    out[base + slot] = 1.0;
                }
            }
        }
        offset += f.width();
    }
    Ok(out)
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
    let numbers = cells
        .iter()
        .filter(|c| matches!(c, Cell::Number(_)))
        .count();
    let texts: Vec<(usize, &String)> = cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Cell::Text(t) => Some((i, t)),
            _ => None,
        })
        .collect();
    if numbers == 0 && texts.is_empty() {
        return Err(MlError::EmptyColumn {
            source_uri: source.into(),
            column: name.into(),
        });
    }
    if texts.is_empty() {
        return Ok(FeatureKind::Numeric);
    }
    if numbers == 0 && texts.iter().all(|(_, t)| parse_bool(t).is_some()) {
        return Ok(FeatureKind::Boolean);
    }
    if numbers > texts.len() {
        let (row, value) = texts[0];
        return Err(MlError::NotANumber {
            source_uri: source.into(),
            row: row + 1,
            column: name.into(),
            value: value.clone(),
            hint: " (inferred from its other values); fix the cell, or declare the column in data.featureKinds".into(),
        });
    }
    Ok(FeatureKind::Categorical)
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
        match (kind, cell) {
            (_, Cell::Missing) | (FeatureKind::Categorical, _) => {}
            (FeatureKind::Numeric, c) => {
                numeric_value(c, source, row, name)?;
            }
            (FeatureKind::Boolean, c) => {
                bool_value(c, source, row, name)?;
            }
        }
    }
    Ok(())
}

/// Fits one feature's preprocessing on training cells.
pub fn fit_feature(
    source: &str,
    name: &str,
    kind: FeatureKind,
    cells: &[Cell],
) -> Result<FeatureSchema, MlError> {
    let present: Vec<(usize, &Cell)> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != Cell::Missing)
        .collect();
    if present.is_empty() {
        return Err(MlError::EmptyColumn {
            source_uri: source.into(),
            column: name.into(),
        });
    }
    match kind {
        FeatureKind::Numeric => {
            let mut values = Vec::with_capacity(present.len());
            for (row, cell) in &present {
                values.push(numeric_value(cell, source, *row, name)?);
            }
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let std = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            let median = if values.len() % 2 == 0 {
                (values[mid - 1] + values[mid]) / 2.0
            } else {
                values[mid]
            };
            Ok(FeatureSchema {
                name: name.into(),
                kind,
                categories: Vec::new(),
                fill: Cell::Number(median),
                mean,
                std,
            })
        }
        FeatureKind::Boolean => {
            let mut trues = 0usize;
            for (row, cell) in &present {
                trues += usize::from(bool_value(cell, source, *row, name)?);
            }
            let fill = if trues * 2 > present.len() { 1.0 } else { 0.0 };
            Ok(FeatureSchema {
                name: name.into(),
                kind,
                categories: Vec::new(),
                fill: Cell::Number(fill),
                mean: 0.0,
                std: 1.0,
            })
        }
        FeatureKind::Categorical => {
            let mut counts = BTreeMap::<String, usize>::new();
            for (_, cell) in &present {
                *counts
                    .entry(cell.as_text().unwrap_or_default())
                    .or_default() += 1;
            }
            // Most frequent; ties go to the first in name order for determinism.
            let fill = counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            Ok(FeatureSchema {
                name: name.into(),
                kind,
                categories: counts.into_keys().collect(),
                fill: Cell::Text(fill),
                mean: 0.0,
                std: 1.0,
            })
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

/// Reads the target column as class labels (classification).
pub fn labels(table: &Table, target: &str) -> Result<Vec<String>, MlError> {
    let col = table.column(target, "data.target")?;
    col.iter()
        .enumerate()
        .map(|(row, cell)| match cell {
            Cell::Number(x) if !x.is_finite() => Err(MlError::NonFinite {
                source_uri: table.source.clone(),
                row: row + 1,
                column: target.into(),
                value: x.to_string(),
            }),
            other => other.as_text().ok_or_else(|| MlError::MissingTarget {
                source_uri: table.source.clone(),
                row: row + 1,
                target: target.into(),
            }),
        })
        .collect()
}

/// Reads the target column as numbers (regression).
pub fn values(table: &Table, target: &str) -> Result<Vec<f64>, MlError> {
    let col = table.column(target, "data.target")?;
    col.iter()
        .enumerate()
        .map(|(row, cell)| {
            if *cell == Cell::Missing {
                return Err(MlError::MissingTarget {
                    source_uri: table.source.clone(),
                    row: row + 1,
                    target: target.into(),
                });
            }
            numeric_value(cell, &table.source, row, target)
        })
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

    #[test]
    fn integer_classes_sort_numerically() {
        let mut c = vec!["10".to_string(), "9".into(), "3".into()];
        sort_classes(&mut c);
        assert_eq!(c, vec!["3", "9", "10"]);
    }
}
