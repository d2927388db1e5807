//! The infer-request decoder on stable Rust: the cargo-fuzz target in
//! `fuzz/` needs nightly, so these properties throw structured near-miss
//! requests and raw bytes at the same two functions. Every input must give a
//! batch that fits the schema or an error with a message, never a panic.

use driftline::api::FeatureKind;
use driftline::serve::{InputSchema, decode_inputs, parse_infer_body, parse_request, read_columns};
use proptest::prelude::*;
use serde_json::{Value, json};

fn schemas() -> [InputSchema; 2] {
    [
        InputSchema::new(
            vec![
                ("a".into(), FeatureKind::Numeric),
                ("b".into(), FeatureKind::Numeric),
            ],
            64,
        ),
        InputSchema::new(
            vec![
                ("a".into(), FeatureKind::Numeric),
                ("color".into(), FeatureKind::Categorical),
                ("flag".into(), FeatureKind::Boolean),
            ],
            64,
        ),
    ]
}

/// Decodes `body` against every schema and checks what comes back.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    check_binary(body, None)
}

/// The same for a body of the binary tensor extension, JSON `header_length` bytes long.
///
/// The reader straight into columns (`read_columns`) takes a body only
/// where reading and decoding it gives the same id and batch; it never
/// takes one they refuse.
fn check_binary(body: &[u8], header_length: Option<usize>) -> Result<(), TestCaseError> {
    if let Err(e) = parse_infer_body(body, header_length) {
        prop_assert!(!e.to_string().is_empty());
        for schema in &schemas() {
            prop_assert!(read_columns(body, header_length, schema).is_none());
        }
        return Ok(());
    }
    for schema in &schemas() {
        // Decoding moves the data out of the request: a fresh one per schema.
        let mut request = parse_infer_body(body, header_length).expect("parsed above");
        let fast = read_columns(body, header_length, schema);
        match decode_inputs(&mut request, schema) {
            Ok(batch) => {
                prop_assert_eq!(batch.features(), schema.features.len());
                prop_assert!(batch.rows() >= 1 && batch.rows() <= schema.max_rows);
                if let Some((id, fast)) = fast {
                    prop_assert_eq!(id, request.id);
                    prop_assert_eq!(fast, batch);
                }
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                prop_assert!(fast.is_none(), "read straight into columns, refused: {e}");
            }
        }
    }
    Ok(())
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
        Just(json!(1e308)),
        Just(json!(-0.0)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Names the schemas know, and some they do not.
fn name() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "color", "flag", "input-0", "x"]).prop_map(Value::from),
        1 => any_json(),
    ]
}

fn datatype() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "FP32", "FP64", "FP16", "INT8", "INT64", "UINT8", "UINT64", "BOOL", "BYTES", "fp32", "STRING"
        ])
        .prop_map(Value::from),
        1 => any_json(),
    ]
}

fn shape() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec(0u64..70, 0..4).prop_map(|v| json!(v)),
        1 => prop::collection::vec(any::<i64>(), 0..4).prop_map(|v| json!(v)),
        1 => any_json(),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<f64>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        Just(json!(1e300)),
    ];
    let cell = prop_oneof![
        3 => number,
        1 => prop::sample::select(vec!["red", "true", "false", "", "NaN"]).prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
    ];
    prop_oneof![
        4 => prop::collection::vec(cell.clone(), 0..80).prop_map(Value::Array),
        2 => prop::collection::vec(prop::collection::vec(cell, 0..4).prop_map(Value::Array), 0..40)
            .prop_map(Value::Array),
        1 => any_json(),
    ]
}

/// An input tensor with every field drawn near the protocol, or left out.
fn input() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.95, name()),
        prop::option::weighted(0.95, shape()),
        prop::option::weighted(0.95, datatype()),
        prop::option::weighted(0.95, data()),
        prop::option::weighted(0.1, any_json()),
    )
        .prop_map(|(name, shape, datatype, data, parameters)| {
            let mut o = serde_json::Map::new();
            for (k, v) in [
                ("name", name),
                ("shape", shape),
                ("datatype", datatype),
                ("data", data),
                ("parameters", parameters),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o)
        })
}

fn request() -> impl Strategy<Value = Value> {
    (
        prop::option::of(any_json()),
        prop::collection::vec(input(), 0..4),
        prop::option::weighted(0.2, any_json()),
    )
        .prop_map(|(id, inputs, outputs)| {
            let mut o = serde_json::Map::new();
            if let Some(id) = id {
                o.insert("id".into(), id);
            }
            o.insert("inputs".into(), Value::Array(inputs));
            if let Some(outputs) = outputs {
                o.insert("outputs".into(), outputs);
            }
            Value::Object(o)
        })
}

/// A valid request for one of the schemas: one `[N, 2]` FP32 tensor for the
/// numeric schema, or one tensor per feature for the mixed one.
fn valid_request() -> impl Strategy<Value = Value> {
    (1usize..6, any::<bool>(), any::<u64>()).prop_map(|(rows, matrix, seed)| {
        let x = |i: usize| ((seed.wrapping_add(i as u64) % 1000) as f64) / 10.0 - 50.0;
        if matrix {
            json!({"id": "r", "inputs": [{
                "name": "input-0", "shape": [rows, 2], "datatype": "FP32",
                "data": (0..rows * 2).map(x).collect::<Vec<_>>()
            }]})
        } else {
            json!({"inputs": [
                {"name": "a", "shape": [rows], "datatype": "FP64", "data": (0..rows).map(x).collect::<Vec<_>>()},
                {"name": "color", "shape": [rows], "datatype": "BYTES",
                 "data": (0..rows).map(|i| if i % 2 == 0 { "red" } else { "blue" }).collect::<Vec<_>>()},
                {"name": "flag", "shape": [rows], "datatype": "BOOL", "data": (0..rows).map(|i| i % 3 == 0).collect::<Vec<_>>()}
            ]})
        }
    })
}

/// A valid request with one change (or none): a field replaced or removed,
/// the shape or one cell changed, an input duplicated or dropped.
fn mutated_request() -> impl Strategy<Value = Value> {
    (
        valid_request(),
        0u8..7,
        any::<prop::sample::Index>(),
        prop::sample::select(vec!["name", "shape", "datatype", "data"]),
        any_json(),
    )
        .prop_map(|(mut body, mutation, at, field, junk)| {
            let inputs = body["inputs"].as_array_mut().unwrap();
            let i = at.index(inputs.len());
            match mutation {
                1 => inputs[i][field] = junk,
                2 => {
                    inputs[i].as_object_mut().unwrap().remove(field);
                }
                3 => {
                    let dims = inputs[i]["shape"].as_array_mut().unwrap();
                    let d = at.index(dims.len());
                    dims[d] = junk;
                }
                4 => {
                    let data = inputs[i]["data"].as_array_mut().unwrap();
                    let d = at.index(data.len());
                    data[d] = junk;
                }
                5 => {
                    let copy = inputs[i].clone();
                    inputs.push(copy);
                }
                6 => {
                    inputs.remove(i);
                }
                _ => {}
            }
            body
        })
}

/// A valid binary-extension body for the mixed schema: JSON header, then
/// FP32 `a`, BYTES `color` (length-prefixed) and BOOL `flag`.
fn binary_body(rows: usize) -> (Vec<u8>, usize) {
    let a: Vec<u8> = (0..rows)
        .flat_map(|i| (i as f32 + 0.5).to_le_bytes())
        .collect();
    let color: Vec<u8> = (0..rows)
        .flat_map(|i| {
            let c: &[u8] = if i % 2 == 0 { b"red" } else { b"blue" };
            [&(c.len() as u32).to_le_bytes()[..], c].concat()
        })
        .collect();
    let flag: Vec<u8> = (0..rows).map(|i| u8::from(i % 3 == 0)).collect();
    let header = serde_json::to_vec(&json!({"id": "b", "inputs": [
        {"name": "a", "shape": [rows], "datatype": "FP32", "parameters": {"binary_data_size": a.len()}},
        {"name": "color", "shape": [rows], "datatype": "BYTES", "parameters": {"binary_data_size": color.len()}},
        {"name": "flag", "shape": [rows], "datatype": "BOOL", "parameters": {"binary_data_size": flag.len()}}
    ]}))
    .unwrap();
    let length = header.len();
    ([header, a, color, flag].concat(), length)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_with_any_header_length_decode_or_say_why(
        body in prop::collection::vec(any::<u8>(), 0..512),
        header_length in prop::option::of(0usize..600),
    ) {
        check_binary(&body, header_length)?;
    }

    #[test]
    fn damaged_binary_bodies_decode_or_say_why(
        rows in 1usize..6,
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        shift in -8i64..8,
        junk in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let (body, length) = binary_body(rows);
        // Cut short, one byte changed, the header length off, or bytes added.
        check_binary(&body[..cut.index(body.len() + 1)], Some(length))?;
        let mut changed = body.clone();
        changed[flip.index(body.len())] = byte;
        check_binary(&changed, Some(length))?;
        check_binary(&body, Some((length as i64 + shift).max(0) as usize))?;
        check_binary(&[body.clone(), junk.clone()].concat(), Some(length))?;
        let truncated = body.len() - 1;
        let err = parse_infer_body(&body[..truncated], Some(length)).unwrap_err();
        prop_assert!(err.to_string().contains("input `flag`"), "{}", err);
    }

    #[test]
    fn near_protocol_requests_decode_or_say_why(body in prop_oneof![request(), mutated_request()]) {
        check(&serde_json::to_vec(&body).unwrap())?;
    }

    #[test]
    fn any_bytes_decode_or_say_why(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body)?;
    }

    #[test]
    fn truncated_valid_requests_decode_or_say_why(cut in 0usize..200) {
        let body = serde_json::to_vec(&json!({
            "id": "r1",
            "inputs": [
                {"name": "a", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]},
                {"name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]},
                {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [true, false]}
            ]
        }))
        .unwrap();
        check(&body[..cut.min(body.len())])?;
    }
}

/// The valid request the near-miss strategy circles around does decode, so
/// the properties above are not only exercising the error paths.
#[test]
fn the_request_the_strategies_vary_decodes() {
    let body = serde_json::to_vec(&json!({
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]},
            {"name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]},
            {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [true, false]}
        ]
    }))
    .unwrap();
    let mut request = parse_request(&body).unwrap();
    let batch = decode_inputs(&mut request, &schemas()[1]).unwrap();
    assert_eq!(batch.rows(), 2);
    // The common body is read straight into the same columns.
    let (id, fast) = read_columns(&body, None, &schemas()[1]).expect("a common body");
    assert_eq!((id, fast), (None, batch));
}

/// A binary body decodes to exactly the batch its JSON twin decodes to: one
/// validation and one set of columns for both encodings.
#[test]
fn binary_and_json_bodies_decode_to_the_same_batch() {
    let (body, length) = binary_body(3);
    let binary = decode_inputs(
        &mut parse_infer_body(&body, Some(length)).unwrap(),
        &schemas()[1],
    )
    .unwrap();
    let json_body = serde_json::to_vec(&json!({"inputs": [
        {"name": "a", "shape": [3], "datatype": "FP32", "data": [0.5, 1.5, 2.5]},
        {"name": "color", "shape": [3], "datatype": "BYTES", "data": ["red", "blue", "red"]},
        {"name": "flag", "shape": [3], "datatype": "BOOL", "data": [true, false, false]}
    ]}))
    .unwrap();
    let json = decode_inputs(&mut parse_request(&json_body).unwrap(), &schemas()[1]).unwrap();
    assert_eq!(binary, json);
}

/// The near-miss strategy also lands on valid requests, so the properties
/// check the success path's invariants too, not only error messages.
#[test]
fn the_near_miss_strategy_reaches_valid_batches() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = mutated_request();
    // Bodies that decode, and of those the ones with one tensor a feature
    // (the mixed schema's) and the ones read straight into columns.
    let (mut decoded, mut per_feature, mut fast) = (0, 0, 0);
    for _ in 0..5_000 {
        let body = serde_json::to_vec(&strategy.new_tree(&mut runner).unwrap().current()).unwrap();
        for (k, schema) in schemas().iter().enumerate() {
            if parse_request(&body).is_ok()
                && decode_inputs(&mut parse_request(&body).unwrap(), schema).is_ok()
            {
                decoded += 1;
                per_feature += usize::from(k == 1);
                fast += usize::from(read_columns(&body, None, schema).is_some());
            }
        }
    }
    // Unchanged requests alone are one in seven.
    assert!(
        decoded >= 250,
        "only {decoded} of 5000 generated requests decoded"
    );
    // The mutations never reorder inputs: a per-feature body that decodes
    // is in the model's order, so it is read straight into columns (and
    // the properties compare the two readers on it) unless a mutated cell
    // is a number serde must read (-0.0, an exponent, 20 digits); a
    // matrix body never is.
    assert!(per_feature >= 100, "only {per_feature} per-feature bodies");
    assert!(
        fast <= per_feature && fast * 10 >= per_feature * 9,
        "{fast} of {per_feature} per-feature bodies read straight into columns"
    );
}
