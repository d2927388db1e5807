//! The CPU kernels a CNN and an MLP are computed with outside candle: the
//! matrix product (gemm, the kernels candle's own matmul calls), the
//! activations as candle computes them, im2col over channels-last images,
//! and 2×2 pooling. One home for the fused training step
//! (`ml::train::fused`) and the CNN's inference on the CPU ([`Cnn`]'s
//! network), so the two compute a block the same way.
//!
//! [`Cnn`]: super::cnn::Cnn

use super::direct;
use crate::api::{Activation, ConvBlock, Pooling};

/// The sizes of one convolution block over inputs of one size: a square
/// kernel with "same" padding (`kernel / 2`), then 2×2 pooling with
/// stride 2 that drops an odd last row or column, as `arch::cnn` builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) c_in: usize,
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) c_out: usize,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
    /// The convolution's output.
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    /// The pooling, and the size after it.
    pub(crate) pool: Pooling,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
}

impl Geometry {
    /// `block` over `c_in` channels of `height × width`; `None` where
    /// candle's ops are left to answer: an even kernel (validation refuses
    /// it), a kernel larger than the padded input, or an output pooled to
    /// nothing (sizes as `api::conv_output_size`, the one home of the rule).
    pub(crate) fn new(
        block: &ConvBlock,
        c_in: usize,
        height: usize,
        width: usize,
    ) -> Option<Geometry> {
        let (kernel, stride, padding) = (block.kernel as usize, block.step(), block.padding());
        if kernel % 2 == 0 || height + 2 * padding < kernel || width + 2 * padding < kernel {
            return None;
        }
        let (ph, pw) =
            crate::api::conv_output_size(std::slice::from_ref(block), height, width).ok()?;
        // Same padding and an odd kernel: `(n + 2p − k) / s + 1` is ⌈n / s⌉.
        let (oh, ow) = (height.div_ceil(stride), width.div_ceil(stride));
        Some(Geometry {
            c_in,
            height,
            width,
            c_out: block.channels as usize,
            kernel,
            stride,
            padding,
            oh,
            ow,
            pool: block.pool,
            ph,
            pw,
        })
    }

    /// Values per patch.
    pub(crate) fn patch(&self) -> usize {
        self.kernel * self.kernel * self.c_in
    }

    /// `weight` (`[c_out, c_in, k, k]`, PyTorch's layout) in patch order
    /// (`[c_out, ky, kx, c_in]`), into `wp`.
    pub(crate) fn patch_order(&self, weight: &[f32], wp: &mut Vec<f32>) {
        let (patch, kk) = (self.patch(), self.kernel * self.kernel);
        sized(wp, self.c_out * patch);
        for (w, wp) in weight.chunks_exact(patch).zip(wp.chunks_exact_mut(patch)) {
            for ch in 0..self.c_in {
                for k in 0..kk {
                    wp[k * self.c_in + ch] = w[ch * kk + k];
                }
            }
        }
    }

    /// The inverse of [`Geometry::patch_order`]: a gradient in patch order
    /// back to the tensor's layout.
    pub(crate) fn tensor_order(&self, wp: &[f32], weight: &mut [f32]) {
        let (patch, kk) = (self.patch(), self.kernel * self.kernel);
        for (w, wp) in weight.chunks_exact_mut(patch).zip(wp.chunks_exact(patch)) {
            for ch in 0..self.c_in {
                for k in 0..kk {
                    w[ch * kk + k] = wp[k * self.c_in + ch];
                }
            }
        }
    }

    /// Each 2×2 window of `act` (`rows × oh × ow × c_out`), row-major:
    /// the positions in `act` of its four values, for each pooled output
    /// in order (`rows × ph × pw`, then the channel).
    fn windows(&self, rows: usize) -> impl Iterator<Item = [usize; 4]> + '_ {
        let c = self.c_out;
        (0..rows).flat_map(move |n| {
            (0..self.ph).flat_map(move |py| {
                (0..self.pw).map(move |px| {
                    let p00 = ((n * self.oh + 2 * py) * self.ow + 2 * px) * c;
                    [p00, p00 + c, p00 + self.ow * c, p00 + self.ow * c + c]
                })
            })
        })
    }

    /// 2×2 max pooling of `act` into `out`.
    pub(crate) fn max_pool(&self, act: &[f32], rows: usize, out: &mut Vec<f32>) {
        sized(out, rows * self.ph * self.pw * self.c_out);
        self.pool_max::<false>(act, rows, out, &mut []);
    }

    /// [`Geometry::max_pool`], and the position in `act` of each window's
    /// maximum for the backward pass: the first, row-major, as candle's
    /// argmax picks among ties.
    pub(crate) fn max_pool_argmax(
        &self,
        act: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
        argmax: &mut Vec<u32>,
    ) {
        let pooled = rows * self.ph * self.pw * self.c_out;
        sized(out, pooled);
        argmax.resize(pooled, 0);
        self.pool_max::<true>(act, rows, out, argmax);
    }

    fn pool_max<const ARGMAX: bool>(
        &self,
        act: &[f32],
        rows: usize,
        out: &mut [f32],
        argmax: &mut [u32],
    ) {
        let c = self.c_out;
        let mut j = 0;
        for n in 0..rows {
            for py in 0..self.ph {
                let top = (n * self.oh + 2 * py) * self.ow * c;
                let bottom = top + self.ow * c;
                for px in 0..self.pw {
                    let at = [
                        top + 2 * px * c,
                        top + (2 * px + 1) * c,
                        bottom + 2 * px * c,
                        bottom + (2 * px + 1) * c,
                    ];
                    let [a, b, d, e] = at.map(|p| &act[p..p + c]);
                    let o = &mut out[j..j + c];
                    if ARGMAX {
                        let am = &mut argmax[j..j + c];
                        for ch in 0..c {
                            let (mut best, mut from) = (a[ch], at[0]);
                            for (v, p) in [(b[ch], at[1]), (d[ch], at[2]), (e[ch], at[3])] {
                                if v > best {
                                    (best, from) = (v, p);
                                }
                            }
                            o[ch] = best;
                            am[ch] = (from + ch) as u32;
                        }
                    } else {
                        for ((((o, &a), &b), &d), &e) in o.iter_mut().zip(a).zip(b).zip(d).zip(e) {
                            // The same comparisons as with the argmax, so
                            // the same value (a NaN included).
                            let mut best = a;
                            for v in [b, d, e] {
                                if v > best {
                                    best = v;
                                }
                            }
                            *o = best;
                        }
                    }
                    j += c;
                }
            }
        }
    }

    /// 2×2 average pooling of `act` into `out`.
    pub(crate) fn avg_pool(&self, act: &[f32], rows: usize, out: &mut Vec<f32>) {
        let c = self.c_out;
        sized(out, rows * self.ph * self.pw * c);
        let mut j = 0;
        for [a, b, d, e] in self.windows(rows) {
            for ch in 0..c {
                out[j] = (act[a + ch] + act[b + ch] + act[d + ch] + act[e + ch]) / 4.0;
                j += 1;
            }
        }
    }

    /// Average pooling's adjoint: a quarter of each output's gradient to
    /// each value of its window; `grad_act` is overwritten.
    pub(crate) fn avg_pool_adjoint(&self, grad: &[f32], rows: usize, grad_act: &mut [f32]) {
        let c = self.c_out;
        grad_act.fill(0.0);
        let mut j = 0;
        for window in self.windows(rows) {
            for ch in 0..c {
                let d = grad[j] * 0.25;
                for at in window {
                    grad_act[at + ch] = d;
                }
                j += 1;
            }
        }
    }
}

/// `v` at length `n`, its values left to be overwritten (no clearing pass
/// once the length is steady).
pub(crate) fn sized(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

/// Evaluates `$body` with `$a` bound to `$activation`, one copy of `$body`
/// per activation: inside each copy the activation is a constant, so the
/// loops in `$body` are specialised ([`activate`] and the derivatives are
/// inlined with their `match` folded) instead of matching per value. The
/// one home of that choice for every kernel loop over activations.
macro_rules! specialised {
    ($activation:expr, $a:ident => $body:expr) => {
        match $activation {
            Activation::Relu => {
                let $a = Activation::Relu;
                $body
            }
            Activation::Gelu => {
                let $a = Activation::Gelu;
                $body
            }
            Activation::Tanh => {
                let $a = Activation::Tanh;
                $body
            }
            Activation::Sigmoid => {
                let $a = Activation::Sigmoid;
                $body
            }
            Activation::Silu => {
                let $a = Activation::Silu;
                $body
            }
        }
    };
}
pub(crate) use specialised;

/// The activation of each value of `values`, in place.
pub(crate) fn activate_all(values: &mut [f32], activation: Activation) {
    specialised!(activation, a => {
        for v in values.iter_mut() {
            *v = activate(*v, a);
        }
    })
}

/// The activation of each value of `src`, into `dst` (one pass, no copy first).
pub(crate) fn activate_into(src: &[f32], dst: &mut Vec<f32>, activation: Activation) {
    sized(dst, src.len());
    specialised!(activation, a => {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = activate(s, a);
        }
    })
}

/// `z · scale + shift` per channel (`z` is pixels × channels), then the
/// activation, in one pass: batch norm folded, as inference computes a block.
fn scale_shift_activate(z: &mut [f32], scale: &[f32], shift: &[f32], activation: Activation) {
    specialised!(activation, a => {
        for px in z.chunks_exact_mut(scale.len()) {
            for ((v, &s), &t) in px.iter_mut().zip(scale).zip(shift) {
                *v = activate(*v * s + t, a);
            }
        }
    })
}

/// The activation a spec names, as candle computes it.
#[inline]
pub(crate) fn activate(z: f32, activation: Activation) -> f32 {
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

/// `dst (m × n, row-major) [+]= lhs (m × k) · rhs (k × n)`, each operand
/// given by its (row, column) strides.
#[allow(unsafe_code)]
pub(crate) fn matmul(
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

/// `z (rows × outputs) = x (rows × inputs) · weightᵀ + bias`, `weight`
/// being `outputs × inputs` row-major: candle's `Linear` on a 2-D batch
/// value for value (the gemm call its matmul makes on `weight.t()`, then
/// the broadcast add). The one home of a linear layer on the CPU kernels,
/// for the fused training step and for inference.
pub(crate) fn linear(z: &mut Vec<f32>, x: &[f32], rows: usize, weight: &[f32], bias: &[f32]) {
    let outputs = bias.len();
    sized(z, rows * outputs);
    if outputs == 0 {
        return;
    }
    let inputs = weight.len() / outputs;
    if super::dots::applies(rows, outputs) {
        // gemm's bits for few rows, without its dispatch (`dots`).
        super::dots::linear(z, x, rows, weight, outputs);
    } else {
        matmul(
            z,
            false,
            (rows, outputs, inputs),
            x,
            (inputs as isize, 1),
            weight,
            (1, inputs as isize),
        );
    }
    for row in z.chunks_exact_mut(outputs) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Each row of `values` (`rows × width`) replaced by its softmax as
/// candle's `softmax_last_dim` computes it on the CPU: the row's maximum,
/// `exp(v − max)`, their sum by candle's own vector kernel, then each
/// value divided by the sum. Served probabilities come from here, so they
/// are the bits candle would give (`ml::outputs` tests hold that).
#[allow(unsafe_code)]
pub(crate) fn softmax_rows(values: &mut [f32], width: usize) {
    use candle_core::cpu::kernels::VecOps;
    if width == 0 {
        return;
    }
    for row in values.chunks_exact_mut(width) {
        let mut max = f32::NEG_INFINITY;
        // SAFETY: `row` holds `width` > 0 values and `max` is a valid f32.
        unsafe { <f32 as VecOps>::vec_reduce_max(row.as_ptr(), &mut max, width) };
        for v in row.iter_mut() {
            *v = (*v - max).exp();
        }
        let mut sum = 0.0f32;
        // SAFETY: as above.
        unsafe { <f32 as VecOps>::vec_reduce_sum(row.as_ptr(), &mut sum, width) };
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}

/// Images with their zero border, for [`im2col`]: kept between calls, the
/// border zeroed once per shape.
#[derive(Default)]
pub(crate) struct Padded {
    shape: Option<(Geometry, usize)>,
    values: Vec<f32>,
}

impl Padded {
    /// What [`with_border`] last returned for `a` at this geometry, without
    /// copying the interior again: the training step's backward pass reads
    /// the patches its forward pass bordered.
    pub(crate) fn bordered<'a>(&'a self, a: &'a [f32], rows: usize, g: &Geometry) -> &'a [f32] {
        if g.padding == 0 {
            return a;
        }
        assert_eq!(
            self.shape,
            Some((*g, rows)),
            "Padded::bordered before with_border at this shape"
        );
        &self.values
    }
}

/// The patches of `a` (`rows × H × W × c_in`): one row of `patch()`
/// values per output pixel, zero where the kernel reads padding. The
/// images are first copied into `padded` with their zero border, so every
/// kernel row is one run of `kernel · c_in` values.
pub(crate) fn im2col(
    a: &[f32],
    rows: usize,
    g: &Geometry,
    padded: &mut Padded,
    cols: &mut Vec<f32>,
) {
    let (patch, span, c_in) = (g.patch(), g.kernel * g.c_in, g.c_in);
    let (hp, wp) = (g.height + 2 * g.padding, g.width + 2 * g.padding);
    let src = with_border(a, rows, g, padded);
    sized(cols, rows * g.oh * g.ow * patch);
    let mut out = cols.chunks_exact_mut(patch);
    for n in 0..rows {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let Some(row) = out.next() else { return };
                for (ky, seg) in row.chunks_exact_mut(span).enumerate() {
                    let from = ((n * hp + oy * g.stride + ky) * wp + ox * g.stride) * c_in;
                    copy_run(seg, &src[from..from + span]);
                }
            }
        }
    }
}

/// `a` (`rows × H × W × c_in`) with its zero border of `g.padding`: `a`
/// itself without one, else a copy in `padded`.
pub(crate) fn with_border<'a>(
    a: &'a [f32],
    rows: usize,
    g: &Geometry,
    padded: &'a mut Padded,
) -> &'a [f32] {
    if g.padding == 0 {
        return a;
    }
    let (hp, wp, c_in) = (g.height + 2 * g.padding, g.width + 2 * g.padding, g.c_in);
    // The border is zeroed when the buffer takes a shape and never
    // written after: only the interior is copied below.
    if padded.shape != Some((*g, rows)) {
        padded.values.clear();
        padded.values.resize(rows * hp * wp * c_in, 0.0);
        padded.shape = Some((*g, rows));
    }
    let line = g.width * c_in;
    for (image, out) in a
        .chunks_exact(g.height * line)
        .zip(padded.values.chunks_exact_mut(hp * wp * c_in))
    {
        for (y, from) in image.chunks_exact(line).enumerate() {
            let at = ((y + g.padding) * wp + g.padding) * c_in;
            out[at..at + line].copy_from_slice(from);
        }
    }
    &padded.values
}

/// `dst` ← `src` (as long): the short runs of a first layer (a 3- or
/// 5-wide kernel over one channel) and longer ones as fixed-size copies,
/// not a library call each.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    match dst.len() {
        3 => dst[..3].copy_from_slice(&src[..3]),
        5 => dst[..5].copy_from_slice(&src[..5]),
        _ => {
            // Fixed 16-value chunks: vector moves, not a call per run.
            let mut s = src[..dst.len()].chunks_exact(16);
            let mut d = dst.chunks_exact_mut(16);
            for (d, s) in (&mut d).zip(&mut s) {
                d.copy_from_slice(s);
            }
            d.into_remainder().copy_from_slice(s.remainder());
        }
    }
}

/// A convolution block ready for inference on the CPU: its kernels in
/// patch order (and packed for [`direct`] where it runs), and batch norm's
/// running statistics (or the bias) folded into one scale and shift per
/// channel.
pub(crate) struct InferenceBlock {
    pub(crate) g: Geometry,
    pub(crate) wp: Vec<f32>,
    packed: Option<Vec<f32>>,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl InferenceBlock {
    pub(crate) fn new(g: Geometry, wp: Vec<f32>, scale: Vec<f32>, shift: Vec<f32>) -> Self {
        let packed = direct::available().then(|| direct::pack(&g, &wp));
        InferenceBlock {
            g,
            wp,
            packed,
            scale,
            shift,
        }
    }

    /// `z` ← the convolution of `a` (`rows` channels-last images), on
    /// [`direct`]'s kernel where this CPU runs it (`im2col_only` aside),
    /// else as an im2col and one product.
    fn convolve(&self, a: &[f32], rows: usize, s: &mut BlockScratch, im2col_only: bool) {
        let g = &self.g;
        let (m, patch) = (rows * g.oh * g.ow, g.patch());
        sized(&mut s.z, m * g.c_out);
        match &self.packed {
            Some(packed) if !im2col_only => {
                let src = with_border(a, rows, g, &mut s.padded);
                direct::convolve(src, rows, g, packed, &mut s.z);
            }
            _ => {
                im2col(a, rows, g, &mut s.padded, &mut s.cols);
                matmul(
                    &mut s.z,
                    false,
                    (m, g.c_out, patch),
                    &s.cols,
                    (patch as isize, 1),
                    &self.wp,
                    (1, patch as isize),
                );
            }
        }
    }
}

/// The blocks, then global average pooling, over `x` (`rows` images of
/// `channels × height × width`, channels first): one vector of the last
/// block's channels per image.
///
/// The images go through every block a group at a time, a group being as
/// many whole images as fit [`GROUP_PIXELS`]: a group's patches and
/// activations stay in the core's caches from one block to the next, where
/// a whole batch's (32 images at 32×32: 4.7 MB of second-block patches)
/// went to memory and back between passes.
pub(crate) fn features(
    x: &[f32],
    rows: usize,
    shape: (usize, usize, usize),
    blocks: &[InferenceBlock],
    activation: Activation,
) -> Vec<f32> {
    features_on(x, rows, shape, blocks, activation, false)
}

/// [`features`], its convolutions as an im2col and a product where
/// `im2col_only` (the path of a CPU without AVX-512; tests compare the two).
fn features_on(
    x: &[f32],
    rows: usize,
    (channels, height, width): (usize, usize, usize),
    blocks: &[InferenceBlock],
    activation: Activation,
    im2col_only: bool,
) -> Vec<f32> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch {
            input,
            blocks: kept,
            embedding,
        } = &mut *scratch;
        kept.resize_with(blocks.len(), BlockScratch::default);
        let pixels = height * width;
        let per_image = channels * pixels;
        let group = (GROUP_PIXELS / pixels.max(1)).max(1);
        assert_eq!(
            x.len(),
            rows * per_image,
            "features: {rows} images of another size"
        );
        let mut out = Vec::new();
        // A shape with no values (validated away before) has no group and
        // no features, as `x` is empty.
        for part in x.chunks((group * per_image).max(1)) {
            let n = part.len() / per_image;
            // One channel (or one pixel) is channels-last already: read in place.
            let images: &[f32] = if channels > 1 && pixels > 1 {
                channels_last(part, channels, pixels, input);
                input
            } else {
                part
            };
            let (c, last_pixels) = group_blocks(
                images,
                n,
                (channels, pixels),
                blocks,
                activation,
                kept,
                im2col_only,
            );
            let last: &[f32] = match (kept.last(), blocks.last()) {
                (Some(k), Some(b)) => k.output(b.g.pool),
                _ => images,
            };
            global_average(last, last_pixels, c, embedding);
            out.extend_from_slice(embedding);
        }
        // A large batch (an evaluation set at once) leaves nothing big behind.
        for k in kept.iter_mut() {
            if k.padded.values.capacity() > RETAINED {
                k.padded = Padded::default();
            }
        }
        let buffers = kept
            .iter_mut()
            .flat_map(|k| [&mut k.cols, &mut k.z, &mut k.pooled])
            .chain([input, embedding]);
        for v in buffers {
            if v.capacity() > RETAINED {
                *v = Vec::new();
            }
        }
        out
    })
}

/// Pixels of input one group of [`features`] holds: one 32×32 image, 16
/// images of 8×8.
const GROUP_PIXELS: usize = 1024;

/// `rows` channels-last images of `(c, per_image)` channels and pixels
/// through every block, each block's output in its scratch; returns the
/// last output's channels and pixels per image.
fn group_blocks(
    images: &[f32],
    rows: usize,
    (mut c, mut per_image): (usize, usize),
    blocks: &[InferenceBlock],
    activation: Activation,
    kept: &mut [BlockScratch],
    im2col_only: bool,
) -> (usize, usize) {
    for (i, b) in blocks.iter().enumerate() {
        let (done, rest) = kept.split_at_mut(i);
        let a: &[f32] = done
            .last()
            .map_or(images, |d| d.output(blocks[i - 1].g.pool));
        let s = &mut rest[0];
        b.convolve(a, rows, s, im2col_only);
        let (g, z, pooled) = (&b.g, &mut s.z, &mut s.pooled);
        scale_shift_activate(z, &b.scale, &b.shift, activation);
        match g.pool {
            Pooling::None => {}
            Pooling::Max => g.max_pool(z, rows, pooled),
            Pooling::Avg => g.avg_pool(z, rows, pooled),
        }
        (c, per_image) = (g.c_out, g.ph * g.pw);
    }
    (c, per_image)
}

/// Buffers of [`features`], kept per thread between calls (a server's
/// workers answer request after request at one or a few sizes), one set
/// per block so that each keeps its size.
#[derive(Default)]
struct Scratch {
    input: Vec<f32>,
    blocks: Vec<BlockScratch>,
    embedding: Vec<f32>,
}

#[derive(Default)]
struct BlockScratch {
    padded: Padded,
    cols: Vec<f32>,
    z: Vec<f32>,
    pooled: Vec<f32>,
}

impl BlockScratch {
    fn output(&self, pool: Pooling) -> &[f32] {
        block_output(pool, &self.z, &self.pooled)
    }
}

/// A block's output: `pooled` after pooling, else the activation itself.
pub(crate) fn block_output<'a>(
    pool: Pooling,
    activation: &'a [f32],
    pooled: &'a [f32],
) -> &'a [f32] {
    match pool {
        Pooling::None => activation,
        Pooling::Max | Pooling::Avg => pooled,
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// The most values one scratch buffer keeps between calls (16 MiB).
const RETAINED: usize = 4 << 20;

/// Global average pooling: each image's mean over its pixels of `a`
/// (`rows × pixels × channels`, channels last) into `out` (`rows × channels`).
pub(crate) fn global_average(a: &[f32], pixels: usize, channels: usize, out: &mut Vec<f32>) {
    sized(out, a.len() / pixels.max(1));
    let scale = 1.0 / pixels as f32;
    for (f, image) in out
        .chunks_exact_mut(channels)
        .zip(a.chunks_exact(pixels * channels))
    {
        f.fill(0.0);
        for px in image.chunks_exact(channels) {
            for (f, &v) in f.iter_mut().zip(px) {
                *f += v;
            }
        }
        for f in f.iter_mut() {
            *f *= scale;
        }
    }
}

/// Images channels first (`[N, C, H·W]`) to channels last (`[N, H·W, C]`), into `out`.
pub(crate) fn channels_last(x: &[f32], channels: usize, pixels: usize, out: &mut Vec<f32>) {
    sized(out, x.len());
    for (image, o) in x
        .chunks_exact(channels * pixels)
        .zip(out.chunks_exact_mut(channels * pixels))
    {
        for (ch, plane) in image.chunks_exact(pixels).enumerate() {
            for (p, &v) in plane.iter().enumerate() {
                o[p * channels + ch] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The direct convolution and the im2col and gemm path both give each
    /// output within a dot product's rounding bound (patch · ε · Σ|a·w|) of
    /// the exact sum, on every shape a block takes: kernels 1, 3 and 5,
    /// strides 1 and 2, 1 to 24 input channels, output channels across the
    /// vector and column-block edges at 16 and 64, odd sizes, one to four
    /// images. (The two are not always the same bits: gemm changes its
    /// order of summation for few rows, one column or a long patch.) Where
    /// the CPU lacks AVX-512 the blocks keep no packed weights, so the
    /// im2col path is the one taken.
    #[test]
    fn the_direct_convolution_and_the_im2col_product_give_the_exact_sums() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let mut compared = 0;
        for case in 0..160 {
            let kernel = [1, 3, 5][case % 3];
            let c_out = [1, 5, 16, 17, 31, 32, 33, 48, 64, 65, 100][case % 11];
            let c_in = rng.random_range(1..25);
            let (height, width) = (rng.random_range(2..14), rng.random_range(2..14));
            let pool = ["max", "avg", "none"][case % 3];
            let block: ConvBlock = serde_json::from_value(serde_json::json!({
                "channels": c_out, "kernel": kernel, "stride": 1 + case % 2, "pool": pool,
            }))
            .unwrap();
            let Some(g) = Geometry::new(&block, c_in, height, width) else {
                continue;
            };
            let mut random =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect() };
            let mut wp = Vec::new();
            g.patch_order(&random(c_out * g.patch()), &mut wp);
            let rows = 1 + case % 4;
            let images = random(rows * height * width * c_in);
            let exact = exact_convolution(&images, rows, &g, &wp);
            let b = InferenceBlock::new(g, wp, random(c_out), random(c_out));
            let paths = if direct::available() {
                vec![false, true]
            } else {
                assert!(b.packed.is_none(), "packed weights without AVX-512");
                vec![true]
            };
            for im2col_only in paths {
                let mut s = BlockScratch::default();
                b.convolve(&images, rows, &mut s, im2col_only);
                assert_eq!(s.z.len(), exact.len(), "case {case}");
                for (i, (&ours, &(sum, bound))) in s.z.iter().zip(&exact).enumerate() {
                    let allowed = (g.patch() + 1) as f64 * f64::from(f32::EPSILON) * bound;
                    assert!(
                        (f64::from(ours) - sum).abs() <= allowed,
                        "case {case} (im2col only: {im2col_only}), value {i}: {ours} against \
                         {sum} ± {allowed}; {g:?}"
                    );
                }
            }
            if direct::available() {
                training_products_give_the_exact_sums(&images, rows, &g, &b.wp, &mut random);
            }
            compared += 1;
        }
        assert!(compared >= 120, "only {compared} shapes compared");
    }

    /// The training step's two other products on [`direct`]: the kernels'
    /// gradient (Σ over positions of gz · patch) and the gradient at the
    /// patches (gz · wp), each within its rounding bound of the exact sum.
    fn training_products_give_the_exact_sums(
        images: &[f32],
        rows: usize,
        g: &Geometry,
        wp: &[f32],
        random: &mut impl FnMut(usize) -> Vec<f32>,
    ) {
        let (m, patch, c) = (rows * g.oh * g.ow, g.patch(), g.c_out);
        let gz = random(m * c);
        let mut padded = Padded::default();
        let src = with_border(images, rows, g, &mut padded);
        let mut gwp = vec![f32::NAN; c * patch];
        direct::kernel_gradient(src, rows, g, &gz, &mut gwp);
        let mut cols = Vec::new();
        im2col(images, rows, g, &mut Padded::default(), &mut cols);
        let within = |ours: f32, terms: &mut dyn Iterator<Item = (f32, f32)>, n: usize| {
            let (mut sum, mut bound) = (0.0f64, 0.0f64);
            for (x, y) in terms {
                let p = f64::from(x) * f64::from(y);
                sum += p;
                bound += p.abs();
            }
            let allowed = (n + 1) as f64 * f64::from(f32::EPSILON) * bound;
            assert!(
                (f64::from(ours) - sum).abs() <= allowed,
                "{ours} against {sum} ± {allowed}; {g:?}"
            );
        };
        for co in 0..c {
            for kk in 0..patch {
                let mut terms = (0..m).map(|p| (gz[p * c + co], cols[p * patch + kk]));
                within(gwp[co * patch + kk], &mut terms, m);
            }
        }
        let mut wp_rows = Vec::new();
        direct::pad_rows(wp, (c, patch), &mut wp_rows);
        let mut dcols = vec![f32::NAN; m * patch];
        direct::product(&gz, (m, patch, c), &wp_rows, &mut dcols);
        for p in 0..m {
            for kk in 0..patch {
                let mut terms = (0..c).map(|co| (gz[p * c + co], wp[co * patch + kk]));
                within(dcols[p * patch + kk], &mut terms, c);
            }
        }
    }

    /// Each output of a block's convolution in f64, with Σ|a·w| (the scale
    /// of its rounding error): `rows × oh × ow × c_out`.
    fn exact_convolution(a: &[f32], rows: usize, g: &Geometry, wp: &[f32]) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for n in 0..rows {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for co in 0..g.c_out {
                        let (mut sum, mut bound) = (0.0f64, 0.0f64);
                        for ky in 0..g.kernel {
                            for kx in 0..g.kernel {
                                let y = (oy * g.stride + ky).checked_sub(g.padding);
                                let x = (ox * g.stride + kx).checked_sub(g.padding);
                                let (Some(y), Some(x)) = (y, x) else { continue };
                                if y >= g.height || x >= g.width {
                                    continue;
                                }
                                for ci in 0..g.c_in {
                                    let v = a[((n * g.height + y) * g.width + x) * g.c_in + ci];
                                    let w = wp[co * g.patch() + (ky * g.kernel + kx) * g.c_in + ci];
                                    let p = f64::from(v) * f64::from(w);
                                    sum += p;
                                    bound += p.abs();
                                }
                            }
                        }
                        out.push((sum, bound));
                    }
                }
            }
        }
        out
    }

    /// Each window's maximum and where it is, ties to the first value in
    /// row-major order (candle's argmax, and so the window whose gradient
    /// the training step hands on); an odd last row and column dropped.
    #[test]
    fn max_pooling_keeps_the_first_of_tied_maxima_and_drops_an_odd_edge() {
        let block: ConvBlock =
            serde_json::from_value(serde_json::json!({"channels": 2, "kernel": 1})).unwrap();
        let g = Geometry::new(&block, 1, 3, 5).unwrap();
        assert_eq!((g.oh, g.ow, g.ph, g.pw), (3, 5, 1, 2));
        // One image, 3 × 5 pixels, two channels (channels last).
        #[rustfmt::skip]
        let act: Vec<f32> = [
            [1.0, 7.0], [1.0, 2.0], [0.0, 0.0], [5.0, 0.0], [9.0, 9.0],
            [0.5, 7.0], [1.0, 7.0], [5.0, 0.0], [-1.0, 0.0], [9.0, 9.0],
            [9.0, 9.0], [9.0, 9.0], [9.0, 9.0], [9.0, 9.0], [9.0, 9.0],
        ].concat();
        let (mut out, mut argmax) = (Vec::new(), Vec::new());
        g.max_pool_argmax(&act, 1, &mut out, &mut argmax);
        let mut plain = Vec::new();
        g.max_pool(&act, 1, &mut plain);
        assert_eq!(plain, out);
        assert_eq!(out, [1.0, 7.0, 5.0, 0.0]);
        // Channel 0 of the first window ties at 1.0 (pixels 0, 1, 6): pixel 0.
        // Channel 1 ties at 7.0 (pixels 0, 5, 6): pixel 0. The second window:
        // 5.0 at pixels 3 and 7 (channel 0), all zeros (channel 1): the first.
        assert_eq!(argmax, [0, 1, 6, 5]);
    }

    /// A kept border buffer that served another shape of the same size is
    /// zeroed again: the patches equal those of a fresh buffer.
    #[test]
    fn a_padded_buffer_reused_across_shapes_gives_fresh_patches() {
        let block: ConvBlock =
            serde_json::from_value(serde_json::json!({"channels": 2, "kernel": 3})).unwrap();
        let tall = Geometry::new(&block, 1, 12, 8).unwrap();
        let wide = Geometry::new(&block, 1, 8, 12).unwrap();
        let image: Vec<f32> = (0..96).map(|v| v as f32 + 1.0).collect();
        let (mut kept, mut cols) = (Padded::default(), Vec::new());
        im2col(&image, 1, &tall, &mut kept, &mut cols);
        im2col(&image, 1, &wide, &mut kept, &mut cols);
        let (mut fresh, mut expected) = (Padded::default(), Vec::new());
        im2col(&image, 1, &wide, &mut fresh, &mut expected);
        assert_eq!(cols, expected);
        // The first patch reads the corner: five zeros of padding, then
        // pixels 1, 2, 13 and 14 (one-based values) of the 8 × 12 image.
        assert_eq!(
            expected[..9],
            [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 13.0, 14.0]
        );
    }
}
