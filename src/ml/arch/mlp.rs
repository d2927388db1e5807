//! Multi-layer perceptron: `hiddenLayers` linear layers with an activation
//! and dropout after each, then a linear output layer. No hidden layers
//! gives logistic (classification) or linear (regression) regression.

use std::collections::HashMap;

use candle_core::{Module, Tensor};
use candle_nn::Linear;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::api::{Activation, ArchitectureSpec};

use super::{Architecture, Network, TensorShape};
use crate::ml::error::MlError;

/// The `mlp` architecture.
pub struct Mlp;

fn widths(spec: &ArchitectureSpec, inputs: usize, outputs: usize) -> Vec<usize> {
    let mut w = vec![inputs];
    w.extend(spec.hidden_layers.iter().map(|&h| h as usize));
    w.push(outputs);
    w
}

impl Architecture for Mlp {
    fn name(&self) -> &'static str {
        "mlp"
    }

    fn tensors(&self, spec: &ArchitectureSpec, inputs: usize, outputs: usize) -> Vec<TensorShape> {
        let w = widths(spec, inputs, outputs);
        let mut out = Vec::new();
        for (i, pair) in w.windows(2).enumerate() {
            out.push(TensorShape {
                name: format!("layer{i}.weight"),
                shape: vec![pair[1], pair[0]],
            });
            out.push(TensorShape {
                name: format!("layer{i}.bias"),
                shape: vec![pair[1]],
            });
        }
        out
    }

    fn init(
        &self,
        spec: &ArchitectureSpec,
        inputs: usize,
        outputs: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f32>> {
        // PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
        self.tensors(spec, inputs, outputs)
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let fan_in = if i % 2 == 0 {
                    t.shape[1]
                } else {
                    widths(spec, inputs, outputs)[i / 2]
                };
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                let n: usize = t.shape.iter().product();
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            })
            .collect()
    }

    fn build(
        &self,
        spec: &ArchitectureSpec,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Box<dyn Network>, MlError> {
        let mut layers = Vec::new();
        for i in 0..=spec.hidden_layers.len() {
            let get = |name: String| {
                tensors
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| MlError::InvalidConfig {
                        field: "architecture".into(),
                        reason: format!("tensor `{name}` missing"),
                    })
            };
            let w = get(format!("layer{i}.weight"))?;
            let b = get(format!("layer{i}.bias"))?;
            layers.push(Linear::new(w, Some(b)));
        }
        Ok(Box::new(MlpNetwork {
            layers,
            activation: spec.activation,
            dropout: spec.dropout as f32,
        }))
    }
}

struct MlpNetwork {
    layers: Vec<Linear>,
    activation: Activation,
    dropout: f32,
}

fn activate(x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::Relu => x.relu(),
        Activation::Gelu => x.gelu_erf(),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        Activation::Silu => x.silu(),
    }
}

impl Network for MlpNetwork {
    fn forward(
        &self,
        x: &Tensor,
        mut dropout: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i == last {
                break;
            }
            h = activate(&h, self.activation)?;
            if let Some(rng) = dropout.as_deref_mut()
                && self.dropout > 0.0
            {
                // Masks come from the run's own RNG so the same seed gives the same weights.
                let keep = 1.0 - self.dropout;
                let n = h.elem_count();
                let mask: Vec<f32> = (0..n)
                    .map(|_| {
                        if rng.random::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, h.shape(), h.device())?;
                h = (h * mask)?;
            }
        }
        Ok(h)
    }
}
