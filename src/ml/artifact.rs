//! The artifact: a directory holding `weights.safetensors` and
//! `manifest.json`. The manifest carries everything needed to serve and
//! audit the weights (architecture and fingerprint, preprocessing, feature
//! schema, drift reference, metrics, lineage, file digests). Loading
//! verifies all of it before a single prediction is made.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::api::{ArchitectureSpec, Task, TrainingSpec};
use crate::drift::ReferenceProfile;

use super::arch::{self, InputShape, Network, TensorShape};
use super::error::{ArtifactError, MlError};
use super::preprocess::{self, FeatureRows, FeatureSchema};
use super::vision::{ImagePreprocessing, image_statistics};
use crate::data::store;
use crate::data::{Pixels, sha256_hex};

/// Manifest format this driftline writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File names inside an artifact directory.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const MANIFEST_FILE: &str = crate::api::names::MANIFEST_FILE;

/// A tensor as stored in `weights.safetensors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// Size and sha256 of one artifact file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

/// One epoch of the training curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochRecord {
    pub epoch: u32,
    pub train_loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
    /// Accuracy (classification) or RMSE (regression) on the validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_metric: Option<f64>,
}

/// Labelled traffic that was added to the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackLineage {
    pub prefix: String,
    pub files: usize,
    pub rows: usize,
    pub skipped_rows: usize,
    /// sha256 over the bytes of all files read, in name order.
    pub digest: String,
    /// Labels that arrived late (files under `labels/`), joined with the
    /// prediction log; absent when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_labels: Option<LateLabelLineage>,
}

/// What the late-label join of a training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LateLabelLineage {
    pub files: usize,
    pub labels: usize,
    /// Training rows it added.
    pub joined: usize,
    /// Labels whose request no logged prediction has.
    pub unknown: usize,
    /// Labels sent again for the same request row (the last one won).
    pub duplicates: usize,
    /// Of `joined`, rows a person labelled from the annotation queue.
    #[serde(default)]
    pub annotated: usize,
}

/// Where the training rows came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetLineage {
    pub source: String,
    /// sha256 of the bytes read from `source`.
    pub digest: String,
    pub rows: usize,
    pub training_rows: usize,
    pub validation_rows: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackLineage>,
    /// The files read: URI, size, version (ETag) and partition values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::data::DataFile>,
    /// Files listed under the source but outside the window or `where`,
    /// never opened (a partition that fell out of the window shows here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_files: Vec<String>,
    /// The span of `data.window` this run read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::data::WindowBounds>,
    /// Image sets: the undecodable images skipped (`path: reason`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_images: Vec<String>,
}

/// Where a run's first weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    /// Drawn from the seed.
    Random,
    /// The champion's weights (`training.warmStart: champion`).
    Champion,
    /// A base checkpoint (`architecture.init`).
    Checkpoint,
}

/// The parent weights of a run that asked for any (`warmStart`, `init`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartLineage {
    pub from: StartFrom,
    /// The champion's artifact or the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// sha256 of the parent weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_digest: Option<String>,
    /// This run's architecture fingerprint, which a warm start matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Why `warmStart: champion` did not start from the champion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_reason: Option<String>,
    /// Head tensors of the checkpoint that did not fit these classes and started afresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reinitialised: Vec<String>,
}

/// Standardisation of a regression target; predictions are scaled back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetScale {
    pub mean: f64,
    pub std: f64,
}

/// Temperature scaling fitted on the validation split: served
/// probabilities are `softmax(logits / temperature)`. The expected
/// calibration error before and after tells how much it helped; the
/// estimated accuracy the server reports is only as good as the "after".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Calibration {
    pub temperature: f64,
    /// Equal-width confidence bins of the expected calibration error.
    pub bins: u32,
    /// Validation rows it was fitted and measured on.
    pub rows: u64,
    pub ece_before: f64,
    pub ece_after: f64,
}

/// Everything about a trained model except its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub task: Task,
    /// The column the model predicts.
    pub target: String,
    /// Input columns in the order a [`FeatureBatch`] holds them, with their
    /// fitted preprocessing.
    pub features: Vec<FeatureSchema>,
    /// Class labels in output order; empty for regression.
    pub classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_scale: Option<TargetScale>,
    /// Image models: how decoded images become the input (no `features` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImagePreprocessing>,
    pub architecture: ArchitectureSpec,
    /// Width of the encoded input and of the output.
    pub inputs: usize,
    pub outputs: usize,
    pub tensors: Vec<TensorInfo>,
    pub parameters: u64,
    /// sha256 of the canonical architecture, task, widths and tensor list.
    pub fingerprint: String,
    /// Drift reference: training-split feature distributions and the
    /// distribution of the model's predictions on them.
    pub reference: ReferenceProfile,
    /// Metrics on the validation split.
    pub metrics: BTreeMap<String, f64>,
    /// Classifiers: the temperature their probabilities are served at.
    /// Artifacts written before calibration have none (temperature 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    pub curve: Vec<EpochRecord>,
    pub dataset: DatasetLineage,
    /// The training window's statistics: the baseline the next version's
    /// data check compares its window with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_stats: Option<crate::api::DataStats>,
    /// Where the first weights came from, when the run asked for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartLineage>,
    pub seed: u64,
    pub training: TrainingSpec,
    /// Where the weights were trained (`cpu`, `cuda:0`).
    pub device: String,
    pub driftline_version: String,
    /// RFC 3339 time the training finished.
    pub trained_at: String,
    /// Wall-clock seconds of the training run.
    pub training_seconds: f64,
    /// Size and sha256 of every other file in the artifact.
    pub files: BTreeMap<String, FileDigest>,
    /// sha256 of this manifest's JSON with this field empty.
    #[serde(default)]
    pub manifest_digest: String,
}

#[derive(Serialize)]
struct FingerprintInput<'a> {
    architecture: &'a ArchitectureSpec,
    task: Task,
    inputs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<InputShape>,
    outputs: usize,
    tensors: &'a [TensorInfo],
}

/// The architecture fingerprint: a hash of the whole layer graph (the
/// canonical spec: every layer and conv block), the input's shape, the
/// outputs, and the tensor names, shapes and dtypes. Where the first
/// weights came from (`architecture.init`) is lineage, not architecture.
pub fn fingerprint(
    architecture: &ArchitectureSpec,
    task: Task,
    input: InputShape,
    outputs: usize,
    tensors: &[TensorInfo],
) -> String {
    let mut graph = architecture.clone();
    graph.init = None;
    let canonical = serde_json::to_vec(&FingerprintInput {
        architecture: &graph,
        task,
        inputs: input.width(),
        image: matches!(input, InputShape::Image { .. }).then_some(input),
        outputs,
        tensors,
    })
    .unwrap_or_default();
    sha256_hex(&canonical)
}

impl Manifest {
    /// The manifest as written: pretty JSON whose `manifestDigest` is the
    /// sha256 of these same bytes with that field empty. Hashing the bytes
    /// (not a re-serialisation) keeps the check exact across float parsing.
    pub fn signed_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut copy = self.clone();
        copy.manifest_digest.clear();
        let blank = String::from_utf8_lossy(&serde_json::to_vec_pretty(&copy)?).into_owned();
        let digest = sha256_hex(blank.as_bytes());
        Ok(blank
            .replacen(&digest_field(""), &digest_field(&digest), 1)
            .into_bytes())
    }

    /// Recomputes the fingerprint from the manifest's own fields.
    pub fn compute_fingerprint(&self) -> String {
        fingerprint(
            &self.architecture,
            self.task,
            self.input_shape(),
            self.outputs,
            &self.tensors,
        )
    }

    /// What one example looks like to the network.
    pub fn input_shape(&self) -> InputShape {
        match &self.image {
            Some(image) => image.shape(),
            None => InputShape::Features(self.inputs),
        }
    }

    /// sha256 of the weights file.
    pub fn weights_digest(&self) -> &str {
        self.files
            .get(WEIGHTS_FILE)
            .map_or("", |f| f.sha256.as_str())
    }
}

fn dtype_name(dtype: DType) -> String {
    format!("{dtype:?}").to_lowercase()
}

/// Serialises named tensors (moved to the CPU) as safetensors bytes.
pub fn weights_to_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, MlError> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?)))
        .collect::<Result<_, candle_core::Error>>()?;
    safetensors::tensor::serialize(cpu, None)
        .map_err(|e| MlError::Device(format!("cannot encode weights: {e}")))
}

/// Tensor infos of named tensors.
pub fn tensor_infos(tensors: &[(String, Tensor)]) -> Vec<TensorInfo> {
    tensors
        .iter()
        .map(|(n, t)| TensorInfo {
            name: n.clone(),
            shape: t.dims().to_vec(),
            dtype: dtype_name(t.dtype()),
        })
        .collect()
}

fn digest_field(value: &str) -> String {
    format!("\"manifestDigest\": \"{value}\"")
}

/// Writes an artifact so that it appears complete or not at all.
pub async fn write_artifact(out: &str, manifest: &Manifest, weights: Bytes) -> Result<(), MlError> {
    let mut manifest = manifest.clone();
    manifest.files.insert(
        WEIGHTS_FILE.into(),
        FileDigest {
            sha256: sha256_hex(&weights),
            bytes: weights.len() as u64,
        },
    );
    let json = manifest.signed_json()?;
    store::write_atomically(
        out,
        &[(WEIGHTS_FILE, weights), (MANIFEST_FILE, Bytes::from(json))],
    )
    .await?;
    Ok(())
}

/// Model outputs for a batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Predictions {
    /// Predicted class label per row (classification).
    pub labels: Vec<String>,
    /// Predicted value per row (regression).
    pub values: Vec<f64>,
    /// Class probabilities per row, in `Manifest::classes` order (classification).
    pub probabilities: Option<Vec<Vec<f32>>>,
}

/// A network with its preprocessing: the one prediction code path used by
/// training (validation, reference), evaluation and serving.
pub struct Predictor {
    pub(crate) features: Vec<FeatureSchema>,
    /// Image models: the preprocessing, and the drift reference's embedding directions.
    pub(crate) image: Option<ImagePreprocessing>,
    pub(crate) embedding: Option<crate::drift::EmbeddingProjection>,
    pub(crate) task: Task,
    pub(crate) classes: Vec<String>,
    pub(crate) target_scale: Option<TargetScale>,
    pub(crate) inputs: usize,
    pub(crate) network: Box<dyn Network>,
    pub(crate) device: Device,
    /// Divides the logits before the softmax (1 leaves them as trained).
    pub(crate) temperature: f32,
}

impl Predictor {
    /// Predicts a batch of raw rows.
    pub fn predict(&self, batch: &impl FeatureRows) -> Result<Predictions, MlError> {
        let encoded = preprocess::encode(&self.features, batch, "the request")?;
        self.predict_encoded(encoded, batch.rows())
    }

    /// Predicts rows that are already encoded (`rows × inputs`, row-major).
    pub(crate) fn predict_encoded(
        &self,
        encoded: Vec<f32>,
        rows: usize,
    ) -> Result<Predictions, MlError> {
        if rows == 0 {
            return Ok(Predictions {
                probabilities: (self.task == Task::Classification).then(Vec::new),
                ..Predictions::default()
            });
        }
        if let Some(out) = self.network.forward_cpu(&encoded, rows) {
            return self.predictions_from(out, rows);
        }
        let x = Tensor::from_vec(encoded, (rows, self.inputs), &self.device)?;
        let out = self.network.forward(&x, None)?;
        self.predictions(&out)
    }

    /// The network's raw outputs for encoded rows, before any temperature:
    /// what calibration fits the temperature on.
    pub(crate) fn logits_encoded(
        &self,
        encoded: Vec<f32>,
        rows: usize,
    ) -> Result<Vec<Vec<f32>>, MlError> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        let x = Tensor::from_vec(encoded, (rows, self.inputs), &self.device)?;
        let out = self.network.forward(&x, None)?;
        Ok(out.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }

    /// Image models: predictions for decoded images, and what the drift
    /// monitor watches for each (the reference's columns: the image
    /// statistics, then the embedding directions), one vector per column.
    pub fn predict_images(&self, images: &[Pixels]) -> Result<ImagePredictions, MlError> {
        let image = self.image.as_ref().ok_or_else(|| MlError::InvalidConfig {
            field: "data.format".into(),
            reason: "this model reads table columns, not images".into(),
        })?;
        let rows = images.len();
        let x = Tensor::from_vec(image.encode(images), (rows, self.inputs), &self.device)?;
        let (out, embedding) = self.network.forward_with_embedding(&x)?;
        let predictions = self.predictions(&out)?;
        let embedding = embedding.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        let directions = self.embedding.as_ref().map_or(0, |e| e.directions.len());
        let mut monitored = vec![Vec::with_capacity(rows); 5 + directions];
        for (pixels, e) in images.iter().zip(&embedding) {
            let stats = image_statistics(image, pixels);
            let projected = self
                .embedding
                .as_ref()
                .map(|p| p.project(e))
                .unwrap_or_default();
            for (column, v) in monitored.iter_mut().zip(stats.into_iter().chain(projected)) {
                column.push(v);
            }
        }
        Ok(ImagePredictions {
            predictions,
            monitored,
            embedding,
        })
    }
}

/// An image model's answer for a batch of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePredictions {
    pub predictions: Predictions,
    /// What the drift monitor observes, one vector per reference column.
    pub monitored: Vec<Vec<f64>>,
    /// The penultimate embedding of each image (never sent to clients).
    pub embedding: Vec<Vec<f32>>,
}

/// A verified artifact, ready to predict.
pub struct LoadedModel {
    uri: String,
    manifest: Manifest,
    predictor: Predictor,
    size_bytes: u64,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("uri", &self.uri)
            .field("fingerprint", &self.manifest.fingerprint)
            .finish()
    }
}

impl LoadedModel {
    /// Loads and verifies an artifact on the CPU.
    pub async fn load(uri: &str) -> Result<LoadedModel, ArtifactError> {
        LoadedModel::load_on(uri, &Device::Cpu).await
    }

    /// Loads and verifies an artifact onto a device. Refuses an edited
    /// manifest, a fingerprint that does not match the architecture,
    /// truncated or replaced weights, and weights of another architecture.
    pub async fn load_on(uri: &str, device: &Device) -> Result<LoadedModel, ArtifactError> {
        let missing = |file: &str, e: store::StoreError| match e {
            store::StoreError::NotFound { .. } => ArtifactError::MissingFile {
                uri: uri.into(),
                file: file.into(),
            },
            other => ArtifactError::Store(other),
        };
        let manifest_bytes = store::read_bytes(&store::join(uri, MANIFEST_FILE))
            .await
            .map_err(|e| missing(MANIFEST_FILE, e))?;
        let manifest = parse_manifest(uri, &manifest_bytes)?;
        let weights = store::read_bytes(&store::join(uri, WEIGHTS_FILE))
            .await
            .map_err(|e| missing(WEIGHTS_FILE, e))?;
        let predictor = verify_and_build(uri, &manifest, &weights, device)?;
        let size_bytes = (manifest_bytes.len() + weights.len()) as u64;
        Ok(LoadedModel {
            uri: uri.into(),
            manifest,
            predictor,
            size_bytes,
        })
    }

    /// The artifact's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where it was loaded from.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Predicts a batch of raw rows (features in manifest order).
    pub fn predict(&self, batch: &impl FeatureRows) -> Result<Predictions, MlError> {
        self.predictor.predict(batch)
    }

    /// Image models: predicts decoded images.
    pub fn predict_images(&self, images: &[Pixels]) -> Result<ImagePredictions, MlError> {
        self.predictor.predict_images(images)
    }

    /// Total bytes of the artifact's files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The prediction path without the manifest.
    pub fn predictor(&self) -> &Predictor {
        &self.predictor
    }
}

pub fn parse_manifest(uri: &str, bytes: &[u8]) -> Result<Manifest, ArtifactError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::ManifestInvalid {
            uri: uri.into(),
            reason: e.to_string(),
        })?;
    let found = value
        .get("formatVersion")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as u32;
    if found != FORMAT_VERSION {
        return Err(ArtifactError::UnsupportedFormat {
            uri: uri.into(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| ArtifactError::ManifestInvalid {
            uri: uri.into(),
            reason: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(bytes);
    let blank = text.replacen(
        &digest_field(&manifest.manifest_digest),
        &digest_field(""),
        1,
    );
    let actual = sha256_hex(blank.as_bytes());
    if manifest.manifest_digest.is_empty() || actual != manifest.manifest_digest {
        return Err(ArtifactError::ManifestEdited {
            uri: uri.into(),
            expected: manifest.manifest_digest.clone(),
            actual,
        });
    }
    let fp = manifest.compute_fingerprint();
    if fp != manifest.fingerprint {
        return Err(ArtifactError::FingerprintMismatch {
            uri: uri.into(),
            expected: manifest.fingerprint.clone(),
            actual: fp,
        });
    }
    Ok(manifest)
}

/// Every way `loaded` differs from what an architecture expects: each
/// missing tensor, each of another shape or dtype, each it does not have.
pub fn tensor_mismatches(
    expected: &[TensorShape],
    loaded: &HashMap<String, Tensor>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for t in expected {
        match loaded.get(&t.name) {
            None => problems.push(format!("`{}` {:?} is missing", t.name, t.shape)),
            Some(w) if w.dims() != t.shape.as_slice() => problems.push(format!(
                "`{}` is {:?}; expected {:?}",
                t.name,
                w.dims(),
                t.shape
            )),
            Some(w) if w.dtype() != DType::F32 => problems.push(format!(
                "`{}` is {}; expected f32",
                t.name,
                dtype_name(w.dtype())
            )),
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = loaded
        .keys()
        .filter(|k| !expected.iter().any(|t| &t.name == *k))
        .collect();
    extra.sort();
    problems.extend(
        extra
            .into_iter()
            .map(|k| format!("`{k}` is not a tensor of this architecture")),
    );
    problems
}

/// Compares the tensors in the weights with what the architecture expects.
fn check_tensors(
    uri: &str,
    manifest: &Manifest,
    loaded: &HashMap<String, Tensor>,
) -> Result<(), ArtifactError> {
    let architecture = manifest.architecture.kind.clone();
    let mismatch = |reason: String| ArtifactError::TensorMismatch {
        uri: uri.into(),
        architecture: architecture.clone(),
        reason,
    };
    let arch = arch::lookup(&manifest.architecture.kind).map_err(|e| mismatch(e.to_string()))?;
    let expected: Vec<TensorShape> = arch.tensors(
        &manifest.architecture,
        manifest.input_shape(),
        manifest.outputs,
    );
    let problems = tensor_mismatches(&expected, loaded);
    if problems.is_empty() {
        return Ok(());
    }
    Err(mismatch(format!(
        "{} inputs, {} outputs: {}",
        manifest.inputs,
        manifest.outputs,
        problems.join("; ")
    )))
}

fn verify_and_build(
    uri: &str,
    manifest: &Manifest,
    weights: &[u8],
    device: &Device,
) -> Result<Predictor, ArtifactError> {
    let recorded =
        manifest
            .files
            .get(WEIGHTS_FILE)
            .ok_or_else(|| ArtifactError::ManifestInvalid {
                uri: uri.into(),
                reason: format!("no digest recorded for {WEIGHTS_FILE}"),
            })?;
    let parsed = candle_core::safetensors::load_buffer(weights, device);
    let intact = recorded.bytes == weights.len() as u64 && recorded.sha256 == sha256_hex(weights);
    if !intact {
        // Weights from another architecture deserve that name, not just "digest mismatch".
        if let Ok(loaded) = &parsed {
            check_tensors(uri, manifest, loaded)?;
        }
        if recorded.bytes != weights.len() as u64 {
            return Err(ArtifactError::SizeMismatch {
                uri: uri.into(),
                file: WEIGHTS_FILE.into(),
                expected: recorded.bytes,
                actual: weights.len() as u64,
            });
        }
        return Err(ArtifactError::DigestMismatch {
            uri: uri.into(),
            file: WEIGHTS_FILE.into(),
            expected: recorded.sha256.clone(),
            actual: sha256_hex(weights),
        });
    }
    let loaded = parsed.map_err(|e| ArtifactError::Weights {
        uri: uri.into(),
        reason: e.to_string(),
    })?;
    check_tensors(uri, manifest, &loaded)?;
    let arch =
        arch::lookup(&manifest.architecture.kind).map_err(|e| ArtifactError::TensorMismatch {
            uri: uri.into(),
            architecture: manifest.architecture.kind.clone(),
            reason: e.to_string(),
        })?;
    let network = arch
        .build(
            &manifest.architecture,
            manifest.input_shape(),
            &loaded,
            &|_| false,
        )
        .map_err(|e| ArtifactError::TensorMismatch {
            uri: uri.into(),
            architecture: manifest.architecture.kind.clone(),
            reason: e.to_string(),
        })?;
    Ok(Predictor {
        features: manifest.features.clone(),
        image: manifest.image.clone(),
        embedding: manifest.reference.embedding.clone(),
        task: manifest.task,
        classes: manifest.classes.clone(),
        target_scale: manifest.target_scale,
        inputs: manifest.inputs,
        network,
        device: device.clone(),
        temperature: manifest.calibration.map_or(1.0, |c| c.temperature as f32),
    })
}
