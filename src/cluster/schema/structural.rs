//! Pruning of unknown fields and defaulting, with the semantics of
//! kube-apiserver's structural schemas (`apiextensions-apiserver/pkg/apiserver/schema`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

/// Fields every object (and every embedded resource) keeps whatever its schema says.
const OBJECT_ENVELOPE: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The schema of a list's items; structural schemas allow only one.
pub(crate) fn items_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(s) => Some(s),
        JSONSchemaPropsOrArray::Schemas(list) => list.first(),
    }
}

/// The schema of a map's values, when `additionalProperties` is a schema.
pub(crate) fn additional_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(s) => Some(s),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

/// Whether unknown fields below this node are kept.
fn preserves_unknown(schema: &JSONSchemaProps) -> bool {
    schema.x_kubernetes_preserve_unknown_fields == Some(true)
        || matches!(
            schema.additional_properties,
            Some(JSONSchemaPropsOrBool::Bool(true))
        )
}

/// The fields ObjectMeta has; anything else under `metadata` is dropped.
const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Drops fields the schema does not declare, as the apiserver does before
/// validating: `apiVersion`, `kind` and `metadata` of the object (and of any
/// `x-kubernetes-embedded-resource`) stay, `metadata` keeps only ObjectMeta's
/// fields, and `x-kubernetes-preserve-unknown-fields` keeps unknown fields at
/// that level while known ones are still pruned below.
pub fn prune(schema: &JSONSchemaProps, obj: &mut Value) {
    prune_node(schema, obj, true, "", &mut None);
}

/// The paths [`prune`] would drop, sorted, e.g. `spec.training.epoch`, so a server can
/// answer `fieldValidation=Strict` (400 `unknown field "spec.training.epoch"`)
/// or `Warn` (a `Warning` header per field) as the apiserver does.
pub fn unknown_fields(schema: &JSONSchemaProps, obj: &Value) -> Vec<String> {
    let mut copy = obj.clone();
    let mut found = Some(Vec::new());
    prune_node(schema, &mut copy, true, "", &mut found);
    let mut paths = found.unwrap_or_default();
    paths.sort();
    paths
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_node(
    schema: &JSONSchemaProps,
    value: &mut Value,
    keeps_envelope: bool,
    path: &str,
    dropped: &mut Option<Vec<String>>,
) {
    match value {
        Value::Object(map) => {
            let properties = schema.properties.as_ref();
            let additional = additional_schema(schema);
            if !preserves_unknown(schema) && additional.is_none() {
                map.retain(|key, _| {
                    let keep = (keeps_envelope && OBJECT_ENVELOPE.contains(&key.as_str()))
                        || properties.is_some_and(|p| p.contains_key(key));
                    if !keep && let Some(list) = dropped.as_mut() {
                        list.push(join(path, key));
                    }
                    keep
                });
            }
            for (key, child) in map.iter_mut() {
                let at = join(path, key);
                if keeps_envelope && OBJECT_ENVELOPE.contains(&key.as_str()) {
                    if key == "metadata" {
                        prune_object_meta(child, &at, dropped);
                    } else if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                        prune_node(child_schema, child, false, &at, dropped);
                    }
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    let embedded = child_schema.x_kubernetes_embedded_resource == Some(true);
                    prune_node(child_schema, child, embedded, &at, dropped);
                } else if let Some(values) = additional {
                    let embedded = values.x_kubernetes_embedded_resource == Some(true);
                    prune_node(values, child, embedded, &at, dropped);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = items_schema(schema) {
                let embedded = item_schema.x_kubernetes_embedded_resource == Some(true);
                for (i, item) in items.iter_mut().enumerate() {
                    let at = format!("{path}[{i}]");
                    prune_node(item_schema, item, embedded, &at, dropped);
                }
            }
        }
        _ => {}
    }
}

fn prune_object_meta(meta: &mut Value, path: &str, dropped: &mut Option<Vec<String>>) {
    if let Value::Object(map) = meta {
        map.retain(|key, _| {
            let keep = OBJECT_META_FIELDS.contains(&key.as_str());
            if !keep && let Some(list) = dropped.as_mut() {
                list.push(join(path, key));
            }
            keep
        });
    }
}

/// Fills in `default` values recursively, as the apiserver does on every
/// read and write: a missing field (or a `null` one that is not nullable)
/// gets its default, and the default itself is defaulted further. A `null`
/// that is neither nullable nor defaulted is dropped, as the apiserver does.
pub fn apply_defaults(schema: &JSONSchemaProps, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            if let Some(properties) = &schema.properties {
                for (key, prop) in properties {
                    let is_null_not_nullable =
                        map.get(key).is_some_and(Value::is_null) && prop.nullable != Some(true);
                    match &prop.default {
                        Some(default) if !map.contains_key(key) || is_null_not_nullable => {
                            map.insert(key.clone(), default.0.clone());
                        }
                        None if is_null_not_nullable => {
                            map.remove(key);
                        }
                        _ => {}
                    }
                }
            }
            let additional = additional_schema(schema);
            for (key, child) in map.iter_mut() {
                if let Some(prop) = schema.properties.as_ref().and_then(|p| p.get(key)) {
                    apply_defaults(prop, child);
                } else if let Some(values) = additional {
                    apply_defaults(values, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = items_schema(schema) {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> JSONSchemaProps {
        serde_json::from_value(v).expect("test schema is valid")
    }

    #[test]
    fn prune_drops_unknown_fields_but_keeps_the_object_envelope() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"epochs": {"type": "integer"}}}}
        }));
        let mut obj = json!({
            "apiVersion": "driftline.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "m", "labels": {"a": "b"}},
            "spec": {"epochs": 3, "epoch": 4},
            "extra": true
        });
        prune(&s, &mut obj);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "driftline.dev/v1alpha1", "kind": "Model",
                "metadata": {"name": "m", "labels": {"a": "b"}},
                "spec": {"epochs": 3}
            })
        );
    }

    #[test]
    fn metadata_keeps_only_object_meta_fields() {
        let s = schema(json!({"type": "object", "properties": {}}));
        let mut obj = json!({"metadata": {"name": "m", "labels": {"a": "b"}, "colour": "red"}});
        prune(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"metadata": {"name": "m", "labels": {"a": "b"}}})
        );
    }

    #[test]
    fn unknown_fields_lists_what_prune_drops_with_paths() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "steps": {"type": "array", "items": {"type": "object", "properties": {"weight": {"type": "integer"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}}
        }));
        let obj = json!({
            "apiVersion": "v", "kind": "K", "metadata": {"name": "m", "bogus": 1},
            "spec": {"epoch": 3, "steps": [{"weight": 1}, {"weight": 2, "pause": "1m"}], "extra": {"free": true}},
            "top": 1
        });
        assert_eq!(
            unknown_fields(&s, &obj),
            vec!["metadata.bogus", "spec.epoch", "spec.steps[1].pause", "top"]
        );
        assert!(unknown_fields(&s, &json!({"spec": {"steps": []}})).is_empty());
    }

    #[test]
    fn prune_keeps_unknown_fields_under_preserve_but_prunes_known_children() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}
            }}
        }));
        let mut obj = json!({"spec": {"anything": {"x": 1}, "known": {"a": "y", "b": "z"}}});
        prune(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"anything": {"x": 1}, "known": {"a": "y"}}})
        );
    }

    #[test]
    fn prune_recurses_into_list_items_and_map_values() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "steps": {"type": "array", "items": {"type": "object", "properties": {"weight": {"type": "integer"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}}
            }
        }));
        let mut obj = json!({
            "steps": [{"weight": 5, "pause": "1m"}, {"weight": 10}],
            "labels": {"a": {"v": "1", "w": "2"}}
        });
        prune(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"steps": [{"weight": 5}, {"weight": 10}], "labels": {"a": {"v": "1"}}})
        );
    }

    #[test]
    fn prune_keeps_envelope_of_embedded_resources_only() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "properties": {"spec": {"type": "object", "properties": {}}}},
                "plain": {"type": "object", "properties": {}}
            }
        }));
        let mut obj = json!({
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}, "junk": 1},
            "plain": {"apiVersion": "v1", "kind": "Pod"}
        });
        prune(&s, &mut obj);
        assert_eq!(
            obj,
            json!({
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
                "plain": {}
            })
        );
    }

    #[test]
    fn defaults_fill_missing_fields_recursively_including_inside_defaults() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "epochs": {"type": "integer", "default": 10},
                    "optimizer": {"type": "object", "default": {"name": "adam"},
                                  "properties": {"name": {"type": "string"}, "lr": {"type": "number", "default": 0.001}}}
                }
            }}
        }));
        let mut obj = json!({});
        apply_defaults(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"epochs": 10, "optimizer": {"name": "adam", "lr": 0.001}}})
        );
    }

    #[test]
    fn defaults_do_not_overwrite_set_values_and_apply_in_lists_and_maps() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "epochs": {"type": "integer", "default": 10},
                "steps": {"type": "array", "items": {"type": "object",
                          "properties": {"pause": {"type": "string", "default": "5m"}}}},
                "slices": {"type": "object", "additionalProperties": {"type": "object",
                           "properties": {"min": {"type": "number", "default": 0.5}}}}
            }
        }));
        let mut obj = json!({"epochs": 3, "steps": [{}, {"pause": "1m"}], "slices": {"red": {}}});
        apply_defaults(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"epochs": 3, "steps": [{"pause": "5m"}, {"pause": "1m"}], "slices": {"red": {"min": 0.5}}})
        );
    }

    #[test]
    fn null_gets_default_unless_nullable_and_undefaulted_null_is_dropped() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer", "default": 1},
                "b": {"type": "integer", "nullable": true, "default": 2},
                "c": {"type": "integer"},
                "d": {"type": "integer", "nullable": true}
            }
        }));
        let mut obj = json!({"a": null, "b": null, "c": null, "d": null});
        apply_defaults(&s, &mut obj);
        assert_eq!(obj, json!({"a": 1, "b": null, "d": null}));
    }
}
