//! Multi-layer perceptron: `hiddenLayers` linear layers with an activation
//! and dropout after each, then a linear output layer. No hidden layers
//! gives logistic (classification) or linear (regression) regression.

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{Module, Tensor};
use candle_nn::Linear;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::api::{Activation, ArchitectureSpec};

use super::cpu;
use super::{Architecture, InputShape, Network, TensorRole, TensorShape, tensor, uniform_fan_in};
use crate::ml::error::MlError;

/// The `mlp` architecture.
pub struct Mlp;

fn widths(spec: &ArchitectureSpec, inputs: usize, outputs: usize) -> Vec<usize> {
    let mut w = vec![inputs];
    w.extend(spec.hidden_layers.iter().map(|&h| h as usize));
    w.push(outputs);
    w
}

/// Linear layers `{prefix}{i}.weight`/`.bias` over `widths`; the last one is the head.
pub(crate) fn linear_tensors(prefix: &str, widths: &[usize]) -> Vec<TensorShape> {
    let last = widths.len().saturating_sub(2);
    let mut out = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        let role = if i == last {
            TensorRole::Head
        } else {
            TensorRole::Body
        };
        out.push(TensorShape {
            name: format!("{prefix}{i}.weight"),
            shape: vec![pair[1], pair[0]],
            role,
        });
        out.push(TensorShape {
            name: format!("{prefix}{i}.bias"),
            shape: vec![pair[1]],
            role,
        });
    }
    out
}

/// Initial values of [`linear_tensors`], in their order.
pub(crate) fn linear_init(widths: &[usize], rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for pair in widths.windows(2) {
        out.push(uniform_fan_in(pair[1] * pair[0], pair[0], rng));
        out.push(uniform_fan_in(pair[1], pair[0], rng));
    }
    out
}

/// The linear layers of [`linear_tensors`], built from loaded tensors.
pub(crate) fn linear_layers(
    prefix: &str,
    count: usize,
    tensors: &HashMap<String, Tensor>,
) -> Result<Vec<Linear>, MlError> {
    (0..count)
        .map(|i| {
            let w = tensor(tensors, &format!("{prefix}{i}.weight"))?;
            let b = tensor(tensors, &format!("{prefix}{i}.bias"))?;
            Ok(Linear::new(w, Some(b)))
        })
        .collect()
}

impl Architecture for Mlp {
    fn name(&self) -> &'static str {
        "mlp"
    }

    fn tensors(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        outputs: usize,
    ) -> Vec<TensorShape> {
        linear_tensors("layer", &widths(spec, input.width(), outputs))
    }

    fn init(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        outputs: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f32>> {
        linear_init(&widths(spec, input.width(), outputs), rng)
    }

    fn build(
        &self,
        spec: &ArchitectureSpec,
        _input: InputShape,
        tensors: &HashMap<String, Tensor>,
        _frozen: &dyn Fn(&str) -> bool,
    ) -> Result<Box<dyn Network>, MlError> {
        Ok(Box::new(LinearStack::new(
            linear_layers("layer", spec.hidden_layers.len() + 1, tensors)?,
            spec.activation,
            spec.dropout as f32,
        )))
    }
}

/// A layer's weight (`outputs × inputs`, row-major) and bias, as values.
type FixedLayer = (Vec<f32>, Vec<f32>);

/// Linear layers with an activation and dropout between them: the MLP,
/// and the head of the CNN.
pub(crate) struct LinearStack {
    pub(crate) layers: Vec<Linear>,
    pub(crate) activation: Activation,
    pub(crate) dropout: f32,
    /// Each layer's weight and bias read out once for the CPU kernels
    /// (a served network's tensors never change); `None` when a tensor is
    /// being trained or is not on the CPU.
    fixed: OnceLock<Option<Vec<FixedLayer>>>,
}

/// The activation a spec names.
pub(crate) fn activate(x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::Relu => x.relu(),
        Activation::Gelu => x.gelu_erf(),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        Activation::Silu => x.silu(),
    }
}

/// Inverted dropout with masks from the run's own RNG, so the same seed gives the same weights.
fn dropout(h: Tensor, p: f32, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..h.elem_count())
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, h.shape(), h.device())?;
    h * mask
}

impl LinearStack {
    pub(crate) fn new(layers: Vec<Linear>, activation: Activation, dropout: f32) -> LinearStack {
        LinearStack {
            layers,
            activation,
            dropout,
            fixed: OnceLock::new(),
        }
    }

    /// The layers as the CPU kernels take them, when they apply.
    fn fixed(&self) -> Option<&[FixedLayer]> {
        let read = |t: &Tensor| -> Option<Vec<f32>> {
            if t.is_variable() || !t.device().is_cpu() {
                return None;
            }
            t.flatten_all().ok()?.to_vec1::<f32>().ok()
        };
        self.fixed
            .get_or_init(|| {
                self.layers
                    .iter()
                    .map(|l| Some((read(l.weight())?, read(l.bias()?)?)))
                    .collect()
            })
            .as_deref()
    }

    /// [`Network::forward_cpu`]: each layer by `cpu::linear`, the
    /// activation after every one but the last, as candle's ops compute
    /// them. (A CNN's head still runs on candle's ops: its features come
    /// from the kernels, its embedding goes to the drift monitor.)
    pub(crate) fn forward_cpu(&self, x: &[f32], rows: usize) -> Option<Vec<f32>> {
        let layers = self.fixed()?;
        let (mut input, mut output) = (Vec::new(), Vec::new());
        for (i, (weight, bias)) in layers.iter().enumerate() {
            let a: &[f32] = if i == 0 { x } else { &input };
            if a.len() != rows * (weight.len() / bias.len().max(1)) {
                return None;
            }
            cpu::linear(&mut output, a, rows, weight, bias);
            if i + 1 < layers.len() {
                cpu::activate_all(&mut output, self.activation);
                std::mem::swap(&mut input, &mut output);
            }
        }
        Some(output)
    }

    /// The hidden layers: the embedding the output layer sees.
    pub(crate) fn hidden(
        &self,
        x: &Tensor,
        mut train: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers[..self.layers.len() - 1] {
            h = activate(&layer.forward(&h)?, self.activation)?;
            if let Some(rng) = train.as_deref_mut()
                && self.dropout > 0.0
            {
                h = dropout(h, self.dropout, rng)?;
            }
        }
        Ok(h)
    }

    /// The output layer.
    pub(crate) fn output(&self, embedding: &Tensor) -> candle_core::Result<Tensor> {
        self.layers[self.layers.len() - 1].forward(embedding)
    }
}

impl Network for LinearStack {
    fn forward(&self, x: &Tensor, train: Option<&mut ChaCha8Rng>) -> candle_core::Result<Tensor> {
        self.output(&self.hidden(x, train)?)
    }

    fn forward_with_embedding(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let embedding = self.hidden(x, None)?;
        Ok((self.output(&embedding)?, embedding))
    }

    fn head(&self, embedding: &Tensor) -> candle_core::Result<Tensor> {
        self.output(embedding)
    }

    fn forward_cpu(&self, x: &[f32], rows: usize) -> Option<Vec<f32>> {
        LinearStack::forward_cpu(self, x, rows)
    }
}
