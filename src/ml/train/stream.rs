//! Training past memory (`training.shuffleBuffer` on a Parquet source): the
//! dataset is read record batch by record batch, never whole.
//!
//! One statistics pass first fits the preprocessing (kinds, means, scales,
//! medians from a seeded sample, category vocabularies) with the same
//! [`ColumnFit`] the in-memory fit uses, collects the classes or the target's
//! scale, and keeps two seeded reservoir samples: training rows for the
//! drift reference and validation rows for the metrics. Then each epoch
//! reads the files again in a seeded order and feeds the optimiser through a
//! seeded shuffle buffer. The validation split is the window's holdout when
//! it has one, else a seeded rule per row (its file and its place in the
//! file), so it is the same in every pass whatever the file order.
//!
//! Memory: the pod's memory request bounds what the run holds (the process,
//! the fits and samples, the row groups being read, the shuffle buffer, the model); a
//! source whose minimum does not fit is refused with the numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::api::{DataFormat, ModelSpec, Task};
use crate::data::{self, Cell, Column, Listing, Rows, Table};

use super::super::arch::InputShape;
use super::super::artifact::{DatasetLineage, Predictor, TargetScale};
use super::super::error::MlError;
use super::super::preprocess::{self, ColumnFit, FeatureBatch, FeatureSchema, FitLimits, Moments};
use super::encode::{
    Encoded, Split, Targets, feature_names, frame_targets, holdout_leaves_no_rows,
};
use super::epochs::{Parameters, Trainer, target_tensor};
use super::reference::drift_reference;
use super::{Finished, SPLIT_STREAM, TrainOptions, finish, start, validation_metrics};

/// RNG streams of a streaming run (the in-memory ones are 1 to 6).
const SHUFFLE_STREAM: u64 = 7;
const MEDIAN_STREAM: u64 = 8;
const SAMPLE_STREAM: u64 = 9;

/// Training rows kept for the drift reference (profiles, calibration, importance).
pub const REFERENCE_ROWS: usize = 20_000;
/// Validation rows held for the per-epoch validation and the metrics.
pub const VALIDATION_ROWS: usize = 50_000;
/// Per numeric feature, the numbers kept for its median.
const MEDIAN_SAMPLE: usize = 50_000;
/// Distinct numbers a column whose kind is not yet known is counted by.
const NUMBER_CATEGORIES: usize = 1_024;
/// What the process holds besides the data: the binary, the runtime, the
/// allocator's slack and the record batch being decoded.
pub const PROCESS_BASE: u64 = 96 << 20;
/// Bytes a raw cell takes held in a sample (the enum and a short text).
const CELL_BYTES: u64 = 48;

const MIB: u64 = 1 << 20;

/// What the run holds, part by part, checked against the memory bound.
struct Budget<'a> {
    source: &'a str,
    bound: Option<u64>,
    /// Named parts, in bytes.
    parts: Vec<(String, u64)>,
}

impl Budget<'_> {
    fn need(&self, extra: &[(String, u64)]) -> u64 {
        self.parts.iter().chain(extra).map(|(_, b)| b).sum()
    }

    /// Refuses when the parts and `extra` exceed the bound.
    fn check(&self, extra: &[(String, u64)]) -> Result<(), MlError> {
        let Some(bound) = self.bound else {
            return Ok(());
        };
        let need = self.need(extra);
        if need <= bound {
            return Ok(());
        }
        let parts = self
            .parts
            .iter()
            .chain(extra)
            .map(|(name, b)| format!("{name} {} MiB", b.div_ceil(MIB)))
            .collect::<Vec<_>>()
            .join(" + ");
        Err(MlError::MemoryBound {
            source_uri: self.source.to_string(),
            need_mib: need.div_ceil(MIB),
            bound_mib: bound / MIB,
            parts,
        })
    }
}

/// Whether a row is held out by the seeded per-row rule: a hash of the
/// seed, the row's file and its place there, below `fraction`.
fn held_by_seed(seed: u64, fraction: f64, file: usize, row: u64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    // splitmix64 over the row's identity: the same rows in every pass and every order.
    let mut x = seed
        ^ SPLIT_STREAM.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (file as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ row.wrapping_mul(0x94D0_49BB_1331_11EB);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    ((x >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// Which rows are the validation split.
struct Holdout {
    seed: u64,
    fraction: f64,
    /// When the window holds out its newest rows: the time after which a
    /// row is held out (`WindowBounds::holdout_after` its newest row's).
    after: Option<chrono::DateTime<chrono::Utc>>,
}

impl Holdout {
    fn is_val(&self, rows: &Rows<'_>, i: usize) -> bool {
        match &self.after {
            Some(after) => rows.times.get(i).is_some_and(|t| t > after),
            None => held_by_seed(self.seed, self.fraction, rows.file, rows.first + i as u64),
        }
    }
}

/// A seeded reservoir sample of rows (each row's cells of `columns`).
struct Reservoir {
    cap: usize,
    seen: u64,
    rows: Vec<Vec<Cell>>,
    rng: ChaCha8Rng,
}

impl Reservoir {
    fn new(cap: usize, seed: u64, stream: u64) -> Reservoir {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Reservoir {
            cap,
            seen: 0,
            rows: Vec::new(),
            rng,
        }
    }

    fn offer(&mut self, row: impl FnOnce() -> Vec<Cell>) {
        self.seen += 1;
        if self.rows.len() < self.cap {
            self.rows.push(row());
        } else {
            let j = self.rng.random_range(0..self.seen) as usize;
            if j < self.cap {
                self.rows[j] = row();
            }
        }
    }

    fn table(self, source: &str, names: &[String]) -> Table {
        let mut columns = vec![Vec::with_capacity(self.rows.len()); names.len()];
        let rows = self.rows.len();
        for row in self.rows {
            for (c, cell) in columns.iter_mut().zip(row) {
                c.push(cell);
            }
        }
        Table {
            source: source.to_string(),
            names: names.to_vec(),
            columns,
            rows,
            digest: String::new(),
        }
    }
}

/// What the statistics pass learns.
struct Statistics {
    features: Vec<FeatureSchema>,
    classes: Vec<String>,
    target_scale: Option<TargetScale>,
    train_rows: u64,
    val_rows: u64,
    rows_without_time: u64,
    reference: Table,
    validation: Table,
    largest_row_group: u64,
    /// The window's statistics, the baseline of the next version's data check.
    data_stats: crate::api::DataStats,
}

/// The target of one row: its class label or value, checked.
fn target_of(
    task: Task,
    source: &str,
    target: &str,
    row: usize,
    cell: &Cell,
) -> Result<Target, MlError> {
    Ok(match task {
        Task::Classification => Target::Label(preprocess::label_of(source, target, row, cell)?),
        Task::Regression => Target::Value(preprocess::value_of(source, target, row, cell)?),
    })
}

enum Target {
    Label(String),
    Value(f64),
}

/// Bytes the fits and samples hold at most, for `columns` sample columns.
fn held_for_statistics(features: usize, columns: usize, limits: FitLimits) -> u64 {
    let sample_cells = (REFERENCE_ROWS + VALIDATION_ROWS) as u64 * columns as u64;
    features as u64 * limits.bytes() + sample_cells * CELL_BYTES
}

/// The statistics pass over the whole window.
async fn statistics(
    spec: &ModelSpec,
    listing: &Listing,
    holdout: &Holdout,
    budget: &Budget<'_>,
) -> Result<Statistics, MlError> {
    let source = listing.source.as_str();
    let seed = spec.training.seed;
    let target = spec.data.target.as_str();
    let limits = FitLimits {
        median_sample: MEDIAN_SAMPLE,
        number_categories: NUMBER_CATEGORIES,
    };
    let mut names: Option<Vec<String>> = None;
    let mut fits: Vec<ColumnFit> = Vec::new();
    let mut classes = BTreeSet::new();
    let mut moments = Moments::default();
    let (mut train_rows, mut val_rows) = (0u64, 0u64);
    let mut reference = Reservoir::new(REFERENCE_ROWS, seed, SAMPLE_STREAM);
    let mut validation = Reservoir::new(VALIDATION_ROWS, seed, SAMPLE_STREAM + 1);
    let mut largest = 0u64;
    // Counted batch by batch as the data check counts a window, but without
    // duplicates, whose set would grow with the window past the bound.
    let mut data_stats = data::Statistics::without_duplicates(target, BTreeMap::new());
    let order: Vec<usize> = (0..listing.files.len()).collect();
    let mut row = 0usize;
    let scanned = data::scan(
        &spec.data,
        listing,
        &order,
        None,
        &mut |uri: &str, bytes: u64| -> Result<(), MlError> {
            largest = largest.max(bytes);
            budget.check(&[(format!("the row groups being read (of `{uri}`)"), bytes)])
        },
        |rows: Rows<'_>| -> Result<(), MlError> {
            let table = rows.table;
            if names.is_none() {
                let found = feature_names(spec, &Table::empty(source, table.names.clone()))?;
                fits = found
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let kind = spec.data.feature_kinds.get(n).copied();
                        let stream = (MEDIAN_STREAM << 32) + i as u64;
                        ColumnFit::new(n, kind, limits, seed.wrapping_add(stream))
                    })
                    .collect();
                names = Some(found);
            }
            data_stats.add(table, names.as_deref().unwrap_or_default());
            let columns = names
                .iter()
                .flatten()
                .map(String::as_str)
                .chain([target])
                .map(|n| table.column(n, "data.features").map(Column::reader))
                .collect::<Result<Vec<_>, _>>()?;
            let target_cells = &columns[columns.len() - 1..];
            let train: Vec<bool> = (0..table.rows).map(|i| !holdout.is_val(&rows, i)).collect();
            // Column by column: each fit sees its cells in row order, as
            // row by row, without a cell made per value.
            for (fit, name) in fits.iter_mut().zip(names.iter().flatten()) {
                fit.observe_column(source, row, table.column(name, "data.features")?, &train)?;
            }
            // A text target's codes whose class is known: looked up once per
            // code and batch, not once per row.
            let mut target_codes = match table.column(target, "data.target") {
                Ok(Column::Codes { codes, names }) if spec.task == Task::Classification => {
                    Some((codes, vec![false; names.len()]))
                }
                _ => None,
            };
            for (i, &is_train) in train.iter().enumerate() {
                let is_val = !is_train;
                // The row's code and its flag, when the target is coded text.
                let known = target_codes
                    .as_mut()
                    .and_then(|(codes, known)| known.get_mut(codes[i] as usize));
                if !known.as_deref().is_some_and(|k| *k) {
                    let target_cell = target_cells[0].get(i);
                    match (spec.task, target_cell.as_ref()) {
                        // A class already known needs no label made.
                        (Task::Classification, Cell::Text(t)) if classes.contains(t) => {}
                        _ => match target_of(spec.task, source, target, row, &target_cell)? {
                            Target::Label(l) => {
                                classes.insert(l);
                            }
                            Target::Value(v) if !is_val => moments.push(v),
                            Target::Value(_) => {}
                        },
                    }
                    if let Some(k) = known {
                        *k = true;
                    }
                }
                let cells = || columns.iter().map(|c| c.get(i).into_owned()).collect();
                if is_val {
                    val_rows += 1;
                    validation.offer(cells);
                } else {
                    train_rows += 1;
                    reference.offer(cells);
                }
                row += 1;
            }
            Ok(())
        },
    )
    .await?;
    let Some(names) = names else {
        return Err(data::DataError::EmptyWindow {
            source_uri: source.to_string(),
            window: listing
                .window
                .as_ref()
                .map_or_else(|| "and `where`".to_string(), data::WindowBounds::describe),
            files: listing.files.len() + listing.pruned.len(),
            read: listing.files.len(),
        }
        .into());
    };
    if train_rows == 0 {
        return Err(holdout_leaves_no_rows(scanned.rows as usize));
    }
    let features = fits
        .into_iter()
        .map(|f| f.finish(source))
        .collect::<Result<Vec<_>, _>>()?;
    let mut classes: Vec<String> = classes.into_iter().collect();
    preprocess::sort_classes(&mut classes);
    let target_scale = match spec.task {
        Task::Classification => {
            if classes.len() < 2 {
                return Err(MlError::SingleClass {
                    target: target.to_string(),
                    class: classes.concat(),
                });
            }
            None
        }
        Task::Regression => Some(TargetScale {
            mean: moments.mean(),
            std: moments.std(),
        }),
    };
    let sample_names: Vec<String> = names.iter().cloned().chain([target.to_string()]).collect();
    Ok(Statistics {
        features,
        classes,
        target_scale,
        train_rows,
        val_rows,
        rows_without_time: scanned.rows_without_time,
        reference: reference.table(source, &sample_names),
        validation: validation.table(source, &sample_names),
        largest_row_group: largest,
        data_stats: data_stats.finish(),
    })
}

/// The newest time among the window's rows (reading only its columns),
/// which the holdout counts back from.
async fn newest_time(
    spec: &ModelSpec,
    listing: &Listing,
    window: &data::WindowBounds,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, MlError> {
    let mut columns: Vec<String> = vec![window.column.clone()];
    columns.extend(spec.data.where_.keys().cloned());
    let order: Vec<usize> = (0..listing.files.len()).collect();
    let mut newest = None;
    data::scan(
        &spec.data,
        listing,
        &order,
        Some(&columns),
        &mut |_: &str, _: u64| -> Result<(), MlError> { Ok(()) },
        |rows: Rows<'_>| -> Result<(), MlError> {
            newest = rows.times.iter().copied().chain(newest).max();
            Ok(())
        },
    )
    .await?;
    Ok(newest)
}

/// A table's targets: encoded (class indices or scaled values, as f32) and
/// as read (labels or values).
struct TableTargets {
    y: Vec<f32>,
    labels: Vec<String>,
    values: Vec<f64>,
}

fn encode_targets(
    spec: &ModelSpec,
    table: &Table,
    index: &BTreeMap<&str, u32>,
    scale: Option<TargetScale>,
) -> Result<TableTargets, MlError> {
    let target = &spec.data.target;
    match spec.task {
        Task::Classification => {
            let labels = preprocess::labels(table, target)?;
            let y = labels
                .iter()
                .map(|l| index.get(l.as_str()).copied().unwrap_or(0) as f32)
                .collect();
            Ok(TableTargets {
                y,
                labels,
                values: Vec::new(),
            })
        }
        Task::Regression => {
            let values = preprocess::values(table, target)?;
            let s = scale.unwrap_or(TargetScale {
                mean: 0.0,
                std: 1.0,
            });
            let y = values
                .iter()
                .map(|v| ((v - s.mean) / s.std) as f32)
                .collect();
            Ok(TableTargets {
                y,
                labels: Vec::new(),
                values,
            })
        }
    }
}

/// Rows waiting to be drawn, and the mini-batch being filled.
struct ShuffleBuffer {
    cap: usize,
    width: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    batch_x: Vec<f32>,
    batch_y: Vec<f32>,
}

impl ShuffleBuffer {
    /// Adds a row; once the buffer is full, a random row leaves it for the batch.
    fn push(&mut self, x: &[f32], y: f32, rng: &mut ChaCha8Rng) {
        if self.y.len() < self.cap {
            self.x.extend_from_slice(x);
            self.y.push(y);
            return;
        }
        let j = rng.random_range(0..self.cap);
        let row = &mut self.x[j * self.width..(j + 1) * self.width];
        self.batch_x.extend_from_slice(row);
        row.copy_from_slice(x);
        self.batch_y.push(std::mem::replace(&mut self.y[j], y));
    }

    /// The rows left, in a random order, into the batch queue.
    fn drain(&mut self, rng: &mut ChaCha8Rng) {
        let mut order: Vec<usize> = (0..self.y.len()).collect();
        order.shuffle(rng);
        for j in order {
            self.batch_x
                .extend_from_slice(&self.x[j * self.width..(j + 1) * self.width]);
            self.batch_y.push(self.y[j]);
        }
        self.x.clear();
        self.y.clear();
    }

    /// Steps the optimiser on every full batch queued (and the partial one when `all`).
    fn step(
        &mut self,
        trainer: &mut Trainer<'_>,
        batch_size: usize,
        all: bool,
    ) -> Result<(), MlError> {
        let mut start = 0;
        while self.batch_y.len() - start >= batch_size || (all && start < self.batch_y.len()) {
            let len = batch_size.min(self.batch_y.len() - start);
            trainer.step_rows(
                &self.batch_x[start * self.width..(start + len) * self.width],
                &self.batch_y[start..start + len],
            )?;
            start += len;
        }
        self.batch_x.drain(..start * self.width);
        self.batch_y.drain(..start);
        Ok(())
    }
}

/// Trains `spec` by streaming its Parquet source with a shuffle buffer of
/// `buffer` rows, within `options.memory_bound` bytes when given.
pub(super) async fn fit_streaming(
    spec: &ModelSpec,
    options: &TrainOptions,
    device: &Device,
    checkpoints: &start::Checkpoints,
    buffer: u32,
) -> Result<super::TrainedModel, MlError> {
    let started = Instant::now();
    let arch = super::validate(spec)?;
    let as_of = options.as_of.unwrap_or_else(chrono::Utc::now);
    let listing = data::list(&spec.data, as_of).await?;
    let source = listing.source.clone();
    if listing.format != DataFormat::Parquet {
        return Err(MlError::InvalidConfig {
            field: "training.shuffleBuffer".into(),
            reason: format!(
                "streams Parquet sources only, and `{source}` is {}; remove shuffleBuffer to train on it in memory",
                listing.format
            ),
        });
    }
    if spec.data.include_feedback && options.feedback.is_some() {
        return Err(MlError::InvalidConfig {
            field: "training.shuffleBuffer".into(),
            reason: "a streamed run does not add feedback; set data.includeFeedback to false or remove shuffleBuffer".into(),
        });
    }
    let buffer = buffer as usize;
    let columns = spec.data.features.len().max(1) + 1;
    let limits = FitLimits {
        median_sample: MEDIAN_SAMPLE,
        number_categories: NUMBER_CATEGORIES,
    };
    let mut budget = Budget {
        source: &source,
        bound: options.memory_bound,
        parts: vec![
            ("the process".into(), PROCESS_BASE),
            (
                "the statistics and samples".into(),
                held_for_statistics(columns - 1, columns, limits),
            ),
        ],
    };
    // Before any file is read: the buffer at its narrowest (one input per column).
    let narrowest = (
        format!("the shuffle buffer ({buffer} rows)"),
        (buffer * columns * 4) as u64,
    );
    budget.check(std::slice::from_ref(&narrowest))?;
    budget.parts.push(narrowest);

    let window = listing.window.clone();
    let after = match window.as_ref().filter(|w| w.holdout_seconds.is_some()) {
        Some(w) => newest_time(spec, &listing, w)
            .await?
            .and_then(|t| w.holdout_after(t)),
        None => None,
    };
    let holdout = Holdout {
        seed: spec.training.seed,
        fraction: spec.data.validation_fraction,
        after,
    };
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "the window listed and its holdout's newest time read"
    );
    let stats = statistics(spec, &listing, &holdout, &budget).await?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        train_rows = stats.train_rows,
        val_rows = stats.val_rows,
        "the statistics pass finished"
    );
    let features = stats.features.clone();
    let inputs: usize = features.iter().map(FeatureSchema::width).sum();
    let task = spec.task;
    let outputs = match task {
        Task::Classification => stats.classes.len(),
        Task::Regression => 1,
    };
    let input = InputShape::Features(inputs);
    let parameters: u64 = arch
        .tensors(&spec.architecture, input, outputs)
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    // The buffer at its real width, and the model: weights, gradients and two optimiser moments.
    budget.parts.pop();
    budget.check(&[
        (
            format!("the shuffle buffer ({buffer} rows of {inputs} inputs)"),
            (buffer * (inputs + 1) * 4) as u64,
        ),
        (
            format!("the model ({parameters} parameters)"),
            parameters * 16,
        ),
        ("the row groups being read".into(), stats.largest_row_group),
    ])?;

    let (initial, start) = start::choose(spec, arch, input, outputs, &stats.classes, checkpoints)?;
    let params = Parameters::init(arch, spec, input, outputs, initial.as_ref(), device)?;
    let index: BTreeMap<&str, u32> = stats
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let val_x = preprocess::encode(
        &features,
        &FeatureBatch::from_table(&features, &stats.validation)?,
        &source,
    )?;
    let n_val = stats.validation.rows;
    let TableTargets {
        y: val_y,
        labels: val_labels,
        values: val_values,
    } = encode_targets(spec, &stats.validation, &index, stats.target_scale)?;
    let x_val = Tensor::from_vec(val_x.clone(), (n_val, inputs), device)?;
    let y_val = target_tensor(task, val_y, device)?;

    let mut trainer = Trainer::new(spec, &params, stats.target_scale, options.progress)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.training.seed);
    rng.set_stream(SHUFFLE_STREAM);
    let batch_size = spec.training.batch_size as usize;
    let mut shuffle = ShuffleBuffer {
        cap: buffer,
        width: inputs,
        x: Vec::with_capacity(buffer * inputs),
        y: Vec::with_capacity(buffer),
        batch_x: Vec::new(),
        batch_y: Vec::new(),
    };
    for epoch in 1..=spec.training.epochs {
        let mut order: Vec<usize> = (0..listing.files.len()).collect();
        order.shuffle(&mut rng);
        data::scan(
            &spec.data,
            &listing,
            &order,
            None,
            &mut |_: &str, _: u64| -> Result<(), MlError> { Ok(()) },
            |rows: Rows<'_>| -> Result<(), MlError> {
                let train: Vec<usize> = (0..rows.table.rows)
                    .filter(|&i| !holdout.is_val(&rows, i))
                    .collect();
                let x = preprocess::encode_frame(&features, rows.table, &train, &source)?;
                let y = frame_targets(spec, rows.table, &train, &index, stats.target_scale)?;
                for (r, &target) in y.iter().enumerate() {
                    shuffle.push(&x[r * inputs..(r + 1) * inputs], target, &mut rng);
                }
                shuffle.step(&mut trainer, batch_size, false)
            },
        )
        .await?;
        shuffle.drain(&mut rng);
        shuffle.step(&mut trainer, batch_size, true)?;
        if trainer.end_epoch(epoch, (&x_val, &y_val))? {
            break;
        }
    }
    let curve = trainer.finish()?;
    drop(shuffle);

    let named = params.named();
    let Parameters { network, .. } = params;
    let mut predictor = Predictor {
        features: features.clone(),
        image: None,
        embedding: None,
        task,
        classes: stats.classes.clone(),
        target_scale: stats.target_scale,
        inputs,
        network,
        device: device.clone(),
        temperature: 1.0,
    };
    let calibration = super::calibrate::calibrate(&mut predictor, &val_x, n_val, &val_labels)?;
    let val_pred = predictor.predict_encoded(val_x, n_val)?;
    let targets = Targets {
        classes: stats.classes.clone(),
        y_train: target_tensor(task, Vec::new(), device)?,
        y_val,
        target_scale: stats.target_scale,
        val_labels,
        val_values,
    };
    let metrics = validation_metrics(task, &targets, &val_pred);
    // The drift reference from the samples: the training sample is its
    // "training split", the validation sample its held-out rows.
    let n_ref = stats.reference.rows;
    let mut sample = stats.reference.clone();
    sample.append(&stats.validation);
    let encoded = Encoded {
        features: features.clone(),
        inputs,
        all_x: preprocess::encode(
            &features,
            &FeatureBatch::from_table(&features, &sample)?,
            &source,
        )?,
        x_train: Vec::new(),
        train_table: stats.reference,
        n_train: n_ref,
    };
    let split = Split {
        train: (0..n_ref).collect(),
        val: (n_ref..sample.rows).collect(),
    };
    let reference = drift_reference(
        spec, &sample, &encoded, &split, &targets, &predictor, &val_pred,
    )?;
    if stats.rows_without_time > 0 {
        tracing::warn!(
            rows_without_time = stats.rows_without_time,
            source = %source,
            "rows with an empty window column were left out"
        );
    }
    tracing::info!(
        rows = stats.train_rows + stats.val_rows,
        shuffle_buffer = buffer,
        "streamed training finished"
    );
    finish(
        spec,
        Finished {
            started,
            named,
            input,
            outputs,
            features,
            classes: stats.classes,
            target_scale: stats.target_scale,
            image: None,
            reference,
            metrics,
            calibration,
            curve,
            start,
            data_stats: Some(stats.data_stats),
            dataset: DatasetLineage {
                source: spec.data.source.clone(),
                digest: listing.digest(),
                rows: (stats.train_rows + stats.val_rows) as usize,
                training_rows: stats.train_rows as usize,
                validation_rows: stats.val_rows as usize,
                files: listing.files.clone(),
                pruned_files: listing.pruned.iter().map(|f| f.uri.clone()).collect(),
                window,
                feedback: None,
                bad_images: Vec::new(),
            },
            device,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeded_split_is_a_rule_of_the_row_and_near_its_fraction() {
        let held = (0..10_000u64)
            .filter(|&r| held_by_seed(7, 0.2, 3, r))
            .count();
        assert!((1_800..2_200).contains(&held), "{held}");
        let again = (0..10_000u64)
            .filter(|&r| held_by_seed(7, 0.2, 3, r))
            .count();
        assert_eq!(held, again);
        let other = (0..10_000u64)
            .filter(|&r| held_by_seed(7, 0.2, 3, r) != held_by_seed(8, 0.2, 3, r))
            .count();
        assert!(other > 1_000, "another seed holds out other rows: {other}");
        assert!(!(0..1_000u64).any(|r| held_by_seed(7, 0.0, 3, r)));
    }
}
