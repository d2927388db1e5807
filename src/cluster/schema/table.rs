//! Server-side `meta.k8s.io/v1` Table rendering (`Accept: ...;as=Table`), as
//! kubectl asks for it: CRD printer columns by JSONPath, and the columns the
//! apiserver's built-in printers show for Pods, Jobs, Deployments and friends.
//!
//! Built-in columns that no JSONPath can express (a pod's `1/2` Ready, its
//! Status reason) use JSONPaths starting with `#`, which name a computed cell;
//! a real CRD cannot declare such a path, so the two never collide.

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use serde_json::{Value, json};

use super::{
    errors::{FieldError, FieldErrorKind, SchemaError, go_number, go_quote},
    jsonpath::JsonPath,
};

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// What each row carries in `object` (the `includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads the `includeObject` query value; unknown values get the default.
    pub fn from_query(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Renders `objects` as a Table with a Name column followed by `columns`,
/// ages measured from the current time and rows carrying object metadata.
pub fn table(
    columns: &[CustomResourceColumnDefinition],
    objects: &[Value],
    list_meta: Value,
) -> Value {
    table_at(columns, objects, list_meta, Utc::now())
}

/// [`table`] with the clock as an argument, so ages are reproducible.
pub fn table_at(
    columns: &[CustomResourceColumnDefinition],
    objects: &[Value],
    list_meta: Value,
    now: DateTime<Utc>,
) -> Value {
    table_with_options(columns, objects, list_meta, IncludeObject::Metadata, now)
}

/// [`table`] with every option: what each row carries, and the clock.
pub fn table_with_options(
    columns: &[CustomResourceColumnDefinition],
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let mut all: Vec<CustomResourceColumnDefinition> = Vec::with_capacity(columns.len() + 1);
    // Events put Name last; everything else gets it first, as the apiserver does.
    if !columns.iter().any(|c| c.format.as_deref() == Some("name")) {
        let mut name = column("Name", "string", ".metadata.name", 0, Some("name"));
        name.description = Some(NAME_DESCRIPTION.to_string());
        all.push(name);
    }
    all.extend(columns.iter().cloned());
    let parsed: Vec<Option<JsonPath>> = all
        .iter()
        .map(|c| {
            if c.json_path.starts_with('#') {
                None
            } else {
                JsonPath::parse(&c.json_path).ok()
            }
        })
        .collect();
    let definitions: Vec<Value> = all
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format.clone().unwrap_or_default(),
                "description": c.description.clone().unwrap_or_else(|| format!(
                    "Custom resource definition column (in JSONPath format): {}", c.json_path
                )),
                "priority": c.priority.unwrap_or(0),
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = all
                .iter()
                .zip(&parsed)
                .map(|(col, path)| match path {
                    Some(path) => path_cell(col, path, obj, now),
                    None => computed_cell(&col.json_path, obj, now),
                })
                .collect();
            let mut row = json!({ "cells": cells });
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// A cell from a JSONPath column, typed like the apiserver's CRD table convertor.
fn path_cell(
    col: &CustomResourceColumnDefinition,
    path: &JsonPath,
    obj: &Value,
    now: DateTime<Utc>,
) -> Value {
    let Some(value) = path.first(obj) else {
        return Value::Null;
    };
    match (col.type_.as_str(), value) {
        (_, Value::Null) => Value::Null,
        ("string", v) => Value::String(go_print(v)),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            None => n.as_f64().map_or(Value::Null, |f| json!(f as i64)),
        },
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => json!(human_duration(now - t.with_timezone(&Utc))),
            Err(_) => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

/// Prints a value as Go's `fmt.Print` does, as kubectl's JSONPath printer does.
fn go_print(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_print).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_print(&map[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Formats an age like kubectl (`duration.HumanDuration`): 45s, 5m, 3h, 2d.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn column(
    name: &str,
    type_: &str,
    json_path: &str,
    priority: i32,
    format: Option<&str>,
) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.to_string(),
        type_: type_.to_string(),
        json_path: json_path.to_string(),
        priority: Some(priority),
        format: format.map(str::to_string),
        description: None,
    }
}

fn age() -> CustomResourceColumnDefinition {
    let mut col = column("Age", "date", ".metadata.creationTimestamp", 0, None);
    col.description = Some(CREATION_DESCRIPTION.to_string());
    col
}

/// The printer columns of a CRD version, or the Age column the apiserver
/// serves when the CRD declares none.
pub fn crd_columns(
    crd: &CustomResourceDefinition,
    version: &str,
) -> Result<Vec<CustomResourceColumnDefinition>, SchemaError> {
    let Some(found) = crd.spec.versions.iter().find(|v| v.name == version) else {
        return Err(SchemaError::UnknownVersion {
            crd: crd.metadata.name.clone().unwrap_or_default(),
            version: version.to_string(),
            served: crd
                .spec
                .versions
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    Ok(match found.additional_printer_columns.as_ref() {
        Some(columns) if !columns.is_empty() => columns.clone(),
        _ => vec![age()],
    })
}

/// Checks printer columns as the apiserver does when a CRD is written: a
/// name, a supported type and format, and a JSONPath starting with `.` that
/// parses. `base` is e.g. `spec.versions[0].additionalPrinterColumns`.
pub fn validate_printer_columns(
    columns: &[CustomResourceColumnDefinition],
    base: &str,
) -> Vec<FieldError> {
    const TYPES: [&str; 5] = ["boolean", "date", "integer", "number", "string"];
    const FORMATS: [&str; 8] = [
        "byte",
        "date",
        "date-time",
        "double",
        "float",
        "int32",
        "int64",
        "password",
    ];
    let supported = |values: &[&str]| {
        let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    let mut errors = Vec::new();
    for (i, col) in columns.iter().enumerate() {
        let at = format!("{base}[{i}]");
        if col.name.is_empty() {
            errors.push(FieldError::new(
                format!("{at}.name"),
                FieldErrorKind::Required,
                None,
                "",
            ));
        }
        if !TYPES.contains(&col.type_.as_str()) {
            errors.push(FieldError::new(
                format!("{at}.type"),
                FieldErrorKind::NotSupported,
                Some(json!(col.type_)),
                supported(&TYPES),
            ));
        }
        if let Some(format) = col.format.as_deref().filter(|f| !f.is_empty())
            && !FORMATS.contains(&format)
        {
            errors.push(FieldError::new(
                format!("{at}.format"),
                FieldErrorKind::NotSupported,
                Some(json!(format)),
                supported(&FORMATS),
            ));
        }
        if col.json_path.is_empty() {
            errors.push(FieldError::new(
                format!("{at}.jsonPath"),
                FieldErrorKind::Required,
                None,
                "",
            ));
        } else if !col.json_path.starts_with('.') {
            errors.push(FieldError::new(
                format!("{at}.jsonPath"),
                FieldErrorKind::Invalid,
                Some(json!(col.json_path)),
                "must be a simple json path starting with .",
            ));
        } else if let Err(e) = JsonPath::parse(&col.json_path) {
            errors.push(FieldError::new(
                format!("{at}.jsonPath"),
                FieldErrorKind::Invalid,
                Some(json!(col.json_path)),
                format!("invalid JSONPath: {e}"),
            ));
        }
    }
    errors
}

/// The Table columns kubectl shows for a built-in resource (after Name,
/// which [`table`] adds): pods, jobs, deployments, replicasets, services,
/// namespaces, nodes, configmaps, secrets, persistentvolumeclaims, events
/// (core and events.k8s.io), leases and CRDs; Age alone for anything else.
pub fn builtin_columns(group: &str, resource: &str) -> Vec<CustomResourceColumnDefinition> {
    match (group, resource) {
        ("", "pods") => vec![
            column("Ready", "string", "#pod.ready", 0, None),
            column("Status", "string", "#pod.status", 0, None),
            column("Restarts", "string", "#pod.restarts", 0, None),
            age(),
            column("IP", "string", ".status.podIP", 1, None),
            column("Node", "string", ".spec.nodeName", 1, None),
            column(
                "Nominated Node",
                "string",
                ".status.nominatedNodeName",
                1,
                None,
            ),
            column("Readiness Gates", "string", "#pod.readiness-gates", 1, None),
        ],
        ("batch", "jobs") => vec![
            column("Status", "string", "#job.status", 0, None),
            column("Completions", "string", "#job.completions", 0, None),
            column("Duration", "string", "#job.duration", 0, None),
            age(),
            column("Containers", "string", "#template.containers", 1, None),
            column("Images", "string", "#template.images", 1, None),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("apps", "deployments") => vec![
            column("Ready", "string", "#deployment.ready", 0, None),
            column(
                "Up-to-date",
                "integer",
                "#or0:.status.updatedReplicas",
                0,
                None,
            ),
            column(
                "Available",
                "integer",
                "#or0:.status.availableReplicas",
                0,
                None,
            ),
            age(),
            column("Containers", "string", "#template.containers", 1, None),
            column("Images", "string", "#template.images", 1, None),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("apps", "replicasets") => vec![
            column("Desired", "integer", "#or0:.spec.replicas", 0, None),
            column("Current", "integer", "#or0:.status.replicas", 0, None),
            column("Ready", "integer", "#or0:.status.readyReplicas", 0, None),
            age(),
            column("Containers", "string", "#template.containers", 1, None),
            column("Images", "string", "#template.images", 1, None),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("", "nodes") => vec![
            column("Status", "string", "#node.status", 0, None),
            column("Roles", "string", "#node.roles", 0, None),
            age(),
            column(
                "Version",
                "string",
                ".status.nodeInfo.kubeletVersion",
                0,
                None,
            ),
        ],
        ("", "persistentvolumeclaims") => vec![
            column("Status", "string", ".status.phase", 0, None),
            column("Volume", "string", ".spec.volumeName", 0, None),
            column("Capacity", "string", ".status.capacity.storage", 0, None),
            column("Access Modes", "string", "#pvc.access-modes", 0, None),
            column("StorageClass", "string", ".spec.storageClassName", 0, None),
            age(),
        ],
        ("", "services") => vec![
            column("Type", "string", ".spec.type", 0, None),
            column("Cluster-IP", "string", "#service.cluster-ip", 0, None),
            column("External-IP", "string", "#service.external-ip", 0, None),
            column("Port(s)", "string", "#service.ports", 0, None),
            age(),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("", "namespaces") => vec![column("Status", "string", ".status.phase", 0, None), age()],
        ("", "configmaps") => vec![column("Data", "integer", "#data-count", 0, None), age()],
        ("", "secrets") => vec![
            column("Type", "string", ".type", 0, None),
            column("Data", "integer", "#data-count", 0, None),
            age(),
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            column("Last Seen", "string", "#event.last-seen", 0, None),
            column("Type", "string", ".type", 0, None),
            column("Reason", "string", ".reason", 0, None),
            column("Object", "string", "#event.object", 0, None),
            column("Subobject", "string", "#event.subobject", 1, None),
            column("Source", "string", "#event.source", 1, None),
            column("Message", "string", "#event.message", 0, None),
            column("First Seen", "string", "#event.first-seen", 1, None),
            column("Count", "string", "#event.count", 1, None),
            column("Name", "string", ".metadata.name", 1, Some("name")),
        ],
        ("coordination.k8s.io", "leases") => vec![
            column("Holder", "string", ".spec.holderIdentity", 0, None),
            age(),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![column("Created At", "date", "#created-at", 0, None)]
        }
        _ => vec![age()],
    }
}

// ---- computed cells of the built-in printers ----

fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.get(*key))
}

fn int_at(obj: &Value, path: &[&str]) -> i64 {
    at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(obj, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn list_at<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    at(obj, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn timestamp(obj: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let text = str_at(obj, path)?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn age_since(then: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    then.map_or_else(|| "<unknown>".to_string(), |t| human_duration(now - t))
}

fn computed_cell(kind: &str, obj: &Value, now: DateTime<Utc>) -> Value {
    if let Some(path) = kind.strip_prefix("#or0:") {
        let found = JsonPath::parse(path)
            .ok()
            .and_then(|p| p.first(obj).cloned());
        return found.filter(Value::is_number).unwrap_or_else(|| json!(0));
    }
    match kind {
        "#pod.ready" => {
            let total = list_at(obj, &["spec", "containers"]).len();
            let ready = list_at(obj, &["status", "containerStatuses"])
                .iter()
                .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                .count();
            json!(format!("{ready}/{total}"))
        }
        "#pod.status" => json!(pod_status(obj)),
        "#pod.restarts" => json!(pod_restarts(obj, now)),
        "#pod.readiness-gates" => {
            let gates = list_at(obj, &["spec", "readinessGates"]);
            if gates.is_empty() {
                return json!("<none>");
            }
            let conditions = list_at(obj, &["status", "conditions"]);
            let met = gates
                .iter()
                .filter(|g| {
                    conditions.iter().any(|c| {
                        c.get("type") == g.get("conditionType")
                            && str_at(c, &["status"]) == Some("True")
                    })
                })
                .count();
            json!(format!("{met}/{}", gates.len()))
        }
        "#job.status" => json!(job_status(obj)),
        "#node.status" => {
            let ready = list_at(obj, &["status", "conditions"])
                .iter()
                .find(|c| str_at(c, &["type"]) == Some("Ready"));
            let mut status = match ready.and_then(|c| str_at(c, &["status"])) {
                Some("True") => "Ready".to_string(),
                Some(_) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if at(obj, &["spec", "unschedulable"]) == Some(&Value::Bool(true)) {
                status.push_str(",SchedulingDisabled");
            }
            json!(status)
        }
        "#node.roles" => {
            let mut roles: Vec<&str> = at(obj, &["metadata", "labels"])
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .collect();
            roles.sort_unstable();
            json!(if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            })
        }
        "#pvc.access-modes" => {
            let short: Vec<&str> = list_at(obj, &["status", "accessModes"])
                .iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect();
            json!(short.join(","))
        }
        "#job.completions" => {
            let succeeded = int_at(obj, &["status", "succeeded"]);
            let text = match at(obj, &["spec", "completions"]).and_then(Value::as_i64) {
                Some(c) => format!("{succeeded}/{c}"),
                None => match int_at(obj, &["spec", "parallelism"]) {
                    p if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            json!(text)
        }
        "#job.duration" => {
            let start = timestamp(obj, &["status", "startTime"]);
            let end = timestamp(obj, &["status", "completionTime"]);
            match (start, end) {
                (None, _) => json!(""),
                (Some(s), None) => json!(human_duration(now - s)),
                (Some(s), Some(e)) => json!(human_duration(e - s)),
            }
        }
        "#template.containers" | "#template.images" => {
            let field = if kind == "#template.images" {
                "image"
            } else {
                "name"
            };
            let names: Vec<&str> = list_at(obj, &["spec", "template", "spec", "containers"])
                .iter()
                .filter_map(|c| str_at(c, &[field]))
                .collect();
            json!(names.join(","))
        }
        "#selector" => {
            let selector = at(obj, &["spec", "selector"]);
            let labels = selector
                .and_then(|s| s.get("matchLabels"))
                .or(selector.filter(|s| s.get("matchExpressions").is_none()));
            let mut parts: Vec<String> = labels
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            for expr in selector
                .and_then(|s| s.get("matchExpressions"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = str_at(expr, &["key"]).unwrap_or_default();
                let values: Vec<&str> = list_at(expr, &["values"])
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                parts.push(match str_at(expr, &["operator"]).unwrap_or_default() {
                    "In" => format!("{key} in ({})", values.join(",")),
                    "NotIn" => format!("{key} notin ({})", values.join(",")),
                    "Exists" => key.to_string(),
                    _ => format!("!{key}"),
                });
            }
            json!(if parts.is_empty() {
                "<none>".to_string()
            } else {
                parts.join(",")
            })
        }
        "#deployment.ready" => {
            let want = at(obj, &["spec", "replicas"])
                .and_then(Value::as_i64)
                .unwrap_or(1);
            json!(format!(
                "{}/{want}",
                int_at(obj, &["status", "readyReplicas"])
            ))
        }
        "#service.cluster-ip" => json!(str_at(obj, &["spec", "clusterIP"]).unwrap_or("<none>")),
        "#service.external-ip" => json!(service_external_ip(obj)),
        "#service.ports" => {
            let ports: Vec<String> = list_at(obj, &["spec", "ports"])
                .iter()
                .map(|p| {
                    let port = int_at(p, &["port"]);
                    let protocol = str_at(p, &["protocol"]).unwrap_or("TCP");
                    match at(p, &["nodePort"]).and_then(Value::as_i64) {
                        Some(node) if node > 0 => format!("{port}:{node}/{protocol}"),
                        _ => format!("{port}/{protocol}"),
                    }
                })
                .collect();
            json!(if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(",")
            })
        }
        "#data-count" => {
            let count = |key: &str| {
                obj.get(key)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            json!(count("data") + count("binaryData"))
        }
        "#event.last-seen" => {
            let last = timestamp(obj, &["lastTimestamp"])
                .or_else(|| timestamp(obj, &["deprecatedLastTimestamp"]))
                .or_else(|| timestamp(obj, &["series", "lastObservedTime"]))
                .or_else(|| timestamp(obj, &["eventTime"]))
                .or_else(|| timestamp(obj, &["firstTimestamp"]));
            json!(age_since(last, now))
        }
        "#event.first-seen" => {
            let first = timestamp(obj, &["firstTimestamp"])
                .or_else(|| timestamp(obj, &["deprecatedFirstTimestamp"]))
                .or_else(|| timestamp(obj, &["eventTime"]));
            json!(age_since(first, now))
        }
        "#event.object" => {
            let regarding = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            let kind = regarding
                .and_then(|r| str_at(r, &["kind"]))
                .unwrap_or_default();
            let name = regarding
                .and_then(|r| str_at(r, &["name"]))
                .unwrap_or_default();
            json!(format!("{}/{name}", kind.to_lowercase()))
        }
        "#event.subobject" => {
            let regarding = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            json!(
                regarding
                    .and_then(|r| str_at(r, &["fieldPath"]))
                    .unwrap_or_default()
            )
        }
        "#event.source" => {
            let component = str_at(obj, &["source", "component"])
                .or_else(|| str_at(obj, &["reportingController"]))
                .or_else(|| str_at(obj, &["deprecatedSource", "component"]))
                .unwrap_or_default();
            match str_at(obj, &["source", "host"]) {
                Some(host) => json!(format!("{component}, {host}")),
                None => json!(component),
            }
        }
        "#event.message" => json!(
            str_at(obj, &["message"])
                .or_else(|| str_at(obj, &["note"]))
                .unwrap_or_default()
        ),
        "#event.count" => {
            let count = at(obj, &["count"])
                .or_else(|| at(obj, &["series", "count"]))
                .or_else(|| at(obj, &["deprecatedCount"]))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            json!(count.to_string())
        }
        "#created-at" => match timestamp(obj, &["metadata", "creationTimestamp"]) {
            Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// The Status column of `kubectl get pods` (kubectl's `printPod`, condensed).
fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, &["status", "reason"])
        .or_else(|| str_at(pod, &["status", "phase"]))
        .unwrap_or("Pending")
        .to_string();
    let init_specs = list_at(pod, &["spec", "initContainers"]).len();
    let mut initializing = false;
    for (i, status) in list_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        if let Some(terminated) = at(status, &["state", "terminated"]) {
            if int_at(terminated, &["exitCode"]) == 0 {
                continue;
            }
            reason = match str_at(terminated, &["reason"]) {
                Some(r) => format!("Init:{r}"),
                None if int_at(terminated, &["signal"]) != 0 => {
                    format!("Init:Signal:{}", int_at(terminated, &["signal"]))
                }
                None => format!("Init:ExitCode:{}", int_at(terminated, &["exitCode"])),
            };
        } else if let Some(waiting) =
            str_at(status, &["state", "waiting", "reason"]).filter(|r| *r != "PodInitializing")
        {
            reason = format!("Init:{waiting}");
        } else {
            reason = format!("Init:{i}/{init_specs}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for status in list_at(pod, &["status", "containerStatuses"]).iter().rev() {
            if let Some(waiting) = str_at(status, &["state", "waiting", "reason"]) {
                reason = waiting.to_string();
            } else if let Some(terminated) = at(status, &["state", "terminated"]) {
                reason = match str_at(terminated, &["reason"]) {
                    Some(r) => r.to_string(),
                    None if int_at(terminated, &["signal"]) != 0 => {
                        format!("Signal:{}", int_at(terminated, &["signal"]))
                    }
                    None => format!("ExitCode:{}", int_at(terminated, &["exitCode"])),
                };
            } else if status.get("ready") == Some(&Value::Bool(true))
                && at(status, &["state", "running"]).is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = list_at(pod, &["status", "conditions"]).iter().any(|c| {
                str_at(c, &["type"]) == Some("Ready") && str_at(c, &["status"]) == Some("True")
            });
            reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }
    if at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        reason = if reason == "NodeLost" {
            "Unknown"
        } else {
            "Terminating"
        }
        .to_string();
    }
    reason
}

fn pod_restarts(pod: &Value, now: DateTime<Utc>) -> String {
    let statuses = list_at(pod, &["status", "containerStatuses"]);
    let restarts: i64 = statuses.iter().map(|s| int_at(s, &["restartCount"])).sum();
    let last = statuses
        .iter()
        .filter_map(|s| timestamp(s, &["lastState", "terminated", "finishedAt"]))
        .max();
    match last {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    }
}

fn job_status(job: &Value) -> String {
    let has = |kind: &str| {
        list_at(job, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == Some(kind) && str_at(c, &["status"]) == Some("True"))
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if at(job, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if at(job, &["spec", "suspend"]) == Some(&Value::Bool(true)) {
        "Suspended"
    } else {
        "Running"
    }
    .to_string()
}

fn service_external_ip(svc: &Value) -> String {
    let mut ips: Vec<String> = list_at(svc, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| str_at(i, &["ip"]).or_else(|| str_at(i, &["hostname"])))
        .map(str::to_string)
        .collect();
    ips.extend(
        list_at(svc, &["spec", "externalIPs"])
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string),
    );
    match str_at(svc, &["spec", "type"]) {
        Some("ExternalName") => str_at(svc, &["spec", "externalName"])
            .unwrap_or("<none>")
            .to_string(),
        Some("LoadBalancer") if ips.is_empty() => "<pending>".to_string(),
        _ if ips.is_empty() => "<none>".to_string(),
        _ => ips.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid test time")
    }

    fn col(name: &str, type_: &str, path: &str, priority: i32) -> CustomResourceColumnDefinition {
        column(name, type_, path, priority, None)
    }

    #[test]
    fn printer_columns_are_checked_like_crd_creation() {
        let mut bad_format = col("F", "integer", ".spec.n", 0);
        bad_format.format = Some("percent".to_string());
        let columns = vec![
            col("Phase", "string", ".status.phase", 0),
            col("Odd", "color", ".spec.c", 0),
            col("Rel", "string", "status.phase", 0),
            col("Broken", "string", ".spec[", 0),
            bad_format,
        ];
        let errors: Vec<String> = validate_printer_columns(&columns, "cols")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with(
            "cols[1].type: Unsupported value: \"color\": supported values: \"boolean\""
        ));
        assert_eq!(
            errors[1],
            "cols[2].jsonPath: Invalid value: \"status.phase\": must be a simple json path starting with ."
        );
        assert!(
            errors[2].starts_with("cols[3].jsonPath: Invalid value: \".spec[\": invalid JSONPath")
        );
        assert!(errors[3].starts_with("cols[4].format: Unsupported value: \"percent\""));
    }

    #[test]
    fn human_duration_matches_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (45, "45s"),
            (119, "119s"),
            (5 * 60, "5m"),
            (5 * 60 + 7, "5m7s"),
            (42 * 60, "42m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (30 * 3600, "30h"),
            (2 * 86400, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400 + 5 * 86400, "3y5d"),
            (10 * 365 * 86400, "10y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(TimeDelta::seconds(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn crd_columns_render_typed_cells_name_first_and_partial_metadata() {
        let columns = vec![
            col("Phase", "string", ".status.phase", 0),
            col("Epochs", "integer", ".spec.training.epochs", 0),
            col("Drift", "number", ".status.drift", 0),
            col("Paused", "boolean", ".spec.paused", 1),
            col(
                "Ready",
                "string",
                r#".status.conditions[?(@.type=="Ready")].status"#,
                0,
            ),
            col("First Step", "integer", ".spec.rollout.steps[0].weight", 1),
            col("Age", "date", ".metadata.creationTimestamp", 0),
            col("Missing", "string", ".status.nothing", 0),
        ];
        let model = json!({
            "apiVersion": "driftline.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "wine", "namespace": "ml", "creationTimestamp": "2026-11-26T11:55:00Z"},
            "spec": {"training": {"epochs": 40.0}, "paused": false, "rollout": {"steps": [{"weight": 5}]}},
            "status": {"phase": "Serving", "drift": 0.25,
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let t = table_at(&columns, &[model], json!({"resourceVersion": "7"}), now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        let defs = t["columnDefinitions"]
            .as_array()
            .expect("column definitions");
        assert_eq!(defs.len(), 9);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(defs[4]["priority"], 1);
        assert_eq!(
            defs[1]["description"],
            "Custom resource definition column (in JSONPath format): .status.phase"
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["wine", "Serving", 40, 0.25, false, "True", 5, "5m", null])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "ml");
    }

    #[test]
    fn string_columns_print_lists_and_maps_like_go() {
        let columns = vec![
            col("Layers", "string", ".spec.hidden", 0),
            col("Sel", "string", ".spec.sel", 0),
        ];
        let obj = json!({"metadata": {"name": "m"}, "spec": {"hidden": [64, 32], "sel": {"b": "2", "a": "1"}}});
        let t = table_at(&columns, &[obj], json!({}), now());
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["m", "[64 32]", "map[a:1 b:2]"])
        );
    }

    #[test]
    fn include_object_options() {
        let obj = json!({"metadata": {"name": "m"}, "spec": {"x": 1}});
        let none = table_with_options(
            &[],
            std::slice::from_ref(&obj),
            json!({}),
            IncludeObject::None,
            now(),
        );
        assert!(none["rows"][0].get("object").is_none());
        let full = table_with_options(
            &[],
            std::slice::from_ref(&obj),
            json!({}),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(full["rows"][0]["object"], obj);
        assert_eq!(
            IncludeObject::from_query(Some("Object")),
            IncludeObject::Object
        );
        assert_eq!(IncludeObject::from_query(None), IncludeObject::Metadata);
    }

    #[test]
    fn pods_show_ready_status_restarts_and_age() {
        let pod = json!({
            "metadata": {"name": "train-1", "creationTimestamp": "2026-11-26T09:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "local"},
            "status": {"phase": "Running", "podIP": "127.0.0.5",
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"finishedAt": "2026-11-26T11:50:00Z"}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ]}
        });
        let t = table_at(&builtin_columns("", "pods"), &[pod], json!({}), now());
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "train-1",
                "1/2",
                "CrashLoopBackOff",
                "2 (10m ago)",
                "3h",
                "127.0.0.5",
                "local",
                null,
                "<none>"
            ])
        );
    }

    #[test]
    fn pod_status_reasons() {
        let completed = json!({"spec": {"containers": [{}]}, "status": {"phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(&completed), "Completed");
        let failed = json!({"spec": {"containers": [{}]}, "status": {"phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 3}}}]}});
        assert_eq!(pod_status(&failed), "ExitCode:3");
        let pending = json!({"status": {"phase": "Pending"}});
        assert_eq!(pod_status(&pending), "Pending");
        let init = json!({"spec": {"initContainers": [{}, {}]}, "status": {"phase": "Pending",
            "initContainerStatuses": [{"state": {"terminated": {"exitCode": 0}}}, {"state": {"running": {}}}]}});
        assert_eq!(pod_status(&init), "Init:1/2");
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-11-26T11:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status(&deleting), "Terminating");
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let done = json!({
            "metadata": {"name": "wine-train-1", "creationTimestamp": "2026-11-26T11:00:00Z"},
            "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "train", "image": "driftline"}]}},
                     "selector": {"matchLabels": {"job-name": "wine-train-1"}}},
            "status": {"succeeded": 1, "startTime": "2026-11-26T11:00:00Z", "completionTime": "2026-11-26T11:02:30Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let running = json!({
            "metadata": {"name": "r", "creationTimestamp": "2026-11-26T11:59:00Z"},
            "spec": {"parallelism": 3},
            "status": {"startTime": "2026-11-26T11:59:00Z"}
        });
        let t = table_at(
            &builtin_columns("batch", "jobs"),
            &[done, running],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "wine-train-1",
                "Complete",
                "1/1",
                "2m30s",
                "60m",
                "train",
                "driftline",
                "job-name=wine-train-1"
            ])
        );
        assert_eq!(t["rows"][1]["cells"][1], "Running");
        assert_eq!(t["rows"][1]["cells"][2], "0/1 of 3");
        assert_eq!(t["rows"][1]["cells"][3], "60s");
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(job_status(&failed), "Failed");
        assert_eq!(job_status(&json!({"spec": {"suspend": true}})), "Suspended");
    }

    #[test]
    fn deployments_services_namespaces_configmaps_leases() {
        let deploy = json!({"metadata": {"name": "wine-v3"}, "spec": {"replicas": 2},
            "status": {"readyReplicas": 1, "updatedReplicas": 2}});
        let t = table_at(
            &builtin_columns("apps", "deployments"),
            &[deploy],
            json!({}),
            now(),
        );
        assert_eq!(t["rows"][0]["cells"][1], "1/2");
        assert_eq!(t["rows"][0]["cells"][2], 2);
        assert_eq!(t["rows"][0]["cells"][3], 0);

        let svc = json!({"metadata": {"name": "wine"}, "spec": {"type": "NodePort", "clusterIP": "10.0.0.7",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 9090}],
            "selector": {"app": "wine"}}});
        let t = table_at(&builtin_columns("", "services"), &[svc], json!({}), now());
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "wine",
                "NodePort",
                "10.0.0.7",
                "<none>",
                "80:30080/TCP,9090/TCP",
                null,
                "app=wine"
            ])
        );
        let lb = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(service_external_ip(&lb), "<pending>");

        let ns = json!({"metadata": {"name": "ml"}, "status": {"phase": "Active"}});
        let t = table_at(&builtin_columns("", "namespaces"), &[ns], json!({}), now());
        assert_eq!(t["rows"][0]["cells"][1], "Active");

        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        let t = table_at(&builtin_columns("", "configmaps"), &[cm], json!({}), now());
        assert_eq!(t["rows"][0]["cells"][1], 3);

        let lease = json!({"metadata": {"name": "driftline"}, "spec": {"holderIdentity": "op-1"}});
        let t = table_at(
            &builtin_columns("coordination.k8s.io", "leases"),
            &[lease],
            json!({}),
            now(),
        );
        assert_eq!(t["rows"][0]["cells"][1], "op-1");
    }

    #[test]
    fn replicasets_nodes_and_claims() {
        let rs = json!({"metadata": {"name": "wine-v3-abc"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        let t = table_at(
            &builtin_columns("apps", "replicasets"),
            &[rs],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["wine-v3-abc", 2, 2, 0, null, "", "", "<none>"])
        );

        let node = json!({"metadata": {"name": "local", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
        let t = table_at(&builtin_columns("", "nodes"), &[node], json!({}), now());
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "local",
                "Ready,SchedulingDisabled",
                "control-plane",
                null,
                "v1.33.0"
            ])
        );

        let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1", "storageClassName": "local"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        let t = table_at(
            &builtin_columns("", "persistentvolumeclaims"),
            &[pvc],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["data", "Bound", "pv-1", "1Gi", "RWO", "local", null])
        );
    }

    #[test]
    fn events_put_name_last_and_describe_the_object() {
        let ev = json!({"metadata": {"name": "wine.1"}, "type": "Normal", "reason": "Promoted",
            "message": "v3 is champion", "involvedObject": {"kind": "Model", "name": "wine"},
            "lastTimestamp": "2026-11-26T11:58:00Z", "count": 2});
        let t = table_at(&builtin_columns("", "events"), &[ev], json!({}), now());
        assert_eq!(t["columnDefinitions"][0]["name"], "Last Seen");
        assert_eq!(t["columnDefinitions"][9]["name"], "Name");
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "2m",
                "Normal",
                "Promoted",
                "model/wine",
                "",
                "",
                "v3 is champion",
                "<unknown>",
                "2",
                "wine.1"
            ])
        );
        let new_style = json!({"metadata": {"name": "e"}, "note": "hello", "regarding": {"kind": "Pod", "name": "p"},
            "eventTime": "2026-11-26T11:59:30Z"});
        let t = table_at(
            &builtin_columns("events.k8s.io", "events"),
            &[new_style],
            json!({}),
            now(),
        );
        assert_eq!(t["rows"][0]["cells"][0], "30s");
        assert_eq!(t["rows"][0]["cells"][3], "pod/p");
        assert_eq!(t["rows"][0]["cells"][6], "hello");
    }

    #[test]
    fn crds_show_created_at_and_unknown_kinds_get_age() {
        let crd = json!({"metadata": {"name": "models.driftline.dev", "creationTimestamp": "2026-11-20T08:00:00Z"}});
        let t = table_at(
            &builtin_columns("apiextensions.k8s.io", "customresourcedefinitions"),
            &[crd],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["models.driftline.dev", "2026-11-20T08:00:00Z"])
        );
        let other = builtin_columns("example.com", "widgets");
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].name, "Age");
    }
}
