//! The training run inside each training Job: read data (and feedback),
//! split, fit preprocessing, train with candle, measure, and assemble the
//! artifact. Same seed and inputs on the CPU give bit-identical weights:
//! the split, initialisation, shuffling and dropout all draw from the run's
//! own ChaCha RNG streams, never from candle's global RNG.
//!
//! The steps live beside this file: `encode` (split, inputs, targets),
//! `epochs` (parameters and the optimisation loop), `reference` (the
//! drift reference with calibration and importance), and for image models
//! `images` (the same steps on decoded images) and `image_reference`
//! (image statistics and embedding directions), and `stream` (training
//! past memory: a Parquet source read batch by batch through a seeded
//! shuffle buffer, within the pod's memory request).

mod calibrate;
mod encode;
mod epochs;
mod fused;
mod image_reference;
mod images;
mod reference;
pub mod start;
mod stream;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use candle_core::{Device, Tensor};

use crate::api::{DataFormat, ModelSpec, Task, TrainingDevice};
use crate::drift::ReferenceProfile;

use super::arch::{self, Architecture, InputShape};
use super::artifact::{
    self, DatasetLineage, EpochRecord, FORMAT_VERSION, FeedbackLineage, FileDigest,
    LateLabelLineage, Manifest, Predictor, TargetScale,
};
use super::error::MlError;
use super::metrics;
use crate::data::{self, Dataset, Feedback, Table};
use encode::{Split, encode_inputs, encode_targets, feature_names, gather};
use epochs::{Parameters, run_epochs};
use reference::drift_reference;

/// RNG streams of one run, so that changing one use never shifts another.
const SPLIT_STREAM: u64 = 1;
const INIT_STREAM: u64 = 2;
const TRAIN_STREAM: u64 = 3;
const CALIBRATION_STREAM: u64 = 4;
const IMPORTANCE_STREAM: u64 = 5;
const AUGMENT_STREAM: u64 = 6;

/// How a training run is started.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Prefix of labelled traffic (`*.jsonl`) to add when `data.includeFeedback`.
    pub feedback: Option<String>,
    /// Overrides `training.device`.
    pub device: Option<TrainingDevice>,
    /// Draw a progress bar on a terminal.
    pub progress: bool,
    /// The champion's artifact, for `training.warmStart: champion`.
    pub warm_start: Option<String>,
    /// The training start `data.window` counts back from (the operator's
    /// decision time, so the data check and the run read the same files);
    /// now when absent.
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Bytes a streamed run may hold (the training pod's memory request);
    /// unbounded when absent.
    pub memory_bound: Option<u64>,
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

/// Refuses a spec that cannot train, before any data is read: the checks
/// `kubectl apply` makes ([`ModelSpec::validate`], the one home of those
/// rules), then the architecture's registry entry.
pub fn validate(spec: &ModelSpec) -> Result<&'static dyn Architecture, MlError> {
    spec.validate()
        .map_err(|invalid| MlError::Config(crate::api::ConfigError::Invalid(invalid)))?;
    arch::lookup(&spec.architecture.kind)
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
    if spec.data.format == Some(DataFormat::Images) {
        if options.feedback.is_some() && spec.data.include_feedback {
            // Captured traffic of an image model holds no images to train on.
            tracing::warn!("image models do not train on feedback; training on the image set only");
        }
        let set = images::read(spec).await?;
        let checkpoints = start::read_checkpoints(spec, options.warm_start.as_deref()).await?;
        return images::fit_images(spec, &set, &device, options.progress, &checkpoints);
    }
    let checkpoints = start::read_checkpoints(spec, options.warm_start.as_deref()).await?;
    // Streaming is asked for, never switched on by size: the buffer's size
    // shapes the shuffle, so the same Model trains the same way as its data grows.
    if let Some(buffer) = spec.training.shuffle_buffer {
        return stream::fit_streaming(spec, options, &device, &checkpoints, buffer).await;
    }
    let as_of = options.as_of.unwrap_or_else(chrono::Utc::now);
    let dataset = data::read(&spec.data, as_of).await?;
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
    fit_from(
        spec,
        &dataset,
        feedback.as_ref().map(|(p, f)| (p.as_str(), f)),
        &device,
        options.progress,
        &checkpoints,
    )
}

/// Trains on an already-read table, all of it data (the validation split
/// drawn by `data.validationFraction`), from random weights.
pub fn fit(
    spec: &ModelSpec,
    table: &Table,
    feedback: Option<(&str, &Feedback)>,
    device: &Device,
    progress: bool,
) -> Result<TrainedModel, MlError> {
    fit_from(
        spec,
        &Dataset::whole(table.clone()),
        feedback,
        device,
        progress,
        &start::Checkpoints::default(),
    )
}

/// Trains on a read dataset, starting from the champion or a base
/// checkpoint when the spec asks. `feedback` rows join the training split
/// only; the dataset's time-aware holdout, when it has one, is the
/// validation split.
///
/// The steps, each its own function: split the rows, encode the inputs,
/// encode the targets, initialise the parameters, run the epochs, measure
/// on the validation split, build the drift reference (calibrated, with
/// importance), and assemble the manifest.
pub fn fit_from(
    spec: &ModelSpec,
    dataset: &Dataset,
    feedback: Option<(&str, &Feedback)>,
    device: &Device,
    progress: bool,
    checkpoints: &start::Checkpoints,
) -> Result<TrainedModel, MlError> {
    let started = Instant::now();
    let arch = validate(spec)?;
    let table = &dataset.table;
    let names = feature_names(spec, table)?;
    let split = Split::new(spec, table.rows, dataset.holdout.as_deref())?;
    let encoded = encode_inputs(spec, table, &names, &split, feedback)?;
    let targets = encode_targets(spec, table, feedback, &split, encoded.n_train, device)?;
    let task = spec.task;
    let inputs = encoded.inputs;
    let outputs = match task {
        Task::Classification => targets.classes.len(),
        Task::Regression => 1,
    };
    let input = InputShape::Features(inputs);
    let (initial, start) =
        start::choose(spec, arch, input, outputs, &targets.classes, checkpoints)?;
    let params = Parameters::init(arch, spec, input, outputs, initial.as_ref(), device)?;
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
        None,
    )?;

    let Parameters {
        shapes,
        vars,
        network,
        ..
    } = params;
    let named: Vec<(String, Tensor)> = shapes
        .iter()
        .zip(&vars)
        .map(|(s, v)| (s.name.clone(), v.as_tensor().clone()))
        .collect();
    let mut predictor = Predictor {
        features: encoded.features.clone(),
        image: None,
        embedding: None,
        task,
        classes: targets.classes.clone(),
        target_scale: targets.target_scale,
        inputs,
        network,
        device: device.clone(),
        temperature: 1.0,
    };

    // Calibrated first, so that the validation metrics and the drift
    // reference see the probabilities the server will return.
    let val_x = gather(&encoded.all_x, inputs, &split.val);
    let calibration =
        calibrate::calibrate(&mut predictor, &val_x, split.val.len(), &targets.val_labels)?;
    // Validation metrics through the same prediction path as serving.
    let val_pred = predictor.predict_encoded(val_x, split.val.len())?;
    let metrics = validation_metrics(task, &targets, &val_pred);
    let reference = drift_reference(
        spec, table, &encoded, &split, &targets, &predictor, &val_pred,
    )?;
    let data_stats = data::statistics(table, &names, &spec.data.target, &BTreeMap::new());
    finish(
        spec,
        Finished {
            started,
            named,
            input,
            outputs,
            features: encoded.features,
            classes: targets.classes,
            target_scale: targets.target_scale,
            image: None,
            reference,
            metrics,
            calibration,
            curve,
            start,
            data_stats: Some(data_stats),
            dataset: DatasetLineage {
                source: spec.data.source.clone(),
                digest: table.digest.clone(),
                rows: table.rows,
                training_rows: encoded.n_train,
                validation_rows: split.val.len(),
                files: dataset.files.clone(),
                pruned_files: dataset.pruned.iter().map(|f| f.uri.clone()).collect(),
                window: dataset.window.clone(),
                feedback: feedback.map(|(prefix, fb)| FeedbackLineage {
                    prefix: prefix.to_string(),
                    files: fb.files,
                    rows: fb.table.rows,
                    skipped_rows: fb.skipped_rows,
                    digest: fb.table.digest.clone(),
                    late_labels: (fb.late.files > 0).then_some(LateLabelLineage {
                        files: fb.late.files,
                        labels: fb.late.labels,
                        joined: fb.late.joined,
                        unknown: fb.late.unknown,
                        duplicates: fb.late.duplicates,
                        annotated: fb.late.annotated,
                    }),
                }),
                bad_images: Vec::new(),
            },
            device,
        },
    )
}

/// Accuracy and friends (classification) or errors (regression) on the validation split.
fn validation_metrics(
    task: Task,
    targets: &encode::Targets,
    val_pred: &artifact::Predictions,
) -> BTreeMap<String, f64> {
    match task {
        Task::Classification => metrics::classification(
            &targets.classes,
            &targets.val_labels,
            &val_pred.labels,
            val_pred.probabilities.as_deref().unwrap_or(&[]),
        ),
        Task::Regression => metrics::regression(&targets.val_values, &val_pred.values),
    }
}

/// What a run produced, before it becomes an artifact.
struct Finished<'a> {
    started: Instant,
    named: Vec<(String, Tensor)>,
    input: InputShape,
    outputs: usize,
    features: Vec<super::preprocess::FeatureSchema>,
    classes: Vec<String>,
    target_scale: Option<TargetScale>,
    image: Option<super::vision::ImagePreprocessing>,
    reference: ReferenceProfile,
    metrics: BTreeMap<String, f64>,
    calibration: Option<artifact::Calibration>,
    curve: Vec<EpochRecord>,
    start: Option<artifact::StartLineage>,
    data_stats: Option<crate::api::DataStats>,
    dataset: DatasetLineage,
    device: &'a Device,
}

/// The weights, their fingerprint and the manifest of a finished run.
fn finish(spec: &ModelSpec, run: Finished<'_>) -> Result<TrainedModel, MlError> {
    let weights = artifact::weights_to_bytes(&run.named)?;
    let tensors = artifact::tensor_infos(&run.named);
    let parameters = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    let fingerprint = artifact::fingerprint(
        &spec.architecture,
        spec.task,
        run.input,
        run.outputs,
        &tensors,
    );
    let training_seconds = run.started.elapsed().as_secs_f64();
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
        task: spec.task,
        target: spec.data.target.clone(),
        features: run.features,
        classes: run.classes,
        target_scale: run.target_scale,
        image: run.image,
        architecture: spec.architecture.clone(),
        inputs: run.input.width(),
        outputs: run.outputs,
        tensors,
        parameters,
        fingerprint,
        reference: run.reference,
        metrics: run.metrics,
        calibration: run.calibration,
        curve: run.curve,
        dataset: run.dataset,
        data_stats: run.data_stats,
        start: run.start,
        seed: spec.training.seed,
        training: spec.training.clone(),
        device: device_name(run.device),
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
