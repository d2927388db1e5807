//! The gRPC front end: `inference.GRPCInferenceService` of the Open Inference
//! Protocol, served on the same port and by the same inference core as REST
//! (one model, one drift monitor, one feedback buffer, one set of metrics).
//!
//! Converting messages is pure ([`request_from_grpc`], [`response_to_grpc`]);
//! raw tensors go through the REST binary decoder, so both validate alike.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::binary::{decode_tensor, encode_output};
use super::error::ServeError;
use super::protocol::{
    DecodeError, InferRequest, InferResponse, RequestInput, RequestOutput, TensorData,
};
use super::server::{
    AppState, ModelPath, guarded, metadata_of, run_inference, server_metadata_value,
};

/// Messages and the service trait generated from `proto/grpc_predict_v2.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::infer_parameter::ParameterChoice;
use tonic::codec::CompressionEncoding;

/// The gRPC service for a server's state, ready to mount in its router.
pub(super) fn service(state: Arc<AppState>) -> GrpcInferenceServiceServer<GrpcFront> {
    let limit = state.config.body_limit;
    GrpcInferenceServiceServer::new(GrpcFront { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
}

/// Answers gRPC calls from the server's shared state.
pub struct GrpcFront {
    state: Arc<AppState>,
}

fn path(name: String, version: String) -> ModelPath {
    ModelPath {
        name,
        version: (!version.is_empty()).then_some(version),
    }
}

/// gRPC parameters as the JSON values REST requests carry.
fn parameters(
    map: HashMap<String, pb::InferParameter>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    if map.is_empty() {
        return None;
    }
    Some(
        map.into_iter()
            .filter_map(|(k, v)| {
                let value = match v.parameter_choice? {
                    ParameterChoice::BoolParam(b) => serde_json::Value::from(b),
                    ParameterChoice::Int64Param(i) => serde_json::Value::from(i),
                    ParameterChoice::StringParam(s) => serde_json::Value::from(s),
                    ParameterChoice::DoubleParam(d) => serde_json::Value::from(d),
                    ParameterChoice::Uint64Param(u) => serde_json::Value::from(u),
                };
                Some((k, value))
            })
            .collect(),
    )
}

/// Typed `contents` as tensor values: the field the datatype names.
fn typed_contents(
    input: &str,
    datatype: &str,
    c: pb::InferTensorContents,
) -> Result<TensorData, DecodeError> {
    let numbers = |v: Vec<f64>| Ok(TensorData::Numbers(v));
    match datatype {
        "BOOL" => Ok(TensorData::Bools(c.bool_contents)),
        "INT8" | "INT16" | "INT32" => numbers(c.int_contents.into_iter().map(f64::from).collect()),
        "INT64" => numbers(c.int64_contents.into_iter().map(|x| x as f64).collect()),
        "UINT8" | "UINT16" | "UINT32" => {
            numbers(c.uint_contents.into_iter().map(f64::from).collect())
        }
        "UINT64" => numbers(c.uint64_contents.into_iter().map(|x| x as f64).collect()),
        "FP32" => numbers(c.fp32_contents.into_iter().map(f64::from).collect()),
        "FP64" => numbers(c.fp64_contents),
        "BYTES" => Ok(super::protocol::bytes_elements(c.bytes_contents)),
        // FP16 has no typed field in the protocol: it travels in raw_input_contents.
        "FP16" => Err(DecodeError::NoTypedContents {
            input: input.to_string(),
            datatype: datatype.to_string(),
        }),
        other => Err(DecodeError::UnknownDatatype {
            input: input.to_string(),
            datatype: other.to_string(),
        }),
    }
}

/// A `ModelInferRequest` as the inference core's request, plus the model it names.
pub fn request_from_grpc(
    request: pb::ModelInferRequest,
) -> Result<(String, String, InferRequest<'static>), DecodeError> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(DecodeError::RawContentsCount {
            raw: raw.len(),
            inputs: request.inputs.len(),
        });
    }
    let mut raw = raw.into_iter();
    let inputs = request
        .inputs
        .into_iter()
        .map(|input| {
            let data = match (raw.next(), input.contents) {
                (Some(_), Some(_)) => {
                    return Err(DecodeError::DataAndBinary { input: input.name });
                }
                (Some(bytes), None) => decode_tensor(&input.name, &input.datatype, &bytes)?,
                (None, Some(c)) => typed_contents(&input.name, &input.datatype, c)?,
                (None, None) => return Err(DecodeError::MissingData { input: input.name }),
            };
            Ok(RequestInput {
                name: input.name.into(),
                shape: input.shape.into(),
                datatype: input.datatype.into(),
                data,
                parameters: parameters(input.parameters),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = (!request.outputs.is_empty()).then(|| {
        request
            .outputs
            .into_iter()
            .map(|o| RequestOutput {
                name: o.name,
                parameters: parameters(o.parameters),
            })
            .collect()
    });
    Ok((
        request.model_name,
        request.model_version,
        InferRequest {
            id: (!request.id.is_empty()).then_some(request.id),
            parameters: parameters(request.parameters),
            inputs,
            outputs,
        },
    ))
}

/// The core's response as a `ModelInferResponse`, tensors in `raw_output_contents`.
pub fn response_to_grpc(response: InferResponse<'_>) -> pb::ModelInferResponse {
    let raw_output_contents = response
        .outputs
        .iter()
        .map(|o| encode_output(&o.data))
        .collect();
    pb::ModelInferResponse {
        model_name: response.model_name.into_owned(),
        model_version: response
            .model_version
            .map(Cow::into_owned)
            .unwrap_or_default(),
        id: response.id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs: response
            .outputs
            .into_iter()
            .map(|o| pb::model_infer_response::InferOutputTensor {
                name: o.name.into_owned(),
                datatype: o.datatype.into_owned(),
                shape: o.shape.into_iter().map(|d| d as i64).collect(),
                parameters: HashMap::new(),
                contents: None,
            })
            .collect(),
        raw_output_contents,
    }
}

fn tensors(
    list: Vec<super::protocol::TensorMetadata>,
) -> Vec<pb::model_metadata_response::TensorMetadata> {
    list.into_iter()
        .map(|t| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
        })
        .collect()
}

type Answer<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl GrpcInferenceService for GrpcFront {
    async fn server_live(
        &self,
        _: tonic::Request<pb::ServerLiveRequest>,
    ) -> Answer<pb::ServerLiveResponse> {
        Ok(tonic::Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: tonic::Request<pb::ServerReadyRequest>,
    ) -> Answer<pb::ServerReadyResponse> {
        let ready = self.state.loaded().is_ok();
        Ok(tonic::Response::new(pb::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: tonic::Request<pb::ModelReadyRequest>,
    ) -> Answer<pb::ModelReadyResponse> {
        let r = request.into_inner();
        let ready = match self.state.model_for(&path(r.name, r.version)) {
            Ok(_) => true,
            Err(ServeError::NotReady) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(tonic::Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<pb::ServerMetadataRequest>,
    ) -> Answer<pb::ServerMetadataResponse> {
        let m = server_metadata_value();
        Ok(tonic::Response::new(pb::ServerMetadataResponse {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }))
    }

    async fn model_metadata(
        &self,
        request: tonic::Request<pb::ModelMetadataRequest>,
    ) -> Answer<pb::ModelMetadataResponse> {
        let r = request.into_inner();
        let m = metadata_of(self.state.model_for(&path(r.name, r.version))?);
        Ok(tonic::Response::new(pb::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: tensors(m.inputs),
            outputs: tensors(m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: tonic::Request<pb::ModelInferRequest>,
    ) -> Answer<pb::ModelInferResponse> {
        let state = &self.state;
        let response = guarded(state, async {
            let (name, version, mut request) = request_from_grpc(request.into_inner())?;
            let loaded = state.model_for(&path(name, version))?;
            run_inference(state, loaded, &mut request, None).await
        })
        .await?;
        Ok(tonic::Response::new(response_to_grpc(response)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(datatype: &str, contents: pb::InferTensorContents) -> pb::ModelInferRequest {
        pb::ModelInferRequest {
            model_name: "m".into(),
            id: "r".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: datatype.into(),
                shape: vec![2],
                contents: Some(contents),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn typed_contents_are_read_from_the_field_the_datatype_names() {
        let c = pb::InferTensorContents {
            bool_contents: vec![true, false],
            int_contents: vec![-3, 4],
            int64_contents: vec![-5, 6],
            uint_contents: vec![7, 8],
            uint64_contents: vec![9, 10],
            fp32_contents: vec![1.5, 2.5],
            fp64_contents: vec![0.25, 0.5],
            bytes_contents: vec![b"red".to_vec(), b"white".to_vec()],
        };
        let cases: [(&str, TensorData); 14] = [
            ("BOOL", TensorData::Bools(vec![true, false])),
            ("INT8", TensorData::Numbers(vec![-3.0, 4.0])),
            ("INT16", TensorData::Numbers(vec![-3.0, 4.0])),
            ("INT32", TensorData::Numbers(vec![-3.0, 4.0])),
            ("INT64", TensorData::Numbers(vec![-5.0, 6.0])),
            ("UINT8", TensorData::Numbers(vec![7.0, 8.0])),
            ("UINT16", TensorData::Numbers(vec![7.0, 8.0])),
            ("UINT32", TensorData::Numbers(vec![7.0, 8.0])),
            ("UINT64", TensorData::Numbers(vec![9.0, 10.0])),
            ("FP32", TensorData::Numbers(vec![1.5, 2.5])),
            ("FP64", TensorData::Numbers(vec![0.25, 0.5])),
            (
                "BYTES",
                TensorData::Texts(vec!["red".into(), "white".into()]),
            ),
            ("FP16", TensorData::Numbers(vec![])),
            ("FLOAT", TensorData::Numbers(vec![])),
        ];
        for (datatype, want) in cases {
            let got = request_from_grpc(input(datatype, c.clone()));
            match datatype {
                "FP16" => assert!(
                    got.unwrap_err()
                        .to_string()
                        .contains("send it in raw_input_contents")
                ),
                "FLOAT" => assert!(got.unwrap_err().to_string().contains("`FLOAT`")),
                _ => {
                    let (name, version, request) = got.unwrap();
                    assert_eq!((name.as_str(), version.as_str()), ("m", ""));
                    assert_eq!(request.id.as_deref(), Some("r"));
                    assert_eq!(request.inputs[0].data, want, "{datatype}");
                }
            }
        }
    }

    #[test]
    fn raw_contents_must_match_the_inputs_one_to_one() {
        let mut both = input("FP32", pb::InferTensorContents::default());
        both.raw_input_contents = vec![vec![0; 8]];
        assert_eq!(
            request_from_grpc(both).unwrap_err(),
            DecodeError::DataAndBinary { input: "x".into() }
        );
        let mut two = input("FP32", pb::InferTensorContents::default());
        two.inputs[0].contents = None;
        two.raw_input_contents = vec![vec![0; 8], vec![0; 8]];
        assert_eq!(
            request_from_grpc(two).unwrap_err(),
            DecodeError::RawContentsCount { raw: 2, inputs: 1 }
        );
        let mut bad_text = input("BYTES", pb::InferTensorContents::default());
        bad_text.inputs[0].contents = Some(pb::InferTensorContents {
            bytes_contents: vec![b"ok".to_vec(), vec![0xff]],
            ..Default::default()
        });
        // Raw bytes (an encoded image) are kept; a categorical feature refuses them as text.
        let (_, _, mut request) = request_from_grpc(bad_text).expect("raw BYTES are kept");
        assert_eq!(
            request.inputs[0].data,
            TensorData::Blobs(vec![b"ok".to_vec(), vec![0xff]])
        );
        let schema = crate::serve::protocol::InputSchema::new(
            vec![("x".into(), crate::api::FeatureKind::Categorical)],
            10,
        );
        let err = crate::serve::protocol::decode_inputs(&mut request, &schema)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input `x`: BYTES element 1: not UTF-8"),
            "{err}"
        );
    }
}
