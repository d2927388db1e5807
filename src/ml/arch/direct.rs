//! A CNN block's convolution for inference read straight from the padded
//! channels-last images, on AVX-512 where the CPU has it: no patch matrix
//! (im2col) is written and read back, and the products run in registers.
//!
//! Each output value is one chain of fused multiply-adds, from zero, over
//! the patch in order (kernel row, kernel column, channel): gemm's own order
//! on these products' usual sizes, so the values are mostly the same bits
//! (a test holds both paths to the exact sums' rounding bound; gemm changes
//! its order for few rows, one column or a long patch). An image's values
//! do not depend on the other images of its batch. Without AVX-512 the
//! im2col and gemm path in [`super::cpu`] answers.

use super::cpu::Geometry;

/// Output channels per vector.
const LANES: usize = 16;

/// Whether [`convolve`] runs on this CPU (checked once; std caches it).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Output channels rounded up to whole vectors: the row width of [`pack`]'s
/// weights.
fn padded_channels(c_out: usize) -> usize {
    c_out.div_ceil(LANES) * LANES
}

/// The kernels `wp` (`c_out × patch`, [`Geometry::patch_order`]) patch value
/// major, each row's output channels padded with zeros to whole vectors:
/// the weights [`convolve`] loads a vector of channels at a time.
pub(crate) fn pack(g: &Geometry, wp: &[f32]) -> Vec<f32> {
    let mut packed = Vec::new();
    pack_into(g, wp, &mut packed);
    packed
}

/// [`pack`] into a buffer kept between training steps.
pub(crate) fn pack_into(g: &Geometry, wp: &[f32], packed: &mut Vec<f32>) {
    let (patch, width) = (g.patch(), padded_channels(g.c_out));
    packed.clear();
    packed.resize(patch * width, 0.0);
    for (j, kernel) in wp.chunks_exact(patch).enumerate() {
        for (k, &w) in kernel.iter().enumerate() {
            packed[k * width + j] = w;
        }
    }
}

/// `b` (`k × n`, row-major) with each row padded with zeros to whole
/// vectors: the right operand of [`product`].
pub(crate) fn pad_rows(b: &[f32], (k, n): (usize, usize), out: &mut Vec<f32>) {
    let width = padded_channels(n);
    out.clear();
    out.resize(k * width, 0.0);
    for (row, from) in out.chunks_exact_mut(width).zip(b.chunks_exact(n.max(1))) {
        row[..n].copy_from_slice(from);
    }
}

/// `dst` (`m × n`) ← `a` (`m × k`, row-major) · `b` ([`pad_rows`] of a
/// `k × n` matrix): each value one chain of fused multiply-adds over `k`.
/// Only where [`available`].
pub(crate) fn product(a: &[f32], (m, n, k): (usize, usize, usize), b: &[f32], dst: &mut [f32]) {
    assert!(available(), "product: the CPU lacks AVX-512");
    assert!(a.len() >= m * k, "product: left operand too small");
    assert!(
        b.len() >= k * padded_channels(n),
        "product: right operand too small"
    );
    assert!(dst.len() >= m * n, "product: output too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let shape = avx512::Shape {
            row_step: 0,
            kernel: 1,
            span: k,
            width: padded_channels(n),
            c_out: n,
        };
        let bases: Vec<usize> = (0..m).map(|p| p * k).collect();
        avx512::all_columns(a, &bases, &shape, b, dst);
    }
}

/// `z` (`rows × oh × ow × c_out`) ← the convolution of `src` (`rows`
/// images with their zero border, `(height + 2p) × (width + 2p) × c_in`,
/// channels last) by `packed` ([`pack`]). Only where [`available`].
pub(crate) fn convolve(src: &[f32], rows: usize, g: &Geometry, packed: &[f32], z: &mut [f32]) {
    let positions = rows * g.oh * g.ow;
    let wide = g.width + 2 * g.padding;
    let image = (g.height + 2 * g.padding) * wide * g.c_in;
    let row_step = wide * g.c_in;
    let span = g.kernel * g.c_in;
    assert!(available(), "convolve: the CPU lacks AVX-512");
    assert!(z.len() >= positions * g.c_out, "convolve: output too small");
    assert!(
        packed.len() >= g.patch() * padded_channels(g.c_out),
        "convolve: weights too small"
    );
    if positions == 0 || g.c_out == 0 {
        return;
    }
    // Every position reads `base + ky · row_step + t` for ky < kernel and
    // t < span; bases grow with the position, so the last one is the largest.
    let bases = position_bases(rows, g);
    assert!(
        bases[positions - 1] + (g.kernel - 1) * row_step + span <= src.len()
            && rows * image <= src.len(),
        "convolve: images too small for their geometry"
    );
    #[cfg(target_arch = "x86_64")]
    {
        let shape = avx512::Shape {
            row_step,
            kernel: g.kernel,
            span,
            width: padded_channels(g.c_out),
            c_out: g.c_out,
        };
        avx512::all_columns(src, &bases, &shape, packed, z);
    }
}

/// Where each output position's patch starts in the padded images (`rows`
/// of them), in position order; no division per position.
fn position_bases(rows: usize, g: &Geometry) -> Vec<usize> {
    let wide = g.width + 2 * g.padding;
    let image = (g.height + 2 * g.padding) * wide * g.c_in;
    let mut bases = Vec::with_capacity(rows * g.oh * g.ow);
    for n in 0..rows {
        for oy in 0..g.oh {
            let row = n * image + oy * g.stride * wide * g.c_in;
            bases.extend((0..g.ow).map(|ox| row + ox * g.stride * g.c_in));
        }
    }
    bases
}

/// The kernels' gradient `gwp` (`c_out × patch`, patch order) = Σ over the
/// positions of `gz` (`positions × c_out`, the loss's gradient at the
/// convolution's output) times each position's patch, read from `src` (as
/// [`convolve`]'s) without a patch matrix. Only where [`available`].
pub(crate) fn kernel_gradient(src: &[f32], rows: usize, g: &Geometry, gz: &[f32], gwp: &mut [f32]) {
    let positions = rows * g.oh * g.ow;
    let (patch, span) = (g.patch(), g.kernel * g.c_in);
    let row_step = (g.width + 2 * g.padding) * g.c_in;
    assert!(available(), "kernel_gradient: the CPU lacks AVX-512");
    assert!(
        gz.len() >= positions * g.c_out,
        "kernel_gradient: gradient too small"
    );
    assert!(
        gwp.len() >= g.c_out * patch,
        "kernel_gradient: output too small"
    );
    if g.c_out == 0 || patch == 0 {
        return;
    }
    let bases = position_bases(rows, g);
    let offsets: Vec<usize> = (0..patch)
        .map(|kk| (kk / span) * row_step + kk % span)
        .collect();
    assert!(
        bases.last().map_or(0, |b| b + offsets[patch - 1] + 1) <= src.len(),
        "kernel_gradient: images too small for their geometry"
    );
    #[cfg(target_arch = "x86_64")]
    {
        let mut c0 = 0;
        while c0 < g.c_out {
            let cut = avx512::Cut {
                c_out: g.c_out,
                c0,
                patch,
            };
            match (g.c_out - c0).div_ceil(LANES) {
                1 => avx512::gradient::<1, 24>(src, &bases, &offsets, gz, &cut, gwp),
                2 => avx512::gradient::<2, 12>(src, &bases, &offsets, gz, &cut, gwp),
                3 => avx512::gradient::<3, 8>(src, &bases, &offsets, gz, &cut, gwp),
                _ => avx512::gradient::<4, 6>(src, &bases, &offsets, gz, &cut, gwp),
            }
            c0 += 4 * LANES;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::LANES;
    use std::arch::x86_64::*;

    pub(super) struct Shape {
        pub(super) row_step: usize,
        pub(super) kernel: usize,
        pub(super) span: usize,
        /// Row width of the packed weights.
        pub(super) width: usize,
        pub(super) c_out: usize,
    }

    /// Every output channel of every position, up to 64 channels (four
    /// vectors) at a time.
    pub(super) fn all_columns(
        src: &[f32],
        bases: &[usize],
        shape: &Shape,
        packed: &[f32],
        z: &mut [f32],
    ) {
        let mut c0 = 0;
        while c0 < shape.c_out {
            // Accumulators in 24 of the 32 vector registers.
            match (shape.c_out - c0).div_ceil(LANES) {
                1 => columns::<1, 24>(src, bases, shape, packed, c0, z),
                2 => columns::<2, 12>(src, bases, shape, packed, c0, z),
                3 => columns::<3, 8>(src, bases, shape, packed, c0, z),
                _ => columns::<4, 6>(src, bases, shape, packed, c0, z),
            }
            c0 += 4 * LANES;
        }
    }

    /// Output channels `c0 .. c0 + NV · 16` (the last vector cut at `c_out`)
    /// of every position, `R` positions at a time.
    fn columns<const NV: usize, const R: usize>(
        src: &[f32],
        bases: &[usize],
        shape: &Shape,
        packed: &[f32],
        c0: usize,
        z: &mut [f32],
    ) {
        let (positions, mut p0) = (bases.len(), 0);
        while p0 < positions {
            let r = R.min(positions - p0);
            // A short last block repeats its last position; only `r` are stored.
            let block_bases: [usize; R] = std::array::from_fn(|i| bases[p0 + i.min(r - 1)]);
            // SAFETY: `convolve` checked that AVX-512 is present, that the
            // largest base plus the patch's reach stays inside `src`, that
            // `packed` holds `patch × width` values (`c0 + NV · 16 ≤ width`,
            // as `convolve` picks NV from the channels left) and that `z`
            // holds `positions × c_out`; `p0 + r ≤ positions`.
            unsafe {
                block::<NV, R>(
                    src.as_ptr(),
                    &block_bases,
                    shape,
                    packed.as_ptr(),
                    c0,
                    z,
                    p0,
                    r,
                )
            }
            p0 += r;
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const NV: usize, const R: usize>(
        src: *const f32,
        bases: &[usize; R],
        shape: &Shape,
        packed: *const f32,
        c0: usize,
        z: &mut [f32],
        p0: usize,
        r: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        for ky in 0..shape.kernel {
            let off = ky * shape.row_step;
            let wrow = ky * shape.span;
            for t in 0..shape.span {
                // SAFETY: in bounds per `columns`' contract.
                unsafe {
                    let w = packed.add((wrow + t) * shape.width + c0);
                    let wv: [__m512; NV] =
                        std::array::from_fn(|v| _mm512_loadu_ps(w.add(v * LANES)));
                    for i in 0..R {
                        let a = _mm512_set1_ps(*src.add(bases[i] + off + t));
                        for v in 0..NV {
                            acc[i][v] = _mm512_fmadd_ps(a, wv[v], acc[i][v]);
                        }
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(r) {
            let at = (p0 + i) * shape.c_out + c0;
            for (v, value) in row.iter().enumerate() {
                let left = shape.c_out - (c0 + v * LANES).min(shape.c_out);
                if left == 0 {
                    break;
                }
                let out = &mut z[at + v * LANES..];
                // SAFETY: `out` holds at least `left.min(16)` values (the
                // row's channels from `c0 + 16v`); the mask stores no more.
                unsafe {
                    if left >= LANES {
                        _mm512_storeu_ps(out.as_mut_ptr(), *value);
                    } else {
                        _mm512_mask_storeu_ps(out.as_mut_ptr(), (1u16 << left) - 1, *value);
                    }
                }
            }
        }
    }

    /// Output channels `c0 ..` (at most 64) of a kernels' gradient.
    pub(super) struct Cut {
        pub(super) c_out: usize,
        pub(super) c0: usize,
        pub(super) patch: usize,
    }

    /// Channels `c0 .. c0 + NV · 16` of the kernels' gradient (the last
    /// vector cut at `c_out`), `R` patch values at a time: each a sum over
    /// every position, in order.
    pub(super) fn gradient<const NV: usize, const R: usize>(
        src: &[f32],
        bases: &[usize],
        offsets: &[usize],
        gz: &[f32],
        cut: &Cut,
        gwp: &mut [f32],
    ) {
        // The lanes of each vector that hold channels.
        let masks: [u16; NV] = std::array::from_fn(|v| {
            let left = cut.c_out.saturating_sub(cut.c0 + v * LANES).min(LANES);
            ((1u32 << left) - 1) as u16
        });
        let mut k0 = 0;
        while k0 < cut.patch {
            let r = R.min(cut.patch - k0);
            let offs: [usize; R] = std::array::from_fn(|i| offsets[k0 + i.min(r - 1)]);
            // SAFETY: `kernel_gradient` checked AVX-512, that the largest
            // base plus the largest offset stays inside `src`, and that `gz`
            // holds `positions × c_out` (one row per base); the masks load
            // no lane past a row's `c_out` channels.
            let acc = unsafe { gradient_block::<NV, R>(src, bases, &offs, gz, cut, &masks) };
            for (i, row) in acc.iter().enumerate().take(r) {
                for (v, lanes) in row.iter().enumerate() {
                    let from = cut.c0 + v * LANES;
                    for (l, &value) in lanes
                        .iter()
                        .enumerate()
                        .take(cut.c_out.saturating_sub(from))
                    {
                        gwp[(from + l) * cut.patch + k0 + i] = value;
                    }
                }
            }
            k0 += r;
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn gradient_block<const NV: usize, const R: usize>(
        src: &[f32],
        bases: &[usize],
        offs: &[usize; R],
        gz: &[f32],
        cut: &Cut,
        masks: &[u16; NV],
    ) -> [[[f32; LANES]; NV]; R] {
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        let (s, row0) = (src.as_ptr(), gz.as_ptr());
        for (p, &b) in bases.iter().enumerate() {
            // SAFETY: in bounds per `gradient`'s contract.
            unsafe {
                let row = row0.add(p * cut.c_out + cut.c0);
                let gv: [__m512; NV] =
                    std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], row.add(v * LANES)));
                for i in 0..R {
                    let a = _mm512_set1_ps(*s.add(b + offs[i]));
                    for v in 0..NV {
                        acc[i][v] = _mm512_fmadd_ps(a, gv[v], acc[i][v]);
                    }
                }
            }
        }
        let mut out = [[[0.0; LANES]; NV]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (o, a) in o.iter_mut().zip(a) {
                // SAFETY: `o` holds 16 values.
                unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
            }
        }
        out
    }
}
