//! Server-side `meta.k8s.io/v1` Table rendering (`Accept: ...;as=Table`), as
//! kubectl asks for it: CRD printer columns by JSONPath ([`crd_columns`]),
//! and the columns the apiserver's built-in printers show for Pods, Jobs,
//! Deployments and friends ([`builtin_columns`]).
//!
//! Built-in columns that no JSONPath can express (a pod's `1/2` Ready, its
//! Status reason) use JSONPaths starting with `#`, which name a computed cell;
//! a real CRD cannot declare such a path, so the two never collide.

mod builtin;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use serde_json::{Value, json};

pub use builtin::builtin_columns;

use super::resources::ResourceType;
use crate::cluster::schema::{JsonPath, SchemaError, go_number};

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
/// ages measured from `now` (an argument, so they are reproducible) and
/// rows carrying object metadata.
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
                    None => builtin::computed_cell(&col.json_path, obj, now),
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

pub(super) fn column(
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

pub(super) fn age() -> CustomResourceColumnDefinition {
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
    let found = crate::cluster::schema::crd_version(crd, version)?;
    Ok(match found.additional_printer_columns.as_ref() {
        Some(columns) if !columns.is_empty() => columns.clone(),
        _ => vec![age()],
    })
}

/// Renders objects as a Table with the type's columns (printer columns for CRDs).
pub fn render(ty: &ResourceType, objects: &[Value], list_meta: Value, include: &str) -> Value {
    let include = IncludeObject::from_query(Some(include));
    table_with_options(&ty.columns, objects, list_meta, include, chrono::Utc::now())
}

/// The same Table without column definitions (watch events after the first).
pub fn without_columns(mut table: Value) -> Value {
    table["columnDefinitions"] = json!([]);
    table
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
}
