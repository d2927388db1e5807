//! The training step on the CPU in one pass over plain buffers: forward,
//! loss, backward and the optimiser, with the matrix products in `gemm`
//! (the kernels candle's own matmul calls). For an MLP, and for a CNN
//! whose convolutions, batch norm and pooling are computed here too.
//!
//! Why: candle's autograd spends most of a small-batch step outside the
//! arithmetic. A 512-row step of a one-hidden-layer MLP is about a hundred
//! tensor operations, each allocating its result, for about a megaflop of
//! work (bench/streaming/RESULTS.md); a CNN's step copies every activation
//! several times (transposes for batch norm, permutes for pooling, an
//! index gather for its im2col). Here a step allocates nothing once its
//! buffers have their size.
//!
//! The maths is candle's path in `epochs`, operation for operation: the
//! same activations and their derivatives (relu's is 1 at 0, as candle's),
//! inverted dropout with masks drawn from the same RNG in the same order,
//! batch norm as `candle_nn::BatchNorm` (batch statistics and running
//! averages in training, the running ones when frozen), pooling as
//! `arch::conv` (a window's gradient to its first maximum), cross-entropy
//! over a log-softmax or the mean squared error, SGD's L2 penalty on the
//! weight matrices and kernels, and candle's AdamW update in f32. Only the
//! order of additions inside a product or a sum may differ, so weights
//! agree to rounding; `tests` hold the two paths to that.

mod col2im;
mod conv;
mod dense;

use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::api::{Activation, ModelSpec, Optimizer, Task};

use super::super::arch::cpu::{activate_all, linear, matmul, sized, specialised};
use super::super::arch::{self, Architecture as _};
use super::super::error::MlError;
use super::epochs::{Parameters, sgd_l2};
use conv::ConvBody;
use dense::Dense;

/// One tensor of the network, its gradient and the optimiser's moments.
struct Param {
    value: Vec<f32>,
    grad: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    /// The learning rate that moves it; `None` when frozen or a running
    /// statistic.
    lr: Option<f64>,
    /// Whether SGD's L2 penalty covers it (the trained weight matrices).
    penalised: bool,
    var: Var,
    shape: Vec<usize>,
}

/// The network's parameters on the host, stepped without candle; written
/// back to the network's `Var`s by [`Fused::write_back`].
pub(super) struct Fused {
    /// A CNN's convolution blocks and global average pooling; `None` for an MLP.
    body: Option<ConvBody>,
    /// The MLP, or the CNN's head.
    head: Dense,
    task: Task,
    optimizer: Optimizer,
    weight_decay: f64,
    /// SGD's L2 penalty (candle's SGD has no decoupled decay).
    l2: f64,
    steps: i32,
}

impl Fused {
    /// The fused step for `params` when they are an MLP or a CNN on the
    /// CPU in a shape this module computes; `None` for every other network
    /// or device (candle's path trains them).
    pub(super) fn new(spec: &ModelSpec, params: &Parameters) -> Result<Option<Self>, MlError> {
        if params.vars.iter().any(|v| !v.device().is_cpu()) {
            return Ok(None);
        }
        let kind = spec.architecture.kind.as_str();
        let is_cnn = kind == arch::cnn::Cnn.name();
        if kind != arch::mlp::Mlp.name() && !is_cnn {
            return Ok(None);
        }
        let t = &spec.training;
        let mut tensors = Vec::with_capacity(params.vars.len());
        for (i, (shape, var)) in params.shapes.iter().zip(&params.vars).enumerate() {
            let value = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let n = value.len();
            tensors.push(Param {
                value,
                grad: vec![0.0; n],
                m: vec![0.0; n],
                v: vec![0.0; n],
                lr: params.learning_rate(i, t),
                penalised: params.penalised(i),
                var: var.clone(),
                shape: shape.shape.clone(),
            });
        }
        let a = &spec.architecture;
        let body = if is_cnn {
            match ConvBody::new(a, params.input, &params.frozen, &mut tensors)? {
                Some(body) => Some(body),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(Fused {
            body,
            head: Dense::new(tensors, a.activation, a.dropout as f32)?,
            task: spec.task,
            optimizer: t.optimizer,
            weight_decay: t.weight_decay,
            l2: sgd_l2(t),
            steps: 0,
        }))
    }

    /// Values per row the network takes.
    pub(super) fn inputs(&self) -> usize {
        match &self.body {
            Some(body) => body.inputs(),
            None => self.head.inputs(),
        }
    }

    /// One optimiser step on `x` (`rows × inputs`, row-major; an image
    /// channels first) and `y` (a class code per row, or a value per row
    /// for regression); returns the batch's mean loss (without the L2
    /// penalty, as candle's path reports).
    pub(super) fn step(
        &mut self,
        x: &[f32],
        y: &[f32],
        rng: &mut ChaCha8Rng,
    ) -> Result<f32, MlError> {
        let rows = y.len();
        let width = self.inputs();
        if x.len() != rows * width {
            return Err(MlError::BatchShape {
                expected: width,
                got: x.len().checked_div(rows).unwrap_or(x.len()),
                names: "the encoded inputs".into(),
            });
        }
        if self.body.is_some() && rayon::current_num_threads() > 1 {
            // The CNN's image groups run on rayon's threads: the step runs
            // as one job in rayon's pool, so each of its parallel loops is
            // handed out by a worker (one wake-up a step, not one a loop).
            return rayon::scope(|_| self.pass(x, y, rows, rng));
        }
        self.pass(x, y, rows, rng)
    }

    /// The step's forward pass, loss, backward pass and update.
    fn pass(
        &mut self,
        x: &[f32],
        y: &[f32],
        rows: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<f32, MlError> {
        let is_cnn = self.body.is_some();
        let features: &[f32] = match &mut self.body {
            Some(body) => body.forward(x, rows),
            None => x,
        };
        self.head.forward(features, rows, rng);
        let loss = self.head.loss(self.task, y)?;
        self.head.backward(features, rows, is_cnn);
        if let Some(body) = &mut self.body {
            body.backward(rows, self.head.input_grad());
        }
        self.update();
        Ok(loss)
    }

    fn params(&self) -> impl Iterator<Item = &Param> {
        self.body
            .iter()
            .flat_map(|b| b.params())
            .chain(self.head.params())
    }

    /// SGD's L2 penalty, then the optimiser's update of every trained tensor.
    fn update(&mut self) {
        self.steps += 1;
        let adam = candle_nn::ParamsAdamW::default();
        let scale_m = (1.0 / (1.0 - adam.beta1.powi(self.steps))) as f32;
        let scale_v = (1.0 / (1.0 - adam.beta2.powi(self.steps))) as f32;
        let (optimizer, weight_decay, l2) = (self.optimizer, self.weight_decay, self.l2 as f32);
        let params = self
            .body
            .iter_mut()
            .flat_map(|b| b.params_mut())
            .chain(self.head.params_mut());
        for p in params {
            let Some(lr) = p.lr else { continue };
            if l2 > 0.0 && p.penalised {
                for (g, &v) in p.grad.iter_mut().zip(&p.value) {
                    *g += v * l2;
                }
            }
            match optimizer {
                Optimizer::Sgd => {
                    let lr = lr as f32;
                    for (v, &g) in p.value.iter_mut().zip(&p.grad) {
                        *v -= g * lr;
                    }
                }
                // candle_nn::AdamW's update, each scalar in f32 as its
                // tensor arithmetic applies it.
                Optimizer::Adamw => {
                    let (b1, b2) = (adam.beta1 as f32, adam.beta2 as f32);
                    let (c1, c2) = ((1.0 - adam.beta1) as f32, (1.0 - adam.beta2) as f32);
                    let decay = (1.0 - lr * weight_decay) as f32;
                    let (eps, lr) = (adam.eps as f32, lr as f32);
                    for (((theta, m), v), &g) in
                        p.value.iter_mut().zip(&mut p.m).zip(&mut p.v).zip(&p.grad)
                    {
                        *m = *m * b1 + g * c1;
                        *v = *v * b2 + (g * g) * c2;
                        let adjusted = (*m * scale_m) / ((*v * scale_v).sqrt() + eps);
                        *theta = *theta * decay - adjusted * lr;
                    }
                }
            }
        }
    }

    /// Writes the parameters (running statistics included) back to the
    /// network's `Var`s, for validation, snapshots and the artifact.
    pub(super) fn write_back(&self) -> Result<(), MlError> {
        for p in self.params() {
            let device = p.var.device().clone();
            p.var
                .set(&Tensor::from_slice(&p.value, p.shape.as_slice(), &device)?)?;
        }
        Ok(())
    }
}

/// The batch's mean loss of `out` (`rows × outputs`) against `y`, and its
/// gradient at `out` in `grad`.
fn loss_gradient(
    task: Task,
    out: &[f32],
    outputs: usize,
    y: &[f32],
    grad: &mut Vec<f32>,
) -> Result<f32, MlError> {
    let rows = y.len();
    // Every value is written below.
    sized(grad, rows * outputs);
    let n = rows as f32;
    match task {
        Task::Classification => {
            let mut total = 0.0f32;
            for (r, (&class, out)) in y.iter().zip(out.chunks_exact(outputs)).enumerate() {
                let c = class as usize;
                if class < 0.0 || c >= outputs || class.fract() != 0.0 {
                    return Err(MlError::InvalidConfig {
                        field: "target".into(),
                        reason: format!("class code {class} outside 0..{outputs}"),
                    });
                }
                let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = out.iter().map(|&v| (v - max).exp()).sum();
                let log_sum = sum.ln();
                total += (out[c] - max) - log_sum;
                let g = &mut grad[r * outputs..(r + 1) * outputs];
                for (g, &v) in g.iter_mut().zip(out) {
                    *g = ((v - max) - log_sum).exp() / n;
                }
                g[c] -= 1.0 / n;
            }
            Ok(-(total / n))
        }
        Task::Regression => {
            let count = (rows * outputs) as f32;
            let mut total = 0.0f32;
            for (r, (g, out)) in grad
                .chunks_exact_mut(outputs)
                .zip(out.chunks_exact(outputs))
                .enumerate()
            {
                for (g, &v) in g.iter_mut().zip(out) {
                    let d = v - y[r];
                    total += d * d;
                    *g = 2.0 * d / count;
                }
            }
            Ok(total / count)
        }
    }
}

/// Each gradient in `grad` times the activation's derivative at its
/// pre-activation and value.
fn times_derivative(grad: &mut [f32], pre: &[f32], act: &[f32], activation: Activation) {
    specialised!(activation, f => {
        for ((g, &z), &a) in grad.iter_mut().zip(pre).zip(act) {
            *g *= derivative(z, a, f);
        }
    })
}

/// The activation's derivative at pre-activation `z` with value `a`, as
/// candle's backward pass computes it.
#[inline]
fn derivative(z: f32, a: f32, activation: Activation) -> f32 {
    match activation {
        Activation::Relu => {
            if z >= 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Gelu => {
            0.5 + 0.398942 * (-(z * z) / 2.0).exp() * z
                + 0.5 * candle_core::cpu::erf::erf_f32(z / std::f32::consts::SQRT_2)
        }
        Activation::Tanh => 1.0 - a * a,
        Activation::Sigmoid => (1.0 - a) * a,
        Activation::Silu => {
            let sigmoid = 1.0 / ((-z).exp() + 1.0);
            sigmoid * (1.0 - a) + a
        }
    }
}

#[cfg(test)]
mod tests;
