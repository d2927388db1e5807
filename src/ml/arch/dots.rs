//! A linear layer over a few rows as independent dot products: the bits
//! gemm gives, without gemm's dispatch.
//!
//! For `rows × outputs ≤ 256` with both operands contiguous along the sum
//! (a row of `x`, a row of the weight: `cpu::linear`'s call), gemm 0.19
//! on a CPU with FMA (and without its `x86-v4` feature, which nothing in
//! this build enables) takes its "horizontal" kernels: each value is eight
//! lanes of fused multiply-adds from zero over blocks of eight, the last
//! block masked to zeros, the lanes summed in one fixed order, and the
//! sum over each further 1,024 added to the first. This module computes
//! exactly that, value by value, with the same operations in the same
//! order (a NaN stays a NaN; its payload is LLVM's choice, in gemm's build
//! as in ours), eight outputs at a time so each block of `x` is loaded
//! once. A one-row answer through the bundled wine MLP (11 → 64 → 32 → 6)
//! takes 4 100 instructions where gemm took 8 800: gemm's call,
//! transposition, dispatch and its kernel call per pair of outputs cost
//! more than the arithmetic at these sizes. Where the conditions do not
//! hold (no FMA, another architecture, a larger product), `cpu::linear`
//! calls gemm as before. The tests below hold the two to the same bits on
//! every shape class, and `ml::outputs`' tests hold the served values to
//! candle's.

/// gemm's bound on `m × n` for its horizontal kernels.
const MAX_VALUES: usize = 16 * 16;

/// Whether [`linear`] answers a product of `rows × outputs` values on this
/// CPU: where gemm would take its FMA horizontal kernels (the CPU check is
/// gemm's own, cached by std).
pub(crate) fn applies(rows: usize, outputs: usize) -> bool {
    rows.saturating_mul(outputs) <= MAX_VALUES && fma()
}

fn fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `z (rows × outputs) = x (rows × inputs) · weightᵀ`, `weight` being
/// `outputs × inputs` row-major, as gemm computes it (the bias is
/// `cpu::linear`'s). Only where [`applies`].
#[allow(unsafe_code)]
pub(crate) fn linear(z: &mut [f32], x: &[f32], rows: usize, weight: &[f32], outputs: usize) {
    assert!(applies(rows, outputs), "dots::linear: gemm would not");
    assert!(outputs > 0, "dots::linear: no outputs");
    let inputs = weight.len() / outputs;
    assert_eq!(
        weight.len(),
        outputs * inputs,
        "dots::linear: ragged weight"
    );
    assert_eq!(
        x.len(),
        rows * inputs,
        "dots::linear: x is not rows × inputs"
    );
    assert_eq!(
        z.len(),
        rows * outputs,
        "dots::linear: z is not rows × outputs"
    );
    if inputs == 0 {
        z.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` checked that the CPU has FMA (and so AVX); the
    // asserts above keep every slice the kernel reads and writes whole.
    unsafe {
        fma::linear(z, x, weight, inputs, outputs)
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fma {
    use std::arch::x86_64::*;

    /// gemm's depth per pass: the sum over each further 1,024 is added to
    /// the value after the first.
    const DEPTH: usize = 1024;
    const LANES: usize = 8;
    /// Eight values at any address. `_mm256_loadu_ps` goes through
    /// `ptr::copy_nonoverlapping`, whose check in a build with debug
    /// assertions costs more than the product at these sizes and keeps the
    /// load out of the multiply-add; a packed struct's field is one plain
    /// unaligned load in every build, folded into the `vfmadd`.
    #[repr(C, packed)]
    #[derive(Clone, Copy)]
    struct Unaligned(__m256);

    /// Masks for the last block of `len` values (gemm's `partial_load`).
    static MASKS: [[i32; LANES]; LANES + 1] = {
        let mut m = [[0; LANES]; LANES + 1];
        let mut len = 0;
        while len <= LANES {
            let mut lane = 0;
            while lane < len {
                m[len][lane] = -1;
                lane += 1;
            }
            len += 1;
        }
        m
    };

    /// # Safety
    /// The CPU has FMA; `x` is `rows × inputs`, `weight` `outputs × inputs`
    /// and `z` `rows × outputs`, `inputs > 0`.
    #[target_feature(enable = "avx,fma")]
    pub(super) unsafe fn linear(
        z: &mut [f32],
        x: &[f32],
        weight: &[f32],
        inputs: usize,
        outputs: usize,
    ) {
        for (x, z) in x.chunks_exact(inputs).zip(z.chunks_exact_mut(outputs)) {
            // Eight outputs at a time, then four, then one: each block of
            // `x` is loaded once for the group (the values stay apart).
            let mut done = 0;
            while done < outputs {
                let (w, z) = (&weight[done * inputs..], &mut z[done..]);
                // SAFETY: `w` has `outputs − done` rows of `inputs`, at
                // least the group's; `x` has one.
                done += unsafe {
                    match outputs - done {
                        8.. => group::<8>(x, w, inputs, z),
                        4.. => group::<4>(x, w, inputs, z),
                        _ => group::<1>(x, w, inputs, z),
                    }
                };
            }
        }
    }

    /// The first `N` values of `z`: `x` by each of the first `N` rows of
    /// `w`. Per pass of 1,024, the horizontal kernel's lanes and sum; later
    /// passes added as gemm adds them (`1 · sum + value`, fused). Returns
    /// `N`.
    ///
    /// Loads read an [`Unaligned`]; offsets are `wrapping_add`, unchecked
    /// in every build, for the same reason.
    ///
    /// # Safety
    /// `x` has `inputs` values, `w` at least `N × inputs`, `z` at least `N`.
    #[target_feature(enable = "avx,fma")]
    #[inline]
    unsafe fn group<const N: usize>(x: &[f32], w: &[f32], inputs: usize, z: &mut [f32]) -> usize {
        let xp = x.as_ptr();
        let rows: [*const f32; N] = std::array::from_fn(|o| w.as_ptr().wrapping_add(o * inputs));
        let load = |p: *const f32| unsafe { p.cast::<Unaligned>().read().0 };
        let mut value = [0f32; N];
        let mut start = 0;
        while start < inputs {
            let end = inputs.min(start + DEPTH);
            let full = start + (end - start) / LANES * LANES;
            let mut acc = [_mm256_setzero_ps(); N];
            let mut depth = start;
            while depth < full {
                let xv = load(xp.wrapping_add(depth));
                for (acc, row) in acc.iter_mut().zip(rows) {
                    *acc = _mm256_fmadd_ps(xv, load(row.wrapping_add(depth)), *acc);
                }
                depth += LANES;
            }
            if depth < end {
                // SAFETY (of the masked loads): they read the lanes below
                // `end − depth` only.
                let mask = _mm256_castps_si256(load(MASKS[end - depth].as_ptr().cast()));
                let xv = unsafe { _mm256_maskload_ps(xp.wrapping_add(depth), mask) };
                for (acc, row) in acc.iter_mut().zip(rows) {
                    let wv = unsafe { _mm256_maskload_ps(row.wrapping_add(depth), mask) };
                    *acc = _mm256_fmadd_ps(xv, wv, *acc);
                }
            }
            for (value, acc) in value.iter_mut().zip(acc) {
                let sum = reduce_sum(acc);
                *value = if start == 0 {
                    sum
                } else {
                    1f32.mul_add(sum, *value)
                };
            }
            start = end;
        }
        for (z, value) in z.iter_mut().zip(value) {
            *z = value;
        }
        N
    }

    /// gemm's `reduce_sum`: the halves, then pairs, then the last two.
    #[target_feature(enable = "avx,fma")]
    #[inline]
    fn reduce_sum(acc: __m256) -> f32 {
        let x = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let hi = _mm_movehl_ps(x, x);
        let r0 = _mm_add_ps(x, hi);
        let r0_shuffled = _mm_shuffle_ps::<0b0001>(r0, r0);
        _mm_cvtss_f32(_mm_add_ss(r0, r0_shuffled))
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::ml::arch::cpu;
    use proptest::prelude::*;

    /// gemm's answer: `cpu::matmul` with `cpu::linear`'s strides.
    fn gemm(x: &[f32], rows: usize, weight: &[f32], outputs: usize) -> Vec<f32> {
        let inputs = weight.len() / outputs;
        let mut z = vec![f32::NAN; rows * outputs];
        cpu::matmul(
            &mut z,
            false,
            (rows, outputs, inputs),
            x,
            (inputs as isize, 1),
            weight,
            (1, inputs as isize),
        );
        z
    }

    fn check(x: &[f32], rows: usize, weight: &[f32], outputs: usize) {
        let mut ours = vec![f32::NAN; rows * outputs];
        linear(&mut ours, x, rows, weight, outputs);
        let theirs = gemm(x, rows, weight, outputs);
        let same = ours
            .iter()
            .zip(&theirs)
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        assert!(
            same,
            "rows {rows} outputs {outputs} inputs {}: ours {ours:?} gemm {theirs:?}",
            weight.len() / outputs
        );
    }

    /// A value that makes the order of a sum show: magnitudes from 1e-8 to
    /// 1e8 and both signs, exact zeros of both signs now and then.
    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => (-8i32..=8, -1.0f32..1.0).prop_map(|(e, m)| m * 10f32.powi(e)),
            1 => Just(0.0f32),
            1 => Just(-0.0f32),
        ]
    }

    /// The machine the tests run on takes this path: otherwise the
    /// properties below would compare gemm with itself. (CI's machines
    /// have FMA.)
    #[test]
    fn this_machine_takes_the_path_within_gemms_bound() {
        assert!(applies(1, 64), "this CPU lacks FMA");
        assert!(applies(4, 64) && applies(16, 16) && applies(1, 256));
        assert!(!applies(2, 129) && !applies(257, 1) && !applies(1, 257));
    }

    #[test]
    fn every_remainder_and_every_pass_count_is_gemms_bits() {
        // Inputs across the eight remainders, one and several blocks, one
        // to three passes of 1,024; one output (gemm does not transpose)
        // and several; one row and several.
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32 - 0.5) * 10f32.powi((seed % 9) as i32 - 4)
        };
        for inputs in (1..=40).chain([1023, 1024, 1025, 2049, 3000]) {
            for (rows, outputs) in [
                (1, 1),
                (1, 6),
                (1, 64),
                (3, 7),
                (2, 13),
                (4, 64),
                (16, 16),
                (1, 256),
            ] {
                let x: Vec<f32> = (0..rows * inputs).map(|_| next()).collect();
                let w: Vec<f32> = (0..outputs * inputs).map(|_| next()).collect();
                check(&x, rows, &w, outputs);
            }
        }
    }

    #[test]
    fn signed_zeros_infinities_and_nans_are_gemms() {
        // A product that rounds to −0 in a lane the masked block then adds
        // +0 to; infinities that meet; NaN in either operand.
        let tiny = f32::from_bits(1);
        for special in [-0.0, 0.0, -tiny, f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            for inputs in [1, 3, 8, 11] {
                for outputs in [1, 2, 5] {
                    let x: Vec<f32> = (0..inputs)
                        .map(|i| if i % 2 == 0 { special } else { tiny })
                        .collect();
                    let w: Vec<f32> = (0..outputs * inputs)
                        .map(|i| if i % 3 == 0 { -tiny } else { special })
                        .collect();
                    check(&x, 1, &w, outputs);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_small_product_is_gemms_bits(
            (rows, outputs, inputs) in (1usize..=4, 1usize..=64, 1usize..=80),
            x in proptest::collection::vec(value(), 4 * 80),
            w in proptest::collection::vec(value(), 64 * 80),
        ) {
            check(&x[..rows * inputs], rows, &w[..outputs * inputs], outputs);
        }
    }
}
