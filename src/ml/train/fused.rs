//! The MLP's training step on the CPU in one pass over plain buffers:
//! forward, loss, backward and the optimiser, with the matrix products in
//! `gemm` (the kernels candle's own matmul calls).
//!
//! Why: candle's autograd spends most of a small-batch step outside the
//! arithmetic. A 512-row step of a one-hidden-layer MLP is about a hundred
//! tensor operations, each allocating its result, for about a megaflop of
//! work (bench/streaming/RESULTS.md). Here a step allocates nothing.
//!
//! The maths is candle's path in `epochs`, operation for operation: the
//! same activations and their derivatives (relu's is 1 at 0, as candle's),
//! inverted dropout with masks drawn from the same RNG in the same order,
//! cross-entropy over a log-softmax or the mean squared error, SGD's L2
//! penalty on the weight matrices, and candle's AdamW update in f32. Only
//! the order of additions inside a product may differ, so weights agree
//! to rounding; `tests` hold the two paths to that on every activation,
//! task and optimiser, with dropout, frozen tensors and a head learning
//! rate.

use candle_core::{Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::api::{Activation, ModelSpec, Optimizer, Task};

use super::super::arch::{self, Architecture as _};
use super::super::error::MlError;
use super::epochs::{Parameters, sgd_l2};

/// One tensor of the network, its gradient and the optimiser's moments.
struct Param {
    value: Vec<f32>,
    grad: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    /// The learning rate that moves it; `None` when frozen.
    lr: Option<f64>,
    /// Whether SGD's L2 penalty covers it (the trained weight matrices).
    penalised: bool,
    var: Var,
    shape: Vec<usize>,
}

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
    /// Each layer's input (`input[0]` is the batch itself).
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

/// The MLP's parameters on the host, stepped without candle; written back
/// to the network's `Var`s by [`FusedMlp::write_back`].
pub(super) struct FusedMlp {
    layers: Vec<Layer>,
    activation: Activation,
    dropout: f32,
    task: Task,
    optimizer: Optimizer,
    weight_decay: f64,
    /// SGD's L2 penalty (candle's SGD has no decoupled decay).
    l2: f64,
    steps: i32,
    scratch: Scratch,
}

impl FusedMlp {
    /// The fused step for `params` when they are an MLP on the CPU;
    /// `None` for every other network or device (candle's path trains them).
    pub(super) fn new(spec: &ModelSpec, params: &Parameters) -> Result<Option<Self>, MlError> {
        if spec.architecture.kind != arch::mlp::Mlp.name()
            || params.vars.iter().any(|v| !v.device().is_cpu())
        {
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
        // `linear_tensors` lists each layer's weight, then its bias.
        let mut layers = Vec::with_capacity(tensors.len() / 2);
        let mut it = tensors.into_iter();
        while let (Some(weight), Some(bias)) = (it.next(), it.next()) {
            let (outputs, inputs) = match weight.shape.as_slice() {
                &[o, i] if bias.shape == [o] => (o, i),
                other => {
                    return Err(MlError::InvalidConfig {
                        field: "architecture".into(),
                        reason: format!(
                            "an mlp layer's weight has shape {other:?} and its bias {:?}",
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
        Ok(Some(FusedMlp {
            layers,
            activation: spec.architecture.activation,
            dropout: spec.architecture.dropout as f32,
            task: spec.task,
            optimizer: t.optimizer,
            weight_decay: t.weight_decay,
            l2: sgd_l2(t),
            steps: 0,
            scratch: Scratch::default(),
        }))
    }

    /// Values per row the network takes.
    pub(super) fn inputs(&self) -> usize {
        self.layers[0].inputs
    }

    /// One optimiser step on `x` (`rows × inputs`, row-major) and `y` (a
    /// class code per row, or a value per row for regression); returns the
    /// batch's mean loss (without the L2 penalty, as candle's path reports).
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
        self.forward(x, rows, Some(rng));
        let loss = self.loss_gradient(y, rows)?;
        self.backward(x, rows);
        self.update();
        Ok(loss)
    }

    /// The forward pass in training mode: fills the scratch buffers.
    fn forward(&mut self, x: &[f32], rows: usize, mut rng: Option<&mut ChaCha8Rng>) {
        let hidden = self.layers.len() - 1;
        let s = &mut self.scratch;
        s.input.resize_with(hidden + 1, Vec::new);
        s.pre.resize_with(hidden, Vec::new);
        s.act.resize_with(hidden, Vec::new);
        s.mask.resize_with(hidden, Vec::new);
        for (i, layer) in self.layers.iter().enumerate() {
            let (inputs, outputs) = (layer.inputs, layer.outputs);
            let z = if i == hidden {
                &mut s.out
            } else {
                &mut s.pre[i]
            };
            sized(z, rows * outputs);
            let a: &[f32] = if i == 0 { x } else { &s.input[i] };
            // z (rows × outputs) = a (rows × inputs) · weightᵀ (inputs × outputs) + bias.
            matmul(
                z,
                false,
                (rows, outputs, inputs),
                a,
                (inputs as isize, 1),
                &layer.weight.value,
                (1, inputs as isize),
            );
            for row in z.chunks_exact_mut(outputs) {
                for (v, b) in row.iter_mut().zip(&layer.bias.value) {
                    *v += b;
                }
            }
            if i == hidden {
                break;
            }
            let next = &mut s.input[i + 1];
            next.clear();
            next.extend(z.iter().map(|&v| activate(v, self.activation)));
            let mask = &mut s.mask[i];
            mask.clear();
            if let Some(rng) = rng.as_deref_mut()
                && self.dropout > 0.0
            {
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

    /// The batch's mean loss, and its gradient at the output in `grad_out`.
    fn loss_gradient(&mut self, y: &[f32], rows: usize) -> Result<f32, MlError> {
        let outputs = self.layers[self.layers.len() - 1].outputs;
        let s = &mut self.scratch;
        // Every value is written below.
        sized(&mut s.grad_out, rows * outputs);
        let n = rows as f32;
        match self.task {
            Task::Classification => {
                let mut total = 0.0f32;
                for (r, (&class, out)) in y.iter().zip(s.out.chunks_exact(outputs)).enumerate() {
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
                    let g = &mut s.grad_out[r * outputs..(r + 1) * outputs];
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
                for (r, (g, out)) in s
                    .grad_out
                    .chunks_exact_mut(outputs)
                    .zip(s.out.chunks_exact(outputs))
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

    /// Gradients of every tensor, from `grad_out` back to the first layer.
    fn backward(&mut self, x: &[f32], rows: usize) {
        let s = &mut self.scratch;
        for i in (0..self.layers.len()).rev() {
            let layer = &mut self.layers[i];
            let (inputs, outputs) = (layer.inputs, layer.outputs);
            let a: &[f32] = if i == 0 { x } else { &s.input[i] };
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
            let gb = &mut layer.bias.grad;
            gb.fill(0.0);
            for g in s.grad_out.chunks_exact(outputs) {
                for (b, &g) in gb.iter_mut().zip(g) {
                    *b += g;
                }
            }
            if i == 0 {
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
            for ((g, &z), &a) in s.grad_in.iter_mut().zip(&s.pre[h]).zip(act) {
                *g *= derivative(z, a, self.activation);
            }
            std::mem::swap(&mut s.grad_out, &mut s.grad_in);
        }
        if self.l2 > 0.0 {
            let l2 = self.l2 as f32;
            for layer in &mut self.layers {
                let w = &mut layer.weight;
                if w.penalised {
                    for (g, &v) in w.grad.iter_mut().zip(&w.value) {
                        *g += v * l2;
                    }
                }
            }
        }
    }

    /// The optimiser's update of every trained tensor.
    fn update(&mut self) {
        self.steps += 1;
        let adam = candle_nn::ParamsAdamW::default();
        let scale_m = (1.0 / (1.0 - adam.beta1.powi(self.steps))) as f32;
        let scale_v = (1.0 / (1.0 - adam.beta2.powi(self.steps))) as f32;
        for layer in &mut self.layers {
            for p in [&mut layer.weight, &mut layer.bias] {
                let Some(lr) = p.lr else { continue };
                match self.optimizer {
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
                        let decay = (1.0 - lr * self.weight_decay) as f32;
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
    }

    /// Writes the parameters back to the network's `Var`s, for validation,
    /// snapshots and the artifact.
    pub(super) fn write_back(&self) -> Result<(), MlError> {
        for layer in &self.layers {
            for p in [&layer.weight, &layer.bias] {
                let device = p.var.device().clone();
                p.var
                    .set(&Tensor::from_slice(&p.value, p.shape.as_slice(), &device)?)?;
            }
        }
        Ok(())
    }
}

/// `v` at length `n`, its values left to be overwritten (no clearing pass
/// once the length is steady).
fn sized(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

/// The activation a spec names, as candle computes it.
fn activate(z: f32, activation: Activation) -> f32 {
    match activation {
        Activation::Relu => z.max(0.0),
        Activation::Gelu => {
            (candle_core::cpu::erf::erf_f32(z * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * z
        }
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Silu => z / (1.0 + (-z).exp()),
    }
}

/// The activation's derivative at pre-activation `z` with value `a`, as
/// candle's backward pass computes it.
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

/// `dst (m × n, row-major) [+]= lhs (m × k) · rhs (k × n)`, each operand
/// given by its (row, column) strides.
#[allow(unsafe_code)]
fn matmul(
    dst: &mut [f32],
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (isize, isize),
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows - 1) as isize * rs + (cols - 1) as isize * cs
    };
    assert!(
        lhs_rs >= 0 && lhs_cs >= 0 && rhs_rs >= 0 && rhs_cs >= 0,
        "matmul: negative stride"
    );
    assert!(
        last(m, k, lhs_rs, lhs_cs) < lhs.len() as isize,
        "matmul: lhs too small"
    );
    assert!(
        last(k, n, rhs_rs, rhs_cs) < rhs.len() as isize,
        "matmul: rhs too small"
    );
    // SAFETY: the asserts above keep every element gemm reads (lhs up to
    // (m-1, k-1), rhs up to (k-1, n-1), by their non-negative strides) and
    // writes (dst's first m × n, row-major) inside the slices, which stay
    // borrowed for the call; `dst` is borrowed mutably, so it aliases
    // neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use rand::SeedableRng;

    use super::super::epochs::{Trainer, epochs_of};
    use super::*;
    use crate::ml::arch::InputShape;

    const INPUTS: usize = 5;
    const ROWS: usize = 96;

    fn spec(task: &str, architecture: &str, training: &str) -> ModelSpec {
        serde_yaml::from_str(&format!(
            "task: {task}\ndata: {{source: t.csv, target: y}}\n\
             architecture: {{type: mlp, {architecture}}}\n\
             training: {{epochs: 3, batchSize: 16, learningRate: 0.05, seed: 11, {training}}}\n"
        ))
        .unwrap()
    }

    /// Seeded inputs and targets: classes 0..3 or values.
    fn data(task: Task, rows: usize, seed: u64) -> (Tensor, Tensor) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f32> = (0..rows * INPUTS)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        let y: Vec<f32> = x
            .chunks(INPUTS)
            .map(|r| match task {
                Task::Classification => ((r[0] + r[1]).abs() * 1.2).min(2.0).floor(),
                Task::Regression => r[0] * 0.7 - r[2] + 0.1 * r[3] * r[4],
            })
            .collect();
        let x = Tensor::from_vec(x, (rows, INPUTS), &Device::Cpu).unwrap();
        (
            x,
            super::super::epochs::target_tensor(task, y, &Device::Cpu).unwrap(),
        )
    }

    /// Each epoch's training and validation loss.
    type Curve = Vec<(f64, Option<f64>)>;

    /// Trains `spec` for its epochs, fused or through candle; the curve and
    /// every tensor's values.
    fn train(spec: &ModelSpec, fused: bool) -> (Curve, Vec<Vec<f32>>) {
        let params = init(spec);
        let (x, y) = data(spec.task, ROWS, 1);
        let (xv, yv) = data(spec.task, 40, 2);
        let mut trainer = Trainer::new(spec, &params, None, false).unwrap();
        if !fused {
            trainer = trainer.through_candle();
        }
        assert_eq!(
            trainer.is_fused(),
            fused,
            "the fused step applies to an MLP on the CPU"
        );
        epochs_of(&mut trainer, (&x, &y), (&xv, &yv), None).unwrap();
        let curve = trainer.finish().unwrap();
        let values = values(&params);
        (
            curve
                .iter()
                .map(|e| (e.train_loss, e.validation_loss))
                .collect(),
            values,
        )
    }

    #[test]
    fn the_fused_step_trains_as_candles_autograd_does() {
        let cases = [
            (
                "classification",
                "hiddenLayers: [8], activation: relu",
                "optimizer: adamw",
            ),
            (
                "classification",
                "hiddenLayers: [8, 6], activation: gelu",
                "optimizer: adamw, weightDecay: 0.1",
            ),
            (
                "classification",
                "hiddenLayers: [7], activation: tanh, dropout: 0.3",
                "optimizer: sgd, weightDecay: 0.05",
            ),
            (
                "classification",
                "hiddenLayers: [], activation: relu",
                "optimizer: adamw",
            ),
            (
                "regression",
                "hiddenLayers: [8], activation: sigmoid",
                "optimizer: adamw, headLearningRate: 0.01",
            ),
            (
                "regression",
                "hiddenLayers: [6, 4], activation: silu, dropout: 0.2",
                "optimizer: adamw, freeze: [layer0.]",
            ),
            (
                "regression",
                "hiddenLayers: [8], activation: relu",
                "optimizer: sgd, freeze: [layer1.bias]",
            ),
        ];
        for (task, architecture, training) in cases {
            let spec = spec(task, architecture, training);
            let (fused_curve, fused) = train(&spec, true);
            let (candle_curve, reference) = train(&spec, false);
            let case = format!("{task} / {architecture} / {training}");
            assert_eq!(fused_curve.len(), 3, "{case}");
            for ((f, fv), (c, cv)) in fused_curve.iter().zip(&candle_curve) {
                assert!(
                    (f - c).abs() <= 1e-5 * c.abs().max(1.0),
                    "{case}: train loss {f} vs {c}"
                );
                let (fv, cv) = (fv.unwrap(), cv.unwrap());
                assert!(
                    (fv - cv).abs() <= 1e-5 * cv.abs().max(1.0),
                    "{case}: validation loss {fv} vs {cv}"
                );
            }
            let init = train_initial(&spec);
            for (i, ((f, c), start)) in fused.iter().zip(&reference).zip(&init).enumerate() {
                let moved = c.iter().zip(start).any(|(a, b)| a != b);
                let frozen = super::super::epochs::is_frozen(
                    &spec.training.freeze,
                    &format!(
                        "layer{}.{}",
                        i / 2,
                        if i % 2 == 0 { "weight" } else { "bias" }
                    ),
                );
                assert_eq!(moved, !frozen, "{case}: tensor {i} moved: {moved}");
                for (a, b) in f.iter().zip(c) {
                    assert!((a - b).abs() <= 1e-4, "{case}: tensor {i}: {a} vs {b}");
                }
            }
        }
    }

    /// The tensors as initialised, before any step.
    fn train_initial(spec: &ModelSpec) -> Vec<Vec<f32>> {
        values(&init(spec))
    }

    /// `spec`'s MLP over [`INPUTS`] inputs (3 classes or 1 value), initialised.
    fn init(spec: &ModelSpec) -> Parameters {
        let outputs = match spec.task {
            Task::Classification => 3,
            Task::Regression => 1,
        };
        Parameters::init(
            &arch::mlp::Mlp,
            spec,
            InputShape::Features(INPUTS),
            outputs,
            None,
            &Device::Cpu,
        )
        .unwrap()
    }

    /// Every tensor's values, flattened.
    fn values(params: &Parameters) -> Vec<Vec<f32>> {
        params
            .vars
            .iter()
            .map(|v| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_class_code_outside_the_outputs_is_an_error_not_a_wild_read() {
        let spec = spec(
            "classification",
            "hiddenLayers: [4], activation: relu",
            "optimizer: adamw",
        );
        let params = init(&spec);
        let mut fused = FusedMlp::new(&spec, &params).unwrap().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let x = vec![0.5; 2 * INPUTS];
        let err = fused.step(&x, &[1.0, 3.0], &mut rng).unwrap_err();
        assert!(
            err.to_string().contains("class code 3 outside 0..3"),
            "{err}"
        );
        let err = fused
            .step(&x[..INPUTS + 1], &[1.0, 2.0], &mut rng)
            .unwrap_err();
        assert!(err.to_string().contains("expects 5"), "{err}");
        assert!(fused.step(&x, &[1.0, 2.0], &mut rng).unwrap().is_finite());
    }

    #[test]
    fn only_an_mlp_on_the_cpu_takes_the_fused_step() {
        let spec = super::super::images::tests::cnn_spec();
        let input = InputShape::Image {
            channels: 1,
            height: 16,
            width: 16,
        };
        let cnn = arch::lookup(&spec.architecture.kind).unwrap();
        let params = Parameters::init(cnn, &spec, input, 2, None, &Device::Cpu).unwrap();
        assert!(FusedMlp::new(&spec, &params).unwrap().is_none());
    }
}
