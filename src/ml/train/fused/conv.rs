//! A CNN's convolution blocks (conv, batch norm or a bias, the activation,
//! 2×2 pooling) and its global average pooling, as `arch::cnn` computes
//! them in training, on plain buffers.
//!
//! Activations are kept channels-last (`[N, H, W, C]`): a convolution's
//! im2col then copies whole runs of `kernel · c_in` values, its product
//! comes out in that layout with no transpose, and batch norm and pooling
//! read each pixel's channels contiguously. Where the CPU has AVX-512 the
//! convolution, the kernels' gradient and the gradient at the patches run
//! on `arch::direct` instead, which reads the patches from the padded
//! input in place (no im2col). The kernels keep PyTorch's
//! `[c_out, c_in, k, k]` layout in the tensors (artifacts and fingerprints
//! are unchanged) and are permuted to the patch order (`ky, kx, c`) once a
//! step, their gradients back.
//!
//! A batch is cut into at most [`GROUPS`] groups of consecutive images, a
//! number that depends on the batch's size alone. Each group keeps its own
//! buffers through every block, so the groups run on rayon's threads with
//! no shared writes. Only batch norm's statistics and the tensors'
//! gradients are sums over the whole batch: each group sums its own
//! images, and the groups' sums are added in group order, so a step gives
//! the same bits on one thread or on sixteen.

use rayon::prelude::*;

use crate::api::{Activation, ArchitectureSpec, Pooling};

use super::super::super::arch::InputShape;
use super::super::super::arch::cnn::{BN_EPS, BN_MOMENTUM};
use super::super::super::arch::cpu::{
    Geometry, Padded, activate_into, block_output, channels_last, global_average, im2col, matmul,
    sized, with_border,
};
use super::super::super::arch::direct;
use super::super::super::error::MlError;
use super::col2im::col2im;
use super::{Param, derivative, times_derivative};

/// The most groups a batch is cut into: enough to keep a few threads busy
/// and to balance two, few enough that each group's products stay large.
const GROUPS: usize = 8;

// One per block, a handful per network: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Norm {
    /// Batch norm's scale, shift, running mean and running variance, in
    /// the tensors' order; `train` uses the batch's statistics and updates
    /// the running ones (a frozen batch norm uses the running ones, as
    /// candle's path does).
    Batch {
        params: [Param; 4],
        train: bool,
    },
    Bias([Param; 1]),
}

impl Norm {
    fn params(&self) -> &[Param] {
        match self {
            Norm::Batch { params, .. } => params,
            Norm::Bias(bias) => bias,
        }
    }

    fn params_mut(&mut self) -> &mut [Param] {
        match self {
            Norm::Batch { params, .. } => params,
            Norm::Bias(bias) => bias,
        }
    }
}

/// One block's tensors, and what a step derives from them for every group.
struct Layer {
    g: Geometry,
    weight: Param,
    norm: Norm,
    /// The kernels in patch order (`[c_out, ky, kx, c_in]`), and their
    /// gradient summed over the groups.
    wp: Vec<f32>,
    gwp: Vec<f32>,
    /// Where the CPU has AVX-512 ([`direct`]): the kernels packed for the
    /// forward convolution, and `wp` with its rows padded for the gradient
    /// at the patches; empty elsewhere.
    packed: Vec<f32>,
    wp_rows: Vec<f32>,
    /// Batch norm's mean and 1 / √(variance + ε) per channel: the batch's
    /// in training, the running ones when frozen.
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Batch norm's backward per channel: γ / σ, mean(dy), mean(dy · x̂).
    factor: Vec<f32>,
    mean_dy: Vec<f32>,
    mean_dyx: Vec<f32>,
}

/// One block's buffers for one group of images.
#[derive(Default)]
struct Buffers {
    /// The input with its zero border, and its im2col: one row of
    /// `patch()` values per output pixel.
    padded: Padded,
    cols: Vec<f32>,
    /// The convolution's output; with batch norm, normalised in place (x̂).
    z: Vec<f32>,
    /// The activation's input and output.
    pre: Vec<f32>,
    act: Vec<f32>,
    /// After pooling (unused without pooling: `act` is the output).
    out: Vec<f32>,
    /// For max pooling, the position in `act` of each window's maximum.
    argmax: Vec<u32>,
    /// The loss's gradient at the convolution's output, and at the patches.
    gz: Vec<f32>,
    dcols: Vec<f32>,
    /// This group's share of the kernels' gradient (patch order).
    gwp: Vec<f32>,
    /// This group's sums per channel: Σ z then Σ (z − mean)² forward,
    /// Σ dy and Σ dy · x̂ backward.
    sum: Vec<f32>,
    sum2: Vec<f32>,
}

impl Buffers {
    /// The block's output: pooled, or the activation without pooling.
    fn output(&self, pool: Pooling) -> &[f32] {
        block_output(pool, &self.act, &self.out)
    }
}

/// Consecutive images of the batch and their buffers through the network.
#[derive(Default)]
struct Group {
    /// The group's first image in the batch, and its images.
    start: usize,
    rows: usize,
    /// Its images channels-last.
    input: Vec<f32>,
    blocks: Vec<Buffers>,
    features: Vec<f32>,
    /// The gradient at the current block's output, and at its input.
    grad: Vec<f32>,
    grad_in: Vec<f32>,
}

/// The convolution blocks and global average pooling of a CNN.
pub(super) struct ConvBody {
    channels: usize,
    height: usize,
    width: usize,
    layers: Vec<Layer>,
    activation: Activation,
    groups: Vec<Group>,
    /// How many of `groups` the current batch fills.
    used: usize,
    /// Global average pooling's output: one vector per image.
    features: Vec<f32>,
}

/// Runs `f` on each group: on rayon's threads when there are several.
fn each(groups: &mut [Group], f: impl Fn(&mut Group) + Sync + Send) {
    if groups.len() > 1 && rayon::current_num_threads() > 1 {
        groups.par_iter_mut().for_each(f);
    } else {
        groups.iter_mut().for_each(f);
    }
}

/// Adds the groups' per-channel sums (`pick` chooses which) in group order.
fn total(groups: &[Group], i: usize, pick: impl Fn(&Buffers) -> &[f32], out: &mut Vec<f32>) {
    out.clear();
    for (k, group) in groups.iter().enumerate() {
        let part = pick(&group.blocks[i]);
        if k == 0 {
            out.extend_from_slice(part);
        } else {
            for (o, &p) in out.iter_mut().zip(part) {
                *o += p;
            }
        }
    }
}

/// Σ of each channel of `values` (pixels × `c`) into `sum`.
fn channel_sums(values: &[f32], c: usize, sum: &mut Vec<f32>) {
    sum.clear();
    sum.resize(c, 0.0);
    for px in values.chunks_exact(c) {
        for (s, &v) in sum.iter_mut().zip(px) {
            *s += v;
        }
    }
}

impl ConvBody {
    /// The blocks of `spec` over `input`, taking their tensors from the
    /// front of `tensors` (the head's stay). `None`, taking nothing, where
    /// this module does not compute a shape as candle's path does: average
    /// pooling over an odd size (candle's backward spreads it unevenly).
    pub(super) fn new(
        spec: &ArchitectureSpec,
        input: InputShape,
        frozen: &[bool],
        tensors: &mut Vec<Param>,
    ) -> Result<Option<ConvBody>, MlError> {
        let (channels, height, width) = match input {
            InputShape::Image {
                channels,
                height,
                width,
            } => (channels, height, width),
            InputShape::Features(n) => (n, 1, 1),
        };
        let mut geometries = Vec::with_capacity(spec.conv_blocks.len());
        let (mut c_in, mut h, mut w) = (channels, height, width);
        for b in &spec.conv_blocks {
            let Some(g) = Geometry::new(b, c_in, h, w) else {
                // candle's path reports the shape error.
                return Ok(None);
            };
            if g.pool == Pooling::Avg && (g.oh % 2 == 1 || g.ow % 2 == 1) {
                return Ok(None);
            }
            geometries.push(g);
            (c_in, h, w) = (g.c_out, g.ph, g.pw);
        }
        let mut taken = tensors.drain(..).enumerate();
        let mut next = |what: &str| {
            taken.next().ok_or_else(|| MlError::InvalidConfig {
                field: "architecture".into(),
                reason: format!("a convolution block has no {what} tensor"),
            })
        };
        let mut layers = Vec::with_capacity(geometries.len());
        for (g, spec_block) in geometries.into_iter().zip(&spec.conv_blocks) {
            let (_, weight) = next("kernel")?;
            if weight.shape != [g.c_out, g.c_in, g.kernel, g.kernel] {
                return Err(MlError::InvalidConfig {
                    field: "architecture".into(),
                    reason: format!(
                        "a convolution's kernel has shape {:?}, not {:?}",
                        weight.shape,
                        [g.c_out, g.c_in, g.kernel, g.kernel]
                    ),
                });
            }
            let norm = if spec_block.batch_norm {
                let (_, weight) = next("batch-norm scale")?;
                let (_, bias) = next("batch-norm shift")?;
                let (i, mean) = next("running mean")?;
                let (_, var) = next("running variance")?;
                Norm::Batch {
                    params: [weight, bias, mean, var],
                    train: !frozen[i],
                }
            } else {
                Norm::Bias([next("bias")?.1])
            };
            layers.push(Layer {
                g,
                weight,
                norm,
                wp: Vec::new(),
                gwp: Vec::new(),
                packed: Vec::new(),
                wp_rows: Vec::new(),
                mean: Vec::new(),
                inv_std: Vec::new(),
                factor: Vec::new(),
                mean_dy: Vec::new(),
                mean_dyx: Vec::new(),
            });
        }
        *tensors = taken.map(|(_, p)| p).collect();
        Ok(Some(ConvBody {
            channels,
            height,
            width,
            layers,
            activation: spec.activation,
            groups: Vec::new(),
            used: 0,
            features: Vec::new(),
        }))
    }

    /// Values per image.
    pub(super) fn inputs(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Channels of the last block's output (the features' width).
    fn last_channels(&self) -> usize {
        self.layers.last().map_or(self.channels, |l| l.g.c_out)
    }

    pub(super) fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers
            .iter()
            .flat_map(|l| std::iter::once(&l.weight).chain(l.norm.params()))
    }

    pub(super) fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers
            .iter_mut()
            .flat_map(|l| std::iter::once(&mut l.weight).chain(l.norm.params_mut()))
    }

    /// The forward pass in training mode on `x` (`rows` images, channels
    /// first): each image's pooled features (`rows × channels`).
    ///
    /// Each parallel loop runs as far as a group can go alone: a block's
    /// batch norm, activation and pooling with the next block's
    /// convolution, stopping only where batch norm needs the whole batch's
    /// statistics.
    pub(super) fn forward(&mut self, x: &[f32], rows: usize) -> &[f32] {
        let per = rows.div_ceil(GROUPS).max(1);
        self.used = rows.div_ceil(per);
        if self.groups.len() < self.used {
            self.groups.resize_with(self.used, Group::default);
        }
        let (inputs, channels) = (self.inputs(), self.channels);
        let pixels = self.height * self.width;
        let c = self.last_channels();
        let ConvBody {
            layers,
            groups,
            used,
            activation,
            features,
            ..
        } = self;
        let (groups, activation) = (&mut groups[..*used], *activation);
        for (k, group) in groups.iter_mut().enumerate() {
            group.start = k * per;
            group.rows = per.min(rows - group.start);
            group.blocks.resize_with(layers.len(), Buffers::default);
        }
        let direct = direct::available();
        for layer in layers.iter_mut() {
            layer.g.patch_order(&layer.weight.value, &mut layer.wp);
            if direct {
                direct::pack_into(&layer.g, &layer.wp, &mut layer.packed);
                let (c, patch) = (layer.g.c_out, layer.g.patch());
                direct::pad_rows(&layer.wp, (c, patch), &mut layer.wp_rows);
            }
        }
        let n = layers.len();
        {
            let first = layers.first();
            each(groups, |group| {
                let x = &x[group.start * inputs..(group.start + group.rows) * inputs];
                if channels > 1 && pixels > 1 {
                    channels_last(x, channels, pixels, &mut group.input);
                } else {
                    group.input.clear();
                    group.input.extend_from_slice(x);
                }
                if let Some(first) = first {
                    group.convolve(0, first, None);
                }
            });
        }
        for i in 0..n {
            let layer = &mut layers[i];
            if layer.batch_statistics() {
                layer.batch_mean(groups, i, rows);
                let mean = &layer.mean;
                each(groups, |group| group.squared_deviations(i, mean));
            }
            layer.statistics(groups, i, rows);
            let (layer, next) = (&layers[i], layers.get(i + 1));
            each(groups, |group| {
                group.normalise(i, layer, activation);
                match next {
                    Some(next) => group.convolve(i + 1, next, Some(layer.g.pool)),
                    None => {
                        let (out, per_image) = (
                            group.blocks[i].output(layer.g.pool),
                            layer.g.ph * layer.g.pw,
                        );
                        global_average(out, per_image, c, &mut group.features);
                    }
                }
            });
        }
        if n == 0 {
            each(groups, |group| {
                global_average(&group.input, pixels, c, &mut group.features)
            });
        }
        sized(features, rows * c);
        for group in groups.iter() {
            features[group.start * c..(group.start + group.rows) * c]
                .copy_from_slice(&group.features);
        }
        features
    }

    /// Gradients of every block's tensors from the gradient at the
    /// features (`rows × channels`). As forward, each parallel loop runs
    /// as far as a group can go alone: a block's convolution gradient with
    /// the block before's activation and pooling gradients.
    pub(super) fn backward(&mut self, rows: usize, features: &[f32]) {
        let ConvBody {
            layers,
            groups,
            used,
            activation,
            ..
        } = self;
        let (groups, activation) = (&mut groups[..*used], *activation);
        let Some(last) = layers.last() else {
            return;
        };
        let (n, c) = (layers.len(), last.g.c_out);
        let per_image = last.g.ph * last.g.pw;
        let scale = 1.0 / per_image as f32;
        each(groups, |group| {
            sized(&mut group.grad, group.rows * per_image * c);
            let features = &features[group.start * c..(group.start + group.rows) * c];
            for (g, f) in group
                .grad
                .chunks_exact_mut(per_image * c)
                .zip(features.chunks_exact(c))
            {
                for px in g.chunks_exact_mut(c) {
                    for (g, &f) in px.iter_mut().zip(f) {
                        *g = f * scale;
                    }
                }
            }
            group.activation_gradient(n - 1, last, activation);
        });
        for i in (0..n).rev() {
            layers[i].norm_gradients(groups, i, rows);
            let trains_kernels = layers[i].weight.lr.is_some();
            let (layer, before) = (&layers[i], i.checked_sub(1).map(|j| &layers[j]));
            each(groups, |group| {
                let pool = before.map(|b| b.g.pool);
                group.convolution_gradient(i, layer, trains_kernels, pool);
                if let Some(before) = before {
                    group.activation_gradient(i - 1, before, activation);
                }
            });
            if trains_kernels {
                let layer = &mut layers[i];
                total(groups, i, |b| &b.gwp, &mut layer.gwp);
                layer.g.tensor_order(&layer.gwp, &mut layer.weight.grad);
            }
        }
    }
}

impl Layer {
    /// Whether the step uses the batch's statistics (batch norm in training).
    fn batch_statistics(&self) -> bool {
        matches!(self.norm, Norm::Batch { train: true, .. })
    }

    /// The batch's mean per channel from the groups' sums (pixels × a
    /// division, as candle's `mean_keepdim`).
    fn batch_mean(&mut self, groups: &[Group], i: usize, rows: usize) {
        let m = (rows * self.g.oh * self.g.ow) as f32;
        total(groups, i, |b| &b.sum, &mut self.mean);
        for s in &mut self.mean {
            *s /= m;
        }
    }

    /// Batch norm's statistics for the step: with the batch's mean already
    /// taken, its biased variance from the groups' sums and the running
    /// averages updated as candle does (unbiased variance, each product in
    /// f32); when frozen, the running ones. Nothing for a bias.
    fn statistics(&mut self, groups: &[Group], i: usize, rows: usize) {
        let Norm::Batch {
            params: [_, _, mean, var],
            train,
        } = &mut self.norm
        else {
            return;
        };
        let m = rows * self.g.oh * self.g.ow;
        let mut variance = std::mem::take(&mut self.inv_std);
        if *train {
            total(groups, i, |b| &b.sum2, &mut variance);
            for s in &mut variance {
                *s /= m as f32;
            }
            let keep = (1.0 - BN_MOMENTUM) as f32;
            let take = BN_MOMENTUM as f32;
            let unbias = (BN_MOMENTUM * m as f64 / (m as f64 - 1.0)) as f32;
            for (r, &b) in mean.value.iter_mut().zip(&self.mean) {
                *r = *r * keep + b * take;
            }
            for (r, &b) in var.value.iter_mut().zip(&variance) {
                *r = *r * keep + b * unbias;
            }
        } else {
            self.mean.clone_from(&mean.value);
            variance.clone_from(&var.value);
        }
        for v in &mut variance {
            *v = 1.0 / (*v + BN_EPS as f32).sqrt();
        }
        self.inv_std = variance;
    }

    /// The bias's or batch norm's gradients from the groups' sums, and
    /// batch norm's per-channel factors for the gradient at its input.
    fn norm_gradients(&mut self, groups: &[Group], i: usize, rows: usize) {
        match &mut self.norm {
            Norm::Bias([bias]) => total(groups, i, |b| &b.sum, &mut bias.grad),
            Norm::Batch {
                params: [weight, bias, ..],
                train,
            } => {
                // Σ dy and Σ dy·x̂ per channel: the shift's and the scale's gradients.
                total(groups, i, |b| &b.sum, &mut bias.grad);
                total(groups, i, |b| &b.sum2, &mut weight.grad);
                self.factor.clear();
                self.factor.extend(
                    weight
                        .value
                        .iter()
                        .zip(&self.inv_std)
                        .map(|(&w, &inv)| w * inv),
                );
                if *train {
                    let n = (rows * self.g.oh * self.g.ow) as f32;
                    self.mean_dy.clear();
                    self.mean_dy.extend(bias.grad.iter().map(|&s| s / n));
                    self.mean_dyx.clear();
                    self.mean_dyx.extend(weight.grad.iter().map(|&s| s / n));
                }
            }
        }
    }
}

impl Group {
    /// Block `i`'s input (the images, or block `i − 1`'s output pooled by
    /// `before`) and its buffers.
    fn block(&mut self, i: usize, before: Option<Pooling>) -> (&[f32], &mut Buffers) {
        let (done, rest) = self.blocks.split_at_mut(i);
        let input = match (done.last(), before) {
            (Some(b), Some(pool)) => b.output(pool),
            _ => &self.input[..],
        };
        (input, &mut rest[0])
    }

    /// The convolution of block `i`, and its per-channel sums when the
    /// block takes the batch's statistics.
    fn convolve(&mut self, i: usize, layer: &Layer, before: Option<Pooling>) {
        let rows = self.rows;
        let (a, b) = self.block(i, before);
        let g = layer.g;
        let (m, patch, c) = (rows * g.oh * g.ow, g.patch(), g.c_out);
        sized(&mut b.z, m * c);
        if layer.packed.is_empty() {
            im2col(a, rows, &g, &mut b.padded, &mut b.cols);
            // z (pixels × c_out) = cols (pixels × patch) · wpᵀ (patch × c_out).
            matmul(
                &mut b.z,
                false,
                (m, c, patch),
                &b.cols,
                (patch as isize, 1),
                &layer.wp,
                (1, patch as isize),
            );
        } else {
            let src = with_border(a, rows, &g, &mut b.padded);
            direct::convolve(src, rows, &g, &layer.packed, &mut b.z);
        }
        if layer.batch_statistics() {
            channel_sums(&b.z, c, &mut b.sum);
        }
    }

    /// Σ (z − mean)² per channel of block `i`'s convolution.
    fn squared_deviations(&mut self, i: usize, mean: &[f32]) {
        let b = &mut self.blocks[i];
        b.sum2.clear();
        b.sum2.resize(mean.len(), 0.0);
        for z in b.z.chunks_exact(mean.len()) {
            for ((s, &z), &mu) in b.sum2.iter_mut().zip(z).zip(mean) {
                let d = z - mu;
                *s += d * d;
            }
        }
    }

    /// Batch norm (or the bias), the activation and the pooling of block `i`.
    fn normalise(&mut self, i: usize, layer: &Layer, activation: Activation) {
        let rows = self.rows;
        let b = &mut self.blocks[i];
        let c = layer.g.c_out;
        sized(&mut b.pre, b.z.len());
        match &layer.norm {
            Norm::Bias([bias]) => {
                for (p, z) in b.pre.chunks_exact_mut(c).zip(b.z.chunks_exact(c)) {
                    for ((p, &z), &bias) in p.iter_mut().zip(z).zip(&bias.value) {
                        *p = z + bias;
                    }
                }
            }
            Norm::Batch {
                params: [gamma, beta, ..],
                ..
            } => {
                let (mean, inv_std) = (&layer.mean, &layer.inv_std);
                for (z, p) in b.z.chunks_exact_mut(c).zip(b.pre.chunks_exact_mut(c)) {
                    for (((((z, p), &mu), &inv), &gamma), &beta) in z
                        .iter_mut()
                        .zip(p.iter_mut())
                        .zip(mean)
                        .zip(inv_std)
                        .zip(&gamma.value)
                        .zip(&beta.value)
                    {
                        let xhat = (*z - mu) * inv;
                        *z = xhat;
                        *p = xhat * gamma + beta;
                    }
                }
            }
        }
        activate_into(&b.pre, &mut b.act, activation);
        let g = layer.g;
        match g.pool {
            Pooling::None => {}
            Pooling::Max => g.max_pool_argmax(&b.act, rows, &mut b.out, &mut b.argmax),
            Pooling::Avg => g.avg_pool(&b.act, rows, &mut b.out),
        }
    }

    /// From the gradient at block `i`'s output: the gradient at its
    /// convolution's output before batch norm's backward (through the
    /// pooling and the activation), and this group's sums for the norm's
    /// gradients.
    fn activation_gradient(&mut self, i: usize, layer: &Layer, activation: Activation) {
        let (rows, grad) = (self.rows, &self.grad);
        let b = &mut self.blocks[i];
        let g = layer.g;
        let (m, c) = (rows * g.oh * g.ow, g.c_out);
        sized(&mut b.gz, m * c);
        match g.pool {
            Pooling::None => {
                b.gz.copy_from_slice(&grad[..m * c]);
                times_derivative(&mut b.gz, &b.pre, &b.act, activation);
            }
            Pooling::Max => {
                // Only each window's maximum gets a gradient (the windows
                // do not overlap), so the activation's derivative is taken
                // there alone: a quarter of the values.
                b.gz.fill(0.0);
                for (&at, &d) in b.argmax.iter().zip(grad) {
                    let at = at as usize;
                    b.gz[at] = d * derivative(b.pre[at], b.act[at], activation);
                }
            }
            Pooling::Avg => {
                g.avg_pool_adjoint(grad, rows, &mut b.gz);
                times_derivative(&mut b.gz, &b.pre, &b.act, activation);
            }
        }
        channel_sums(&b.gz, c, &mut b.sum);
        if let Norm::Batch { .. } = layer.norm {
            b.sum2.clear();
            b.sum2.resize(c, 0.0);
            for (d, x) in b.gz.chunks_exact(c).zip(b.z.chunks_exact(c)) {
                for ((s, &d), &x) in b.sum2.iter_mut().zip(d).zip(x) {
                    *s += d * x;
                }
            }
        }
    }

    /// Batch norm's gradient at the convolution's output, this group's
    /// share of the kernels' gradient (with `kernels`), and with `input`
    /// the gradient at block `i`'s input, which becomes `grad`.
    fn convolution_gradient(
        &mut self,
        i: usize,
        layer: &Layer,
        kernels: bool,
        before: Option<Pooling>,
    ) {
        let rows = self.rows;
        // `block`'s split, by field: `grad_in` is written below.
        let (done, rest) = self.blocks.split_at_mut(i);
        let a: &[f32] = match (done.last(), before) {
            (Some(d), Some(pool)) => d.output(pool),
            _ => &self.input,
        };
        let b = &mut rest[0];
        let g = layer.g;
        let (m, patch, c) = (rows * g.oh * g.ow, g.patch(), g.c_out);
        if let Norm::Batch { train, .. } = layer.norm {
            let factor = &layer.factor;
            if train {
                // dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy·x̂)): the batch
                // statistics depend on every pixel.
                for (d, x) in b.gz.chunks_exact_mut(c).zip(b.z.chunks_exact(c)) {
                    for ((((d, &x), &f), &mean), &mean_x) in d
                        .iter_mut()
                        .zip(x)
                        .zip(factor)
                        .zip(&layer.mean_dy)
                        .zip(&layer.mean_dyx)
                    {
                        *d = f * (*d - mean - x * mean_x);
                    }
                }
            } else {
                for d in b.gz.chunks_exact_mut(c) {
                    for (d, &f) in d.iter_mut().zip(factor) {
                        *d *= f;
                    }
                }
            }
        }
        let direct = !layer.packed.is_empty();
        if kernels {
            // The kernels' gradient (c_out × patch) = gzᵀ · cols.
            sized(&mut b.gwp, c * patch);
            if direct {
                // The patches read again from the input forward bordered.
                let src = b.padded.bordered(a, rows, &g);
                direct::kernel_gradient(src, rows, &g, &b.gz, &mut b.gwp);
            } else {
                matmul(
                    &mut b.gwp,
                    false,
                    (c, patch, m),
                    &b.gz,
                    (1, c as isize),
                    &b.cols,
                    (patch as isize, 1),
                );
            }
        }
        if before.is_some() {
            // The gradient at the patches (pixels × patch) = gz · wp, summed
            // back onto the input pixels each patch read.
            sized(&mut b.dcols, m * patch);
            if direct {
                direct::product(&b.gz, (m, patch, c), &layer.wp_rows, &mut b.dcols);
            } else {
                matmul(
                    &mut b.dcols,
                    false,
                    (m, patch, c),
                    &b.gz,
                    (c as isize, 1),
                    &layer.wp,
                    (patch as isize, 1),
                );
            }
            col2im(&b.dcols, rows, &g, &mut self.grad_in);
            std::mem::swap(&mut self.grad, &mut self.grad_in);
        }
    }
}
