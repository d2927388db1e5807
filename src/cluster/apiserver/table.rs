//! Server-side `Table` rendering for `kubectl get` (`as=Table` in Accept).

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::resources::ResourceType;
use crate::cluster::schema;

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

/// Renders objects as a Table with the type's columns (printer columns for CRDs).
pub fn render(ty: &ResourceType, objects: &[Value], list_meta: Value, include: &str) -> Value {
    let include = schema::IncludeObject::from_query(Some(include));
    schema::table_with_options(&ty.columns, objects, list_meta, include, chrono::Utc::now())
}

/// The same Table without column definitions (watch events after the first).
pub fn without_columns(mut table: Value) -> Value {
    table["columnDefinitions"] = json!([]);
    table
}
