//! Where a run's first weights come from: the champion's
//! (`training.warmStart: champion`, when its architecture fingerprint
//! matches), a base checkpoint (`architecture.init`: a driftline artifact or
//! a safetensors file), or the seed. Reading the checkpoints is IO; the
//! choice between them is [`choose`], a pure function of what was read.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::api::{ModelSpec, WarmStart};

use super::super::arch::{Architecture, InputShape, TensorRole, TensorShape};
use super::super::artifact::{
    self, LoadedModel, StartFrom, StartLineage, TensorInfo, WEIGHTS_FILE, tensor_mismatches,
};
use super::super::error::MlError;
use crate::data::sha256_hex;
use crate::data::store;

/// Weights a run may start from, as read.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub uri: String,
    /// sha256 of the weights file.
    pub weights_digest: String,
    pub tensors: HashMap<String, Tensor>,
    /// A driftline artifact's fingerprint and classes; none for a bare safetensors file.
    pub fingerprint: Option<String>,
    pub classes: Option<Vec<String>>,
}

/// What a run starts from: the champion (when asked and readable) and the base checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Checkpoints {
    /// The champion, or why it could not be read.
    pub champion: Option<Result<Checkpoint, String>>,
    pub base: Option<Checkpoint>,
}

/// Reads weights at `uri`: a `.safetensors` file, or a driftline artifact
/// directory (verified: digests and fingerprint).
pub async fn read_checkpoint(uri: &str) -> Result<Checkpoint, MlError> {
    let (file, fingerprint, classes) = if uri.to_ascii_lowercase().ends_with(".safetensors") {
        (uri.to_string(), None, None)
    } else {
        let loaded = LoadedModel::load(uri).await?;
        let m = loaded.manifest();
        (
            store::join(uri, WEIGHTS_FILE),
            Some(m.fingerprint.clone()),
            Some(m.classes.clone()),
        )
    };
    let bytes = store::read_bytes(&file).await?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|source| MlError::NotSafetensors { file, source })?;
    Ok(Checkpoint {
        uri: uri.to_string(),
        weights_digest: sha256_hex(&bytes),
        tensors,
        fingerprint,
        classes,
    })
}

/// Reads what a spec starts from: the champion at `champion` when
/// `training.warmStart: champion` (an unreadable one is a reason to start
/// cold, not a failure), and `architecture.init` (which must be readable).
pub async fn read_checkpoints(
    spec: &ModelSpec,
    champion: Option<&str>,
) -> Result<Checkpoints, MlError> {
    let champion = match (spec.training.warm_start, champion) {
        (WarmStart::Champion, Some(uri)) => Some(read_checkpoint(uri).await.map_err(|e| {
            format!(
                "the champion `{uri}` could not be read: {}",
                crate::error_chain(&e)
            )
        })),
        (WarmStart::None, Some(uri)) => {
            tracing::warn!(%uri, "--warm-start was given but training.warmStart is none; starting without it");
            None
        }
        (_, None) => None,
    };
    let base = match &spec.architecture.init {
        Some(uri) => Some(read_checkpoint(uri).await?),
        None => None,
    };
    Ok(Checkpoints { champion, base })
}

/// The fingerprint this run's weights will have.
pub fn expected_fingerprint(
    spec: &ModelSpec,
    shapes: &[TensorShape],
    input: InputShape,
    outputs: usize,
) -> String {
    let infos: Vec<TensorInfo> = shapes
        .iter()
        .map(|s| TensorInfo {
            name: s.name.clone(),
            shape: s.shape.clone(),
            dtype: "f32".into(),
        })
        .collect();
    artifact::fingerprint(&spec.architecture, spec.task, input, outputs, &infos)
}

/// The tensors a run starts from (none: the seed's) and the lineage that says
/// where they came from (none when the run asked for nothing).
pub type Start = (Option<HashMap<String, Tensor>>, Option<StartLineage>);

/// The tensors to start from and the lineage that says so.
///
/// The champion's weights when `warmStart: champion`, its fingerprint is
/// this run's and its classes are this run's; otherwise the base
/// checkpoint, whose tensors must match the architecture's names and shapes
/// (every one that does not is listed in the refusal) except the head's,
/// which is initialised afresh when the classes differ; otherwise the seed.
pub fn choose(
    spec: &ModelSpec,
    arch: &dyn Architecture,
    input: InputShape,
    outputs: usize,
    classes: &[String],
    checkpoints: &Checkpoints,
) -> Result<Start, MlError> {
    let shapes = arch.tensors(&spec.architecture, input, outputs);
    let fingerprint = expected_fingerprint(spec, &shapes, input, outputs);
    let mut cold_reason = None;
    if spec.training.warm_start == WarmStart::Champion {
        match &checkpoints.champion {
            None => cold_reason = Some("there is no champion yet".to_string()),
            Some(Err(reason)) => cold_reason = Some(reason.clone()),
            Some(Ok(champion)) => {
                let same_classes = champion.classes.as_deref().is_none_or(|c| c == classes);
                match champion.fingerprint.as_deref() {
                    Some(f) if f == fingerprint && same_classes => {
                        return Ok((
                            Some(champion.tensors.clone()),
                            Some(StartLineage {
                                from: StartFrom::Champion,
                                uri: Some(champion.uri.clone()),
                                weights_digest: Some(champion.weights_digest.clone()),
                                fingerprint: Some(fingerprint),
                                cold_reason: None,
                                reinitialised: Vec::new(),
                            }),
                        ));
                    }
                    Some(f) if f == fingerprint => {
                        cold_reason = Some(format!(
                            "the champion `{}` predicts other classes ({}); this run has {}",
                            champion.uri,
                            champion.classes.as_deref().unwrap_or_default().join(", "),
                            classes.join(", ")
                        ));
                    }
                    other => {
                        cold_reason = Some(format!(
                            "the champion `{}` has architecture fingerprint {}; this run's is {fingerprint} (the architecture, its input or its outputs changed)",
                            champion.uri,
                            other.unwrap_or("(none)")
                        ));
                    }
                }
            }
        }
        if let Some(reason) = &cold_reason {
            tracing::warn!(%reason, "training.warmStart is champion, but this run starts cold");
        }
    }
    let Some(base) = &checkpoints.base else {
        let lineage = cold_reason.map(|reason| StartLineage {
            from: StartFrom::Random,
            uri: None,
            weights_digest: None,
            fingerprint: Some(fingerprint),
            cold_reason: Some(reason),
            reinitialised: Vec::new(),
        });
        return Ok((None, lineage));
    };
    // A head of another shape is expected when the classes change: it starts afresh.
    let head: Vec<&TensorShape> = shapes
        .iter()
        .filter(|s| s.role == TensorRole::Head)
        .filter(|s| {
            base.tensors
                .get(&s.name)
                .is_none_or(|t| t.dims() != s.shape.as_slice())
        })
        .collect();
    let body: Vec<TensorShape> = shapes
        .iter()
        .filter(|s| !head.iter().any(|h| h.name == s.name))
        .cloned()
        .collect();
    let mut others: HashMap<String, Tensor> = base.tensors.clone();
    for h in &head {
        others.remove(&h.name);
    }
    let problems = tensor_mismatches(&body, &others);
    if !problems.is_empty() {
        return Err(MlError::Checkpoint {
            uri: base.uri.clone(),
            architecture: spec.architecture.kind.clone(),
            problems: problems.join("; "),
        });
    }
    let reinitialised: Vec<String> = head
        .iter()
        .map(|h| match base.tensors.get(&h.name) {
            Some(t) => format!("{} {:?} → {:?}", h.name, t.dims(), h.shape),
            None => format!("{} {:?}", h.name, h.shape),
        })
        .collect();
    if !reinitialised.is_empty() {
        tracing::info!(tensors = %reinitialised.join(", "), "the base checkpoint's head does not fit these classes; it starts afresh");
    }
    Ok((
        Some(others),
        Some(StartLineage {
            from: StartFrom::Checkpoint,
            uri: Some(base.uri.clone()),
            weights_digest: Some(base.weights_digest.clone()),
            fingerprint: Some(fingerprint),
            cold_reason,
            reinitialised,
        }),
    ))
}
