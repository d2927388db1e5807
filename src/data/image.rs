//! Encoded bytes (PNG or JPEG) to RGB pixels, refusing an image whose
//! header declares more pixels than allowed before anything is decoded.

use std::io::Cursor;

use image::{ImageFormat, ImageReader};

/// An image as decoded: 8-bit RGB, row-major, interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    /// `width × height × 3` bytes.
    pub rgb: Vec<u8>,
}

impl Pixels {
    /// Pixels from raw 8-bit values with 1 (gray) or 3 (RGB) interleaved channels.
    pub fn from_raw(width: u32, height: u32, channels: usize, values: &[u8]) -> Option<Pixels> {
        let n = width as usize * height as usize;
        if values.len() != n * channels {
            return None;
        }
        let rgb = match channels {
            1 => values.iter().flat_map(|&v| [v, v, v]).collect(),
            3 => values.to_vec(),
            _ => return None,
        };
        Some(Pixels { width, height, rgb })
    }

    /// The pixels as an `image` buffer.
    pub fn to_image(&self) -> image::RgbImage {
        image::RgbImage::from_raw(self.width, self.height, self.rgb.clone())
            .unwrap_or_else(|| image::RgbImage::new(self.width, self.height))
    }

    /// Pixels of an `image` buffer.
    pub fn from_image(image: &image::RgbImage) -> Pixels {
        Pixels {
            width: image.width(),
            height: image.height(),
            rgb: image.as_raw().clone(),
        }
    }

    /// Number of pixels.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Bounds on one decoded image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most pixels (width × height) one image may have.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 4096 × 4096: a 48 MiB RGB buffer at most per image.
        Self {
            max_pixels: 4096 * 4096,
        }
    }
}

/// Why bytes are not an image driftline can use; the caller names the
/// file or input, so each message completes "image `x` …".
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("is not a PNG or JPEG image (its first bytes are {head})")]
    UnknownFormat { head: String },
    #[error("cannot be decoded as {format}")]
    Undecodable {
        format: &'static str,
        #[source]
        source: image::ImageError,
    },
    #[error("is {width}×{height} pixels ({pixels}); at most {max} pixels are allowed per image")]
    TooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        max: u64,
    },
    #[error("has no pixels")]
    Empty,
}

impl ImageError {
    /// Whether the image was refused for its size rather than its contents.
    pub fn is_too_large(&self) -> bool {
        matches!(self, ImageError::TooLarge { .. })
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        _ => "an image",
    }
}

/// Decodes PNG or JPEG bytes to RGB; the declared size is checked against
/// `limits` from the header alone, so an oversized image costs no memory.
pub fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<Pixels, ImageError> {
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        _ => {
            let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            return Err(ImageError::UnknownFormat {
                head: if head.is_empty() {
                    "missing: it is empty".into()
                } else {
                    head.join(" ")
                },
            });
        }
    };
    let undecodable = |source| ImageError::Undecodable {
        format: format_name(format),
        source,
    };
    let reader = |bytes| ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader(bytes).into_dimensions().map_err(undecodable)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            pixels,
            max: limits.max_pixels,
        });
    }
    if pixels == 0 {
        return Err(ImageError::Empty);
    }
    let image = reader(bytes).decode().map_err(undecodable)?;
    // Gray and RGB, what PNG and JPEG files mostly hold, straight to RGB
    // bytes; the `image` crate's general conversion goes through its colour
    // handling (a rounding per value), a sixth of serving a small image.
    Ok(match image {
        image::DynamicImage::ImageRgb8(rgb) => Pixels {
            width,
            height,
            rgb: rgb.into_raw(),
        },
        image::DynamicImage::ImageLuma8(gray) => Pixels::from_raw(width, height, 1, gray.as_raw())
            .expect("a decoded gray image holds width × height values"),
        other => Pixels {
            width,
            height,
            rgb: other.to_rgb8().into_raw(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn png(width: u32, height: u32, value: u8) -> Vec<u8> {
        let image = image::GrayImage::from_pixel(width, height, image::Luma([value]));
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn png_and_jpeg_decode_to_rgb() {
        let p = decode(&png(3, 2, 200), DecodeLimits::default()).unwrap();
        assert_eq!((p.width, p.height), (3, 2));
        assert_eq!(p.rgb, vec![200; 18]);
        let mut jpeg = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([10, 120, 240]))
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        let j = decode(&jpeg, DecodeLimits::default()).unwrap();
        assert_eq!((j.width, j.height), (8, 8));
        // JPEG is lossy: the colour comes back close, not exact.
        assert!(
            j.rgb[..3]
                .iter()
                .zip([10, 120, 240])
                .all(|(a, b)| a.abs_diff(b) < 8)
        );
    }

    /// The direct paths for gray and RGB files give what the `image`
    /// crate's own conversion gives, and so does every other layout.
    #[test]
    fn every_pixel_layout_decodes_to_the_image_crates_rgb() {
        let value = |x: u32, y: u32, c: u32| ((x * 37 + y * 11 + c * 53) % 256) as u8;
        let gray = image::GrayImage::from_fn(5, 3, |x, y| image::Luma([value(x, y, 0)]));
        let rgb = image::RgbImage::from_fn(5, 3, |x, y| {
            image::Rgb([value(x, y, 0), value(x, y, 1), value(x, y, 2)])
        });
        let layouts = [
            image::DynamicImage::ImageLuma8(gray.clone()),
            image::DynamicImage::ImageRgb8(rgb.clone()),
            image::DynamicImage::ImageLumaA8(
                image::DynamicImage::ImageLuma8(gray).to_luma_alpha8(),
            ),
            image::DynamicImage::ImageRgba8(image::DynamicImage::ImageRgb8(rgb.clone()).to_rgba8()),
            image::DynamicImage::ImageRgb16(image::DynamicImage::ImageRgb8(rgb).to_rgb16()),
        ];
        for layout in layouts {
            let mut bytes = Vec::new();
            layout
                .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
                .unwrap();
            let expected = image::load_from_memory(&bytes).unwrap().to_rgb8();
            let got = decode(&bytes, DecodeLimits::default()).unwrap();
            assert_eq!((got.width, got.height), (5, 3), "{:?}", layout.color());
            assert_eq!(got.rgb, expected.into_raw(), "{:?}", layout.color());
        }
    }

    #[test]
    fn garbage_truncated_and_oversized_images_are_refused_with_the_reason() {
        let e = decode(b"GIF89a....", DecodeLimits::default()).unwrap_err();
        assert!(e.to_string().contains("not a PNG or JPEG"), "{e}");
        let mut cut = png(16, 16, 9);
        cut.truncate(cut.len() / 2);
        let e = decode(&cut, DecodeLimits::default()).unwrap_err();
        assert!(e.to_string().contains("cannot be decoded as PNG"), "{e}");
        let e = decode(&png(100, 50, 0), DecodeLimits { max_pixels: 4999 }).unwrap_err();
        assert!(e.is_too_large());
        assert_eq!(
            e.to_string(),
            "is 100×50 pixels (5000); at most 4999 pixels are allowed per image"
        );
    }
}
