//! A CNN's convolution blocks (conv, batch norm or a bias, the activation,
//! 2×2 pooling) and its global average pooling, as `arch::cnn` computes
//! them in training, on plain buffers.
//!
//! Activations are kept channels-last (`[N, H, W, C]`): a convolution's
//! im2col then copies whole runs of `kernel · c_in` values, its product
//! comes out in that layout with no transpose, and batch norm and pooling
//! read each pixel's channels contiguously. The kernels keep PyTorch's
//! `[c_out, c_in, k, k]` layout in the tensors (artifacts and fingerprints
//! are unchanged) and are permuted to the patch order (`ky, kx, c`) once a
//! step, their gradients back.

use crate::api::{Activation, ArchitectureSpec, Pooling};

use super::super::super::arch::InputShape;
use super::super::super::arch::cnn::{BN_EPS, BN_MOMENTUM};
use super::super::super::arch::cpu::{
    Geometry, Padded, activate_all, channels_last, global_average, im2col, matmul, sized,
};
use super::super::super::error::MlError;
use super::{Param, times_derivative};

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

struct Block {
    g: Geometry,
    weight: Param,
    norm: Norm,
    /// The kernels in patch order (`[c_out, ky, kx, c_in]`) and their gradient.
    wp: Vec<f32>,
    gwp: Vec<f32>,
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
    /// Batch norm's 1 / √(variance + ε) per channel.
    inv_std: Vec<f32>,
    /// The loss's gradient at the convolution's output.
    gz: Vec<f32>,
}

/// The convolution blocks and global average pooling of a CNN.
pub(super) struct ConvBody {
    channels: usize,
    height: usize,
    width: usize,
    blocks: Vec<Block>,
    activation: Activation,
    /// The batch channels-last, when it has several channels and pixels.
    input: Vec<f32>,
    /// Global average pooling's output: one vector per image.
    features: Vec<f32>,
    /// The gradient at the current block's output, and at its input.
    grad: Vec<f32>,
    grad_in: Vec<f32>,
    dcols: Vec<f32>,
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
        let mut blocks = Vec::with_capacity(geometries.len());
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
            blocks.push(Block {
                g,
                weight,
                norm,
                wp: Vec::new(),
                gwp: Vec::new(),
                padded: Padded::default(),
                cols: Vec::new(),
                z: Vec::new(),
                pre: Vec::new(),
                act: Vec::new(),
                out: Vec::new(),
                argmax: Vec::new(),
                inv_std: Vec::new(),
                gz: Vec::new(),
            });
        }
        *tensors = taken.map(|(_, p)| p).collect();
        Ok(Some(ConvBody {
            channels,
            height,
            width,
            blocks,
            activation: spec.activation,
            input: Vec::new(),
            features: Vec::new(),
            grad: Vec::new(),
            grad_in: Vec::new(),
            dcols: Vec::new(),
        }))
    }

    /// Values per image.
    pub(super) fn inputs(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Channels of the last block's output (the features' width).
    fn last_channels(&self) -> usize {
        self.blocks.last().map_or(self.channels, |b| b.g.c_out)
    }

    pub(super) fn params(&self) -> impl Iterator<Item = &Param> {
        self.blocks
            .iter()
            .flat_map(|b| std::iter::once(&b.weight).chain(b.norm.params()))
    }

    pub(super) fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.blocks
            .iter_mut()
            .flat_map(|b| std::iter::once(&mut b.weight).chain(b.norm.params_mut()))
    }

    /// The forward pass in training mode on `x` (`rows` images, channels
    /// first): each image's pooled features (`rows × channels`).
    pub(super) fn forward(&mut self, x: &[f32], rows: usize) -> &[f32] {
        let pixels = self.height * self.width;
        let a: &[f32] = if self.channels > 1 && pixels > 1 {
            channels_last(x, self.channels, pixels, &mut self.input);
            &self.input
        } else {
            x
        };
        for i in 0..self.blocks.len() {
            let (done, rest) = self.blocks.split_at_mut(i);
            let input = done.last().map_or(a, Block::output);
            rest[0].forward(input, rows, self.activation);
        }
        let c = self.last_channels();
        let (out, per_image) = match self.blocks.last() {
            Some(b) => (b.output(), b.g.ph * b.g.pw),
            None => (a, pixels),
        };
        global_average(out, per_image, c, &mut self.features);
        &self.features
    }

    /// Gradients of every block's tensors from the gradient at the
    /// features (`rows × channels`).
    pub(super) fn backward(&mut self, rows: usize, features: &[f32]) {
        let Some(last) = self.blocks.last() else {
            return;
        };
        let c = last.g.c_out;
        let per_image = last.g.ph * last.g.pw;
        let scale = 1.0 / per_image as f32;
        sized(&mut self.grad, rows * per_image * c);
        for (g, f) in self
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
        for i in (0..self.blocks.len()).rev() {
            let grad_in = (i > 0).then_some(&mut self.grad_in);
            self.blocks[i].backward(rows, &self.grad, self.activation, &mut self.dcols, grad_in);
            std::mem::swap(&mut self.grad, &mut self.grad_in);
        }
    }
}

impl Block {
    /// The block's output: pooled, or the activation without pooling.
    fn output(&self) -> &[f32] {
        match self.g.pool {
            Pooling::None => &self.act,
            Pooling::Max | Pooling::Avg => &self.out,
        }
    }

    fn forward(&mut self, a: &[f32], rows: usize, activation: Activation) {
        let g = self.g;
        let (m, patch, c) = (rows * g.oh * g.ow, g.patch(), g.c_out);
        g.patch_order(&self.weight.value, &mut self.wp);
        im2col(a, rows, &g, &mut self.padded, &mut self.cols);
        sized(&mut self.z, m * c);
        // z (pixels × c_out) = cols (pixels × patch) · wpᵀ (patch × c_out).
        matmul(
            &mut self.z,
            false,
            (m, c, patch),
            &self.cols,
            (patch as isize, 1),
            &self.wp,
            (1, patch as isize),
        );
        sized(&mut self.pre, m * c);
        match &mut self.norm {
            Norm::Bias([bias]) => {
                for (p, z) in self.pre.chunks_exact_mut(c).zip(self.z.chunks_exact(c)) {
                    for ((p, &z), &b) in p.iter_mut().zip(z).zip(&bias.value) {
                        *p = z + b;
                    }
                }
            }
            Norm::Batch {
                params: [weight, bias, mean, var],
                train,
            } => {
                sized(&mut self.inv_std, c);
                let (mu, var_now) = if *train {
                    // The batch's mean and biased variance per channel,
                    // each a sum over the pixels then a division, as
                    // candle's `mean_keepdim`.
                    let mut mu = vec![0.0f32; c];
                    for z in self.z.chunks_exact(c) {
                        for (s, &z) in mu.iter_mut().zip(z) {
                            *s += z;
                        }
                    }
                    for s in &mut mu {
                        *s /= m as f32;
                    }
                    let mut sq = vec![0.0f32; c];
                    for z in self.z.chunks_exact(c) {
                        for ((s, &z), &mu) in sq.iter_mut().zip(z).zip(&mu) {
                            let d = z - mu;
                            *s += d * d;
                        }
                    }
                    for s in &mut sq {
                        *s /= m as f32;
                    }
                    // The running averages as candle updates them
                    // (unbiased variance), each product in f32.
                    let keep = (1.0 - BN_MOMENTUM) as f32;
                    let take = BN_MOMENTUM as f32;
                    let unbias = (BN_MOMENTUM * m as f64 / (m as f64 - 1.0)) as f32;
                    for (r, &b) in mean.value.iter_mut().zip(&mu) {
                        *r = *r * keep + b * take;
                    }
                    for (r, &b) in var.value.iter_mut().zip(&sq) {
                        *r = *r * keep + b * unbias;
                    }
                    (mu, sq)
                } else {
                    (mean.value.clone(), var.value.clone())
                };
                for (inv, &v) in self.inv_std.iter_mut().zip(&var_now) {
                    *inv = 1.0 / (v + BN_EPS as f32).sqrt();
                }
                let (inv_std, gamma, beta) = (&self.inv_std, &weight.value, &bias.value);
                for (z, p) in self.z.chunks_exact_mut(c).zip(self.pre.chunks_exact_mut(c)) {
                    for (((((z, p), &mu), &inv), &gamma), &beta) in z
                        .iter_mut()
                        .zip(p.iter_mut())
                        .zip(&mu)
                        .zip(inv_std)
                        .zip(gamma)
                        .zip(beta)
                    {
                        let xhat = (*z - mu) * inv;
                        *z = xhat;
                        *p = xhat * gamma + beta;
                    }
                }
            }
        }
        self.act.clear();
        self.act.extend_from_slice(&self.pre);
        activate_all(&mut self.act, activation);
        match self.g.pool {
            Pooling::None => {}
            Pooling::Max => g.max_pool_argmax(&self.act, rows, &mut self.out, &mut self.argmax),
            Pooling::Avg => g.avg_pool(&self.act, rows, &mut self.out),
        }
    }

    /// Gradients of the block's tensors from `grad` at its output; with
    /// `grad_in`, the gradient at its input too.
    fn backward(
        &mut self,
        rows: usize,
        grad: &[f32],
        activation: Activation,
        dcols: &mut Vec<f32>,
        grad_in: Option<&mut Vec<f32>>,
    ) {
        let g = self.g;
        let (m, patch, c) = (rows * g.oh * g.ow, g.patch(), g.c_out);
        sized(&mut self.gz, m * c);
        match self.g.pool {
            Pooling::None => self.gz.copy_from_slice(&grad[..m * c]),
            Pooling::Max => {
                self.gz.fill(0.0);
                for (&at, &d) in self.argmax.iter().zip(grad) {
                    self.gz[at as usize] += d;
                }
            }
            Pooling::Avg => g.avg_pool_adjoint(grad, rows, &mut self.gz),
        }
        times_derivative(&mut self.gz, &self.pre, &self.act, activation);
        match &mut self.norm {
            Norm::Bias([bias]) => {
                bias.grad.fill(0.0);
                for d in self.gz.chunks_exact(c) {
                    for (b, &d) in bias.grad.iter_mut().zip(d) {
                        *b += d;
                    }
                }
            }
            Norm::Batch {
                params: [weight, bias, ..],
                train,
            } => {
                // Σ dy and Σ dy·x̂ per channel: the shift's and the scale's gradients.
                let (sum, sum_x) = (&mut bias.grad, &mut weight.grad);
                sum.fill(0.0);
                sum_x.fill(0.0);
                for (d, x) in self.gz.chunks_exact(c).zip(self.z.chunks_exact(c)) {
                    for (((s, sx), &d), &x) in sum.iter_mut().zip(sum_x.iter_mut()).zip(d).zip(x) {
                        *s += d;
                        *sx += d * x;
                    }
                }
                let factor: Vec<f32> = (0..c)
                    .map(|ch| weight.value[ch] * self.inv_std[ch])
                    .collect();
                if *train {
                    // dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy·x̂)): the
                    // batch statistics depend on every pixel.
                    let n = m as f32;
                    let mean: Vec<f32> = sum.iter().map(|&s| s / n).collect();
                    let mean_x: Vec<f32> = sum_x.iter().map(|&s| s / n).collect();
                    for (d, x) in self.gz.chunks_exact_mut(c).zip(self.z.chunks_exact(c)) {
                        for ((((d, &x), &f), &mean), &mean_x) in
                            d.iter_mut().zip(x).zip(&factor).zip(&mean).zip(&mean_x)
                        {
                            *d = f * (*d - mean - x * mean_x);
                        }
                    }
                } else {
                    for d in self.gz.chunks_exact_mut(c) {
                        for (d, &f) in d.iter_mut().zip(&factor) {
                            *d *= f;
                        }
                    }
                }
            }
        }
        if self.weight.lr.is_some() {
            // The kernels' gradient (c_out × patch) = gzᵀ · cols, then back
            // to the tensor's [c_out, c_in, k, k] order.
            sized(&mut self.gwp, c * patch);
            matmul(
                &mut self.gwp,
                false,
                (c, patch, m),
                &self.gz,
                (1, c as isize),
                &self.cols,
                (patch as isize, 1),
            );
            g.tensor_order(&self.gwp, &mut self.weight.grad);
        }
        if let Some(grad_in) = grad_in {
            // The gradient at the patches (pixels × patch) = gz · wp, summed
            // back onto the input pixels each patch read.
            sized(dcols, m * patch);
            matmul(
                dcols,
                false,
                (m, patch, c),
                &self.gz,
                (c as isize, 1),
                &self.wp,
                (patch as isize, 1),
            );
            col2im(dcols, rows, &g, grad_in);
        }
    }
}

/// For output pixel `(oy, ox)` and kernel row `ky`: the input row, and the
/// kernel columns `lo..hi` that fall inside it (the rest read padding);
/// `None` when the whole kernel row is padding.
fn kernel_row(g: &Geometry, oy: usize, ox: usize, ky: usize) -> Option<(usize, usize, usize)> {
    let y = (oy * g.stride + ky) as isize - g.padding as isize;
    if y < 0 || y >= g.height as isize {
        return None;
    }
    let x0 = (ox * g.stride) as isize - g.padding as isize;
    let lo = (-x0).clamp(0, g.kernel as isize) as usize;
    let hi = (g.width as isize - x0).clamp(0, g.kernel as isize) as usize;
    (lo < hi).then_some((y as usize, lo, hi))
}

/// im2col's adjoint: each patch value's gradient added back onto the
/// input pixel it was copied from; `grad_in` is `rows × H × W × c_in`.
fn col2im(dcols: &[f32], rows: usize, g: &Geometry, grad_in: &mut Vec<f32>) {
    let (patch, span) = (g.patch(), g.kernel * g.c_in);
    sized(grad_in, rows * g.height * g.width * g.c_in);
    grad_in.fill(0.0);
    let mut rows_of = dcols.chunks_exact(patch);
    for n in 0..rows {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let Some(row) = rows_of.next() else { return };
                for (ky, seg) in row.chunks_exact(span).enumerate() {
                    let Some((y, lo, hi)) = kernel_row(g, oy, ox, ky) else {
                        continue;
                    };
                    let x = ox * g.stride + lo - g.padding;
                    let from = ((n * g.height + y) * g.width + x) * g.c_in;
                    for (d, &s) in grad_in[from..from + (hi - lo) * g.c_in]
                        .iter_mut()
                        .zip(&seg[lo * g.c_in..hi * g.c_in])
                    {
                        *d += s;
                    }
                }
            }
        }
    }
}
