//! Any byte string as an infer request body, JSON or binary (the first two
//! bytes pick the Inference-Header-Content-Length): decoding must return a
//! value or an error, never panic or over-read, for every model schema shape.
#![no_main]

use driftline::api::FeatureKind;
use driftline::serve::protocol::{InputSchema, decode_inputs, parse_infer_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (header_length, body) = match input {
        [0, 0, rest @ ..] => (None, rest),
        [hi, lo, rest @ ..] => (Some(usize::from(u16::from_be_bytes([*hi, *lo]))), rest),
        _ => (None, input),
    };
    let schemas = [
        InputSchema {
            features: vec![
                ("a".into(), FeatureKind::Numeric),
                ("b".into(), FeatureKind::Numeric),
            ],
            max_rows: 1024,
        },
        InputSchema {
            features: vec![
                ("a".into(), FeatureKind::Numeric),
                ("color".into(), FeatureKind::Categorical),
                ("flag".into(), FeatureKind::Boolean),
            ],
            max_rows: 1024,
        },
    ];
    if let Ok(request) = parse_infer_body(body, header_length) {
        for schema in &schemas {
            if let Ok(batch) = decode_inputs(&request, schema) {
                assert_eq!(batch.columns.len(), schema.features.len());
                assert!(batch.rows >= 1 && batch.rows <= schema.max_rows);
            }
        }
    }
});
