//! The preprocessing an image model ships in its artifact: the geometry
//! (resize, centre crop), the channels the model sees, and per-channel
//! normalisation fitted on the training split. Augmentation (seeded flips
//! and random crops) happens in training only and is not stored.

use std::borrow::Cow;

use image::imageops::{self, FilterType};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::api::{ChannelOrder, ImageAugmentation, ImageChannels, ImageDataSpec};
use crate::data::Pixels;
use crate::ml::arch::InputShape;

/// The name of the one input tensor of an image model.
pub const IMAGE_INPUT: &str = "image";

/// How decoded pixels become the model's input, as stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePreprocessing {
    /// The request input that carries images.
    pub input: String,
    pub height: u32,
    pub width: u32,
    /// Shorter side before the centre crop; none resizes straight to `height × width`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<u32>,
    pub channels: ImageChannels,
    pub channel_order: ChannelOrder,
    /// Per-channel mean and standard deviation of values in [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// ITU-R BT.601 luma of an RGB pixel, in [0, 1].
pub fn luma(p: &[u8]) -> f32 {
    (0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])) / 255.0
}

impl ImagePreprocessing {
    /// The input shape the network sees.
    pub fn shape(&self) -> InputShape {
        InputShape::Image {
            channels: self.channels.count(),
            height: self.height as usize,
            width: self.width as usize,
        }
    }

    /// Values per preprocessed image.
    pub fn width_of_input(&self) -> usize {
        self.shape().width()
    }

    /// The image's RGB bytes at the model's size (`height × width × 3`,
    /// interleaved): the pixels themselves when they already have that size
    /// (no copy: the common case in serving), else resized (shorter side to
    /// `resize`, then the centre cropped) or resized straight to
    /// `height × width`.
    pub fn geometry<'p>(&self, pixels: &'p Pixels) -> Cow<'p, [u8]> {
        let (w, h) = (self.width, self.height);
        if (pixels.width, pixels.height) == (w, h) {
            return Cow::Borrowed(&pixels.rgb);
        }
        let image = pixels.to_image();
        let Some(short) = self.resize else {
            return Cow::Owned(imageops::resize(&image, w, h, FilterType::Triangle).into_raw());
        };
        let scale = f64::from(short) / f64::from(pixels.width.min(pixels.height));
        let rw = ((f64::from(pixels.width) * scale).round() as u32).max(w);
        let rh = ((f64::from(pixels.height) * scale).round() as u32).max(h);
        let resized = imageops::resize(&image, rw, rh, FilterType::Triangle);
        Cow::Owned(
            imageops::crop_imm(&resized, (rw - w) / 2, (rh - h) / 2, w, h)
                .to_image()
                .into_raw(),
        )
    }

    /// Channel values in [0, 1] of an image at the model's size (RGB bytes,
    /// as [`ImagePreprocessing::geometry`] gives them), channels first.
    fn planes(&self, rgb: &[u8]) -> Vec<Vec<f32>> {
        let order: [usize; 3] = match self.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let pixels = rgb.chunks_exact(3);
        match self.channels {
            ImageChannels::Grayscale => vec![pixels.map(luma).collect()],
            ImageChannels::Rgb => order
                .iter()
                .map(|&c| pixels.clone().map(|p| f32::from(p[c]) / 255.0).collect())
                .collect(),
        }
    }

    /// Appends one image, preprocessed (channels first, normalised), to `out`.
    pub fn encode_into(&self, pixels: &Pixels, out: &mut Vec<f32>) {
        let planes = self.planes(&self.geometry(pixels));
        for (c, plane) in planes.iter().enumerate() {
            let (mean, std) = (self.mean[c], self.std[c]);
            out.extend(plane.iter().map(|v| (v - mean) / std));
        }
    }

    /// Images preprocessed into one row-major `images × input width` matrix.
    pub fn encode<'a>(&self, images: impl IntoIterator<Item = &'a Pixels>) -> Vec<f32> {
        let mut out = Vec::new();
        for p in images {
            self.encode_into(p, &mut out);
        }
        out
    }

    /// Preprocessing for a spec, with the mean and standard deviation the
    /// spec gives or, when it gives none, those of the training images.
    pub fn fit<'a>(spec: &ImageDataSpec, training: impl IntoIterator<Item = &'a Pixels>) -> Self {
        let channels = spec.channels.count();
        let mut fitted = ImagePreprocessing {
            input: IMAGE_INPUT.into(),
            height: spec.height,
            width: spec.width,
            resize: spec.resize,
            channels: spec.channels,
            channel_order: spec.channel_order,
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        };
        if !spec.mean.is_empty() {
            fitted.mean = spec.mean.iter().map(|&m| m as f32).collect();
            fitted.std = spec.std.iter().map(|&s| s as f32).collect();
            return fitted;
        }
        let (mut sum, mut sq, mut n) = (vec![0f64; channels], vec![0f64; channels], 0f64);
        for p in training {
            for (c, plane) in fitted.planes(&fitted.geometry(p)).iter().enumerate() {
                sum[c] += plane.iter().map(|&v| f64::from(v)).sum::<f64>();
                sq[c] += plane.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
            }
            n += f64::from(spec.height) * f64::from(spec.width);
        }
        if n > 0.0 {
            for c in 0..channels {
                let mean = sum[c] / n;
                let std = (sq[c] / n - mean * mean).max(0.0).sqrt();
                fitted.mean[c] = mean as f32;
                // A constant channel is centred, not scaled.
                fitted.std[c] = if std > 1e-6 { std as f32 } else { 1.0 };
            }
        }
        fitted
    }

    /// Seeded training augmentation of preprocessed images in place: each
    /// is flipped left to right with probability ½ (with `flip`), and padded
    /// by `randomCrop` pixels of the mean colour and cropped back at a
    /// random offset.
    pub fn augment(&self, images: &mut [f32], augment: &ImageAugmentation, rng: &mut ChaCha8Rng) {
        let (c, h, w) = (
            self.channels.count(),
            self.height as usize,
            self.width as usize,
        );
        let size = c * h * w;
        let pad = augment.random_crop as i64;
        let mut scratch = vec![0f32; size];
        for image in images.chunks_exact_mut(size) {
            let flip = augment.flip && rng.random::<bool>();
            let (dy, dx) = if pad > 0 {
                (rng.random_range(-pad..=pad), rng.random_range(-pad..=pad))
            } else {
                (0, 0)
            };
            if !flip && dy == 0 && dx == 0 {
                continue;
            }
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let sx = if flip { w - 1 - x } else { x } as i64 + dx;
                        let sy = y as i64 + dy;
                        let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                        // Outside the image: 0, the normalised mean colour.
                        scratch[(ch * h + y) * w + x] = if inside {
                            image[(ch * h + sy as usize) * w + sx as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
            image.copy_from_slice(&scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn gradient(width: u32, height: u32) -> Pixels {
        let mut rgb = Vec::new();
        for y in 0..height {
            for x in 0..width {
                rgb.extend([(x * 10) as u8, (y * 10) as u8, 100]);
            }
        }
        Pixels { width, height, rgb }
    }

    fn spec(channels: ImageChannels) -> ImageDataSpec {
        ImageDataSpec {
            height: 4,
            width: 4,
            channels,
            ..ImageDataSpec::default()
        }
    }

    #[test]
    fn images_become_normalised_channels_first_values_at_the_model_size() {
        let images = [gradient(4, 4), gradient(4, 4)];
        let p = ImagePreprocessing::fit(&spec(ImageChannels::Rgb), &images);
        let x = p.encode(&images);
        assert_eq!(x.len(), 2 * 3 * 16);
        // Fitted per channel on the training images: each channel has mean 0.
        for c in 0..3 {
            let plane = &x[c * 16..(c + 1) * 16];
            assert!(plane.iter().sum::<f32>().abs() < 1e-4, "channel {c}");
        }
        // The blue channel is constant: centred, not divided by zero.
        assert_eq!(p.std[2], 1.0);
        // Red grows left to right, green top to bottom.
        assert!(x[1] > x[0] && x[16 + 4] > x[16]);
        let gray = ImagePreprocessing::fit(&spec(ImageChannels::Grayscale), &images);
        assert_eq!(gray.encode(&images[..1]).len(), 16);
    }

    #[test]
    fn resize_keeps_the_aspect_and_crops_the_centre() {
        let mut s = spec(ImageChannels::Rgb);
        s.resize = Some(4);
        let p = ImagePreprocessing::fit(&s, &[gradient(8, 4)]);
        let image = gradient(8, 4);
        let out = p.geometry(&image);
        assert_eq!(out.len(), 4 * 4 * 3);
        // The centre columns of the 8-wide gradient: red starts at x = 2.
        assert_eq!(out[0], 20);
        let straight = ImagePreprocessing::fit(&spec(ImageChannels::Rgb), &[gradient(8, 4)]);
        assert_eq!(straight.geometry(&gradient(8, 4)).len(), 4 * 4 * 3);
        // An image already at the model's size is read in place, not copied.
        let image = gradient(4, 4);
        assert!(matches!(straight.geometry(&image), Cow::Borrowed(b) if b == image.rgb));
    }

    #[test]
    fn augmentation_is_seeded_and_keeps_the_shape() {
        let images = [gradient(4, 4)];
        let p = ImagePreprocessing::fit(&spec(ImageChannels::Rgb), &images);
        let aug = ImageAugmentation {
            flip: true,
            random_crop: 1,
        };
        let original = p.encode(&images);
        let run = |seed| {
            let mut x = original.clone();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for _ in 0..3 {
                p.augment(&mut x, &aug, &mut rng);
            }
            x
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), original);
        assert_eq!(run(1).len(), original.len());
    }
}
