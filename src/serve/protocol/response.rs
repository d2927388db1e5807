//! Open Inference Protocol v2 responses and metadata: the JSON body of an
//! infer answer (with binary outputs appended after it when asked) and the
//! model and server metadata documents.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `POST …/infer` response. The model's name and version are borrowed
/// from the loaded model, not copied into each answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct InferResponse<'a> {
    pub model_name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub outputs: Vec<ResponseOutput>,
}

/// One output tensor. The server's names and datatypes are constants
/// (`predictions`, `FP64`, …): borrowed, not copied into each answer; its
/// shape (one or two dimensions) is kept inline.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ResponseOutput {
    pub name: Cow<'static, str>,
    pub shape: OutputShape,
    pub datatype: Cow<'static, str>,
    pub data: OutputData,
}

/// An output tensor's shape: `[rows]` or `[rows, classes]`, inline.
pub type OutputShape = smallvec::SmallVec<[usize; 2]>;

/// One output tensor whose data follows the JSON as raw bytes.
#[derive(Debug, Serialize)]
struct BinaryOutput<'a> {
    name: &'a str,
    shape: &'a [usize],
    datatype: &'a str,
    parameters: serde_json::Value,
}

/// An infer response as a REST body: plain JSON when no output is binary,
/// else the JSON (with `binary_data_size` on each binary output) followed by
/// their bytes; returns the body and the JSON's length for
/// `Inference-Header-Content-Length`.
pub fn encode_response(response: &InferResponse<'_>, binary: &[bool]) -> (Vec<u8>, Option<usize>) {
    if !binary.iter().any(|&b| b) {
        // Room for a small batch's answer up front: serde_json starts at
        // 128 bytes and a one-row classifier's answer is twice that.
        let mut json = Vec::with_capacity(512);
        write_answer(&mut json, response);
        return (json, None);
    }
    let mut raw = Vec::new();
    let outputs: Vec<serde_json::Value> = response
        .outputs
        .iter()
        .zip(binary.iter().copied().chain(std::iter::repeat(false)))
        .map(|(o, is_binary)| {
            if !is_binary {
                return serde_json::to_value(o).expect("an output serializes");
            }
            let bytes = crate::serve::binary::encode_output(&o.data);
            let value = serde_json::to_value(BinaryOutput {
                name: &o.name,
                shape: &o.shape,
                datatype: &o.datatype,
                parameters: serde_json::json!({ "binary_data_size": bytes.len() }),
            })
            .expect("an output serializes");
            raw.extend_from_slice(&bytes);
            value
        })
        .collect();
    let mut header = serde_json::to_value(response).expect("an infer response serializes");
    header["outputs"] = serde_json::Value::Array(outputs);
    let mut body = serde_json::to_vec(&header).expect("JSON serializes");
    let json_len = body.len();
    body.extend_from_slice(&raw);
    (body, Some(json_len))
}

/// The answer as JSON, written directly: the bytes serde_json's derived
/// writer gives (`tests::answers_are_written_as_serde_writes_them`), without
/// escaping each constant key on every answer.
fn write_answer(out: &mut Vec<u8>, response: &InferResponse<'_>) {
    use crate::serve::json::{string, value};
    out.extend_from_slice(b"{\"model_name\":");
    string(out, &response.model_name);
    if let Some(version) = &response.model_version {
        out.extend_from_slice(b",\"model_version\":");
        string(out, version);
    }
    if let Some(id) = &response.id {
        out.extend_from_slice(b",\"id\":");
        string(out, id);
    }
    if let Some(parameters) = &response.parameters {
        out.extend_from_slice(b",\"parameters\":");
        value(out, parameters);
    }
    out.extend_from_slice(b",\"outputs\":[");
    for (k, output) in response.outputs.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        string(out, &output.name);
        out.extend_from_slice(b",\"shape\":");
        value(out, &output.shape);
        out.extend_from_slice(b",\"datatype\":");
        string(out, &output.datatype);
        out.extend_from_slice(b",\"data\":");
        match &output.data {
            OutputData::Numbers(v) => value(out, v),
            OutputData::Doubles(v) => value(out, v),
            OutputData::Texts(v) => {
                out.push(b'[');
                for (i, text) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, text);
                }
                out.push(b']');
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Output tensor contents.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OutputData {
    Numbers(Vec<f32>),
    Doubles(Vec<f64>),
    Texts(Vec<String>),
}

/// `GET /v2/models/{name}` response.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// Name, datatype and shape of a tensor (−1 for a variable dimension).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// `GET /v2` response.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &'static str, datatype: &'static str, data: OutputData) -> ResponseOutput {
        ResponseOutput {
            name: name.into(),
            shape: smallvec::smallvec![data_len(&data), 1],
            datatype: datatype.into(),
            data,
        }
    }

    fn data_len(data: &OutputData) -> usize {
        match data {
            OutputData::Numbers(v) => v.len(),
            OutputData::Doubles(v) => v.len(),
            OutputData::Texts(v) => v.len(),
        }
    }

    /// Every shape of answer, odd text and non-finite numbers included,
    /// comes out as the bytes serde_json's derived writer gives.
    #[test]
    fn answers_are_written_as_serde_writes_them() {
        let mut parameters = serde_json::Map::new();
        parameters.insert("note \"x\"".into(), serde_json::json!([1, "two", null]));
        let answers = [
            InferResponse {
                model_name: "wine-quality".into(),
                model_version: Some("v3".into()),
                id: Some("3f1c9a2e-0b7d-4c1e-9f3a-2d5e6b7c8a90".into()),
                parameters: None,
                outputs: vec![
                    output(
                        "predictions",
                        "BYTES",
                        OutputData::Texts(vec!["6".into(), "é\"\n".into()]),
                    ),
                    output(
                        "probabilities",
                        "FP32",
                        OutputData::Numbers(vec![0.25, 1e-8, f32::NAN, f32::INFINITY, -0.0, 3.0]),
                    ),
                ],
            },
            InferResponse {
                model_name: "a \\ b".into(),
                model_version: None,
                id: Some("tab\there".into()),
                parameters: Some(parameters),
                outputs: vec![output(
                    "predictions",
                    "FP64",
                    OutputData::Doubles(vec![1.5, -2.0, f64::NEG_INFINITY, 1e300, 0.1 + 0.2]),
                )],
            },
            InferResponse {
                model_name: "".into(),
                model_version: Some("".into()),
                id: None,
                parameters: None,
                outputs: Vec::new(),
            },
        ];
        for answer in &answers {
            let (ours, length) = encode_response(answer, &[false, false]);
            assert_eq!(length, None);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(answer).unwrap()
            );
        }
    }
}
