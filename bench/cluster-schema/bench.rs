//! Schema benchmark: validates the objects of a `gen.py` document with
//! driftline's CRD schema code; prints `key=value` lines for `run.sh`.

use std::time::Instant;

use driftline::cluster::schema::CrdSchema;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::Value;

fn strip_rules(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(strip_rules);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_rules),
        _ => {}
    }
}

fn per_object_us(objects: &[Value], mut check: impl FnMut(&Value) -> bool) -> (f64, usize) {
    let start = Instant::now();
    let invalid = objects.iter().filter(|o| !check(o)).count();
    let us = start.elapsed().as_secs_f64() * 1e6 / objects.len().max(1) as f64;
    (us, invalid)
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: cluster_schema_bench DATA.json (from gen.py)"))?;
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let objects = data["objects"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{path}: `objects` is not a list"))?;
    let full: JSONSchemaProps = serde_json::from_value(data["schema"].clone())?;
    let mut plain_json = data["schema"].clone();
    strip_rules(&mut plain_json);
    let plain = CrdSchema::new(serde_json::from_value(plain_json)?);
    let with_rules = CrdSchema::new(full);

    let (validate_us, invalid) = per_object_us(objects, |o| plain.validate(o, None).is_empty());
    let (admit_us, admit_invalid) = per_object_us(objects, |o| {
        let mut copy = o.clone();
        with_rules.admit(&mut copy, None).is_empty()
    });
    println!("objects={}", objects.len());
    println!("invalid={invalid}");
    println!("validate_us_per_object={validate_us:.1}");
    println!("admit_with_cel_invalid={admit_invalid}");
    println!("admit_with_cel_us_per_object={admit_us:.1}");
    Ok(())
}
