//! Server-side `Table` rendering for `kubectl get` (`as=Table` in Accept).

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::resources::ResourceType;

/// Whether the client asked for a meta.k8s.io Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

/// Renders objects as a Table with the type's printer columns.
pub fn render(
    ty: &ResourceType,
    objects: &[Value],
    list_meta: Value,
    include_object: bool,
) -> Value {
    let mut table = basic_table(ty, objects, list_meta);
    if !include_object && let Some(rows) = table.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(m) = row.as_object_mut() {
                m.remove("object");
            }
        }
    }
    table
}

/// The same Table without column definitions (watch events after the first).
pub fn without_columns(mut table: Value) -> Value {
    table["columnDefinitions"] = json!([]);
    table
}

/// Name and creation time of each object (until printer columns are rendered by `schema`).
fn basic_table(_ty: &ResourceType, objects: &[Value], list_meta: Value) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({"cells": [o.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
                             o.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null)],
                   "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
           "columnDefinitions": [
               {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
               {"name": "Created At", "type": "date", "format": "", "description": "Creation time", "priority": 0}],
           "rows": rows})
}
