//! Open Inference Protocol v2 responses and metadata: the JSON body of an
//! infer answer (with binary outputs appended after it when asked) and the
//! model and server metadata documents.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `POST …/infer` response.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub outputs: Vec<ResponseOutput>,
}

/// One output tensor. The server's names and datatypes are constants
/// (`predictions`, `FP64`, …): borrowed, not copied into each answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ResponseOutput {
    pub name: Cow<'static, str>,
    pub shape: Vec<usize>,
    pub datatype: Cow<'static, str>,
    pub data: OutputData,
}

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
pub fn encode_response(response: &InferResponse, binary: &[bool]) -> (Vec<u8>, Option<usize>) {
    if !binary.iter().any(|&b| b) {
        // Room for a small batch's answer up front: serde_json starts at
        // 128 bytes and a one-row classifier's answer is twice that.
        let mut json = Vec::with_capacity(512);
        serde_json::to_writer(&mut json, response).expect("an infer response serializes");
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
