//! Decoding an infer request's input tensors into the model's feature
//! columns: the rules each tensor is checked by (its shape, its datatype
//! against its values, its feature's kind), in one place for every front
//! end: the JSON and binary REST bodies, gRPC, and the reader straight into
//! columns (`plain::read_columns`), which applies the same functions.

use crate::api::FeatureKind;

use super::tensor::{TensorData, not_utf8};
use super::{DecodeError, DecodedBatch, InferRequest, InputSchema, RequestInput, Value, plain};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Datatype {
    Bool,
    Int { min: f64, max: f64 },
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

fn datatype(input: &str, name: &str) -> Result<Datatype, DecodeError> {
    let int = |bits: i32, signed: bool| {
        if signed {
            Datatype::Int {
                min: -(2f64.powi(bits - 1)),
                max: 2f64.powi(bits - 1) - 1.0,
            }
        } else {
            Datatype::Int {
                min: 0.0,
                max: 2f64.powi(bits) - 1.0,
            }
        }
    };
    Ok(match name {
        "BOOL" => Datatype::Bool,
        "UINT8" => int(8, false),
        "UINT16" => int(16, false),
        "UINT32" => int(32, false),
        "UINT64" => int(64, false),
        "INT8" => int(8, true),
        "INT16" => int(16, true),
        "INT32" => int(32, true),
        "INT64" => int(64, true),
        "FP16" => Datatype::Fp16,
        "FP32" => Datatype::Fp32,
        "FP64" => Datatype::Fp64,
        "BYTES" => Datatype::Bytes,
        _ => {
            return Err(DecodeError::UnknownDatatype {
                input: input.to_string(),
                datatype: name.to_string(),
            });
        }
    })
}

impl Datatype {
    /// Whether a numeric tensor of this datatype may hold `x`.
    fn admits(self, x: f64) -> bool {
        match self {
            Datatype::Bool => x == 0.0 || x == 1.0,
            Datatype::Int { min, max } => x.fract() == 0.0 && x >= min && x <= max,
            Datatype::Fp16 => x.is_finite() && x.abs() <= 65504.0,
            Datatype::Fp32 => x.is_finite() && x.abs() <= f32::MAX as f64,
            Datatype::Fp64 => x.is_finite(),
            Datatype::Bytes => false,
        }
    }
}

/// [`check_numbers`]' rule for one value of a numeric tensor of a known
/// datatype (`Datatype::admits`).
#[derive(Clone, Copy, Debug)]
pub(super) struct NumberCheck(Datatype);

impl NumberCheck {
    /// Whether a value of that tensor may be `x`.
    pub(super) fn admits(self, x: f64) -> bool {
        self.0.admits(x)
    }
}

/// What [`feature_values`] does with each value of `input`, the tensor of
/// a feature of `kind`, where that is one rule a value at a time: for a
/// reader that reads the values of an input laid out as one already
/// decoded (`layout`). `None` where it is not (a boolean feature, whose
/// values are mapped, not checked; a datatype its kind refuses).
#[derive(Clone, Copy, Debug)]
pub(super) enum ValueRule {
    /// A number of a numeric feature, checked against its datatype.
    Number(NumberCheck),
    /// A string of a categorical feature (`BYTES`).
    Text,
}

pub(super) fn value_rule(input: &RequestInput, kind: FeatureKind) -> Option<ValueRule> {
    let bytes = input.datatype == "BYTES";
    match kind {
        FeatureKind::Numeric if !bytes => {
            let dt = datatype(&input.name, &input.datatype).ok()?;
            Some(ValueRule::Number(NumberCheck(dt)))
        }
        FeatureKind::Categorical if bytes => Some(ValueRule::Text),
        _ => None,
    }
}

/// Checks a numeric tensor's values against its datatype and takes them
/// out of the request (decoding reads each input once; no copy is made).
fn numbers(input: &mut RequestInput) -> Result<Vec<f64>, DecodeError> {
    check_numbers(input)?;
    Ok(
        match std::mem::replace(&mut input.data, TensorData::Numbers(Vec::new())) {
            TensorData::Bools(b) => b.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
            TensorData::Numbers(v) => v,
            _ => unreachable!("check_numbers accepts only booleans and numbers"),
        },
    )
}

/// Whether a numeric tensor's values fit its datatype.
fn check_numbers(input: &RequestInput) -> Result<(), DecodeError> {
    let dt = datatype(&input.name, &input.datatype)?;
    match (&input.data, dt) {
        (TensorData::Bools(_), Datatype::Bool) => Ok(()),
        (TensorData::Numbers(v), dt) if dt != Datatype::Bytes => {
            match v.iter().position(|&x| !dt.admits(x)) {
                None => Ok(()),
                Some(index) => {
                    let datatype = input.datatype.to_string();
                    let (input, value) = (input.name.to_string(), v[index]);
                    Err(match dt {
                        Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64 => {
                            DecodeError::NonFinite {
                                input,
                                index,
                                value,
                                datatype,
                            }
                        }
                        _ => DecodeError::OutOfRange {
                            input,
                            index,
                            value,
                            datatype,
                        },
                    })
                }
            }
        }
        (data, _) => Err(DecodeError::DataTypeMismatch {
            input: input.name.to_string(),
            datatype: input.datatype.to_string(),
            found: data.kind(),
        }),
    }
}

pub(super) fn shape_len(input: &RequestInput) -> Result<u64, DecodeError> {
    let mut n: u64 = 1;
    for &d in &input.shape {
        if d < 0 {
            return Err(DecodeError::BadShape {
                input: input.name.to_string(),
                shape: input.shape.to_vec(),
                expected: "non-negative dimensions (−1 is only for metadata)".into(),
            });
        }
        n = n.saturating_mul(d as u64);
    }
    if n != input.data.len() as u64 {
        return Err(DecodeError::ShapeLength {
            input: input.name.to_string(),
            shape: input.shape.to_vec(),
            expected: n,
            actual: input.data.len(),
        });
    }
    Ok(n)
}

fn feature_list(schema: &InputSchema) -> String {
    schema
        .features
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns validated request inputs into feature columns in the model's
/// order. Each decoded input's data is moved out, so the request's inputs
/// are left empty.
pub fn decode_inputs(
    request: &mut InferRequest,
    schema: &InputSchema,
) -> Result<DecodedBatch, DecodeError> {
    if request.inputs.is_empty() {
        return Err(DecodeError::NoInputs);
    }
    for input in &request.inputs {
        shape_len(input)?;
    }
    let by_feature = request
        .inputs
        .iter()
        .enumerate()
        .all(|(k, i)| schema.position(&i.name, k).is_some());
    let batch = if request.inputs.len() == 1 && !by_feature {
        decode_matrix(&mut request.inputs[0], schema)?
    } else {
        decode_per_feature(&mut request.inputs, schema)?
    };
    check_rows(batch.rows(), schema)?;
    Ok(batch)
}

/// A batch must have rows, and no more than the model takes at once.
pub(super) fn check_rows(rows: usize, schema: &InputSchema) -> Result<(), DecodeError> {
    if rows == 0 {
        return Err(DecodeError::NoRows);
    }
    if rows > schema.max_rows {
        return Err(DecodeError::TooManyRows {
            rows,
            max: schema.max_rows,
        });
    }
    Ok(())
}

fn decode_matrix(
    input: &mut RequestInput,
    schema: &InputSchema,
) -> Result<DecodedBatch, DecodeError> {
    let f = schema.features.len();
    let rows = match input.shape.as_slice() {
        [n, cols] if *cols as usize == f => *n as usize,
        [n] if f == 1 => *n as usize,
        _ => {
            return Err(DecodeError::BadShape {
                input: input.name.to_string(),
                shape: input.shape.to_vec(),
                expected: format!(
                    "[N, {f}] (one column per feature: {})",
                    feature_list(schema)
                ),
            });
        }
    };
    if let Some((name, _)) = schema
        .features
        .iter()
        .find(|(_, k)| *k == FeatureKind::Categorical)
    {
        return Err(DecodeError::CategoricalInMatrix {
            feature: name.clone(),
        });
    }
    let matrix = numbers(input)?;
    let mut values = Vec::with_capacity(matrix.len());
    for (j, (_, kind)) in schema.features.iter().enumerate() {
        for i in 0..rows {
            let (at, x) = (i * f + j, matrix[i * f + j]);
            values.push(match kind {
                FeatureKind::Boolean => boolean(input, x, at)?,
                _ => Value::Number(x),
            });
        }
    }
    Ok(DecodedBatch::new(rows, values))
}

/// A 0/1 value as the `"false"`/`"true"` category a boolean feature was
/// trained on; `at` is its place in the input, for the error.
fn boolean(input: &RequestInput, x: f64, at: usize) -> Result<Value, DecodeError> {
    match x {
        0.0 => Ok(Value::Text("false".into())),
        1.0 => Ok(Value::Text("true".into())),
        _ => Err(DecodeError::OutOfRange {
            input: input.name.to_string(),
            index: at,
            value: x,
            datatype: "a boolean (0 or 1)".into(),
        }),
    }
}

fn decode_per_feature(
    inputs: &mut [RequestInput],
    schema: &InputSchema,
) -> Result<DecodedBatch, DecodeError> {
    // Each feature's input, by its place in `inputs`.
    let mut slots: Vec<Option<usize>> = vec![None; schema.features.len()];
    // The first input's place and rows, which every other input must match.
    let mut first: Option<(usize, usize)> = None;
    for (k, input) in inputs.iter().enumerate() {
        let Some(j) = schema.position(&input.name, k) else {
            return Err(DecodeError::UnknownInput {
                input: input.name.to_string(),
                features: feature_list(schema),
            });
        };
        if slots[j].is_some() {
            return Err(DecodeError::DuplicateInput(input.name.to_string()));
        }
        let rows = feature_rows(input)?;
        match first {
            None => first = Some((k, rows)),
            Some((at, n)) if n != rows => {
                return Err(DecodeError::RowMismatch {
                    input: input.name.to_string(),
                    rows,
                    first: inputs[at].name.to_string(),
                    first_rows: n,
                });
            }
            Some(_) => {}
        }
        slots[j] = Some(k);
    }
    let rows = first.map(|(_, n)| n).unwrap_or(0);
    let mut values = Vec::with_capacity(rows.min(plain::MAX_RESERVED) * schema.features.len());
    for ((name, kind), slot) in schema.features.iter().zip(slots) {
        let Some(input) = slot.map(|k| &mut inputs[k]) else {
            return Err(DecodeError::MissingFeature {
                feature: name.clone(),
                features: feature_list(schema),
                count: schema.features.len(),
            });
        };
        feature_values(input, name, *kind, &mut values)?;
    }
    Ok(DecodedBatch::new(rows, values))
}

/// Rows in a tensor named by its feature: `[N]` or `[N, 1]`.
pub(super) fn feature_rows(input: &RequestInput) -> Result<usize, DecodeError> {
    match input.shape.as_slice() {
        [n] | [n, 1] => Ok(*n as usize),
        _ => Err(DecodeError::BadShape {
            input: input.name.to_string(),
            shape: input.shape.to_vec(),
            expected: "[N] or [N, 1] for a tensor named by its feature".into(),
        }),
    }
}

/// Appends the values of `input`, the tensor of feature `feature` (of
/// `kind`), to `values` as the model takes them. The input's data is
/// drained (its list kept, for a reader that reuses it).
pub(super) fn feature_values(
    input: &mut RequestInput,
    feature: &str,
    kind: FeatureKind,
    values: &mut Vec<Value>,
) -> Result<(), DecodeError> {
    let bytes = input.datatype == "BYTES";
    let mismatch = |input: &RequestInput| DecodeError::DataTypeMismatch {
        input: input.name.to_string(),
        datatype: input.datatype.to_string(),
        found: input.data.kind(),
    };
    match kind {
        FeatureKind::Categorical => {
            if !bytes {
                datatype(&input.name, &input.datatype)?;
                return Err(DecodeError::WrongDatatype {
                    input: input.name.to_string(),
                    datatype: input.datatype.to_string(),
                    feature: feature.to_string(),
                    kind: "categorical",
                    expected: "BYTES (strings)",
                });
            }
            match &mut input.data {
                TensorData::Texts(t) => values.extend(t.drain(..).map(Value::Text)),
                TensorData::Blobs(b) => return Err(not_utf8(&input.name, b)),
                TensorData::Numbers(v) if v.is_empty() => {}
                _ => return Err(mismatch(input)),
            }
        }
        FeatureKind::Boolean => match &mut input.data {
            TensorData::Texts(t) if bytes => values.extend(t.drain(..).map(Value::Text)),
            _ if bytes => return Err(mismatch(input)),
            _ => {
                check_numbers(input)?;
                match &input.data {
                    TensorData::Bools(b) => values.extend(
                        b.iter()
                            .map(|&b| Value::Text(if b { "true" } else { "false" }.into())),
                    ),
                    TensorData::Numbers(v) => {
                        for (at, &x) in v.iter().enumerate() {
                            values.push(boolean(input, x, at)?);
                        }
                    }
                    _ => unreachable!("check_numbers accepts only booleans and numbers"),
                }
                input.data.clear();
            }
        },
        FeatureKind::Numeric => {
            if bytes {
                return Err(DecodeError::WrongDatatype {
                    input: input.name.to_string(),
                    datatype: input.datatype.to_string(),
                    feature: feature.to_string(),
                    kind: "numeric",
                    expected: "a numeric datatype such as FP32",
                });
            }
            check_numbers(input)?;
            match &input.data {
                TensorData::Bools(b) => {
                    values.extend(b.iter().map(|&b| Value::Number(if b { 1.0 } else { 0.0 })))
                }
                TensorData::Numbers(v) => values.extend(v.iter().map(|&x| Value::Number(x))),
                _ => unreachable!("check_numbers accepts only booleans and numbers"),
            }
            input.data.clear();
        }
    }
    Ok(())
}
