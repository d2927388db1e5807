//! A small OpenAPI v3 description of the served types: enough for kubectl to
//! find each kind's GroupVersionKind, its patch parameters (server-side field
//! validation) and, for CRDs, their schema.

use serde_json::{Map, Value, json};

use super::resources::{Registry, ResourceType};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group version.
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for v in versions {
            let p = gv_path(&group, &v);
            // The hash changes when the served types do, so clients refetch.
            let hash = registry
                .types()
                .iter()
                .filter(|t| t.group == group && t.version == v)
                .map(|t| t.plural.len() + t.kind.len() + t.columns.len())
                .sum::<usize>();
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash:08X}")}),
            );
        }
    }
    json!({"paths": paths})
}

fn definition_name(t: &ResourceType) -> String {
    let group = if t.group.is_empty() {
        "core".to_string()
    } else {
        t.group.clone()
    };
    format!("io.driftline.embedded.{group}.{}.{}", t.version, t.kind)
}

/// `/openapi/v3/{api/v1 | apis/g/v}`: the document of one group version.
pub fn document(registry: &Registry, path: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = registry
        .types()
        .iter()
        .filter(|t| gv_path(&t.group, &t.version) == path)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for t in types {
        // CRDs get the full document the schema module builds from the CRD.
        if let Some(doc) = t
            .crd
            .as_ref()
            .and_then(|crd| crate::cluster::schema::openapi_v3_for_crd(crd, &t.version).ok())
        {
            if let Some(Value::Object(p)) = doc.get("paths") {
                paths.extend(p.clone());
            }
            if let Some(Value::Object(c)) = doc.pointer("/components/schemas") {
                schemas.extend(c.clone());
            }
            continue;
        }
        let name = definition_name(t);
        let mut schema = match &t.schema {
            Some(s) => serde_json::to_value(s).unwrap_or_else(|_| json!({"type": "object"})),
            None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        schemas.insert(name.clone(), schema);
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        ]);
        let base = if t.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{path}/{}", t.plural)
        };
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let op = |action: &str| {
            json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params,
                   "responses": {"200": {"content": {"application/json": {"schema": reference}}}}})
        };
        paths.insert(base.clone(), json!({"get": op("list"), "post": op("post")}));
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "driftline embedded cluster", "version": "v1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
