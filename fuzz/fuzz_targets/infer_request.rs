//! Any byte string as an infer request body: decoding must return a value or
//! an error, never panic, for every model schema shape.
#![no_main]

use driftline::serve::protocol::{FeatureKind, InputSchema, decode_inputs, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
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
    if let Ok(request) = parse_request(body) {
        for schema in &schemas {
            if let Ok(batch) = decode_inputs(&request, schema) {
                assert_eq!(batch.columns.len(), schema.features.len());
                assert!(batch.rows >= 1 && batch.rows <= schema.max_rows);
            }
        }
    }
});
