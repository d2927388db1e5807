//! A small OpenAPI v3 description of the served types: enough for kubectl to
//! find each kind's GroupVersionKind, its patch parameters (server-side field
//! validation) and, for CRDs, their schema.

use schemars::generate::{SchemaGenerator, SchemaSettings};
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

/// Registers the schema of a built-in kind with `generator` and returns its
/// definition's name; `None` for a kind without k8s-openapi schema here.
fn builtin_schema(t: &ResourceType, generator: &mut SchemaGenerator) -> Option<String> {
    use k8s_openapi::api::{apps, authorization, batch, coordination, core, events};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    if t.custom {
        return None;
    }
    let reference = match (t.group.as_str(), t.kind.as_str()) {
        ("", "Namespace") => generator.subschema_for::<core::v1::Namespace>(),
        ("", "Pod") => generator.subschema_for::<core::v1::Pod>(),
        ("", "Service") => generator.subschema_for::<core::v1::Service>(),
        ("", "ConfigMap") => generator.subschema_for::<core::v1::ConfigMap>(),
        ("", "Secret") => generator.subschema_for::<core::v1::Secret>(),
        ("", "Event") => generator.subschema_for::<core::v1::Event>(),
        ("", "Node") => generator.subschema_for::<core::v1::Node>(),
        ("", "PersistentVolumeClaim") => {
            generator.subschema_for::<core::v1::PersistentVolumeClaim>()
        }
        ("", "ServiceAccount") => generator.subschema_for::<core::v1::ServiceAccount>(),
        ("", "Endpoints") => generator.subschema_for::<core::v1::Endpoints>(),
        ("events.k8s.io", "Event") => generator.subschema_for::<events::v1::Event>(),
        ("batch", "Job") => generator.subschema_for::<batch::v1::Job>(),
        ("apps", "Deployment") => generator.subschema_for::<apps::v1::Deployment>(),
        ("apps", "ReplicaSet") => generator.subschema_for::<apps::v1::ReplicaSet>(),
        ("coordination.k8s.io", "Lease") => generator.subschema_for::<coordination::v1::Lease>(),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            generator.subschema_for::<apiextensions::v1::CustomResourceDefinition>()
        }
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            generator.subschema_for::<authorization::v1::SelfSubjectAccessReview>()
        }
        _ => return None,
    };
    reference
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .map(String::from)
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
    let mut generator = SchemaSettings::openapi3().into_generator();
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
        let gvks = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        // A built-in kind gets its whole schema, descriptions included
        // (`kubectl explain deployment.spec.replicas`), from k8s-openapi's
        // types; its nested types land in `components.schemas` by their
        // Kubernetes names.
        let name = match builtin_schema(t, &mut generator) {
            Some(name) => {
                for (def, schema) in generator.take_definitions(true) {
                    schemas.insert(def, schema);
                }
                if let Some(schema) = schemas.get_mut(&name) {
                    schema["x-kubernetes-group-version-kind"] = gvks;
                }
                name
            }
            None => {
                let name = definition_name(t);
                let mut schema = match &t.schema {
                    Some(s) => {
                        serde_json::to_value(s).unwrap_or_else(|_| json!({"type": "object"}))
                    }
                    None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                };
                schema["x-kubernetes-group-version-kind"] = gvks;
                schemas.insert(name.clone(), schema);
                name
            }
        };
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
