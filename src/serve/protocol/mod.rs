//! Open Inference Protocol v2 (REST) types, and decoding an infer request
//! into feature columns.
//!
//! Inputs come either as one numeric tensor `[N, F]` in the model's feature
//! order, or as one tensor per feature named by the feature (`[N]` or
//! `[N, 1]`; BYTES for categorical features). `data` may be flat or nested,
//! row-major.

mod batch;
mod decode;
mod layout;
mod plain;
mod response;
mod tensor;

use std::borrow::Cow;

use serde::Deserialize;
use smallvec::SmallVec;

use crate::api::FeatureKind;

pub use batch::{Column, DecodedBatch, Value};
pub use decode::decode_inputs;
pub use response::{
    InferResponse, ModelMetadata, OutputData, ResponseOutput, ServerMetadata, TensorMetadata,
    encode_response,
};
pub use tensor::{TensorData, bytes_elements};

/// Why an infer request was refused; each message names the input and the problem.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("request body is not valid JSON for an infer request: {0}")]
    Json(String),
    #[error("request has no inputs")]
    NoInputs,
    #[error(
        "input `{input}`: unsupported datatype `{datatype}`; expected one of BOOL, UINT8..64, INT8..64, FP16, FP32, FP64, BYTES"
    )]
    UnknownDatatype { input: String, datatype: String },
    #[error(
        "input `{input}`: datatype {datatype} does not fit feature `{feature}`, which is {kind}; send {expected}"
    )]
    WrongDatatype {
        input: String,
        datatype: String,
        feature: String,
        kind: &'static str,
        expected: &'static str,
    },
    #[error("input `{input}`: data holds {found} but datatype is {datatype}")]
    DataTypeMismatch {
        input: String,
        datatype: String,
        found: &'static str,
    },
    #[error("input `{input}`: shape {shape:?} holds {expected} values but data has {actual}")]
    ShapeLength {
        input: String,
        shape: Vec<i64>,
        expected: u64,
        actual: usize,
    },
    #[error("input `{input}`: shape {shape:?} is not valid here; expected {expected}")]
    BadShape {
        input: String,
        shape: Vec<i64>,
        expected: String,
    },
    #[error("input `{input}`: value {value} at position {index} is not a finite {datatype} number")]
    NonFinite {
        input: String,
        index: usize,
        value: f64,
        datatype: String,
    },
    #[error("input `{input}`: value {value} at position {index} is out of range for {datatype}")]
    OutOfRange {
        input: String,
        index: usize,
        value: f64,
        datatype: String,
    },
    #[error("unknown input `{input}`; the model's features are: {features}")]
    UnknownInput { input: String, features: String },
    #[error("input `{0}` appears more than once")]
    DuplicateInput(String),
    #[error(
        "feature `{feature}` missing from the request; send one tensor per feature ({features}) or one [N, {count}] tensor"
    )]
    MissingFeature {
        feature: String,
        features: String,
        count: usize,
    },
    #[error("input `{input}` has {rows} rows but input `{first}` has {first_rows}")]
    RowMismatch {
        input: String,
        rows: usize,
        first: String,
        first_rows: usize,
    },
    #[error(
        "feature `{feature}` is categorical, so a single [N, F] numeric tensor cannot carry it; send one tensor per feature"
    )]
    CategoricalInMatrix { feature: String },
    #[error("request has no rows")]
    NoRows,
    #[error("request has {rows} rows; at most {max} are allowed per request")]
    TooManyRows { rows: usize, max: usize },
    #[error("unknown output `{output}`; this model has outputs: {outputs}")]
    UnknownOutput { output: String, outputs: String },
    #[error(
        "input `{input}` has no data; send `data`, or `parameters.binary_data_size` with the tensor's bytes after the JSON"
    )]
    MissingData { input: String },
    #[error(
        "input `{input}`: {datatype} has no typed contents field in gRPC; send it in raw_input_contents"
    )]
    NoTypedContents { input: String, datatype: String },
    #[error("input `{input}` has both `data` and binary data; send one of them")]
    DataAndBinary { input: String },
    #[error(
        "input `{input}` sets `binary_data_size` but the request has no Inference-Header-Content-Length header"
    )]
    BinaryWithoutHeader { input: String },
    #[error("input `{input}`: parameter `{parameter}` {reason}")]
    BadParameter {
        input: String,
        parameter: &'static str,
        reason: &'static str,
    },
    #[error("Inference-Header-Content-Length is {declared} but the body has only {body} bytes")]
    HeaderLength { declared: usize, body: usize },
    #[error(
        "input `{input}`: binary_data_size is {size} bytes but only {left} bytes are left in the body; the body is truncated"
    )]
    TruncatedBinary {
        input: String,
        size: u64,
        left: usize,
    },
    #[error(
        "{bytes} bytes follow the last binary input; the binary_data_size values do not add up to the body"
    )]
    TrailingBinary { bytes: usize },
    #[error(
        "input `{input}`: {size} bytes is not a whole number of {datatype} values ({element} bytes each)"
    )]
    BinarySize {
        input: String,
        datatype: String,
        size: usize,
        element: usize,
    },
    #[error("input `{input}`: BYTES element {index}: {reason}")]
    BytesElement {
        input: String,
        index: usize,
        reason: String,
    },
    #[error(
        "request has {raw} raw_input_contents for {inputs} inputs; send one per input, in order, or none"
    )]
    RawContentsCount { raw: usize, inputs: usize },
    #[error("parameter `{parameter}` {reason}")]
    BadRequestParameter {
        parameter: &'static str,
        reason: &'static str,
    },
}

/// An infer request, from a REST body (JSON, with or without binary tensors) or gRPC.
///
/// Input names and datatypes borrow from the body they were read from where
/// they can (a JSON string without escapes): a 12-column request would
/// otherwise allocate two dozen strings only to compare them with the schema.
#[derive(Debug)]
pub struct InferRequest<'a> {
    pub id: Option<String>,
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub inputs: Vec<RequestInput<'a>>,
    pub outputs: Option<Vec<RequestOutput>>,
}

impl InferRequest<'_> {
    /// A request with id `id` and nothing else: the rest of a body that
    /// was read straight into columns ([`read_columns`]).
    pub fn with_id(id: Option<String>) -> Self {
        InferRequest {
            id,
            parameters: None,
            inputs: Vec::new(),
            outputs: None,
        }
    }

    /// The request with every borrowed name and datatype copied: one that
    /// outlives the body it was read from.
    pub fn into_owned(self) -> InferRequest<'static> {
        InferRequest {
            id: self.id,
            parameters: self.parameters,
            inputs: self
                .inputs
                .into_iter()
                .map(|input| RequestInput {
                    name: Cow::Owned(input.name.into_owned()),
                    shape: input.shape,
                    datatype: Cow::Owned(input.datatype.into_owned()),
                    data: input.data,
                    parameters: input.parameters,
                })
                .collect(),
            outputs: self.outputs,
        }
    }
}

/// A tensor's shape: inline up to four dimensions (every tabular and image
/// tensor), on the heap beyond.
pub type Shape = SmallVec<[i64; 4]>;

/// One input tensor.
#[derive(Debug)]
pub struct RequestInput<'a> {
    pub name: Cow<'a, str>,
    pub shape: Shape,
    pub datatype: Cow<'a, str>,
    pub data: TensorData,
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The JSON of a REST infer body, before binary tensors are attached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(borrow)]
    inputs: Vec<WireInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RequestOutput>>,
}

/// Room for this many inputs before the list of a JSON body grows (one a
/// column is the common shape: a table of a dozen features); the plain
/// reader starts its list with it.
const INPUTS_RESERVED: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireInput<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    shape: Shape,
    #[serde(borrow)]
    datatype: Cow<'a, str>,
    #[serde(default)]
    data: Option<TensorData>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One requested output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The inputs a model expects, in its feature order.
#[derive(Debug, Clone)]
pub struct InputSchema {
    pub features: Vec<(String, FeatureKind)>,
    /// Largest number of rows accepted in one request.
    pub max_rows: usize,
    /// The layouts of bodies read for this schema (`plain::read_columns`).
    layouts: layout::Layouts,
}

impl InputSchema {
    pub fn new(features: Vec<(String, FeatureKind)>, max_rows: usize) -> InputSchema {
        InputSchema {
            features,
            max_rows,
            layouts: layout::Layouts::new(),
        }
    }

    /// The place of feature `name`, looked for at `hint` first: clients
    /// mostly send a model's inputs in its feature order, and a scan of a
    /// dozen names for each of a dozen inputs was most of decoding.
    fn position(&self, name: &str, hint: usize) -> Option<usize> {
        match self.features.get(hint) {
            Some((n, _)) if n == name => Some(hint),
            _ => self.features.iter().position(|(n, _)| n == name),
        }
    }
}

/// Parses a JSON infer request body (no binary tensors).
pub fn parse_request(body: &[u8]) -> Result<InferRequest<'_>, DecodeError> {
    parse_infer_body(body, None)
}

/// The common REST infer body read straight into the model's columns:
/// the request's `id`, and the batch [`decode_inputs`] would decode from
/// [`parse_infer_body`]'s request (one tensor a feature, in the model's
/// order, plain JSON: see `plain::read_columns`). `None` for any other
/// body, binary tensors included: those two read it, or name what is wrong
/// with it.
pub fn read_columns(
    body: &[u8],
    header_length: Option<usize>,
    schema: &InputSchema,
) -> Option<(Option<String>, DecodedBatch)> {
    match header_length {
        Some(_) => None,
        None => plain::read_columns(body, schema),
    }
}

/// Parses a REST infer body: JSON, followed by binary tensors when
/// `header_length` (the `Inference-Header-Content-Length` header) is given.
/// Inputs with `parameters.binary_data_size` take their bytes from the binary
/// part in order; the values then go through the same validation as JSON data.
pub fn parse_infer_body(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<InferRequest<'_>, DecodeError> {
    let (json, mut binary) = super::binary::split_body(body, header_length)?;
    // The common body is read in one pass; serde reads (and refuses)
    // anything else, so every error comes from one reader.
    let wire: WireRequest = match plain::read(json) {
        Some(wire) => wire,
        None => serde_json::from_slice(json).map_err(|e| DecodeError::Json(e.to_string()))?,
    };
    let inputs = wire
        .inputs
        .into_iter()
        .map(|input| {
            let size = binary_data_size(&input.name, input.parameters.as_ref())?;
            let data = match (input.data, size) {
                (Some(_), Some(_)) => {
                    return Err(DecodeError::DataAndBinary {
                        input: input.name.into(),
                    });
                }
                (Some(data), None) => data,
                (None, None) => {
                    return Err(DecodeError::MissingData {
                        input: input.name.into(),
                    });
                }
                (None, Some(_)) if header_length.is_none() => {
                    return Err(DecodeError::BinaryWithoutHeader {
                        input: input.name.into(),
                    });
                }
                (None, Some(size)) => {
                    let raw = super::binary::take(&mut binary, &input.name, size)?;
                    super::binary::decode_tensor(&input.name, &input.datatype, raw)?
                }
            };
            Ok(RequestInput {
                name: input.name,
                shape: input.shape,
                datatype: input.datatype,
                data,
                parameters: input.parameters,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !binary.is_empty() {
        return Err(DecodeError::TrailingBinary {
            bytes: binary.len(),
        });
    }
    Ok(InferRequest {
        id: wire.id,
        parameters: wire.parameters,
        inputs,
        outputs: wire.outputs,
    })
}

/// An input's `binary_data_size` parameter, if it has one.
fn binary_data_size(
    input: &str,
    parameters: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<u64>, DecodeError> {
    match parameters.and_then(|p| p.get("binary_data_size")) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(DecodeError::BadParameter {
            input: input.to_string(),
            parameter: "binary_data_size",
            reason: "must be a non-negative integer (the tensor's size in bytes)",
        }),
    }
}

/// Whether output `output` should come back as binary data: its own
/// `binary_data` parameter, else the request's `binary_data_output`.
pub fn wants_binary(request: &InferRequest, output: &str) -> Result<bool, DecodeError> {
    let own = request
        .outputs
        .iter()
        .flatten()
        .find(|o| o.name == output)
        .and_then(|o| o.parameters.as_ref())
        .filter(|p| p.contains_key("binary_data"));
    match own {
        Some(p) => flag(Some(p), "binary_data"),
        None => flag(request.parameters.as_ref(), "binary_data_output"),
    }
}

/// Whether a `binary_data` / `binary_data_output` parameter is set to true.
pub fn flag(
    parameters: Option<&serde_json::Map<String, serde_json::Value>>,
    name: &'static str,
) -> Result<bool, DecodeError> {
    match parameters.and_then(|p| p.get(name)) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or(DecodeError::BadRequestParameter {
            parameter: name,
            reason: "must be true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> InputSchema {
        InputSchema::new(
            vec![
                ("alcohol".into(), FeatureKind::Numeric),
                ("acidity".into(), FeatureKind::Numeric),
            ],
            100,
        )
    }

    fn decode(body: &str, schema: &InputSchema) -> Result<DecodedBatch, DecodeError> {
        decode_inputs(&mut parse_request(body.as_bytes())?, schema)
    }

    #[test]
    fn a_matrix_and_per_feature_tensors_decode_to_the_same_columns() {
        let m = decode(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#,
            &schema(),
        )
        .unwrap();
        let f = decode(
            r#"{"inputs":[{"name":"acidity","shape":[2],"datatype":"FP64","data":[2,4]},
                          {"name":"alcohol","shape":[2,1],"datatype":"INT32","data":[1,3]}]}"#,
            &schema(),
        )
        .unwrap();
        assert_eq!(m, f);
        assert_eq!(m.column(0), [Value::Number(1.0), Value::Number(3.0)]);
        // In the model's order (each input found where it is looked for
        // first) and out of it, the same columns.
        let in_order = decode(
            r#"{"inputs":[{"name":"alcohol","shape":[2],"datatype":"FP64","data":[1,3]},
                          {"name":"acidity","shape":[2],"datatype":"FP64","data":[2,4]}]}"#,
            &schema(),
        )
        .unwrap();
        assert_eq!(in_order, f);
    }

    #[test]
    fn escaped_names_and_datatypes_and_long_shapes_read_as_written() {
        // Names and datatypes borrow from the body where they can; one with
        // a JSON escape is unescaped into its own string and means the same.
        let plain = decode(
            r#"{"inputs":[{"name":"alcohol","shape":[2],"datatype":"FP32","data":[1,3]},
                          {"name":"acidity","shape":[2],"datatype":"FP32","data":[2,4]}]}"#,
            &schema(),
        )
        .unwrap();
        let escaped = decode(
            r#"{"inputs":[{"name":"alco\u0068ol","shape":[2],"datatype":"FP\u00332","data":[1,3]},
                          {"name":"acidity","shape":[2],"datatype":"FP32","data":[2,4]}]}"#,
            &schema(),
        )
        .unwrap();
        assert_eq!(plain, escaped);
        // A shape longer than the four dimensions kept inline is read whole
        // (and refused here by what it is, not by its length).
        let request = parse_request(
            br#"{"inputs":[{"name":"x","shape":[1,1,1,1,1,2],"datatype":"FP32","data":[1,2]}]}"#,
        )
        .unwrap();
        assert_eq!(request.inputs[0].shape.as_slice(), [1, 1, 1, 1, 1, 2]);
        let err = decode_inputs(&mut request.into_owned(), &schema()).unwrap_err();
        assert!(
            err.to_string().contains("[1, 1, 1, 1, 1, 2]"),
            "the shape is named: {err}"
        );
    }

    #[test]
    fn errors_name_the_input_and_the_problem() {
        let s = schema();
        let cases = [
            (
                r#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}]}"#,
                "[N, 2]",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#,
                "holds 4 values but data has 3",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1e39,2]}]}"#,
                "not a finite FP32",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FLOAT","data":[1,2]}]}"#,
                "unsupported datatype `FLOAT`",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"UINT8","data":[1,256]}]}"#,
                "out of range for UINT8",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":["a","b"]}]}"#,
                "holds strings",
            ),
            (
                r#"{"inputs":[{"name":"alcohol","shape":[1],"datatype":"FP32","data":[1]}]}"#,
                "feature `acidity` missing",
            ),
            (
                r#"{"inputs":[{"name":"alcohol","shape":[1],"datatype":"FP32","data":[1]},{"name":"sugar","shape":[1],"datatype":"FP32","data":[1]}]}"#,
                "unknown input `sugar`",
            ),
            (
                r#"{"inputs":[{"name":"alcohol","shape":[1],"datatype":"FP32","data":[1]},{"name":"acidity","shape":[2],"datatype":"FP32","data":[1,2]}]}"#,
                "has 2 rows but input `alcohol` has 1",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,null]}]}"#,
                "null",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,"a"]}]}"#,
                "mixes",
            ),
            (r#"{"inputs":[]}"#, "no inputs"),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32"}]}"#,
                "input `x` has no data",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2],"parameters":{"binary_data_size":8}}]}"#,
                "input `x` has both `data` and binary data",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":-8}}]}"#,
                "input `x`: parameter `binary_data_size` must be a non-negative integer",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[0,2],"datatype":"FP32","data":[]}]}"#,
                "no rows",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[-1,2],"datatype":"FP32","data":[1,2]}]}"#,
                "non-negative",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[101,2],"datatype":"FP32","data":[]}]}"#,
                "holds 202 values",
            ),
            (r#"{"input":[]}"#, "unknown field `input`"),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,1e400]}]}"#,
                "not valid JSON",
            ),
        ];
        for (body, needle) in cases {
            let err = decode(body, &s).expect_err(body).to_string();
            assert!(err.contains(needle), "{body}: `{err}` lacks `{needle}`");
        }
    }

    #[test]
    fn an_output_is_binary_by_its_own_parameter_else_the_requests() {
        let request = parse_request(
            br#"{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],
                "outputs":[{"name":"predictions","parameters":{"binary_data":false}},{"name":"probabilities"}]}"#,
        )
        .unwrap();
        assert!(!wants_binary(&request, "predictions").unwrap());
        assert!(wants_binary(&request, "probabilities").unwrap());
        let plain = parse_request(br#"{"inputs":[]}"#).unwrap();
        assert!(!wants_binary(&plain, "predictions").unwrap());
        let bad =
            parse_request(br#"{"parameters":{"binary_data_output":"yes"},"inputs":[]}"#).unwrap();
        let err = wants_binary(&bad, "predictions").unwrap_err();
        assert!(
            err.to_string()
                .contains("parameter `binary_data_output` must be true or false"),
            "{err}"
        );
    }

    #[test]
    fn categorical_features_need_bytes_tensors() {
        let s = InputSchema::new(
            vec![
                ("alcohol".into(), FeatureKind::Numeric),
                ("color".into(), FeatureKind::Categorical),
            ],
            10,
        );
        let ok = decode(
            r#"{"inputs":[{"name":"alcohol","shape":[2],"datatype":"FP32","data":[1,2]},{"name":"color","shape":[2],"datatype":"BYTES","data":["red","white"]}]}"#,
            &s,
        )
        .unwrap();
        assert_eq!(
            ok.column(1),
            [Value::Text("red".into()), Value::Text("white".into())]
        );
        let err = decode(
            r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#,
            &s,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`color` is categorical"), "{err}");
        let err = decode(
            r#"{"inputs":[{"name":"alcohol","shape":[1],"datatype":"FP32","data":[1]},{"name":"color","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            &s,
        )
        .unwrap_err();
        assert!(err.to_string().contains("send BYTES"), "{err}");
    }

    #[test]
    fn too_many_rows_are_refused() {
        let s = InputSchema {
            max_rows: 1,
            ..schema()
        };
        let err = decode(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#,
            &s,
        )
        .unwrap_err();
        assert_eq!(err, DecodeError::TooManyRows { rows: 2, max: 1 });
    }

    #[test]
    fn deep_nesting_is_refused_without_crashing() {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1,2],"datatype":"FP32","data":{}1,2{}}}]}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(decode(&body, &schema()).is_err());
    }
}
