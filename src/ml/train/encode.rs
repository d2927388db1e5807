//! The rows a run trains and validates on, encoded: the seeded split,
//! the feature columns, preprocessing fitted on the training split, and the
//! targets as class indices or standardised values.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::api::{ModelSpec, Task};

use super::super::artifact::TargetScale;
use super::super::error::MlError;
use super::super::preprocess::{self, FeatureBatch, FeatureSchema};
use super::SPLIT_STREAM;
use crate::data::{Cell, Column, Feedback, Frame, Table};

/// Columns used as features, checked against the table.
pub(super) fn feature_names(spec: &ModelSpec, table: &Table) -> Result<Vec<String>, MlError> {
    table.column(&spec.data.target, "data.target")?;
    let names = crate::data::feature_columns(&spec.data, &table.names);
    for f in &spec.data.features {
        table.column(f, "data.features")?;
    }
    if names.is_empty() {
        return Err(MlError::InvalidConfig {
            field: "data.features".into(),
            reason: format!(
                "`{}` has no column besides the target `{}`",
                table.source, spec.data.target
            ),
        });
    }
    if let Some(unknown) = spec.data.feature_kinds.keys().find(|k| !names.contains(k)) {
        return Err(MlError::InvalidConfig {
            field: format!("data.featureKinds.{unknown}"),
            reason: format!(
                "`{unknown}` is not a feature column; features: {}",
                names.join(", ")
            ),
        });
    }
    if names.contains(&spec.data.target) {
        return Err(MlError::InvalidConfig {
            field: "data.features".into(),
            reason: format!("lists the target `{}`", spec.data.target),
        });
    }
    Ok(names)
}

/// Rows of a row-major matrix.
pub(super) fn gather(matrix: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&matrix[r * width..(r + 1) * width]);
    }
    out
}

/// The refusal of a holdout that leaves no training rows.
pub(super) fn holdout_leaves_no_rows(rows: usize) -> MlError {
    MlError::InvalidConfig {
        field: "data.window.holdout".into(),
        reason: format!(
            "holds out all {rows} rows of the window, leaving none to train on; \
             shorten it or widen data.window.last"
        ),
    }
}

/// The deterministic training/validation split of the file's rows.
pub(super) struct Split {
    /// Training rows of the file, ascending (feedback rows come after them).
    pub(super) train: Vec<usize>,
    /// Validation rows, ascending.
    pub(super) val: Vec<usize>,
}

impl Split {
    /// The time-aware holdout when the dataset has one, else
    /// `data.validationFraction` of the rows (at least one when asked and
    /// possible, never all), drawn from the seed's split stream.
    pub(super) fn new(
        spec: &ModelSpec,
        rows: usize,
        holdout: Option<&[usize]>,
    ) -> Result<Split, MlError> {
        if let Some(held) = holdout {
            if held.len() >= rows {
                return Err(holdout_leaves_no_rows(rows));
            }
            let mut is_held = vec![false; rows];
            for &r in held {
                is_held[r] = true;
            }
            let train = (0..rows).filter(|&r| !is_held[r]).collect();
            return Ok(Split {
                train,
                val: held.to_vec(),
            });
        }
        Ok(Split::random(spec, rows))
    }

    fn random(spec: &ModelSpec, rows: usize) -> Split {
        let mut order: Vec<usize> = (0..rows).collect();
        let mut split_rng = ChaCha8Rng::seed_from_u64(spec.training.seed);
        split_rng.set_stream(SPLIT_STREAM);
        order.shuffle(&mut split_rng);
        let mut n_val = (rows as f64 * spec.data.validation_fraction).round() as usize;
        if spec.data.validation_fraction > 0.0 && n_val == 0 && rows >= 2 {
            n_val = 1;
        }
        n_val = n_val.min(rows.saturating_sub(1));
        let (val, train) = order.split_at(n_val);
        let (mut val, mut train) = (val.to_vec(), train.to_vec());
        val.sort_unstable();
        train.sort_unstable();
        Split { train, val }
    }
}

/// The inputs, encoded by preprocessing fitted on the training split.
pub(super) struct Encoded {
    pub(super) features: Vec<FeatureSchema>,
    /// Width of an encoded row.
    pub(super) inputs: usize,
    /// Every row of the file, encoded (row-major, `inputs` wide).
    pub(super) all_x: Vec<f32>,
    /// The training rows, then the feedback rows, encoded.
    pub(super) x_train: Vec<f32>,
    /// The training split's raw rows plus feedback (what preprocessing and
    /// the drift reference are fitted on).
    pub(super) train_table: Table,
    /// Training rows including feedback.
    pub(super) n_train: usize,
}

pub(super) fn encode_inputs(
    spec: &ModelSpec,
    table: &Table,
    names: &[String],
    split: &Split,
    feedback: Option<(&str, &Feedback)>,
) -> Result<Encoded, MlError> {
    // Kinds are inferred on the whole file so a stray word is reported at its real row;
    // preprocessing is fitted on the training split (plus feedback) only.
    let mut train_table = table.select(&split.train);
    let fb_rows = feedback.map_or(0, |(_, f)| f.table.rows);
    if let Some((_, fb)) = feedback {
        train_table.append(&fb.table);
    }
    let mut features = Vec::with_capacity(names.len());
    for name in names {
        let kind = match spec.data.feature_kinds.get(name) {
            Some(k) => *k,
            None => {
                preprocess::infer_kind(&table.source, name, table.column(name, "data.features")?)?
            }
        };
        preprocess::check_column(
            &table.source,
            name,
            kind,
            table.column(name, "data.features")?,
        )?;
        features.push(preprocess::fit_feature(
            &table.source,
            name,
            kind,
            train_table.column(name, "data.features")?,
        )?);
    }
    let inputs: usize = features.iter().map(FeatureSchema::width).sum();
    let all_x = preprocess::encode(
        &features,
        &FeatureBatch::from_table(&features, table)?,
        &table.source,
    )?;
    let mut x_train = gather(&all_x, inputs, &split.train);
    if let Some((prefix, fb)) = feedback
        && fb.table.rows > 0
    {
        x_train.extend(preprocess::encode(
            &features,
            &FeatureBatch::from_table(&features, &fb.table)?,
            prefix,
        )?);
    }
    Ok(Encoded {
        features,
        inputs,
        all_x,
        x_train,
        train_table,
        n_train: split.train.len() + fb_rows,
    })
}

/// The targets: class indices (classification) or standardised values
/// (regression), for the training rows (then feedback) and the validation rows.
pub(super) struct Targets {
    /// Class labels in their sorted order (classification).
    pub(super) classes: Vec<String>,
    pub(super) y_train: Tensor,
    pub(super) y_val: Tensor,
    /// Mean and standard deviation the regression target is scaled by.
    pub(super) target_scale: Option<TargetScale>,
    /// Raw labels of the validation rows (classification).
    pub(super) val_labels: Vec<String>,
    /// Raw values of the validation rows (regression).
    pub(super) val_values: Vec<f64>,
}

pub(super) fn encode_targets(
    spec: &ModelSpec,
    table: &Table,
    feedback: Option<(&str, &Feedback)>,
    split: &Split,
    n_train: usize,
    device: &Device,
) -> Result<Targets, MlError> {
    let target = &spec.data.target;
    let feedback = feedback.filter(|(_, fb)| fb.table.rows > 0);
    match spec.task {
        Task::Classification => {
            let mut labels = preprocess::labels(table, target)?;
            if let Some((_, fb)) = feedback {
                labels.extend(preprocess::labels(&fb.table, target)?);
            }
            let mut classes: Vec<String> = labels
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            preprocess::sort_classes(&mut classes);
            if classes.len() < 2 {
                return Err(MlError::SingleClass {
                    target: target.clone(),
                    class: classes.concat(),
                });
            }
            let index: BTreeMap<&str, u32> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i as u32))
                .collect();
            let encoded: Vec<u32> = labels
                .iter()
                .map(|l| index.get(l.as_str()).copied().unwrap_or(0))
                .collect();
            let mut ytr: Vec<u32> = split.train.iter().map(|&r| encoded[r]).collect();
            ytr.extend_from_slice(&encoded[table.rows..]);
            let yv: Vec<u32> = split.val.iter().map(|&r| encoded[r]).collect();
            let val_labels: Vec<String> = split.val.iter().map(|&r| labels[r].clone()).collect();
            Ok(Targets {
                classes,
                y_train: Tensor::from_vec(ytr, n_train, device)?,
                y_val: Tensor::from_vec(yv, split.val.len(), device)?,
                target_scale: None,
                val_labels,
                val_values: Vec::new(),
            })
        }
        Task::Regression => {
            let mut values = preprocess::values(table, target)?;
            if let Some((_, fb)) = feedback {
                values.extend(preprocess::values(&fb.table, target)?);
            }
            let train_values: Vec<f64> = split
                .train
                .iter()
                .map(|&r| values[r])
                .chain(values[table.rows..].iter().copied())
                .collect();
            let mut moments = preprocess::Moments::default();
            for &v in &train_values {
                moments.push(v);
            }
            let (mean, std) = (moments.mean(), moments.std());
            let scale = |v: f64| ((v - mean) / std) as f32;
            let ytr: Vec<f32> = train_values.iter().map(|&v| scale(v)).collect();
            let yv: Vec<f32> = split.val.iter().map(|&r| scale(values[r])).collect();
            Ok(Targets {
                classes: Vec::new(),
                y_train: Tensor::from_vec(ytr, (n_train, 1), device)?,
                y_val: Tensor::from_vec(yv, (split.val.len(), 1), device)?,
                target_scale: Some(TargetScale { mean, std }),
                val_labels: Vec::new(),
                val_values: split.val.iter().map(|&r| values[r]).collect(),
            })
        }
    }
}

/// The targets of a frame's `rows` (streamed training), encoded as
/// `stream.rs` encodes a table's target cells (errors name a row by its
/// place in `rows`); a class's index is looked up once per code.
pub(super) fn frame_targets(
    spec: &ModelSpec,
    frame: &Frame,
    rows: &[usize],
    index: &BTreeMap<&str, u32>,
    scale: Option<TargetScale>,
) -> Result<Vec<f32>, MlError> {
    let target = spec.data.target.as_str();
    let column = frame.column(target, "data.target")?;
    let cells = column.reader();
    let source = frame.source.as_str();
    match spec.task {
        Task::Classification => {
            let class = |r: usize, cell: &Cell| -> Result<f32, MlError> {
                let label = preprocess::label_of(source, target, r, cell)?;
                Ok(index.get(label.as_str()).copied().unwrap_or(0) as f32)
            };
            let mut by_code: Vec<Option<f32>> = match column {
                Column::Codes { names, .. } => vec![None; names.len() + 1],
                _ => Vec::new(),
            };
            let mut y = Vec::with_capacity(rows.len());
            for (r, &i) in rows.iter().enumerate() {
                y.push(match column {
                    Column::Codes { codes, names } => {
                        let k = (codes[i] as usize).min(names.len());
                        match by_code[k] {
                            Some(c) => c,
                            None => {
                                let c = class(r, &cells.get(i))?;
                                by_code[k] = Some(c);
                                c
                            }
                        }
                    }
                    _ => class(r, &cells.get(i))?,
                });
            }
            Ok(y)
        }
        Task::Regression => {
            let s = scale.unwrap_or(TargetScale {
                mean: 0.0,
                std: 1.0,
            });
            rows.iter()
                .enumerate()
                .map(|(r, &i)| {
                    let v = preprocess::value_of(source, target, r, &cells.get(i))?;
                    Ok(((v - s.mean) / s.std) as f32)
                })
                .collect()
        }
    }
}
