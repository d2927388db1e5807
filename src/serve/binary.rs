//! The binary tensor data extension of the Open Inference Protocol: raw
//! little-endian tensors after the JSON header of a REST body (sized by
//! `Inference-Header-Content-Length` and each tensor's `binary_data_size`), and
//! the same encoding in gRPC's `raw_input_contents` / `raw_output_contents`.
//!
//! Pure functions of bytes: every length is checked against what is left
//! before it is read, so a lying size is an error naming the input, never a
//! panic or an over-read.

use super::protocol::{DecodeError, OutputData, TensorData};

/// The header giving the length of the JSON part of a binary body (a
/// parsed name: looked up and set on every request, a `&str` would be
/// parsed each time).
pub const HEADER_LENGTH: http::HeaderName =
    http::HeaderName::from_static("inference-header-content-length");

/// Bytes per element of a fixed-size datatype; `None` for BYTES and unknown names.
pub fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" | "FP16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        _ => return None,
    })
}

/// Decodes one raw tensor (little-endian, row-major; BYTES elements each
/// behind a 4-byte little-endian length) into values the JSON decoder would
/// have produced, so both feed the same validation.
pub fn decode_tensor(input: &str, datatype: &str, raw: &[u8]) -> Result<TensorData, DecodeError> {
    if datatype == "BYTES" {
        return decode_bytes(input, raw).map(super::protocol::bytes_elements);
    }
    let Some(size) = element_size(datatype) else {
        return Err(DecodeError::UnknownDatatype {
            input: input.to_string(),
            datatype: datatype.to_string(),
        });
    };
    if !raw.len().is_multiple_of(size) {
        return Err(DecodeError::BinarySize {
            input: input.to_string(),
            datatype: datatype.to_string(),
            size: raw.len(),
            element: size,
        });
    }
    let chunks = raw.chunks_exact(size);
    let data = match datatype {
        "BOOL" => {
            let mut values = Vec::with_capacity(raw.len());
            for (index, &b) in raw.iter().enumerate() {
                match b {
                    0 => values.push(false),
                    1 => values.push(true),
                    _ => {
                        return Err(DecodeError::OutOfRange {
                            input: input.to_string(),
                            index,
                            value: f64::from(b),
                            datatype: "BOOL (byte 0 or 1)".into(),
                        });
                    }
                }
            }
            TensorData::Bools(values)
        }
        "INT8" => TensorData::Numbers(raw.iter().map(|&b| f64::from(b as i8)).collect()),
        "UINT8" => TensorData::Numbers(raw.iter().map(|&b| f64::from(b)).collect()),
        "INT16" => numbers(chunks, |c| f64::from(i16::from_le_bytes([c[0], c[1]]))),
        "UINT16" => numbers(chunks, |c| f64::from(u16::from_le_bytes([c[0], c[1]]))),
        "FP16" => numbers(chunks, |c| {
            f64::from(half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        }),
        "INT32" => numbers(chunks, |c| f64::from(i32::from_le_bytes(word(c)))),
        "UINT32" => numbers(chunks, |c| f64::from(u32::from_le_bytes(word(c)))),
        "FP32" => numbers(chunks, |c| f64::from(f32::from_le_bytes(word(c)))),
        "INT64" => numbers(chunks, |c| i64::from_le_bytes(double_word(c)) as f64),
        "UINT64" => numbers(chunks, |c| u64::from_le_bytes(double_word(c)) as f64),
        _ => numbers(chunks, |c| f64::from_le_bytes(double_word(c))),
    };
    Ok(data)
}

fn numbers<'a>(
    chunks: std::slice::ChunksExact<'a, u8>,
    value: impl Fn(&'a [u8]) -> f64,
) -> TensorData {
    TensorData::Numbers(chunks.map(value).collect())
}

fn word(c: &[u8]) -> [u8; 4] {
    [c[0], c[1], c[2], c[3]]
}

fn double_word(c: &[u8]) -> [u8; 8] {
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
}

fn decode_bytes(input: &str, raw: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let element = |index: usize, reason: String| DecodeError::BytesElement {
        input: input.to_string(),
        index,
        reason,
    };
    let mut values = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let index = values.len();
        let Some((prefix, tail)) = rest.split_first_chunk::<4>() else {
            return Err(element(
                index,
                format!(
                    "{} bytes left where a 4-byte length prefix was expected",
                    rest.len()
                ),
            ));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > tail.len() {
            return Err(element(
                index,
                format!(
                    "length prefix says {len} bytes but only {} remain",
                    tail.len()
                ),
            ));
        }
        let (bytes, after) = tail.split_at(len);
        values.push(bytes.to_vec());
        rest = after;
    }
    Ok(values)
}

/// Encodes an output tensor as raw little-endian bytes (BYTES with length prefixes).
pub fn encode_output(data: &OutputData) -> Vec<u8> {
    match data {
        OutputData::Numbers(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        OutputData::Doubles(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        OutputData::Texts(v) => {
            let mut out = Vec::with_capacity(v.iter().map(|t| t.len() + 4).sum());
            for t in v {
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }
            out
        }
    }
}

/// Splits a REST body into its JSON header and binary part; with no header
/// length the whole body is JSON.
pub fn split_body(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<(&[u8], &[u8]), DecodeError> {
    match header_length {
        None => Ok((body, &[])),
        Some(n) if n <= body.len() => Ok(body.split_at(n)),
        Some(n) => Err(DecodeError::HeaderLength {
            declared: n,
            body: body.len(),
        }),
    }
}

/// Takes `size` bytes for `input` off the front of `rest`, or says the body is truncated.
pub fn take<'a>(rest: &mut &'a [u8], input: &str, size: u64) -> Result<&'a [u8], DecodeError> {
    let left = rest.len();
    let Some(n) = usize::try_from(size).ok().filter(|&n| n <= left) else {
        return Err(DecodeError::TruncatedBinary {
            input: input.to_string(),
            size,
            left,
        });
    };
    let (taken, after) = rest.split_at(n);
    *rest = after;
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_size_datatype_decodes_little_endian() {
        let cases: [(&str, Vec<u8>, Vec<f64>); 11] = [
            ("INT8", vec![0xff, 2], vec![-1.0, 2.0]),
            ("UINT8", vec![0xff, 2], vec![255.0, 2.0]),
            ("INT16", (-2i16).to_le_bytes().to_vec(), vec![-2.0]),
            ("UINT16", 65535u16.to_le_bytes().to_vec(), vec![65535.0]),
            ("INT32", (-7i32).to_le_bytes().to_vec(), vec![-7.0]),
            ("UINT32", 7u32.to_le_bytes().to_vec(), vec![7.0]),
            ("INT64", (-9i64).to_le_bytes().to_vec(), vec![-9.0]),
            ("UINT64", 9u64.to_le_bytes().to_vec(), vec![9.0]),
            (
                "FP16",
                half::f16::from_f32(1.5).to_le_bytes().to_vec(),
                vec![1.5],
            ),
            ("FP32", 2.25f32.to_le_bytes().to_vec(), vec![2.25]),
            ("FP64", 0.1f64.to_le_bytes().to_vec(), vec![0.1]),
        ];
        for (dt, raw, want) in cases {
            assert_eq!(
                decode_tensor("x", dt, &raw).unwrap(),
                TensorData::Numbers(want),
                "{dt}"
            );
        }
        assert_eq!(
            decode_tensor("x", "BOOL", &[1, 0]).unwrap(),
            TensorData::Bools(vec![true, false])
        );
    }

    #[test]
    fn bytes_round_trip_through_length_prefixes() {
        let texts = OutputData::Texts(vec!["red".into(), String::new(), "white".into()]);
        let raw = encode_output(&texts);
        assert_eq!(&raw[..7], &[3, 0, 0, 0, b'r', b'e', b'd']);
        assert_eq!(
            decode_tensor("color", "BYTES", &raw).unwrap(),
            TensorData::Texts(vec!["red".into(), String::new(), "white".into()])
        );
    }

    #[test]
    fn lying_sizes_are_errors_naming_the_input() {
        let err = decode_tensor("alcohol", "FP32", &[0; 10]).unwrap_err();
        assert!(err.to_string().contains("input `alcohol`"), "{err}");
        assert!(err.to_string().contains("4 bytes each"), "{err}");
        let err = decode_tensor("color", "BYTES", &[9, 0, 0, 0, b'r']).unwrap_err();
        assert!(
            err.to_string().contains(
                "input `color`: BYTES element 0: length prefix says 9 bytes but only 1 remain"
            ),
            "{err}"
        );
        let err = decode_tensor("color", "BYTES", &[1, 0]).unwrap_err();
        assert!(err.to_string().contains("4-byte length prefix"), "{err}");
        let err = decode_tensor("flag", "BOOL", &[2]).unwrap_err();
        assert!(err.to_string().contains("input `flag`"), "{err}");
        let mut rest: &[u8] = &[1, 2, 3];
        let err = take(&mut rest, "alcohol", u64::MAX).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert_eq!(take(&mut rest, "alcohol", 2).unwrap(), &[1, 2]);
        assert_eq!(rest, &[3]);
        assert!(split_body(b"{}", Some(3)).is_err());
    }
}
