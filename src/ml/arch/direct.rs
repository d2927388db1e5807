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
    let (patch, width) = (g.patch(), padded_channels(g.c_out));
    let mut packed = vec![0.0; patch * width];
    for (j, kernel) in wp.chunks_exact(patch).enumerate() {
        for (k, &w) in kernel.iter().enumerate() {
            packed[k * width + j] = w;
        }
    }
    packed
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
    let base = |p: usize| {
        let (n, rest) = (p / (g.oh * g.ow), p % (g.oh * g.ow));
        let (oy, ox) = (rest / g.ow, rest % g.ow);
        n * image + (oy * g.stride * wide + ox * g.stride) * g.c_in
    };
    assert!(
        base(positions - 1) + (g.kernel - 1) * row_step + span <= src.len()
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
        let mut c0 = 0;
        while c0 < g.c_out {
            let vectors = (g.c_out - c0).div_ceil(LANES);
            // Accumulators in 24 of the 32 vector registers.
            match vectors {
                1 => avx512::columns::<1, 24>(src, &base, positions, &shape, packed, c0, z),
                2 => avx512::columns::<2, 12>(src, &base, positions, &shape, packed, c0, z),
                3 => avx512::columns::<3, 8>(src, &base, positions, &shape, packed, c0, z),
                _ => avx512::columns::<4, 6>(src, &base, positions, &shape, packed, c0, z),
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

    /// Output channels `c0 .. c0 + NV · 16` (the last vector cut at `c_out`)
    /// of every position, `R` positions at a time.
    pub(super) fn columns<const NV: usize, const R: usize>(
        src: &[f32],
        base: &dyn Fn(usize) -> usize,
        positions: usize,
        shape: &Shape,
        packed: &[f32],
        c0: usize,
        z: &mut [f32],
    ) {
        let mut p0 = 0;
        while p0 < positions {
            let r = R.min(positions - p0);
            // A short last block repeats its last position; only `r` are stored.
            let bases: [usize; R] = std::array::from_fn(|i| base(p0 + i.min(r - 1)));
            // SAFETY: `convolve` checked that AVX-512 is present, that the
            // largest base plus the patch's reach stays inside `src`, that
            // `packed` holds `patch × width` values (`c0 + NV · 16 ≤ width`,
            // as `convolve` picks NV from the channels left) and that `z`
            // holds `positions × c_out`; `p0 + r ≤ positions`.
            unsafe { block::<NV, R>(src.as_ptr(), &bases, shape, packed.as_ptr(), c0, z, p0, r) }
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
}
