//! Convolution and 2×2 max pooling as plain tensor ops whose backward
//! passes are GEMMs and gathers.
//!
//! candle 0.11's CPU `conv2d` backward computes the kernel gradient as a
//! convolution whose kernel is the whole output gradient (`[c_out, N, H, W]`):
//! an im2col of `N·H·W` values per output pixel, single-threaded copies, and
//! the slowest step of a CNN epoch. Its `max_pool2d` backward scales the
//! gradient of each window's maximum by 1/4 (it multiplies by the share of
//! maxima in the window instead of dividing by their count).
//!
//! Here a convolution is im2col (one `index_select` of the input with a
//! zero column for the padding, on an index built once per layer and input
//! size) followed by one matmul. The backward pass is then two matmuls and
//! an `index_add`, on any device candle supports. Weights keep PyTorch's
//! `[c_out, c_in, k, k]` layout, so artifacts and fingerprints are unchanged.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{D, Device, Result, Tensor};

/// Geometry of one convolution over inputs of one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    c_in: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn out(&self) -> (usize, usize) {
        let o = |n: usize| (n + 2 * self.padding - self.kernel) / self.stride + 1;
        (o(self.height), o(self.width))
    }

    /// Values per patch: `c_in · k · k`, in the weight's own order.
    fn patch(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }

    /// For each output pixel (row-major) and each patch value (channel,
    /// kernel row, kernel column), the position in the flattened input
    /// `[c_in · H · W]`; `c_in · H · W` itself (the appended zero) for padding.
    fn index(&self) -> Vec<u32> {
        let (oh, ow) = self.out();
        let zero = (self.c_in * self.height * self.width) as u32;
        let mut idx = Vec::with_capacity(oh * ow * self.patch());
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..self.c_in {
                    for ky in 0..self.kernel {
                        for kx in 0..self.kernel {
                            let y = (oy * self.stride + ky) as isize - self.padding as isize;
                            let x = (ox * self.stride + kx) as isize - self.padding as isize;
                            let inside = y >= 0
                                && x >= 0
                                && (y as usize) < self.height
                                && (x as usize) < self.width;
                            idx.push(if inside {
                                ((c * self.height + y as usize) * self.width + x as usize) as u32
                            } else {
                                zero
                            });
                        }
                    }
                }
            }
        }
        idx
    }
}

/// One convolution layer's im2col indices, built on first use for each
/// input size and device and kept (serving sees one size; tests several).
#[derive(Default)]
pub(crate) struct Im2Col {
    cache: Mutex<HashMap<(Geometry, String), Tensor>>,
}

impl Im2Col {
    fn index(&self, g: Geometry, device: &Device) -> Result<Tensor> {
        let key = (g, format!("{:?}", device.location()));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        let idx = g.index();
        let t = Tensor::from_vec(idx.clone(), idx.len(), device)?;
        cache.insert(key, t.clone());
        Ok(t)
    }

    /// `x` `[N, c_in, H, W]` convolved with `weight` `[c_out, c_in, k, k]`
    /// (square kernel, zero padding, no dilation): `[N, c_out, H', W']`,
    /// as candle's `conv2d(weight, padding, stride, 1, 1)`.
    pub(crate) fn conv2d(
        &self,
        x: &Tensor,
        weight: &Tensor,
        padding: usize,
        stride: usize,
    ) -> Result<Tensor> {
        let (n, c_in, height, width) = x.dims4()?;
        let (c_out, w_in, kernel, kernel_w) = weight.dims4()?;
        if w_in != c_in || kernel != kernel_w || stride == 0 {
            candle_core::bail!(
                "conv2d: input {:?} against weight {:?}, stride {stride}",
                x.shape(),
                weight.shape()
            );
        }
        let g = Geometry {
            c_in,
            height,
            width,
            kernel,
            stride,
            padding,
        };
        if height + 2 * padding < kernel || width + 2 * padding < kernel {
            candle_core::bail!(
                "conv2d: kernel {kernel} larger than the padded input {height}x{width}"
            );
        }
        let (oh, ow) = g.out();
        let flat = x.reshape((n, c_in * height * width))?;
        let flat = Tensor::cat(&[&flat, &flat.zeros_like()?.narrow(1, 0, 1)?], 1)?;
        let cols = flat
            .index_select(&self.index(g, x.device())?, 1)?
            .reshape((n * oh * ow, g.patch()))?;
        let w = weight.reshape((c_out, g.patch()))?;
        cols.matmul(&w.t()?)?
            .reshape((n, oh * ow, c_out))?
            .transpose(1, 2)?
            .reshape((n, c_out, oh, ow))
    }
}

/// 2×2 max pooling with stride 2 (a trailing odd row or column is dropped,
/// as candle's and PyTorch's). As PyTorch's, the gradient of a window goes
/// to one of its maxima, whole, even when several values tie: a window of
/// equal values (flat background, bilinear upscaling) gets no more gradient
/// than any other.
pub(crate) fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, oh * 2)?.narrow(3, 0, ow * 2)?
    } else {
        x.clone()
    };
    let windows = x
        .reshape((n, c, oh, 2, ow, 2))?
        .permute((0, 1, 2, 4, 3, 5))?
        .reshape((n, c, oh, ow, 4))?;
    let argmax = windows.argmax_keepdim(D::Minus1)?;
    windows.gather(&argmax, D::Minus1)?.squeeze(D::Minus1)
}

/// Batch norm over `[N, C, H, W]`. Training is candle's `BatchNorm`
/// (PyTorch's arithmetic: biased variance to normalise, unbiased in the
/// running variance); its transposes cost less than reducing over N and
/// H·W in place (tried: 14% slower epochs). Inference folds the running
/// statistics into one `[1, C, 1]` scale and shift: two element-wise passes
/// over `x` instead of candle's four, and no transposes or copies.
pub(crate) struct BatchNorm2d(pub(crate) candle_nn::BatchNorm);

impl BatchNorm2d {
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            return self.0.forward_train(x);
        }
        let (n, c, h, w) = x.dims4()?;
        let (scale, shift) = self.folded()?;
        x.reshape((n, c, h * w))?
            .broadcast_mul(&scale.reshape((1, c, 1))?)?
            .broadcast_add(&shift.reshape((1, c, 1))?)?
            .reshape((n, c, h, w))
    }

    /// The running statistics, scale and shift folded into one scale and
    /// shift per channel, as inference applies them: `x · scale + shift`.
    pub(crate) fn folded(&self) -> Result<(Tensor, Tensor)> {
        let eps = self.0.eps();
        let root = (self.0.running_var() + eps)?.sqrt()?;
        Ok(match self.0.weight_and_bias() {
            Some((weight, bias)) => {
                let scale = (weight / root)?;
                (scale.clone(), (bias - (self.0.running_mean() * &scale)?)?)
            }
            None => {
                let scale = root.recip()?;
                (scale.clone(), (self.0.running_mean() * &scale)?.neg()?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, ModuleT, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        super::super::max_abs_diff(a, b) as f32
    }

    /// Random shapes, strides and paddings: the same outputs as candle's conv2d.
    #[test]
    fn conv2d_matches_candles_forward() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let conv = Im2Col::default();
        for _ in 0..40 {
            let n = rng.random_range(1..4);
            let c_in = rng.random_range(1..5);
            let c_out = rng.random_range(1..6);
            let k = [1, 3, 5][rng.random_range(0..3)];
            let stride = rng.random_range(1..4);
            let padding = rng.random_range(0..=k / 2 + 1);
            let h = rng.random_range(k..k + 12);
            let w = rng.random_range(k..k + 12);
            let x = random(&[n, c_in, h, w], &mut rng);
            let wt = random(&[c_out, c_in, k, k], &mut rng);
            let ours = conv.conv2d(&x, &wt, padding, stride).unwrap();
            let theirs = x.conv2d(&wt, padding, stride, 1, 1).unwrap();
            assert_eq!(
                ours.dims(),
                theirs.dims(),
                "n{n} c{c_in}->{c_out} k{k} s{stride} p{padding} {h}x{w}"
            );
            let d = max_diff(&ours, &theirs);
            assert!(
                d < 1e-5,
                "n{n} c{c_in}->{c_out} k{k} s{stride} p{padding} {h}x{w}: {d}"
            );
        }
    }

    /// Gradients of `sum(conv(x, w) · r)` with respect to x and w against
    /// central finite differences (in f64), at sizes including 32×32.
    #[test]
    fn conv2d_gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let conv = Im2Col::default();
        for &(n, c_in, c_out, k, stride, padding, h) in &[
            (2, 3, 4, 3, 1, 1, 7),
            (2, 2, 3, 3, 2, 1, 9),
            (1, 2, 2, 5, 1, 2, 6),
            (2, 1, 4, 3, 1, 1, 32),
        ] {
            let x = Var::from_tensor(
                &random(&[n, c_in, h, h], &mut rng)
                    .to_dtype(DType::F64)
                    .unwrap(),
            )
            .unwrap();
            let w = Var::from_tensor(
                &random(&[c_out, c_in, k, k], &mut rng)
                    .to_dtype(DType::F64)
                    .unwrap(),
            )
            .unwrap();
            let out_shape = conv
                .conv2d(&x, &w, padding, stride)
                .unwrap()
                .dims()
                .to_vec();
            let r = random(&out_shape, &mut rng).to_dtype(DType::F64).unwrap();
            let loss = |x: &Tensor, w: &Tensor| {
                (conv.conv2d(x, w, padding, stride).unwrap() * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
            };
            let grads = loss(&x, &w).backward().unwrap();
            for (var, other, is_x) in [(&x, &w, true), (&w, &x, false)] {
                let g = grads
                    .get(var)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let base = var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                // A sample of positions, always including the first and last.
                let step = (base.len() / 25).max(1);
                for i in (0..base.len()).step_by(step).chain([base.len() - 1]) {
                    let eps = 1e-4;
                    let at = |d: f64| {
                        let mut v = base.clone();
                        v[i] += d;
                        let t = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
                        let l = if is_x {
                            loss(&t, other)
                        } else {
                            loss(other, &t)
                        };
                        l.to_scalar::<f64>().unwrap()
                    };
                    let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                    assert!(
                        (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{} grad {i} at n{n} c{c_in}->{c_out} k{k} s{stride} p{padding} {h}x{h}: {} vs {fd}",
                        if is_x { "input" } else { "weight" },
                        g[i]
                    );
                }
            }
        }
    }

    /// The same maxima as candle's max_pool2d, odd sizes included, and the
    /// whole gradient to each window's maximum (finite differences).
    #[test]
    fn max_pool_matches_candle_forward_and_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for &(h, w) in &[(4, 4), (7, 6), (32, 32)] {
            let x = random(&[2, 3, h, w], &mut rng)
                .to_dtype(DType::F64)
                .unwrap();
            let ours = max_pool2(&x).unwrap();
            assert_eq!(
                max_diff(
                    &ours.to_dtype(DType::F32).unwrap(),
                    &x.max_pool2d(2).unwrap().to_dtype(DType::F32).unwrap()
                ),
                0.0
            );
            let var = Var::from_tensor(&x).unwrap();
            let r = random(ours.dims(), &mut rng).to_dtype(DType::F64).unwrap();
            let loss = |t: &Tensor| (max_pool2(t).unwrap() * &r).unwrap().sum_all().unwrap();
            let g = loss(&var)
                .backward()
                .unwrap()
                .get(&var)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let base = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for i in (0..base.len()).step_by(7) {
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[i] += d;
                    loss(&Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap())
                        .to_scalar::<f64>()
                        .unwrap()
                };
                let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
                assert!(
                    (fd - g[i]).abs() < 1e-6,
                    "{h}x{w} grad {i}: {} vs {fd}",
                    g[i]
                );
            }
        }
    }

    /// Every window hands its output's gradient on exactly once, ties or
    /// not: one element of a window of four equal values gets it all.
    /// candle 0.11's max_pool2d gives each of k tied maxima k/4 of it (a
    /// flat window 4×, a window with one maximum 1/4: a 16× bias towards
    /// flat regions, which sank the CNN at 32×32).
    #[test]
    fn a_window_of_equal_values_passes_its_gradient_on_once() {
        #[rustfmt::skip]
        let x = Tensor::from_vec(vec![
            0.5f32, 0.5, 1.0, 3.0,
            0.5,    0.5, 2.0, -1.0,
        ], (1, 1, 2, 4), &Device::Cpu).unwrap();
        let var = Var::from_tensor(&x).unwrap();
        let r = Tensor::from_vec(vec![2.0f32, 5.0], (1, 1, 1, 2), &Device::Cpu).unwrap();
        let grads = (max_pool2(&var).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads
            .get(&var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let flat: f32 = [g[0], g[1], g[4], g[5]].iter().sum();
        assert_eq!(flat, 2.0, "{g:?}");
        assert_eq!(
            [g[0], g[1], g[4], g[5]]
                .iter()
                .filter(|&&v| v != 0.0)
                .count(),
            1,
            "{g:?}"
        );
        assert_eq!([g[2], g[3], g[6], g[7]], [0.0, 5.0, 0.0, 0.0], "{g:?}");
    }
    /// Training and evaluation against candle's `BatchNorm` (PyTorch's
    /// arithmetic): outputs, the running statistics after two training
    /// steps, and the gradients of x, the scale and the shift, in f64.
    #[test]
    fn batch_norm_matches_candles_in_training_and_evaluation() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for &(n, c, h, w) in &[(4, 3, 5, 6), (2, 8, 32, 32), (3, 2, 1, 1)] {
            let f64s = |shape: &[usize], rng: &mut ChaCha8Rng| {
                random(shape, rng).to_dtype(DType::F64).unwrap()
            };
            let weight = Var::from_tensor(&(f64s(&[c], &mut rng) + 1.5).unwrap()).unwrap();
            let bias = Var::from_tensor(&f64s(&[c], &mut rng)).unwrap();
            let stats = || {
                (
                    Var::from_tensor(
                        &(f64s(&[c], &mut ChaCha8Rng::seed_from_u64(1)) * 0.1).unwrap(),
                    )
                    .unwrap(),
                    Var::from_tensor(
                        &f64s(&[c], &mut ChaCha8Rng::seed_from_u64(2))
                            .affine(0.1, 1.0)
                            .unwrap(),
                    )
                    .unwrap(),
                )
            };
            let (mean, var) = stats();
            let ours = BatchNorm2d(
                candle_nn::BatchNorm::new_with_momentum(
                    c,
                    mean.as_tensor().clone(),
                    var.as_tensor().clone(),
                    weight.as_tensor().clone(),
                    bias.as_tensor().clone(),
                    1e-5,
                    0.1,
                )
                .unwrap(),
            );
            let (their_mean, their_var) = stats();
            let theirs = candle_nn::BatchNorm::new_with_momentum(
                c,
                their_mean.as_tensor().clone(),
                their_var.as_tensor().clone(),
                weight.as_tensor().clone(),
                bias.as_tensor().clone(),
                1e-5,
                0.1,
            )
            .unwrap();
            for train in [true, true, false] {
                let x = Var::from_tensor(&f64s(&[n, c, h, w], &mut rng).affine(3.0, 0.5).unwrap())
                    .unwrap();
                let r = f64s(&[n, c, h, w], &mut rng);
                let a = ours.forward(&x, train).unwrap();
                let b = theirs.forward_t(x.as_tensor(), train).unwrap();
                let close = |p: &Tensor, q: &Tensor, what: &str| {
                    let d = super::super::max_abs_diff(p, q);
                    assert!(d < 1e-9, "{what} at {n}x{c}x{h}x{w} train={train}: {d}");
                };
                close(&a, &b, "output");
                close(mean.as_tensor(), their_mean.as_tensor(), "running mean");
                close(var.as_tensor(), their_var.as_tensor(), "running variance");
                let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
                for (v, what) in [(&x, "x"), (&weight, "scale"), (&bias, "shift")] {
                    close(ga.get(v).unwrap(), gb.get(v).unwrap(), what);
                }
            }
        }
    }
}
