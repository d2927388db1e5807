//! The scale subresource (`{plural}/{name}/scale`): an `autoscaling/v1 Scale`
//! view of an object's replica count, for `kubectl scale` and autoscalers.
//! Pure conversions; the server does the reads and writes.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::resources::ResourceType;
use crate::cluster::schema::{FieldError, FieldErrorKind, invalid_status};

/// Where a type keeps its replica counts and selector, as JSON pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// Desired replicas, e.g. `/spec/replicas`.
    pub spec_replicas: String,
    /// Observed replicas, e.g. `/status/replicas`.
    pub status_replicas: String,
    /// The selector: a serialized string for CRDs, a LabelSelector object for built-ins.
    pub label_selector: Option<String>,
    /// Replicas when the spec leaves them out (1 for built-in workloads, as
    /// the real API server defaults them; 0 for custom resources).
    pub default_replicas: i64,
}

impl ScalePaths {
    /// The paths of Deployments, ReplicaSets and StatefulSets.
    pub fn workload() -> Self {
        ScalePaths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            label_selector: Some("/spec/selector".into()),
            default_replicas: 1,
        }
    }

    /// The paths a CRD version declares in `subresources.scale` (`.spec.replicas` form).
    pub fn from_crd(spec: &str, status: &str, selector: Option<&str>) -> Self {
        ScalePaths {
            spec_replicas: pointer(spec),
            status_replicas: pointer(status),
            label_selector: selector.map(pointer),
            default_replicas: 0,
        }
    }
}

/// `.spec.replicas` → `/spec/replicas`.
fn pointer(json_path: &str) -> String {
    json_path
        .trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut acc, seg| {
            acc.push('/');
            acc.push_str(seg);
            acc
        })
}

/// The `Scale` of an object.
pub fn to_scale(paths: &ScalePaths, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut scale_meta = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(key) {
            scale_meta.insert(key.into(), v.clone());
        }
    }
    let spec = obj
        .pointer(&paths.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(paths.default_replicas);
    let observed = obj
        .pointer(&paths.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut status = json!({"replicas": observed});
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| obj.pointer(p))
        .map(|s| match s {
            Value::String(text) => text.clone(),
            other => selector_string(other),
        })
        .filter(|s| !s.is_empty());
    if let Some(selector) = selector {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": spec},
        "status": status,
    })
}

/// The object with the replica count a `Scale` asks for. A stale
/// `metadata.resourceVersion` in the Scale is a 409, as on a real server.
pub fn apply_scale(
    ty: &ResourceType,
    paths: &ScalePaths,
    obj: &Value,
    scale: &Value,
) -> Result<Value, ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(kind) = scale.get("kind").and_then(Value::as_str)
        && kind != "Scale"
    {
        return Err(ApiError::BadRequest(format!(
            "the {}/scale subresource takes an autoscaling/v1 Scale, not a {kind}",
            ty.plural
        )));
    }
    if let Some(given) = scale.pointer("/metadata/name").and_then(Value::as_str)
        && !given.is_empty()
        && given != name
    {
        return Err(ApiError::BadRequest(format!(
            "the Scale names `{given}` but the URL names {} `{name}`",
            ty.kind
        )));
    }
    let live_rv = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && !rv.is_empty()
        && Some(rv) != live_rv
    {
        return Err(ApiError::stale(&ty.group, &ty.plural, name));
    }
    let replicas = scale.pointer("/spec/replicas");
    let count = match replicas {
        Some(v) => v.as_i64().filter(|n| (0..=i64::from(i32::MAX)).contains(n)),
        None => Some(0),
    };
    let Some(count) = count else {
        let error = FieldError::new(
            "spec.replicas",
            FieldErrorKind::Invalid,
            replicas.cloned(),
            "must be a whole number between 0 and 2147483647",
        );
        let status = invalid_status("autoscaling", "Scale", name, &[error]);
        let message = status
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("invalid Scale")
            .to_string();
        return Err(ApiError::Invalid { message, status });
    };
    let mut out = obj.clone();
    set_pointer(&mut out, &paths.spec_replicas, json!(count));
    Ok(out)
}

/// Sets a value at a JSON pointer, creating the objects on the way.
fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let mut here = target;
    let segments: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if !here.is_object() {
            *here = json!({});
        }
        let Value::Object(map) = here else { return };
        if i + 1 == segments.len() {
            map.insert(seg.to_string(), value);
            return;
        }
        here = map.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
}

/// A `metav1.LabelSelector` as the string `labels.Selector` writes
/// (`app=web,tier in (a,b),!legacy`), requirements sorted by key.
pub fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(labels)) = selector.get("matchLabels") {
        for (k, v) in labels {
            parts.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    if let Some(Value::Array(exprs)) = selector.get("matchExpressions") {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let mut values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            values.sort_unstable();
            let text = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                other => format!("{key} {other} ({})", values.join(",")),
            };
            parts.push((key.to_string(), text));
        }
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::super::resources::Registry;
    use super::*;

    fn deployments() -> ResourceType {
        Registry::with_builtins()
            .find("apps", "v1", "deployments")
            .cloned()
            .unwrap()
    }

    fn web() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "ml", "uid": "u1", "resourceVersion": "7"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                             {"key": "legacy", "operator": "DoesNotExist"}]}},
               "status": {"replicas": 1}})
    }

    #[test]
    fn a_deployment_reads_as_a_scale_with_its_selector_as_a_string() {
        let scale = to_scale(&ScalePaths::workload(), &web());
        assert_eq!(
            scale,
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                   "metadata": {"name": "web", "namespace": "ml", "uid": "u1", "resourceVersion": "7"},
                   "spec": {"replicas": 2},
                   "status": {"replicas": 1, "selector": "app=web,!legacy,tier in (a,b)"}})
        );
        // Unset replicas read as the default the real server would have stored.
        let mut bare = web();
        bare["spec"].as_object_mut().unwrap().remove("replicas");
        assert_eq!(
            to_scale(&ScalePaths::workload(), &bare)["spec"]["replicas"],
            1
        );
    }

    #[test]
    fn a_scale_sets_replicas_and_refuses_stale_versions_and_bad_counts() {
        let ty = deployments();
        let paths = ScalePaths::workload();
        let scaled = apply_scale(
            &ty,
            &paths,
            &web(),
            &json!({"metadata": {"resourceVersion": "7"}, "spec": {"replicas": 5}}),
        )
        .unwrap();
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert_eq!(scaled["spec"]["selector"], web()["spec"]["selector"]);

        let stale = apply_scale(
            &ty,
            &paths,
            &web(),
            &json!({"metadata": {"resourceVersion": "6"}, "spec": {"replicas": 5}}),
        )
        .unwrap_err();
        assert_eq!(stale.code(), 409);

        let negative =
            apply_scale(&ty, &paths, &web(), &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(negative.code(), 422);
        assert!(negative.to_string().contains("spec.replicas"), "{negative}");
    }

    #[test]
    fn crd_paths_point_into_the_object() {
        let paths = ScalePaths::from_crd(
            ".spec.serving.replicas",
            ".status.replicas",
            Some(".status.selector"),
        );
        let obj = json!({"metadata": {"name": "m"}, "spec": {"serving": {"replicas": 3}},
                         "status": {"replicas": 2, "selector": "app=m"}});
        let scale = to_scale(&paths, &obj);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=m"}));
        let mut empty = json!({"metadata": {"name": "m"}});
        set_pointer(&mut empty, &paths.spec_replicas, json!(4));
        assert_eq!(empty["spec"]["serving"]["replicas"], 4);
    }
}
