//! The drift reference of an image model: what the model sees, as columns
//! the sketches hold. Per image: brightness, contrast, sharpness, width and
//! height, then its embedding's coordinates along the leading principal
//! directions of the training embeddings (`embedding direction k`).
//! Calibrated on held-out images as for tables; permutation importance
//! gives a held-out image another's brightness, contrast or size, or moves
//! its embedding along one direction to another's coordinate.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::api::ModelSpec;
use crate::data::{ImageSet, Pixels};
use crate::drift::{self, DEFAULT_BINS, DEFAULT_RESAMPLES};
use crate::drift::{
    DatasetSketch, EMBEDDING_DIRECTIONS, EmbeddingProjection, FeatureImportance, FeatureProfile,
    NumericProfile, Observation, ReferenceProfile, direction_name,
};

use super::super::artifact::{Predictions, Predictor};
use super::super::error::MlError;
use super::super::vision::stats::with_brightness_contrast;
use super::super::vision::{IMAGE_STATISTICS, image_statistics};
use super::encode::{Split, Targets, gather};
use super::reference::{Held, HeldRows, IMPORTANCE_REPEATS, held_out_rows, prediction_profile};
use super::{CALIBRATION_STREAM, IMPORTANCE_STREAM};

/// Images per forward pass when embedding the whole set.
const CHUNK: usize = 256;

/// Penultimate embeddings of encoded rows (row-major, `width` wide).
fn embeddings(predictor: &Predictor, x: &[f32], width: usize) -> Result<Vec<Vec<f32>>, MlError> {
    let mut out = Vec::new();
    for chunk in x.chunks(CHUNK * width) {
        let rows = chunk.len() / width;
        let t = Tensor::from_vec(chunk.to_vec(), (rows, width), &predictor.device)?;
        let (_, e) = predictor.network.forward_with_embedding(&t)?;
        out.extend(e.to_device(&Device::Cpu)?.to_vec2::<f32>()?);
    }
    Ok(out)
}

/// Predictions of the output layer alone on embeddings.
fn predict_embeddings(predictor: &Predictor, e: &[Vec<f32>]) -> Result<Predictions, MlError> {
    let dim = e.first().map_or(0, Vec::len);
    let flat: Vec<f32> = e.iter().flatten().copied().collect();
    let t = Tensor::from_vec(flat, (e.len(), dim), &predictor.device)?;
    predictor.predictions(&predictor.network.head(&t)?)
}

/// The reference, calibration and importance of an image model.
pub(super) fn image_reference(
    spec: &ModelSpec,
    set: &ImageSet,
    all_x: &[f32],
    split: &Split,
    targets: &Targets,
    predictor: &Predictor,
    val_pred: &Predictions,
) -> Result<ReferenceProfile, MlError> {
    let width = predictor.inputs;
    let Some(preprocessing) = &predictor.image else {
        return Err(MlError::InvalidConfig {
            field: "data.format".into(),
            reason: "an image reference needs an image model".into(),
        });
    };
    let stats: Vec<[f64; 5]> = set
        .images
        .iter()
        .map(|p| image_statistics(preprocessing, p))
        .collect();
    let all_embeddings = embeddings(predictor, all_x, width)?;
    let dim = all_embeddings.first().map_or(0, Vec::len);
    let train_embeddings: Vec<f32> = split
        .train
        .iter()
        .flat_map(|&r| all_embeddings[r].iter().copied())
        .collect();
    let projection = EmbeddingProjection::fit(&train_embeddings, dim, EMBEDDING_DIRECTIONS);
    let projected: Vec<Vec<f64>> = all_embeddings
        .iter()
        .map(|e| projection.project(e))
        .collect();
    let value = |r: usize, j: usize| {
        if j < IMAGE_STATISTICS.len() {
            stats[r][j]
        } else {
            projected[r][j - IMAGE_STATISTICS.len()]
        }
    };
    let names: Vec<String> = IMAGE_STATISTICS
        .iter()
        .map(|s| s.to_string())
        .chain((0..projection.directions.len()).map(direction_name))
        .collect();
    let mut features = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        let values: Vec<f64> = split.train.iter().map(|&r| value(r, j)).collect();
        features.push(FeatureProfile::Numeric {
            name: name.clone(),
            profile: NumericProfile::fit(name, &values, DEFAULT_BINS)?,
        });
    }
    let target = &spec.data.target;
    let train_pred =
        predictor.predict_encoded(gather(all_x, width, &split.train), split.train.len())?;
    let prediction = prediction_profile(spec.task, target, &train_pred)?;
    let mut reference = ReferenceProfile::new(features, prediction);

    // Held-out images: the validation split, else the training split.
    let HeldRows {
        rows: held_rows,
        predictions: held_pred,
        labels: held_labels,
        values: held_values,
    } = held_out_rows(
        spec.task, target, &set.index, split, targets, train_pred, val_pred,
    )?;
    let mut held_out = DatasetSketch::for_profile(&reference);
    for (i, &r) in held_rows.iter().enumerate() {
        held_out.observe_row(
            &reference,
            |j| Observation::Number(value(r, j)),
            held_pred.observation(i),
        );
    }
    let seed = spec.training.seed;
    let mut calibration_rng = ChaCha8Rng::seed_from_u64(seed);
    calibration_rng.set_stream(CALIBRATION_STREAM);
    reference.calibration = Some(drift::calibrate(
        &reference,
        &held_out,
        &[u64::from(spec.drift.window)],
        DEFAULT_RESAMPLES,
        &mut calibration_rng,
    ));

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(IMPORTANCE_STREAM);
    let held = Held {
        classes: &targets.classes,
        labels: &held_labels,
        values: &held_values,
    };
    let base = held.loss(&held_pred);
    let images: Vec<&Pixels> = held_rows.iter().map(|&r| &set.images[r]).collect();
    let held_stats: Vec<[f64; 5]> = held_rows.iter().map(|&r| stats[r]).collect();
    let mut increases = Vec::with_capacity(names.len());
    for (j, _) in IMAGE_STATISTICS.iter().enumerate() {
        let mut total = 0.0;
        for _ in 0..IMPORTANCE_REPEATS {
            let mut order: Vec<usize> = (0..images.len()).collect();
            order.shuffle(&mut rng);
            let Some(moved) = permuted_images(&images, &held_stats, &order, j) else {
                // Sharpness has no exact transform; identical sizes permute to themselves.
                total += base;
                continue;
            };
            total +=
                held.loss(&predictor.predict_encoded(preprocessing.encode(&moved), moved.len())?);
        }
        increases.push((total / IMPORTANCE_REPEATS as f64 - base).max(0.0));
    }
    let held_embeddings: Vec<&Vec<f32>> = held_rows.iter().map(|&r| &all_embeddings[r]).collect();
    for (k, direction) in projection.directions.iter().enumerate() {
        let mut total = 0.0;
        for _ in 0..IMPORTANCE_REPEATS {
            let mut order: Vec<usize> = (0..held_rows.len()).collect();
            order.shuffle(&mut rng);
            // Each embedding moved along direction k to another's coordinate.
            let moved: Vec<Vec<f32>> = held_embeddings
                .iter()
                .zip(&order)
                .enumerate()
                .map(|(i, (e, &from))| {
                    let shift = (projected[held_rows[from]][k] - projected[held_rows[i]][k]) as f32;
                    e.iter()
                        .zip(direction)
                        .map(|(x, d)| x + shift * d)
                        .collect()
                })
                .collect();
            total += held.loss(&predict_embeddings(predictor, &moved)?);
        }
        increases.push((total / IMPORTANCE_REPEATS as f64 - base).max(0.0));
    }
    let sum: f64 = increases.iter().sum();
    let n = increases.len().max(1) as f64;
    reference.importance = names
        .iter()
        .zip(increases)
        .map(|(name, loss_increase)| FeatureImportance {
            name: name.clone(),
            loss_increase,
            weight: if sum > 0.0 {
                loss_increase / sum
            } else {
                1.0 / n
            },
        })
        .collect();
    reference.embedding = Some(projection);
    Ok(reference)
}

/// The held-out images with statistic `j` taken from the image `order`
/// names: brightness or contrast moved, or the size of another; `None`
/// when no transform sets that statistic (sharpness) or nothing would move.
fn permuted_images(
    images: &[&Pixels],
    stats: &[[f64; 5]],
    order: &[usize],
    j: usize,
) -> Option<Vec<Pixels>> {
    match IMAGE_STATISTICS[j] {
        "brightness" | "contrast" => Some(
            images
                .iter()
                .zip(order)
                .enumerate()
                .map(|(i, (p, &from))| {
                    let own = (stats[i][0], stats[i][1]);
                    let to = if j == 0 {
                        (stats[from][0], own.1)
                    } else {
                        (own.0, stats[from][1])
                    };
                    with_brightness_contrast(p, own, to)
                })
                .collect(),
        ),
        "width" | "height" => {
            if stats.iter().all(|s| s[j] == stats[0][j]) {
                return None;
            }
            Some(
                images
                    .iter()
                    .zip(order)
                    .enumerate()
                    .map(|(i, (p, &from))| {
                        let (mut w, mut h) = (stats[i][3] as u32, stats[i][4] as u32);
                        if j == 3 {
                            w = stats[from][3] as u32;
                        } else {
                            h = stats[from][4] as u32;
                        }
                        Pixels::from_image(&image::imageops::resize(
                            &p.to_image(),
                            w.max(1),
                            h.max(1),
                            image::imageops::FilterType::Triangle,
                        ))
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}
