//! Network architectures behind a small registry: each one names its
//! tensors, initialises them from the run's seeded RNG, and builds a
//! forward pass from loaded tensors. Add one by writing a file here and
//! listing it in [`REGISTRY`].

pub mod cnn;
pub(crate) mod conv;
pub(crate) mod cpu;
pub(crate) mod direct;
pub(crate) mod dots;
pub mod mlp;

use std::collections::HashMap;

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::api::ArchitectureSpec;

use super::error::MlError;

/// What one example looks like to a network. Every network takes a
/// `rows × width` batch; an image network reshapes it to `[N, C, H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InputShape {
    /// Encoded table columns.
    Features(usize),
    /// A preprocessed image, channels first.
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
}

impl InputShape {
    /// Values per example.
    pub fn width(&self) -> usize {
        match *self {
            InputShape::Features(n) => n,
            InputShape::Image {
                channels,
                height,
                width,
            } => channels * height * width,
        }
    }
}

/// What a tensor is for, which decides how training treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// Trained at `training.learningRate`.
    Body,
    /// The output layer: trained at `training.headLearningRate` when set.
    Head,
    /// Batch-norm running statistics: updated by forward passes, never by the optimiser.
    RunningStatistic,
}

/// A tensor an architecture expects: its safetensors key and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShape {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: TensorRole,
}

/// A built network ready to run.
pub trait Network: Send + Sync {
    /// Outputs (logits or values) for a `rows × inputs` batch. With `train`
    /// the network is in training mode (dropout masks from that RNG, batch
    /// statistics in batch norm).
    fn forward(&self, x: &Tensor, train: Option<&mut ChaCha8Rng>) -> candle_core::Result<Tensor>;
    /// Outputs and the penultimate embedding (what the output layer sees),
    /// in inference mode: what the drift monitor watches for image models.
    fn forward_with_embedding(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)>;
    /// The output layer alone, on embeddings.
    fn head(&self, embedding: &Tensor) -> candle_core::Result<Tensor>;
    /// [`Network::forward`] in inference mode on the CPU kernels, for a
    /// `rows × inputs` batch (row-major), outputs row-major: the same bits,
    /// without candle's per-op tensors and thread hand-offs, which cost a
    /// small model more than its arithmetic. `None` where the kernels do
    /// not apply (tensors being trained, or on a GPU): use `forward`.
    fn forward_cpu(&self, _x: &[f32], _rows: usize) -> Option<Vec<f32>> {
        None
    }
}

/// One registered architecture.
pub trait Architecture: Sync {
    /// The `architecture.type` users write.
    fn name(&self) -> &'static str;
    /// Every tensor, in a stable order.
    fn tensors(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        outputs: usize,
    ) -> Vec<TensorShape>;
    /// Initial values of [`Architecture::tensors`], drawn from `rng`.
    fn init(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        outputs: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f32>>;
    /// A network over these tensors (shapes already checked). Tensors for
    /// which `frozen` is true stay as they are in training mode too (batch
    /// norm of a frozen block uses its running statistics).
    fn build(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        tensors: &HashMap<String, Tensor>,
        frozen: &dyn Fn(&str) -> bool,
    ) -> Result<Box<dyn Network>, MlError>;
}

/// A tensor by name, or an error naming it.
pub(crate) fn tensor(tensors: &HashMap<String, Tensor>, name: &str) -> Result<Tensor, MlError> {
    tensors
        .get(name)
        .cloned()
        .ok_or_else(|| MlError::InvalidConfig {
            field: "architecture".into(),
            reason: format!("tensor `{name}` missing"),
        })
}

/// PyTorch's default for linear and conv layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub(crate) fn uniform_fan_in(n: usize, fan_in: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    use rand::Rng;
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// Every architecture driftline knows.
pub static REGISTRY: &[&dyn Architecture] = &[&mlp::Mlp, &cnn::Cnn];

/// The architecture a spec names.
pub fn lookup(name: &str) -> Result<&'static dyn Architecture, MlError> {
    REGISTRY
        .iter()
        .copied()
        .find(|a| a.name() == name)
        .ok_or_else(|| MlError::UnknownArchitecture {
            name: name.into(),
            known: REGISTRY
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Largest absolute difference between two tensors of one shape, in f64:
/// what the layer tests compare our ops with candle's by.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_dtype(candle_core::DType::F64))
        .and_then(|d| d.to_scalar::<f64>())
        .expect("tensors of one shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRD's `architecture.type` rule and `validate()` accept exactly the
    /// architectures training can build: a new one needs both, or a Model
    /// would pass `kubectl apply` and fail in its training Job.
    #[test]
    fn the_api_knows_exactly_the_registered_architectures() {
        let mut registered: Vec<&str> = REGISTRY.iter().map(|a| a.name()).collect();
        let mut known = crate::api::KNOWN_ARCHITECTURES.to_vec();
        registered.sort_unstable();
        known.sort_unstable();
        assert_eq!(registered, known);
        for name in crate::api::KNOWN_ARCHITECTURES {
            assert!(lookup(name).is_ok(), "{name}");
        }
        assert!(lookup("transformer").is_err());
    }
}
