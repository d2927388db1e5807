//! The OpenAPI v3 document the apiserver serves for a CRD's group-version at
//! `/openapi/v3/apis/{group}/{version}`, which kubectl reads for `explain`
//! and field validation.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::errors::SchemaError;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// The component name the apiserver gives a kind: its group reversed, then
/// version and kind, e.g. `dev.driftline.v1alpha1.Model`.
pub(crate) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// Builds the OpenAPI v3 document for one served version of a CRD: the
/// kind and its list as components (with `x-kubernetes-group-version-kind`),
/// ObjectMeta/ListMeta, and the collection and item paths.
pub fn openapi_v3_for_crd(
    crd: &CustomResourceDefinition,
    version: &str,
) -> Result<Value, SchemaError> {
    let spec = &crd.spec;
    let crd_name = crd.metadata.name.clone().unwrap_or_default();
    let found = super::crd_version(crd, version)?;
    let Some(schema) = found
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        return Err(SchemaError::MissingSchema {
            crd: crd_name,
            version: version.to_string(),
        });
    };
    let kind = &spec.names.kind;
    let list_kind = spec
        .names
        .list_kind
        .clone()
        .unwrap_or_else(|| format!("{kind}List"));
    let group = &spec.group;
    let api_version = format!("{group}/{version}");
    let item_name = definition_name(group, version, kind);
    let list_name = definition_name(group, version, &list_kind);

    let mut item = serde_json::to_value(schema).map_err(|source| SchemaError::SchemaJson {
        path: "openAPIV3Schema".to_string(),
        source,
    })?;
    if let Value::Object(map) = &mut item {
        let properties = map.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(props) = properties {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {}}),
            );
        }
        map.insert("type".into(), json!("object"));
        map.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": group, "kind": kind, "version": version}]),
        );
    }
    let list = json!({
        "type": "object",
        "description": format!("{list_kind} is a list of {kind}"),
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item_name}")}},
            "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{LIST_META}")}], "default": {}},
        },
        "x-kubernetes-group-version-kind": [{"group": group, "kind": list_kind, "version": version}],
    });

    let plural = &spec.names.plural;
    let namespaced = spec.scope == "Namespaced";
    let collection = if namespaced {
        format!("/apis/{api_version}/namespaces/{{namespace}}/{plural}")
    } else {
        format!("/apis/{api_version}/{plural}")
    };
    let item_ref = json!({"$ref": format!("#/components/schemas/{item_name}")});
    let list_ref = json!({"$ref": format!("#/components/schemas/{list_name}")});
    let content = |schema: &Value| json!({"application/json": {"schema": schema}});
    let gvk = json!({"group": group, "version": version, "kind": kind});
    // kubectl looks for `fieldValidation` to know the server validates fields itself.
    let parameters = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
    ]);
    let operation = |verb: &str, action: &str, body: &Value| {
        json!({
            "operationId": format!("{verb}{kind}"),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": parameters,
            "responses": {"200": {"description": "OK", "content": content(body)}},
        })
    };
    let mut paths = serde_json::Map::new();
    paths.insert(
        collection.clone(),
        json!({
            "get": operation("list", "list", &list_ref),
            "post": operation("create", "post", &item_ref),
        }),
    );
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": operation("read", "get", &item_ref),
            "put": operation("replace", "put", &item_ref),
            "patch": operation("patch", "patch", &item_ref),
            "delete": operation("delete", "delete", &json!({"type": "object"})),
        }),
    );
    let has_status = found
        .subresources
        .as_ref()
        .is_some_and(|s| s.status.is_some());
    if has_status {
        paths.insert(
            format!("{collection}/{{name}}/status"),
            json!({
                "get": operation("read", "get", &item_ref),
                "put": operation("replace", "put", &item_ref),
                "patch": operation("patch", "patch", &item_ref),
            }),
        );
    }

    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": {
            item_name: item,
            list_name: list,
            OBJECT_META: object_meta_schema(),
            LIST_META: list_meta_schema(),
        }},
    }))
}

fn object_meta_schema() -> Value {
    let string = json!({"type": "string"});
    let string_map =
        json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}});
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": string, "generateName": string, "namespace": string, "uid": string,
            "resourceVersion": string,
            "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "labels": string_map, "annotations": string_map,
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set"},
            "ownerReferences": {"type": "array", "items": {"type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {"apiVersion": string, "kind": string, "name": string, "uid": string,
                    "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"}}},
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
            "managedFields": {"type": "array", "items": {"type": "object",
                "properties": {"manager": string, "operation": string, "apiVersion": string,
                    "time": {"type": "string", "format": "date-time"}, "fieldsType": string,
                    "fieldsV1": {"type": "object"}, "subresource": string}}},
        },
    })
}

fn list_meta_schema() -> Value {
    json!({
        "type": "object",
        "description": "ListMeta describes metadata that synthetic resources must have.",
        "properties": {
            "continue": {"type": "string"},
            "remainingItemCount": {"type": "integer", "format": "int64"},
            "resourceVersion": {"type": "string"},
            "selfLink": {"type": "string"},
        },
    })
}
