//! Per-image statistics the drift monitor watches beside the embedding:
//! brightness, contrast and sharpness of the image as the model sees it
//! (at its input size), and the size the image arrived at.

use crate::data::Pixels;

use super::preprocess::{ImagePreprocessing, luma};

/// The statistics' names, in the order [`image_statistics`] returns them.
pub const IMAGE_STATISTICS: [&str; 5] = ["brightness", "contrast", "sharpness", "width", "height"];

/// Mean luma, its standard deviation, the mean absolute Laplacian of luma
/// (what a blur lowers), all in [0, 1] units at the model's input size, and
/// the original width and height in pixels.
pub fn image_statistics(preprocessing: &ImagePreprocessing, pixels: &Pixels) -> [f64; 5] {
    let view = preprocessing.geometry(pixels);
    let (w, h) = (preprocessing.width as usize, preprocessing.height as usize);
    let y: Vec<f64> = view.chunks_exact(3).map(|p| f64::from(luma(p))).collect();
    let n = y.len().max(1) as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let mut laplacian = 0.0;
    let mut count = 0usize;
    for r in 1..h.saturating_sub(1) {
        for c in 1..w.saturating_sub(1) {
            let at = |r: usize, c: usize| y[r * w + c];
            let l = at(r - 1, c) + at(r + 1, c) + at(r, c - 1) + at(r, c + 1) - 4.0 * at(r, c);
            laplacian += l.abs();
            count += 1;
        }
    }
    [
        mean,
        var.sqrt(),
        if count > 0 {
            laplacian / count as f64
        } else {
            0.0
        },
        f64::from(pixels.width),
        f64::from(pixels.height),
    ]
}

/// The image with its brightness and contrast moved from `from` to `to`
/// (each `(mean luma, luma std)`): values are shifted and scaled around the
/// mean, then clamped. Permutation importance gives each held-out image
/// another's brightness or contrast this way.
pub fn with_brightness_contrast(pixels: &Pixels, from: (f64, f64), to: (f64, f64)) -> Pixels {
    let scale = if from.1 > 1e-9 { to.1 / from.1 } else { 1.0 };
    let rgb = pixels
        .rgb
        .iter()
        .map(|&v| {
            let x = f64::from(v) / 255.0;
            ((to.0 + (x - from.0) * scale).clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect();
    Pixels {
        width: pixels.width,
        height: pixels.height,
        rgb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageChannels, ImageDataSpec};

    fn preprocessing() -> ImagePreprocessing {
        let spec = ImageDataSpec {
            height: 16,
            width: 16,
            channels: ImageChannels::Grayscale,
            ..ImageDataSpec::default()
        };
        ImagePreprocessing::fit(&spec, [])
    }

    fn checkerboard(dark: u8, light: u8) -> Pixels {
        let mut values = Vec::new();
        for y in 0..16u32 {
            for x in 0..16u32 {
                values.push(if (x / 2 + y / 2) % 2 == 0 {
                    dark
                } else {
                    light
                });
            }
        }
        Pixels::from_raw(16, 16, 1, &values).unwrap()
    }

    #[test]
    fn darker_flatter_and_blurrier_images_read_lower() {
        let p = preprocessing();
        let [b, c, s, w, h] = image_statistics(&p, &checkerboard(0, 255));
        assert!((b - 0.5).abs() < 0.01 && (c - 0.5).abs() < 0.01, "{b} {c}");
        assert_eq!((w, h), (16.0, 16.0));
        let [b2, c2, ..] = image_statistics(&p, &checkerboard(0, 100));
        assert!(b2 < b && c2 < c);
        let blurred = Pixels::from_image(&image::imageops::blur(
            &checkerboard(0, 255).to_image(),
            2.0,
        ));
        let [_, _, s3, ..] = image_statistics(&p, &blurred);
        assert!(s3 < s / 2.0, "sharpness {s} → {s3} after a blur");
    }

    #[test]
    fn brightness_and_contrast_can_be_set_to_another_images() {
        let p = preprocessing();
        let img = checkerboard(50, 150);
        let [b, c, ..] = image_statistics(&p, &img);
        let moved = with_brightness_contrast(&img, (b, c), (b + 0.2, c * 0.5));
        let [b2, c2, ..] = image_statistics(&p, &moved);
        assert!((b2 - (b + 0.2)).abs() < 0.01, "{b2}");
        assert!((c2 - c * 0.5).abs() < 0.01, "{c2}");
    }
}
