//! `fieldValidation`: which fields of a body the type does not know.

use std::collections::HashMap;

use serde_json::Value;

use super::error::ApiError;
use super::resources::ResourceType;

/// Unknown fields of an object body under `fieldValidation`: Strict is a
/// 400, Warn (the default) and Ignore prune them; Warn reports each in a
/// header. Custom objects are checked against their CRD's schema, built-in
/// ones against their Kubernetes type ([`builtin_unknown_fields`]).
pub(super) fn field_validation(
    ty: &ResourceType,
    query: &HashMap<String, String>,
    body: &Value,
) -> Result<Vec<String>, ApiError> {
    let mode = query
        .get("fieldValidation")
        .map(String::as_str)
        .unwrap_or("Warn");
    if mode == "Ignore" {
        return Ok(vec![]);
    }
    let unknown = match &ty.admission {
        Some(admission) => crate::cluster::schema::unknown_fields(admission.schema(), body),
        None => builtin_unknown_fields(&ty.group, &ty.kind, body).unwrap_or_default(),
    };
    if unknown.is_empty() {
        return Ok(vec![]);
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if mode == "Strict" {
        // Word for word what kube-apiserver answers (tests/cluster/cluster_differential.rs).
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            ty.kind,
            ty.version,
            ty.kind,
            listed.join(", ")
        )));
    }
    Ok(listed)
}

/// The fields of a built-in object that its Kubernetes type does not have,
/// as `spec.template.spec.containers[0].foo`: what survives a round trip
/// through the k8s-openapi type is known, anything else is not. A null is
/// an unset field, never unknown. `None` for kinds not listed here (and for
/// bodies that do not decode, which later validation refuses).
fn builtin_unknown_fields(group: &str, kind: &str, body: &Value) -> Option<Vec<String>> {
    use k8s_openapi::api::{apps, batch, coordination, core, events, rbac};
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        body: &Value,
    ) -> Option<Value> {
        serde_json::to_value(serde_json::from_value::<T>(body.clone()).ok()?).ok()
    }
    let typed = match (group, kind) {
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(body),
        ("", "Secret") => round_trip::<core::v1::Secret>(body),
        ("", "Service") => round_trip::<core::v1::Service>(body),
        ("", "Pod") => round_trip::<core::v1::Pod>(body),
        ("", "Namespace") => round_trip::<core::v1::Namespace>(body),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(body),
        ("", "Event") => round_trip::<core::v1::Event>(body),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(body),
        ("batch", "Job") => round_trip::<batch::v1::Job>(body),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(body),
        ("events.k8s.io", "Event") => round_trip::<events::v1::Event>(body),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::v1::Role>(body),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(body),
        _ => None,
    }?;
    fn missing(given: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
        match (given, kept) {
            (Value::Object(g), Value::Object(k)) => {
                for (key, value) in g.iter().filter(|(_, v)| !v.is_null()) {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match k.get(key) {
                        Some(kv) => missing(value, kv, &p, out),
                        None => out.push(p),
                    }
                }
            }
            (Value::Array(g), Value::Array(k)) => {
                for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                    missing(gv, kv, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    missing(body, &typed, "", &mut out);
    Some(out)
}
