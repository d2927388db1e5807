//! Network architectures behind a small registry: each one names its
//! tensors, initialises them from the run's seeded RNG, and builds a
//! forward pass from loaded tensors. Add one by writing a file here and
//! listing it in [`REGISTRY`].

pub mod mlp;

use std::collections::HashMap;

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

use crate::api::ArchitectureSpec;

use super::error::MlError;

/// A tensor an architecture expects: its safetensors key and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShape {
    pub name: String,
    pub shape: Vec<usize>,
}

/// A built network ready to run.
pub trait Network: Send + Sync {
    /// Outputs (logits or values) for a `rows × inputs` batch. With `dropout`
    /// the network is in training mode and draws masks from that RNG.
    fn forward(&self, x: &Tensor, dropout: Option<&mut ChaCha8Rng>) -> candle_core::Result<Tensor>;
}

/// One registered architecture.
pub trait Architecture: Sync {
    /// The `architecture.type` users write.
    fn name(&self) -> &'static str;
    /// Every tensor, in a stable order.
    fn tensors(&self, spec: &ArchitectureSpec, inputs: usize, outputs: usize) -> Vec<TensorShape>;
    /// Initial values of [`Architecture::tensors`], drawn from `rng`.
    fn init(
        &self,
        spec: &ArchitectureSpec,
        inputs: usize,
        outputs: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f32>>;
    /// A network over these tensors (shapes already checked).
    fn build(
        &self,
        spec: &ArchitectureSpec,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Box<dyn Network>, MlError>;
}

/// Every architecture driftline knows.
pub static REGISTRY: &[&dyn Architecture] = &[&mlp::Mlp];

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
