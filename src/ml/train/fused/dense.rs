//! Linear layers with an activation and dropout between them: the MLP,
//! and the CNN's head (`arch::mlp::LinearStack`), stepped on plain buffers.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::api::{Activation, Task};

use super::super::super::error::MlError;
use super::{Param, activate_all, linear, loss_gradient, matmul, sized, times_derivative};

/// A linear layer: `weight` is `outputs × inputs`, row-major, as candle's.
struct Layer {
    inputs: usize,
    outputs: usize,
    weight: Param,
    bias: Param,
}

/// Per-step buffers, kept between steps.
#[derive(Default)]
struct Scratch {
    /// Each layer's input after the first (`input[0]` is unused: the
    /// batch is the caller's).
    input: Vec<Vec<f32>>,
    /// Each hidden layer's pre-activation.
    pre: Vec<Vec<f32>>,
    /// Each hidden layer's activation before dropout, where dropout
    /// scales it (else it is the next layer's input).
    act: Vec<Vec<f32>>,
    /// Each hidden layer's dropout mask (empty without dropout).
    mask: Vec<Vec<f32>>,
    /// The output layer's result.
    out: Vec<f32>,
    /// The loss's gradient at the current layer's output, and at its input.
    grad_out: Vec<f32>,
    grad_in: Vec<f32>,
}

/// The layers of `arch::mlp::LinearStack`, with their buffers.
pub(super) struct Dense {
    layers: Vec<Layer>,
    activation: Activation,
    dropout: f32,
    s: Scratch,
}

impl Dense {
    /// The layers from their tensors, as `arch::mlp::linear_tensors` lists
    /// them: each layer's weight, then its bias.
    pub(super) fn new(
        tensors: Vec<Param>,
        activation: Activation,
        dropout: f32,
    ) -> Result<Dense, MlError> {
        let mut layers = Vec::with_capacity(tensors.len() / 2);
        let mut it = tensors.into_iter();
        while let (Some(weight), Some(bias)) = (it.next(), it.next()) {
            let (outputs, inputs) = match weight.shape.as_slice() {
                &[o, i] if bias.shape == [o] => (o, i),
                other => {
                    return Err(MlError::InvalidConfig {
                        field: "architecture".into(),
                        reason: format!(
                            "a linear layer's weight has shape {other:?} and its bias {:?}",
                            bias.shape
                        ),
                    });
                }
            };
            layers.push(Layer {
                inputs,
                outputs,
                weight,
                bias,
            });
        }
        if layers.is_empty() {
            return Err(MlError::InvalidConfig {
                field: "architecture".into(),
                reason: "the network has no output layer".into(),
            });
        }
        Ok(Dense {
            layers,
            activation,
            dropout,
            s: Scratch::default(),
        })
    }

    /// Values per row the first layer takes.
    pub(super) fn inputs(&self) -> usize {
        self.layers[0].inputs
    }

    pub(super) fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(|l| [&l.weight, &l.bias])
    }

    pub(super) fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers
            .iter_mut()
            .flat_map(|l| [&mut l.weight, &mut l.bias])
    }

    /// The forward pass in training mode on `x` (`rows × inputs`): fills
    /// the scratch buffers; dropout's masks are drawn from `rng`.
    pub(super) fn forward(&mut self, x: &[f32], rows: usize, rng: &mut ChaCha8Rng) {
        let hidden = self.layers.len() - 1;
        let s = &mut self.s;
        s.input.resize_with(hidden + 1, Vec::new);
        s.pre.resize_with(hidden, Vec::new);
        s.act.resize_with(hidden, Vec::new);
        s.mask.resize_with(hidden, Vec::new);
        for (i, layer) in self.layers.iter().enumerate() {
            let z = if i == hidden {
                &mut s.out
            } else {
                &mut s.pre[i]
            };
            let a: &[f32] = if i == 0 { x } else { &s.input[i] };
            linear(z, a, rows, &layer.weight.value, &layer.bias.value);
            if i == hidden {
                break;
            }
            let next = &mut s.input[i + 1];
            next.clear();
            next.extend_from_slice(z);
            activate_all(next, self.activation);
            let mask = &mut s.mask[i];
            mask.clear();
            if self.dropout > 0.0 {
                // The activation before dropout, for its derivative.
                let act = &mut s.act[i];
                act.clear();
                act.extend_from_slice(next);
                // Drawn as candle's path draws them (`arch::mlp`): one per
                // value, row-major, the kept ones scaled by 1 / keep.
                let keep = 1.0 - self.dropout;
                mask.extend((0..next.len()).map(|_| {
                    if rng.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                }));
                for (h, m) in next.iter_mut().zip(mask.iter()) {
                    *h *= m;
                }
            }
        }
    }

    /// The batch's mean loss against `y` (a class code or a value per
    /// row), and its gradient at the output.
    pub(super) fn loss(&mut self, task: Task, y: &[f32]) -> Result<f32, MlError> {
        let outputs = self.layers[self.layers.len() - 1].outputs;
        loss_gradient(task, &self.s.out, outputs, y, &mut self.s.grad_out)
    }

    /// Gradients of every tensor, from the loss's gradient back to the
    /// first layer; with `input_grad`, also the gradient at `x` itself
    /// ([`Dense::input_grad`]).
    pub(super) fn backward(&mut self, x: &[f32], rows: usize, input_grad: bool) {
        let s = &mut self.s;
        for i in (0..self.layers.len()).rev() {
            let layer = &mut self.layers[i];
            let (inputs, outputs) = (layer.inputs, layer.outputs);
            let a: &[f32] = if i == 0 { x } else { &s.input[i] };
            if layer.weight.lr.is_some() {
                // weight's gradient (outputs × inputs) = grad_outᵀ · a.
                matmul(
                    &mut layer.weight.grad,
                    false,
                    (outputs, inputs, rows),
                    &s.grad_out,
                    (1, outputs as isize),
                    a,
                    (inputs as isize, 1),
                );
            }
            let gb = &mut layer.bias.grad;
            gb.fill(0.0);
            for g in s.grad_out.chunks_exact(outputs) {
                for (b, &g) in gb.iter_mut().zip(g) {
                    *b += g;
                }
            }
            if i == 0 && !input_grad {
                break;
            }
            // The gradient at this layer's input (rows × inputs) = grad_out · weight.
            sized(&mut s.grad_in, rows * inputs);
            matmul(
                &mut s.grad_in,
                false,
                (rows, inputs, outputs),
                &s.grad_out,
                (outputs as isize, 1),
                &layer.weight.value,
                (inputs as isize, 1),
            );
            if i == 0 {
                break;
            }
            // Through the hidden layer below: its dropout, then its activation.
            let h = i - 1;
            // The activation's values: this layer's input, unless dropout scaled it.
            let act = if s.mask[h].is_empty() {
                &s.input[i]
            } else {
                for (g, m) in s.grad_in.iter_mut().zip(&s.mask[h]) {
                    *g *= m;
                }
                &s.act[h]
            };
            times_derivative(&mut s.grad_in, &s.pre[h], act, self.activation);
            std::mem::swap(&mut s.grad_out, &mut s.grad_in);
        }
    }

    /// The loss's gradient at the first layer's input, after a
    /// [`Dense::backward`] with `input_grad`.
    pub(super) fn input_grad(&self) -> &[f32] {
        &self.s.grad_in
    }
}
