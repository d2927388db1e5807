//! Image inputs of an image model: one tensor named by the model's image
//! input, either BYTES (each element a PNG or JPEG file: raw in binary REST
//! and gRPC, base64 in JSON) or UINT8/FP32 `[N, H, W, C]` pixels (C = 1 or
//! 3; FP32 in [0, 1]). Decoding is bounded: an image over `max_pixels` or a
//! request over `max_batch_pixels` is refused before it is decoded (413),
//! and an undecodable image is a 400 naming the input and the element.

use base64::Engine as _;

use crate::data::{DecodeLimits, Pixels, decode_image as decode};

use super::error::ServeError;
use super::protocol::{DecodeError, InferRequest, RequestInput, TensorData};

/// Bounds on the images of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most pixels one image may have (`--max-image-pixels`).
    pub max_pixels: u64,
    /// Most pixels all images of one request may have together (`--max-batch-pixels`).
    pub max_batch_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: DecodeLimits::default().max_pixels,
            // 64 full-HD frames: about 400 MB of RGB at most per request.
            max_batch_pixels: 64 * 1920 * 1080,
        }
    }
}

fn bad_tensor(input: &RequestInput, reason: String) -> ServeError {
    ServeError::ImageTensor {
        input: input.name.to_string(),
        reason,
    }
}

/// The images of a request to an image model whose input is `name`.
pub fn decode_images(
    request: &InferRequest,
    name: &str,
    limits: ImageLimits,
    max_rows: usize,
) -> Result<Vec<Pixels>, ServeError> {
    let input = match request.inputs.as_slice() {
        [one] if one.name == name => one,
        inputs => {
            return Err(ServeError::ImageInputs {
                expected: name.to_string(),
                got: inputs
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let rows = match (&*input.datatype, input.shape.as_slice()) {
        ("BYTES", [n] | [n, 1]) => *n,
        ("UINT8" | "FP32", [n, _, _, c]) if [1, 3].contains(c) => *n,
        ("BYTES", _) => {
            return Err(bad_tensor(
                input,
                format!("shape {:?}; BYTES images need [N] or [N, 1]", input.shape),
            ));
        }
        ("UINT8" | "FP32", _) => {
            return Err(bad_tensor(
                input,
                format!(
                    "shape {:?}; pixel tensors need [N, height, width, channels] with 1 or 3 channels",
                    input.shape
                ),
            ));
        }
        (other, _) => {
            return Err(bad_tensor(
                input,
                format!(
                    "datatype {other}; send BYTES (PNG or JPEG files) or UINT8/FP32 [N, H, W, C] pixels"
                ),
            ));
        }
    };
    let rows = usize::try_from(rows).unwrap_or(0);
    if rows == 0 {
        return Err(DecodeError::NoRows.into());
    }
    if rows > max_rows {
        return Err(DecodeError::TooManyRows {
            rows,
            max: max_rows,
        }
        .into());
    }
    let expected: u64 = input.shape.iter().map(|&d| d.max(0) as u64).product();
    if expected != input.data.len() as u64 {
        return Err(DecodeError::ShapeLength {
            input: input.name.to_string(),
            shape: input.shape.to_vec(),
            expected,
            actual: input.data.len(),
        }
        .into());
    }
    if input.datatype == "BYTES" {
        files(input, limits)
    } else {
        pixels(input, rows, limits)
    }
}

/// BYTES elements decoded as PNG or JPEG files.
fn files(input: &RequestInput, limits: ImageLimits) -> Result<Vec<Pixels>, ServeError> {
    let elements: Vec<std::borrow::Cow<'_, [u8]>> = match &input.data {
        TensorData::Blobs(b) => b.iter().map(|e| e.as_slice().into()).collect(),
        // JSON cannot carry raw bytes: each element is the file in base64.
        TensorData::Texts(t) => t
            .iter()
            .enumerate()
            .map(|(index, text)| {
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map(Into::into)
                    .map_err(|e| {
                        bad_tensor(
                            input,
                            format!("element {index} is neither an image nor base64 of one: {e}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(DecodeError::DataTypeMismatch {
                input: input.name.to_string(),
                datatype: input.datatype.to_string(),
                found: match other {
                    TensorData::Numbers(_) => "numbers",
                    _ => "booleans",
                },
            }
            .into());
        }
    };
    let mut total = 0u64;
    let mut images = Vec::with_capacity(elements.len());
    for (index, bytes) in elements.iter().enumerate() {
        let image = decode(
            bytes,
            DecodeLimits {
                max_pixels: limits.max_pixels,
            },
        )
        .map_err(|source| ServeError::BadImage {
            input: input.name.to_string(),
            index,
            source,
        })?;
        total += image.pixels();
        if total > limits.max_batch_pixels {
            return Err(ServeError::BatchTooLarge {
                pixels: total,
                max: limits.max_batch_pixels,
            });
        }
        images.push(image);
    }
    Ok(images)
}

/// `[N, H, W, C]` pixel values: UINT8 0–255, or FP32 in [0, 1].
fn pixels(
    input: &RequestInput,
    rows: usize,
    limits: ImageLimits,
) -> Result<Vec<Pixels>, ServeError> {
    let [_, h, w, c] = input.shape[..] else {
        return Err(bad_tensor(input, "needs four dimensions".into()));
    };
    let per_image = (h.max(0) as u64) * (w.max(0) as u64);
    if per_image > limits.max_pixels {
        return Err(ServeError::PixelsTooLarge {
            input: input.name.to_string(),
            width: w,
            height: h,
            max: limits.max_pixels,
        });
    }
    if per_image * rows as u64 > limits.max_batch_pixels {
        return Err(ServeError::BatchTooLarge {
            pixels: per_image * rows as u64,
            max: limits.max_batch_pixels,
        });
    }
    let TensorData::Numbers(values) = &input.data else {
        return Err(DecodeError::DataTypeMismatch {
            input: input.name.to_string(),
            datatype: input.datatype.to_string(),
            found: "non-numbers",
        }
        .into());
    };
    let fp32 = input.datatype == "FP32";
    let mut bytes = Vec::with_capacity(values.len());
    for (index, &v) in values.iter().enumerate() {
        let ok = if fp32 {
            v.is_finite() && (0.0..=1.0).contains(&v)
        } else {
            v.fract() == 0.0 && (0.0..=255.0).contains(&v)
        };
        if !ok {
            return Err(DecodeError::OutOfRange {
                input: input.name.to_string(),
                index,
                value: v,
                datatype: if fp32 {
                    "FP32 pixels in [0, 1]"
                } else {
                    "UINT8 pixels"
                }
                .into(),
            }
            .into());
        }
        bytes.push(if fp32 {
            (v * 255.0).round() as u8
        } else {
            v as u8
        });
    }
    let size = (h * w * c) as usize;
    Ok(bytes
        .chunks_exact(size)
        .filter_map(|image| Pixels::from_raw(w as u32, h as u32, c as usize, image))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::protocol::parse_request;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::GrayImage::from_pixel(width, height, image::Luma([128]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn request(datatype: &str, shape: &str, data: &str) -> InferRequest<'static> {
        let body = format!(
            r#"{{"inputs":[{{"name":"image","shape":{shape},"datatype":"{datatype}","data":{data}}}]}}"#
        );
        parse_request(body.as_bytes()).unwrap().into_owned()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn base64_files_and_pixel_tensors_decode_to_images() {
        let limits = ImageLimits::default();
        let r = request(
            "BYTES",
            "[2]",
            &format!(r#"["{}","{}"]"#, b64(&png(4, 3)), b64(&png(2, 2))),
        );
        let images = decode_images(&r, "image", limits, 10).unwrap();
        assert_eq!(
            (images[0].width, images[0].height, images[1].width),
            (4, 3, 2)
        );
        let r = request("UINT8", "[1,1,2,3]", "[1,2,3,4,5,6]");
        let images = decode_images(&r, "image", limits, 10).unwrap();
        assert_eq!(images[0].rgb, [1, 2, 3, 4, 5, 6]);
        let r = request("FP32", "[2,1,1,1]", "[0.0,1.0]");
        let images = decode_images(&r, "image", limits, 10).unwrap();
        assert_eq!((images[0].rgb[0], images[1].rgb[2]), (0, 255));
    }

    #[test]
    fn bad_images_are_400s_naming_the_element_and_big_ones_413s() {
        let limits = ImageLimits {
            max_pixels: 100,
            max_batch_pixels: 150,
        };
        let status = |r: &InferRequest| decode_images(r, "image", limits, 10).unwrap_err();
        let garbage = request(
            "BYTES",
            "[2]",
            &format!(r#"["{}","{}"]"#, b64(&png(2, 2)), b64(b"GIF89a")),
        );
        let e = status(&garbage);
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(
            e.message()
                .contains("input `image` element 1: is not a PNG or JPEG"),
            "{}",
            e.message()
        );
        let big = request("BYTES", "[1]", &format!(r#"["{}"]"#, b64(&png(20, 20))));
        let e = status(&big);
        assert_eq!(e.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            e.message().contains("20×20 pixels (400); at most 100"),
            "{}",
            e.message()
        );
        let many = request(
            "BYTES",
            "[2]",
            &format!(r#"["{}","{}"]"#, b64(&png(10, 10)), b64(&png(10, 10))),
        );
        assert_eq!(
            status(&many).status(),
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
        let wide = request(
            "UINT8",
            "[1,1,101,1]",
            &format!("[{}]", vec!["0"; 101].join(",")),
        );
        assert_eq!(
            status(&wide).status(),
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
        let named = request("UINT8", "[1,1,1,1]", "[0]");
        let e = decode_images(&named, "pixels", limits, 10).unwrap_err();
        assert!(
            e.message().contains("one input `pixels`"),
            "{}",
            e.message()
        );
        let range = request("UINT8", "[1,1,1,1]", "[300]");
        assert_eq!(status(&range).status(), axum::http::StatusCode::BAD_REQUEST);
    }
}
