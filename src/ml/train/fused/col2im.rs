//! im2col's adjoint for the fused CNN step: the gradient at each patch
//! value summed back onto the input pixel it was read from.

use super::super::super::arch::cpu::{Geometry, sized};

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
pub(super) fn col2im(dcols: &[f32], rows: usize, g: &Geometry, grad_in: &mut Vec<f32>) {
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
