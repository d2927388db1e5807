//! The drift reference a run stores in its artifact: the training split's
//! feature and prediction profiles, null distributions calibrated on
//! held-out rows, and permutation importance.

use std::time::Instant;

use crate::api::{FeatureKind, ModelSpec, Task};
use crate::drift::{self, DEFAULT_BINS, DEFAULT_RESAMPLES};
use crate::drift::{
    CategoricalProfile, DatasetSketch, FeatureImportance, FeatureProfile, NumericProfile,
    ReferenceProfile,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::super::artifact::{self, Predictor};
use super::super::error::MlError;
use super::super::preprocess::{self, FeatureSchema};
use super::encode::{Encoded, Split, Targets, gather};
use super::{CALIBRATION_STREAM, IMPORTANCE_STREAM};
use crate::data::{Cell, Table};

/// Shuffles per feature for permutation importance (their mean is kept).
pub(super) const IMPORTANCE_REPEATS: usize = 5;

fn profile_of(schema: &FeatureSchema, cells: &[Cell]) -> Result<FeatureProfile, MlError> {
    let name = schema.name.clone();
    Ok(match schema.kind {
        FeatureKind::Numeric => {
            let values: Vec<f64> = cells
                .iter()
                .filter_map(|c| match c {
                    Cell::Number(x) => Some(*x),
                    Cell::Text(t) => t.parse().ok(),
                    Cell::Missing => None,
                })
                .collect();
            FeatureProfile::Numeric {
                profile: NumericProfile::fit(&name, &values, DEFAULT_BINS)?,
                name,
            }
        }
        FeatureKind::Categorical | FeatureKind::Boolean => {
            let values: Vec<String> = cells.iter().filter_map(Cell::as_text).collect();
            FeatureProfile::Categorical {
                profile: CategoricalProfile::fit(&name, &values)?,
                name,
            }
        }
    })
}

/// The drift reference stored in the artifact: the training split's feature
/// profiles and the predictions on them, calibrated thresholds and
/// permutation importance, both measured on held-out rows (the training
/// rows when there is no validation split).
pub(super) fn drift_reference(
    spec: &ModelSpec,
    table: &Table,
    encoded: &Encoded,
    split: &Split,
    targets: &Targets,
    predictor: &Predictor,
    val_pred: &artifact::Predictions,
) -> Result<ReferenceProfile, MlError> {
    let target = &spec.data.target;
    let inputs = encoded.inputs;
    let ref_pred = predictor.predict_encoded(
        gather(&encoded.all_x, inputs, &split.train),
        split.train.len(),
    )?;
    let mut feature_profiles = Vec::with_capacity(encoded.features.len());
    for f in &encoded.features {
        feature_profiles.push(profile_of(
            f,
            encoded.train_table.column(&f.name, "data.features")?,
        )?);
    }
    let prediction = prediction_profile(spec.task, target, &ref_pred)?;
    let mut reference = ReferenceProfile::new(feature_profiles, prediction);
    let HeldRows {
        rows: held_rows,
        predictions: held_pred,
        labels: held_labels,
        values: held_values,
    } = held_out_rows(spec.task, target, table, split, targets, ref_pred, val_pred)?;
    let seed = spec.training.seed;
    let calibration_started = Instant::now();
    let held_out = held_out_sketch(&reference, &encoded.features, table, &held_rows, &held_pred)?;
    let mut calibration_rng = ChaCha8Rng::seed_from_u64(seed);
    calibration_rng.set_stream(CALIBRATION_STREAM);
    reference.calibration = Some(drift::calibrate(
        &reference,
        &held_out,
        &[u64::from(spec.drift.window)],
        DEFAULT_RESAMPLES,
        &mut calibration_rng,
    ));
    let calibration_seconds = calibration_started.elapsed().as_secs_f64();
    let importance_started = Instant::now();
    let mut importance_rng = ChaCha8Rng::seed_from_u64(seed);
    importance_rng.set_stream(IMPORTANCE_STREAM);
    reference.importance = permutation_importance(
        predictor,
        &gather(&encoded.all_x, inputs, &held_rows),
        &Held {
            classes: &targets.classes,
            labels: &held_labels,
            values: &held_values,
        },
        &mut importance_rng,
    )?;
    tracing::info!(
        calibration_seconds,
        importance_seconds = importance_started.elapsed().as_secs_f64(),
        "drift calibration and permutation importance measured"
    );
    Ok(reference)
}

/// Counts of the held-out rows (and the model's predictions on them) over
/// the reference profile's bins: what calibration pools with the reference.
fn held_out_sketch(
    reference: &ReferenceProfile,
    features: &[FeatureSchema],
    table: &Table,
    rows: &[usize],
    predictions: &artifact::Predictions,
) -> Result<DatasetSketch, MlError> {
    let columns = features
        .iter()
        .map(|f| table.column(&f.name, "data.features"))
        .collect::<Result<Vec<_>, _>>()?;
    use crate::ml::observation as observe;
    let mut sketch = DatasetSketch::for_profile(reference);
    for (i, &r) in rows.iter().enumerate() {
        sketch.observe_row(
            reference,
            |j| observe(&columns[j][r]),
            predictions.observation(i),
        );
    }
    Ok(sketch)
}

/// The held-out rows' targets.
pub(super) struct Held<'a> {
    pub(super) classes: &'a [String],
    /// Class labels (classification).
    pub(super) labels: &'a [String],
    /// Values (regression).
    pub(super) values: &'a [f64],
}

impl Held<'_> {
    /// Mean cross-entropy (classification) or squared error (regression) of predictions.
    pub(super) fn loss(&self, p: &artifact::Predictions) -> f64 {
        match &p.probabilities {
            Some(probabilities) => {
                let n = self.labels.len().max(1) as f64;
                self.labels
                    .iter()
                    .zip(probabilities)
                    .map(|(label, row)| {
                        let k = self.classes.iter().position(|c| c == label);
                        let q = k.and_then(|k| row.get(k)).map_or(0.0, |&q| f64::from(q));
                        -q.max(1e-7).ln()
                    })
                    .sum::<f64>()
                    / n
            }
            None => {
                let n = self.values.len().max(1) as f64;
                self.values
                    .iter()
                    .zip(&p.values)
                    .map(|(y, q)| (y - q).powi(2))
                    .sum::<f64>()
                    / n
            }
        }
    }
}

/// Permutation importance: how much the held-out loss grows when one
/// feature's encoded columns are shuffled across rows (the mean of
/// [`IMPORTANCE_REPEATS`] shuffles, floored at 0), and each feature's share.
fn permutation_importance(
    predictor: &Predictor,
    encoded: &[f32],
    held: &Held<'_>,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<FeatureImportance>, MlError> {
    let width = predictor.inputs;
    let rows = encoded.len() / width.max(1);
    let base = held.loss(&predictor.predict_encoded(encoded.to_vec(), rows)?);
    let mut start = 0;
    let mut increases = Vec::with_capacity(predictor.features.len());
    for f in &predictor.features {
        let columns = start..start + f.width();
        start = columns.end;
        let mut total = 0.0;
        for _ in 0..IMPORTANCE_REPEATS {
            let mut order: Vec<usize> = (0..rows).collect();
            order.shuffle(rng);
            let mut shuffled = encoded.to_vec();
            for (to, &from) in order.iter().enumerate() {
                for c in columns.clone() {
                    shuffled[to * width + c] = encoded[from * width + c];
                }
            }
            total += held.loss(&predictor.predict_encoded(shuffled, rows)?);
        }
        increases.push((total / IMPORTANCE_REPEATS as f64 - base).max(0.0));
    }
    let sum: f64 = increases.iter().sum();
    let n = increases.len().max(1) as f64;
    Ok(predictor
        .features
        .iter()
        .zip(increases)
        .map(|(f, loss_increase)| FeatureImportance {
            name: f.name.clone(),
            loss_increase,
            weight: if sum > 0.0 {
                loss_increase / sum
            } else {
                1.0 / n
            },
        })
        .collect())
}
/// The rows drift calibration and importance are measured on, with the
/// model's predictions and the true labels or values.
pub(super) struct HeldRows {
    pub(super) rows: Vec<usize>,
    pub(super) predictions: artifact::Predictions,
    pub(super) labels: Vec<String>,
    pub(super) values: Vec<f64>,
}

/// The validation split, else (no validation rows) the training split with
/// its labels or values read from `table`: one rule for table and image
/// models.
pub(super) fn held_out_rows(
    task: Task,
    target: &str,
    table: &Table,
    split: &Split,
    targets: &Targets,
    train_pred: artifact::Predictions,
    val_pred: &artifact::Predictions,
) -> Result<HeldRows, MlError> {
    if !split.val.is_empty() {
        return Ok(HeldRows {
            rows: split.val.clone(),
            predictions: val_pred.clone(),
            labels: targets.val_labels.clone(),
            values: targets.val_values.clone(),
        });
    }
    let labels = match task {
        Task::Classification => preprocess::labels(table, target)?,
        Task::Regression => Vec::new(),
    };
    let values = match task {
        Task::Classification => Vec::new(),
        Task::Regression => preprocess::values(table, target)?,
    };
    Ok(HeldRows {
        rows: split.train.clone(),
        predictions: train_pred,
        labels: split
            .train
            .iter()
            .filter_map(|&r| labels.get(r).cloned())
            .collect(),
        values: split
            .train
            .iter()
            .filter_map(|&r| values.get(r).copied())
            .collect(),
    })
}

/// The reference profile of a model's own predictions on its training
/// rows: class shares (classification) or a binned distribution
/// (regression). One rule for table and image models.
pub(super) fn prediction_profile(
    task: Task,
    target: &str,
    predictions: &artifact::Predictions,
) -> Result<FeatureProfile, MlError> {
    Ok(match task {
        Task::Classification => FeatureProfile::Categorical {
            name: target.to_string(),
            profile: CategoricalProfile::fit(target, &predictions.labels)?,
        },
        Task::Regression => FeatureProfile::Numeric {
            name: target.to_string(),
            profile: NumericProfile::fit(target, &predictions.values, DEFAULT_BINS)?,
        },
    })
}
