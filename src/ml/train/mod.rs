//! The training run inside each training Job: read data (and feedback),
//! split, fit preprocessing, train with candle, measure, and assemble the
//! artifact. Same seed and inputs on the CPU give bit-identical weights:
//! the split, initialisation, shuffling and dropout all draw from the run's
//! own ChaCha RNG streams, never from candle's global RNG.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;
use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer as _;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::api::{FeatureKind, ModelSpec, Optimizer, Task, TrainingDevice};
use crate::drift::calibrate::{self, DEFAULT_RESAMPLES};
use crate::drift::profile::DEFAULT_BINS;
use crate::drift::{
    CategoricalProfile, DatasetSketch, FeatureImportance, FeatureProfile, NumericProfile,
    Observation, ReferenceProfile,
};

use super::arch::{self, Architecture};
use super::artifact::{
    self, DatasetLineage, EpochRecord, FORMAT_VERSION, FeedbackLineage, FileDigest, Manifest,
    Predictor, TargetScale,
};
use super::data::{self, Cell, Feedback, Table};
use super::error::MlError;
use super::metrics;
use super::preprocess::{self, FeatureBatch, FeatureSchema};

/// RNG streams of one run, so that changing one use never shifts another.
const SPLIT_STREAM: u64 = 1;
const INIT_STREAM: u64 = 2;
const TRAIN_STREAM: u64 = 3;
const CALIBRATION_STREAM: u64 = 4;
const IMPORTANCE_STREAM: u64 = 5;
/// Shuffles per feature for permutation importance (their mean is kept).
const IMPORTANCE_REPEATS: usize = 5;

/// How a training run is started.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Prefix of labelled traffic (`*.jsonl`) to add when `data.includeFeedback`.
    pub feedback: Option<String>,
    /// Overrides `training.device`.
    pub device: Option<TrainingDevice>,
    /// Draw a progress bar on a terminal.
    pub progress: bool,
}

/// A trained model, not yet written anywhere.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// Complete except for the weights file's digest and the manifest digest,
    /// which [`artifact::write_artifact`] fills in.
    pub manifest: Manifest,
    pub weights: Bytes,
}

impl TrainedModel {
    /// sha256 of the weights.
    pub fn weights_digest(&self) -> String {
        data::sha256_hex(&self.weights)
    }

    /// Writes the artifact to `out`; nothing appears there if this fails.
    pub async fn save(&self, out: &str) -> Result<(), MlError> {
        artifact::write_artifact(out, &self.manifest, self.weights.clone()).await
    }
}

/// Refuses hyper-parameters that cannot train, before any data is read.
pub fn validate(spec: &ModelSpec) -> Result<&'static dyn Architecture, MlError> {
    let invalid = |field: &str, reason: String| {
        Err(MlError::InvalidConfig {
            field: field.into(),
            reason,
        })
    };
    let t = &spec.training;
    if t.epochs == 0 {
        return invalid("training.epochs", "must be at least 1".into());
    }
    if t.batch_size == 0 {
        return invalid("training.batchSize", "must be at least 1".into());
    }
    if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
        return invalid(
            "training.learningRate",
            format!("{} is not a positive number", t.learning_rate),
        );
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        return invalid(
            "training.weightDecay",
            format!("{} is not a non-negative number", t.weight_decay),
        );
    }
    if let Some(es) = &t.early_stopping
        && es.patience == 0
    {
        return invalid(
            "training.earlyStopping.patience",
            "must be at least 1 epoch".into(),
        );
    }
    let vf = spec.data.validation_fraction;
    if !(0.0..1.0).contains(&vf) {
        return invalid("data.validationFraction", format!("{vf} is outside [0, 1)"));
    }
    if spec.data.target.trim().is_empty() {
        return invalid("data.target", "names no column".into());
    }
    let arch = arch::lookup(&spec.architecture.kind)?;
    arch.validate(&spec.architecture)?;
    Ok(arch)
}

/// The device a run trains on.
pub fn select_device(device: TrainingDevice) -> Result<Device, MlError> {
    match device {
        TrainingDevice::Cpu => Ok(Device::Cpu),
        TrainingDevice::Auto => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        TrainingDevice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                return Err(MlError::Device(
                    "training.device is `cuda` but this driftline was built without the `cuda` feature; use `auto` or `cpu`, or the cuda image".into(),
                ));
            }
            Device::new_cuda(0).map_err(|e| MlError::Device(format!("no usable CUDA GPU: {e}")))
        }
    }
}

fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Reads the data a spec names (and feedback), then trains.
pub async fn train(spec: &ModelSpec, options: &TrainOptions) -> Result<TrainedModel, MlError> {
    validate(spec)?;
    let device = select_device(options.device.unwrap_or(spec.training.device))?;
    let table = data::read_table(&spec.data.source, spec.data.format).await?;
    let feedback = match (&options.feedback, spec.data.include_feedback) {
        (Some(prefix), true) => Some((
            prefix.clone(),
            data::load_feedback(prefix, &spec.data.target).await?,
        )),
        (None, true) => {
            tracing::warn!(
                "data.includeFeedback is true but no --feedback prefix was given; training without feedback"
            );
            None
        }
        (Some(prefix), false) => {
            // The Model spec decides what a version trains on; say so rather than drop it silently.
            tracing::warn!(
                %prefix,
                "--feedback was given but data.includeFeedback is false; training without feedback"
            );
            None
        }
        (None, false) => None,
    };
    fit(
        spec,
        &table,
        feedback.as_ref().map(|(p, f)| (p.as_str(), f)),
        &device,
        options.progress,
    )
}

/// Columns used as features, checked against the table.
fn feature_names(spec: &ModelSpec, table: &Table) -> Result<Vec<String>, MlError> {
    table.column(&spec.data.target, "data.target")?;
    let names: Vec<String> = if spec.data.features.is_empty() {
        table
            .names
            .iter()
            .filter(|n| **n != spec.data.target)
            .cloned()
            .collect()
    } else {
        for f in &spec.data.features {
            table.column(f, "data.features")?;
        }
        spec.data.features.clone()
    };
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
fn gather(matrix: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&matrix[r * width..(r + 1) * width]);
    }
    out
}

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

/// Trains on an already-read table. `feedback` rows join the training split only.
///
/// The steps, each its own function: split the rows, encode the inputs,
/// encode the targets, initialise the parameters, run the epochs, measure
/// on the validation split, build the drift reference (calibrated, with
/// importance), and assemble the manifest.
pub fn fit(
    spec: &ModelSpec,
    table: &Table,
    feedback: Option<(&str, &Feedback)>,
    device: &Device,
    progress: bool,
) -> Result<TrainedModel, MlError> {
    let started = Instant::now();
    let arch = validate(spec)?;
    let names = feature_names(spec, table)?;
    let split = Split::new(spec, table.rows);
    let encoded = encode_inputs(spec, table, &names, &split, feedback)?;
    let targets = encode_targets(spec, table, feedback, &split, encoded.n_train, device)?;
    let task = spec.task;
    let inputs = encoded.inputs;
    let outputs = match task {
        Task::Classification => targets.classes.len(),
        Task::Regression => 1,
    };
    let params = Parameters::init(arch, spec, inputs, outputs, device)?;
    let x_train = Tensor::from_vec(encoded.x_train.clone(), (encoded.n_train, inputs), device)?;
    let x_val = Tensor::from_vec(
        gather(&encoded.all_x, inputs, &split.val),
        (split.val.len(), inputs),
        device,
    )?;
    let curve = run_epochs(
        spec,
        &params,
        (&x_train, &targets.y_train),
        (&x_val, &targets.y_val),
        targets.target_scale,
        progress,
    )?;

    let Parameters {
        shapes,
        vars,
        network,
    } = params;
    let named: Vec<(String, Tensor)> = shapes
        .iter()
        .zip(&vars)
        .map(|(s, v)| (s.name.clone(), v.as_tensor().clone()))
        .collect();
    let predictor = Predictor {
        features: encoded.features.clone(),
        task,
        classes: targets.classes.clone(),
        target_scale: targets.target_scale,
        inputs,
        network,
        device: device.clone(),
    };

    // Validation metrics through the same prediction path as serving.
    let val_pred =
        predictor.predict_encoded(gather(&encoded.all_x, inputs, &split.val), split.val.len())?;
    let metrics = match task {
        Task::Classification => metrics::classification(
            &targets.classes,
            &targets.val_labels,
            &val_pred.labels,
            val_pred.probabilities.as_deref().unwrap_or(&[]),
        ),
        Task::Regression => metrics::regression(&targets.val_values, &val_pred.values),
    };
    let reference = drift_reference(
        spec, table, &encoded, &split, &targets, &predictor, &val_pred,
    )?;

    let weights = artifact::weights_to_bytes(&named)?;
    let tensors = artifact::tensor_infos(&named);
    let parameters = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    let fingerprint = artifact::fingerprint(&spec.architecture, task, inputs, outputs, &tensors);
    let training_seconds = started.elapsed().as_secs_f64();
    tracing::info!(training_seconds, parameters, %fingerprint, "training finished");
    let mut files = BTreeMap::new();
    files.insert(
        artifact::WEIGHTS_FILE.to_string(),
        FileDigest {
            sha256: data::sha256_hex(&weights),
            bytes: weights.len() as u64,
        },
    );
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        task,
        target: spec.data.target.clone(),
        features: encoded.features,
        classes: targets.classes,
        target_scale: targets.target_scale,
        architecture: spec.architecture.clone(),
        inputs,
        outputs,
        tensors,
        parameters,
        fingerprint,
        reference,
        metrics,
        curve,
        dataset: DatasetLineage {
            source: spec.data.source.clone(),
            digest: table.digest.clone(),
            rows: table.rows,
            training_rows: encoded.n_train,
            validation_rows: split.val.len(),
            feedback: feedback.map(|(prefix, fb)| FeedbackLineage {
                prefix: prefix.to_string(),
                files: fb.files,
                rows: fb.table.rows,
                skipped_rows: fb.skipped_rows,
                digest: fb.table.digest.clone(),
            }),
        },
        seed: spec.training.seed,
        training: spec.training.clone(),
        device: device_name(device),
        driftline_version: env!("CARGO_PKG_VERSION").to_string(),
        trained_at: chrono::Utc::now().to_rfc3339(),
        training_seconds,
        files,
        manifest_digest: String::new(),
    };
    Ok(TrainedModel {
        manifest,
        weights: Bytes::from(weights),
    })
}

/// The deterministic training/validation split of the file's rows.
struct Split {
    /// Training rows of the file, ascending (feedback rows come after them).
    train: Vec<usize>,
    /// Validation rows, ascending.
    val: Vec<usize>,
}

impl Split {
    /// `data.validationFraction` of the rows (at least one when asked and
    /// possible, never all), drawn from the seed's split stream.
    fn new(spec: &ModelSpec, rows: usize) -> Split {
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
struct Encoded {
    features: Vec<FeatureSchema>,
    /// Width of an encoded row.
    inputs: usize,
    /// Every row of the file, encoded (row-major, `inputs` wide).
    all_x: Vec<f32>,
    /// The training rows, then the feedback rows, encoded.
    x_train: Vec<f32>,
    /// The training split's raw rows plus feedback (what preprocessing and
    /// the drift reference are fitted on).
    train_table: Table,
    /// Training rows including feedback.
    n_train: usize,
}

fn encode_inputs(
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
struct Targets {
    /// Class labels in their sorted order (classification).
    classes: Vec<String>,
    y_train: Tensor,
    y_val: Tensor,
    /// Mean and standard deviation the regression target is scaled by.
    target_scale: Option<TargetScale>,
    /// Raw labels of the validation rows (classification).
    val_labels: Vec<String>,
    /// Raw values of the validation rows (regression).
    val_values: Vec<f64>,
}

fn encode_targets(
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
            let mean = train_values.iter().sum::<f64>() / train_values.len() as f64;
            let var = train_values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / train_values.len() as f64;
            let std = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
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

/// The network and its trainable tensors.
struct Parameters {
    shapes: Vec<arch::TensorShape>,
    vars: Vec<Var>,
    network: Box<dyn arch::Network>,
}

impl Parameters {
    /// Initialised from the run's own RNG stream.
    fn init(
        arch: &dyn Architecture,
        spec: &ModelSpec,
        inputs: usize,
        outputs: usize,
        device: &Device,
    ) -> Result<Parameters, MlError> {
        let shapes = arch.tensors(&spec.architecture, inputs, outputs);
        let mut init_rng = ChaCha8Rng::seed_from_u64(spec.training.seed);
        init_rng.set_stream(INIT_STREAM);
        let initial = arch.init(&spec.architecture, inputs, outputs, &mut init_rng);
        let mut vars = Vec::with_capacity(shapes.len());
        let mut tensor_map = std::collections::HashMap::new();
        for (shape, values) in shapes.iter().zip(initial) {
            let var = Var::from_tensor(&Tensor::from_vec(values, shape.shape.as_slice(), device)?)?;
            tensor_map.insert(shape.name.clone(), var.as_tensor().clone());
            vars.push(var);
        }
        let network = arch.build(&spec.architecture, &tensor_map)?;
        Ok(Parameters {
            shapes,
            vars,
            network,
        })
    }
}

/// Runs the epochs (mini-batches, the optimizer, validation after each, early
/// stopping) and leaves the best parameters in `params`; returns the curve.
fn run_epochs(
    spec: &ModelSpec,
    params: &Parameters,
    (x_train, y_train): (&Tensor, &Tensor),
    (x_val, y_val): (&Tensor, &Tensor),
    target_scale: Option<TargetScale>,
    progress: bool,
) -> Result<Vec<EpochRecord>, MlError> {
    let task = spec.task;
    let device = x_train.device();
    let n_train = x_train.dim(0)?;
    let n_val = x_val.dim(0)?;
    let Parameters {
        shapes,
        vars,
        network,
    } = params;
    let loss_of = |out: &Tensor, y: &Tensor| match task {
        Task::Classification => candle_nn::loss::cross_entropy(out, y),
        Task::Regression => candle_nn::loss::mse(out, y),
    };
    let t = &spec.training;
    let mut optimizer = match t.optimizer {
        Optimizer::Adamw => Opt::AdamW(candle_nn::AdamW::new(
            vars.clone(),
            candle_nn::ParamsAdamW {
                lr: t.learning_rate,
                weight_decay: t.weight_decay,
                ..Default::default()
            },
        )?),
        Optimizer::Sgd => Opt::Sgd(candle_nn::SGD::new(vars.clone(), t.learning_rate)?),
    };
    // SGD has no decoupled decay in candle: add the L2 penalty to the loss instead.
    let l2 = if t.optimizer == Optimizer::Sgd && t.weight_decay > 0.0 {
        t.weight_decay
    } else {
        0.0
    };
    let weight_vars: Vec<&Var> = shapes
        .iter()
        .zip(vars)
        .filter(|(s, _)| s.shape.len() > 1)
        .map(|(_, v)| v)
        .collect();

    let mut rng = ChaCha8Rng::seed_from_u64(t.seed);
    rng.set_stream(TRAIN_STREAM);
    let bar = if progress {
        indicatif::ProgressBar::new(u64::from(t.epochs))
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    let batch_size = t.batch_size as usize;
    let mut perm: Vec<u32> = (0..n_train as u32).collect();
    let mut curve = Vec::new();
    let mut best: Option<(f64, Vec<Tensor>)> = None;
    let mut stale = 0u32;
    for epoch in 1..=t.epochs {
        perm.shuffle(&mut rng);
        // Batch losses stay on the device and are read once per epoch: a
        // read per batch would make a GPU wait for every step to finish.
        let mut batch_losses = Vec::with_capacity(n_train.div_ceil(batch_size));
        // One gather per epoch, then zero-copy batch views: fewer ops per step.
        let idx = Tensor::from_slice(&perm, n_train, device)?;
        let x_epoch = x_train.index_select(&idx, 0)?;
        let y_epoch = y_train.index_select(&idx, 0)?;
        for start in (0..n_train).step_by(batch_size) {
            let len = batch_size.min(n_train - start);
            let xb = x_epoch.narrow(0, start, len)?;
            let yb = y_epoch.narrow(0, start, len)?;
            let out = network.forward(&xb, Some(&mut rng))?;
            let mut loss = loss_of(&out, &yb)?;
            batch_losses.push((loss.detach() * len as f64)?);
            if l2 > 0.0 {
                for w in &weight_vars {
                    loss = (loss + (w.as_tensor().sqr()?.sum_all()? * (l2 / 2.0))?)?;
                }
            }
            optimizer.backward_step(&loss)?;
        }
        let total = Tensor::stack(&batch_losses, 0)?
            .to_dtype(candle_core::DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        let train_loss = total / n_train as f64;
        if !train_loss.is_finite() {
            return Err(MlError::Diverged {
                epoch,
                loss: train_loss,
            });
        }
        let (validation_loss, validation_metric) = if n_val == 0 {
            (None, None)
        } else {
            let out = network.forward(x_val, None)?;
            let vloss = f64::from(loss_of(&out, y_val)?.to_scalar::<f32>()?);
            let metric = match task {
                Task::Classification => {
                    let pred = out.argmax(1)?.to_dtype(candle_core::DType::U32)?;
                    let correct = pred
                        .eq(y_val)?
                        .to_dtype(candle_core::DType::F32)?
                        .sum_all()?
                        .to_scalar::<f32>()?;
                    f64::from(correct) / n_val as f64
                }
                Task::Regression => vloss.sqrt() * target_scale.map_or(1.0, |s| s.std),
            };
            (Some(vloss), Some(metric))
        };
        tracing::info!(
            epoch,
            epochs = t.epochs,
            train_loss,
            validation_loss,
            validation_metric,
            "epoch finished"
        );
        bar.set_message(format!(
            "loss {train_loss:.4} val {}",
            validation_loss.map_or("-".to_string(), |v| format!("{v:.4}"))
        ));
        bar.inc(1);
        curve.push(EpochRecord {
            epoch,
            train_loss,
            validation_loss,
            validation_metric,
        });
        if let Some(es) = &t.early_stopping {
            let watched = validation_loss.unwrap_or(train_loss);
            let improved = best
                .as_ref()
                .is_none_or(|(b, _)| watched < b - es.min_delta);
            if improved {
                let snapshot = vars
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<Result<Vec<_>, _>>()?;
                best = Some((watched, snapshot));
                stale = 0;
            } else {
                stale += 1;
                if stale >= es.patience {
                    tracing::info!(
                        epoch,
                        patience = es.patience,
                        "early stopping: no improvement"
                    );
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    if let Some((_, snapshot)) = best {
        for (var, value) in vars.iter().zip(&snapshot) {
            var.set(value)?;
        }
    }
    Ok(curve)
}

/// The drift reference stored in the artifact: the training split's feature
/// profiles and the predictions on them, calibrated thresholds and
/// permutation importance, both measured on held-out rows (the training
/// rows when there is no validation split).
fn drift_reference(
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
    let prediction = match spec.task {
        Task::Classification => FeatureProfile::Categorical {
            name: target.clone(),
            profile: CategoricalProfile::fit(target, &ref_pred.labels)?,
        },
        Task::Regression => FeatureProfile::Numeric {
            name: target.clone(),
            profile: NumericProfile::fit(target, &ref_pred.values, DEFAULT_BINS)?,
        },
    };
    let mut reference = ReferenceProfile::new(feature_profiles, prediction);
    let (held_rows, held_labels, held_values, held_pred) = if split.val.is_empty() {
        let labels = match spec.task {
            Task::Classification => preprocess::labels(table, target)?,
            Task::Regression => Vec::new(),
        };
        let values = match spec.task {
            Task::Classification => Vec::new(),
            Task::Regression => preprocess::values(table, target)?,
        };
        (
            split.train.clone(),
            split
                .train
                .iter()
                .filter_map(|&r| labels.get(r).cloned())
                .collect(),
            split
                .train
                .iter()
                .filter_map(|&r| values.get(r).copied())
                .collect(),
            ref_pred,
        )
    } else {
        (
            split.val.clone(),
            targets.val_labels.clone(),
            targets.val_values.clone(),
            val_pred.clone(),
        )
    };
    let seed = spec.training.seed;
    let calibration_started = Instant::now();
    let held_out = held_out_sketch(&reference, &encoded.features, table, &held_rows, &held_pred)?;
    let mut calibration_rng = ChaCha8Rng::seed_from_u64(seed);
    calibration_rng.set_stream(CALIBRATION_STREAM);
    reference.calibration = Some(calibrate::calibrate(
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
    fn observe(cell: &Cell) -> Observation<'_> {
        match cell {
            Cell::Number(x) => Observation::Number(*x),
            Cell::Text(t) => Observation::Text(t),
            Cell::Missing => Observation::Missing,
        }
    }
    let mut sketch = DatasetSketch::for_profile(reference);
    for (i, &r) in rows.iter().enumerate() {
        let prediction = match (predictions.labels.get(i), predictions.values.get(i)) {
            (Some(label), _) => Observation::Text(label),
            (None, Some(v)) => Observation::Number(*v),
            (None, None) => Observation::Missing,
        };
        sketch.observe_row(reference, |j| observe(&columns[j][r]), prediction);
    }
    Ok(sketch)
}

/// The held-out rows' targets.
struct Held<'a> {
    classes: &'a [String],
    /// Class labels (classification).
    labels: &'a [String],
    /// Values (regression).
    values: &'a [f64],
}

impl Held<'_> {
    /// Mean cross-entropy (classification) or squared error (regression) of predictions.
    fn loss(&self, p: &artifact::Predictions) -> f64 {
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

enum Opt {
    AdamW(candle_nn::AdamW),
    Sgd(candle_nn::SGD),
}

impl Opt {
    fn backward_step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        match self {
            Opt::AdamW(o) => o.backward_step(loss),
            Opt::Sgd(o) => o.backward_step(loss),
        }
    }
}
