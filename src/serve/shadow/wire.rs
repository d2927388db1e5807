//! The three ways an infer call reaches the gateway (REST with a JSON body,
//! REST with binary tensors after the JSON, gRPC `ModelInfer`), read back
//! into one shape, so the shadow mirrors and pairs whatever the client
//! spoke. Decoding goes through the model server's own readers
//! (`protocol::parse_infer_body`, `grpc::request_from_grpc`,
//! `binary::decode_tensor`): what the server accepts, the pairing reads alike.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName};
use prost::Message;

use super::super::binary::{HEADER_LENGTH, decode_tensor, split_body, take};
use super::super::encoding::inflate;
use super::super::grpc::{pb, request_from_grpc};
use super::super::protocol::{InferRequest, TensorData, parse_infer_body};

/// The output every driftline model answers with, one value per row.
const PREDICTIONS: &str = "predictions";
/// Largest message read back after inflating.
const READ_LIMIT: usize = 64 * 1024 * 1024;

/// How a mirrored call travelled; its request and answers are read back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// REST: JSON, with binary tensors after it when a message says how long its JSON is.
    Rest,
    /// gRPC: one length-prefixed protobuf message.
    Grpc,
}

impl Wire {
    /// The wire of a request, by its content type.
    pub fn of(headers: &HeaderMap) -> Wire {
        let grpc = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if grpc { Wire::Grpc } else { Wire::Rest }
    }
}

/// A request or an answer as the gateway captured it: its body and the
/// headers it needs to be sent again or read (content type, binary JSON
/// length, gRPC encoding).
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The headers a mirrored request is sent with: what the candidate needs to
/// read the same body the champion read.
pub fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        CONTENT_TYPE,
        CONTENT_ENCODING,
        HEADER_LENGTH,
        HeaderName::from_static("grpc-encoding"),
        HeaderName::from_static("grpc-accept-encoding"),
        HeaderName::from_static("te"),
    ] {
        if let Some(v) = headers.get(&name) {
            out.insert(name, v.clone());
        }
    }
    out
}

/// Whether a gRPC answer succeeded: `grpc-status: 0` in its trailers (or,
/// for a trailers-only answer, its headers).
pub fn grpc_ok(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> bool {
    trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .is_some_and(|v| v.as_bytes() == b"0")
}

fn json_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// `name`'s value, when it is text.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A REST body as the server reads it: inflated as its `Content-Encoding` says.
fn rest_body(message: &Captured) -> Option<Bytes> {
    let encoding = text(&message.headers, CONTENT_ENCODING.as_str());
    inflate(message.body.clone(), encoding, READ_LIMIT).ok()
}

/// The one protobuf message of a unary gRPC body, inflated as its
/// `grpc-encoding` says (gzip or deflate, as the server accepts).
fn grpc_message(message: &Captured) -> Option<Bytes> {
    let body = &message.body;
    let flag = *body.first()?;
    let length = u32::from_be_bytes(body.get(1..5)?.try_into().ok()?) as usize;
    let payload = body.slice(
        5..5usize
            .checked_add(length)
            .filter(|&end| end <= body.len())?,
    );
    match flag {
        0 => Some(payload),
        _ => inflate(
            payload,
            Some(text(&message.headers, "grpc-encoding")?),
            READ_LIMIT,
        )
        .ok(),
    }
}

/// A mirrored request as the inference core reads it; `None` when it
/// cannot be read (the champion then refused it too).
pub fn request(wire: Wire, message: &Captured) -> Option<InferRequest<'static>> {
    match wire {
        Wire::Rest => parse_infer_body(&rest_body(message)?, json_length(&message.headers))
            .ok()
            .map(InferRequest::into_owned),
        Wire::Grpc => {
            let request = pb::ModelInferRequest::decode(grpc_message(message)?).ok()?;
            request_from_grpc(request).ok().map(|(_, _, r)| r)
        }
    }
}

/// A prediction per row: classes or numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answers {
    Classes(Vec<String>),
    Values(Vec<f64>),
}

impl Answers {
    fn of(data: TensorData) -> Option<Answers> {
        match data {
            TensorData::Texts(t) => Some(Answers::Classes(t)),
            TensorData::Numbers(v) => Some(Answers::Values(v)),
            TensorData::Bools(_) | TensorData::Blobs(_) => None,
        }
    }

    /// Row `i`'s answer as JSON.
    pub fn at(&self, i: usize) -> serde_json::Value {
        match self {
            Answers::Classes(c) => c.get(i).cloned().into(),
            Answers::Values(v) => v.get(i).copied().into(),
        }
    }
}

/// What pairing reads from an infer answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The inference id (the client's, else the one the server gave).
    pub id: Option<String>,
    /// The version that answered.
    pub model_version: Option<String>,
    pub predictions: Answers,
}

/// The `predictions` output of an infer answer, with its id and version;
/// `None` when the answer has none that can be read.
pub fn answer(wire: Wire, message: &Captured) -> Option<Answer> {
    match wire {
        Wire::Rest => rest_answer(&rest_body(message)?, json_length(&message.headers)),
        Wire::Grpc => grpc_answer(pb::ModelInferResponse::decode(grpc_message(message)?).ok()?),
    }
}

/// The parts of a REST infer answer that pairing reads, borrowed from its
/// body: each output's tensor stays unparsed text until it is the
/// predictions (a `serde_json::Value` of the whole answer cost the mirror
/// thread a fifth of its time).
#[derive(serde::Deserialize)]
struct RestAnswer<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outputs: Vec<RestOutput<'a>>,
}

#[derive(serde::Deserialize)]
struct RestOutput<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    datatype: Option<Cow<'a, str>>,
    #[serde(default)]
    parameters: Option<RestOutputParameters>,
    #[serde(default, borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct RestOutputParameters {
    #[serde(default)]
    binary_data_size: Option<u64>,
}

fn rest_answer(body: &[u8], json_length: Option<usize>) -> Option<Answer> {
    let (json, mut binary) = split_body(body, json_length).ok()?;
    let answer: RestAnswer<'_> = serde_json::from_slice(json).ok()?;
    let mut predictions = None;
    // Binary outputs follow the JSON in the order they are listed.
    for output in &answer.outputs {
        let name = output.name.as_ref();
        let data = match output.parameters.as_ref().and_then(|p| p.binary_data_size) {
            Some(size) => {
                let raw = take(&mut binary, name, size).ok()?;
                if name != PREDICTIONS {
                    continue;
                }
                decode_tensor(name, output.datatype.as_deref()?, raw).ok()?
            }
            None if name == PREDICTIONS => serde_json::from_str(output.data?.get()).ok()?,
            None => continue,
        };
        predictions = Answers::of(data);
        break;
    }
    Some(Answer {
        id: answer.id.map(String::from),
        model_version: answer.model_version.map(String::from),
        predictions: predictions?,
    })
}

fn grpc_answer(response: pb::ModelInferResponse) -> Option<Answer> {
    let at = response
        .outputs
        .iter()
        .position(|o| o.name == PREDICTIONS)?;
    let output = &response.outputs[at];
    let data = match (response.raw_output_contents.get(at), &output.contents) {
        (Some(raw), _) => decode_tensor(PREDICTIONS, &output.datatype, raw).ok()?,
        (None, Some(c)) if output.datatype == "BYTES" => {
            super::super::protocol::bytes_elements(c.bytes_contents.clone())
        }
        (None, Some(c)) => TensorData::Numbers(match output.datatype.as_str() {
            "FP32" => c.fp32_contents.iter().map(|&x| f64::from(x)).collect(),
            "FP64" => c.fp64_contents.clone(),
            _ => return None,
        }),
        (None, None) => return None,
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(Answer {
        id: nonempty(&response.id),
        model_version: nonempty(&response.model_version),
        predictions: Answers::of(data)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::grpc::response_to_grpc;
    use super::super::super::protocol::{
        InferResponse, OutputData, ResponseOutput, encode_response,
    };
    use super::*;

    fn response(predictions: OutputData) -> InferResponse<'static> {
        InferResponse {
            model_name: "wine".into(),
            model_version: Some("3".into()),
            id: Some("r-1".into()),
            parameters: None,
            outputs: vec![
                ResponseOutput {
                    name: "probabilities".into(),
                    shape: smallvec::smallvec![2, 2],
                    datatype: "FP32".into(),
                    data: OutputData::Numbers(vec![0.9, 0.1, 0.2, 0.8]),
                },
                ResponseOutput {
                    name: PREDICTIONS.into(),
                    shape: smallvec::smallvec![2],
                    datatype: match predictions {
                        OutputData::Texts(_) => "BYTES",
                        _ => "FP64",
                    }
                    .into(),
                    data: predictions,
                },
            ],
        }
    }

    fn grpc_frame(message: &impl Message) -> Bytes {
        let payload = message.encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.into()
    }

    fn with_length(body: Vec<u8>, length: Option<usize>) -> Captured {
        let mut headers = HeaderMap::new();
        if let Some(n) = length {
            headers.insert(HEADER_LENGTH, n.to_string().parse().unwrap());
        }
        Captured {
            headers,
            body: body.into(),
        }
    }

    #[test]
    fn json_binary_and_grpc_answers_read_the_same_predictions() {
        let classes = || OutputData::Texts(vec!["good".into(), "bad".into()]);
        let want = Answer {
            id: Some("r-1".into()),
            model_version: Some("3".into()),
            predictions: Answers::Classes(vec!["good".into(), "bad".into()]),
        };
        for binary in [[false, false], [true, false], [false, true], [true, true]] {
            let (body, length) = encode_response(&response(classes()), &binary);
            let got = answer(Wire::Rest, &with_length(body, length));
            assert_eq!(got.as_ref(), Some(&want), "binary outputs {binary:?}");
        }
        let grpc = Captured {
            headers: HeaderMap::new(),
            body: grpc_frame(&response_to_grpc(response(classes()))),
        };
        assert_eq!(answer(Wire::Grpc, &grpc), Some(want));
        // Regression values, binary.
        let (body, length) = encode_response(
            &response(OutputData::Doubles(vec![5.5, 6.25])),
            &[true, true],
        );
        assert_eq!(
            answer(Wire::Rest, &with_length(body, length)).map(|a| a.predictions),
            Some(Answers::Values(vec![5.5, 6.25]))
        );
        // Written by another server: escapes in the id, fields pairing does
        // not read, a nested tensor before the predictions; without
        // predictions it is not an answer.
        let other = r#"{"model_name":"m","id":"a\"b","model_version":"3","parameters":{"x":[1]},
            "outputs":[{"name":"probabilities","shape":[1,2],"datatype":"FP32","data":[[0.1,0.9]],"extra":{"y":null}},
                       {"name":"predictions","shape":[1],"datatype":"BYTES","data":["good"]}]}"#;
        let got = answer(Wire::Rest, &with_length(other.as_bytes().to_vec(), None)).unwrap();
        assert_eq!(got.id.as_deref(), Some("a\"b"));
        assert_eq!(got.predictions, Answers::Classes(vec!["good".into()]));
        let none =
            r#"{"id":"r","outputs":[{"name":"probabilities","datatype":"FP32","data":[0.5]}]}"#;
        assert_eq!(
            answer(Wire::Rest, &with_length(none.as_bytes().to_vec(), None)),
            None
        );
        // A body that lies about its binary part is not an answer.
        let (body, length) = encode_response(&response(classes()), &[true, true]);
        let short = body[..body.len() - 3].to_vec();
        assert_eq!(answer(Wire::Rest, &with_length(short, length)), None);
        assert_eq!(answer(Wire::Grpc, &with_length(vec![0, 0, 0], None)), None);
    }

    #[test]
    fn grpc_requests_are_read_plain_and_gzipped() {
        let request = pb::ModelInferRequest {
            model_name: "wine".into(),
            id: "r-7".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "alcohol".into(),
                datatype: "FP32".into(),
                shape: vec![2],
                contents: Some(pb::InferTensorContents {
                    fp32_contents: vec![9.5, 11.0],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let plain = Captured {
            headers: HeaderMap::new(),
            body: grpc_frame(&request),
        };
        let read = |m: &Captured| {
            let r = self::request(Wire::Grpc, m).expect("readable");
            (r.id, r.inputs[0].name.to_string(), r.inputs[0].data.clone())
        };
        let want = (
            Some("r-7".to_string()),
            "alcohol".to_string(),
            TensorData::Numbers(vec![9.5, 11.0]),
        );
        assert_eq!(read(&plain), want);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &request.encode_to_vec()).unwrap();
        let payload = gz.finish().unwrap();
        let mut body = vec![1u8];
        body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        body.extend_from_slice(&payload);
        let mut headers = HeaderMap::new();
        headers.insert("grpc-encoding", "gzip".parse().unwrap());
        assert_eq!(
            read(&Captured {
                headers: headers.clone(),
                body: body.clone().into()
            }),
            want
        );
        // Compressed with an encoding the server does not accept: unreadable, not a guess.
        headers.insert("grpc-encoding", "snappy".parse().unwrap());
        assert!(
            self::request(
                Wire::Grpc,
                &Captured {
                    headers,
                    body: body.into()
                }
            )
            .is_none()
        );
    }

    #[test]
    fn the_wire_is_the_content_type_and_grpc_success_is_its_status() {
        let mut h = HeaderMap::new();
        assert_eq!(Wire::of(&h), Wire::Rest);
        h.insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
        assert_eq!(Wire::of(&h), Wire::Grpc);
        let mut trailers = HeaderMap::new();
        assert!(!grpc_ok(&h, Some(&trailers)), "no status is no success");
        trailers.insert("grpc-status", "0".parse().unwrap());
        assert!(grpc_ok(&h, Some(&trailers)));
        trailers.insert("grpc-status", "3".parse().unwrap());
        assert!(!grpc_ok(&h, Some(&trailers)));
        let mut only = HeaderMap::new();
        only.insert("grpc-status", "5".parse().unwrap());
        assert!(!grpc_ok(&only, None), "trailers-only: an error");
    }
}
