//! A CRD's schema checked as a definition, when the CRD is written: known
//! types, stated types (structural schemas), list types, patterns that
//! compile, CEL rules that compile, defaults valid against their schema.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::json;

use super::{
    cel::compile_check,
    errors::{FieldError, FieldErrorKind, go_quote},
    structural::{additional_schema, items_schema},
    validation::{compiled_pattern, validate_node},
};

/// Checks a CRD's schema itself, as the apiserver does when the CRD is
/// created: every `type` is known, every `pattern` compiles, and every CEL
/// `rule` and `messageExpression` compiles, every field states its type (the
/// structural-schema rule), the root is an object, and every `default` is
/// valid against its own schema. `base` is where the schema sits, e.g.
/// `spec.versions[0].schema.openAPIV3Schema`.
pub fn validate_schema_definition(schema: &JSONSchemaProps, base: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if schema.type_.as_deref() != Some("object") {
        errors.push(FieldError::new(
            format!("{base}.type"),
            FieldErrorKind::Invalid,
            Some(json!(schema.type_.clone().unwrap_or_default())),
            "must be object",
        ));
    }
    check_definition(schema, base, &mut errors);
    errors
}

/// Structural schemas name a type for every field and list item, unless the
/// node is int-or-string or keeps unknown fields.
fn check_type_stated(
    schema: &JSONSchemaProps,
    path: &str,
    what: &str,
    errors: &mut Vec<FieldError>,
) {
    let exempt = schema.x_kubernetes_int_or_string == Some(true)
        || schema.x_kubernetes_preserve_unknown_fields == Some(true);
    if schema.type_.as_deref().is_none_or(str::is_empty) && !exempt {
        errors.push(FieldError::new(
            format!("{path}.type"),
            FieldErrorKind::Required,
            None,
            format!("must not be empty for specified {what}"),
        ));
    }
}

/// Map lists need object items whose keys are always present; sets need
/// scalar items, as the apiserver requires of `x-kubernetes-list-type`.
fn check_list_type(
    list: &JSONSchemaProps,
    item: &JSONSchemaProps,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    match list.x_kubernetes_list_type.as_deref() {
        Some("map") => {
            let keys = list
                .x_kubernetes_list_map_keys
                .as_deref()
                .unwrap_or_default();
            if keys.is_empty() {
                errors.push(FieldError::new(
                    format!("{path}.x-kubernetes-list-map-keys"),
                    FieldErrorKind::Required,
                    None,
                    "must not be empty if x-kubernetes-list-type is map",
                ));
            }
            if item.type_.as_deref() != Some("object") {
                errors.push(FieldError::new(
                    format!("{path}.items.type"),
                    FieldErrorKind::Invalid,
                    Some(json!(item.type_.clone().unwrap_or_default())),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
                return;
            }
            let required = item.required.as_deref().unwrap_or_default();
            for key in keys {
                let property = item.properties.as_ref().and_then(|p| p.get(key));
                let key_path = format!("{path}.items.properties[{key}]");
                match property {
                    None => errors.push(FieldError::new(
                        format!("{path}.x-kubernetes-list-map-keys"),
                        FieldErrorKind::Invalid,
                        Some(json!(key)),
                        "entries must all be names of item properties",
                    )),
                    Some(p) if p.default.is_none() && !required.contains(key) => {
                        errors.push(FieldError::new(
                            format!("{key_path}.default"),
                            FieldErrorKind::Required,
                            None,
                            "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Some("set") if matches!(item.type_.as_deref(), Some("object" | "array")) => {
            errors.push(FieldError::new(
                format!("{path}.items.type"),
                FieldErrorKind::Invalid,
                Some(json!(item.type_.clone().unwrap_or_default())),
                "must be a scalar type if parent array's x-kubernetes-list-type is set",
            ));
        }
        Some("set" | "atomic") | None => {}
        Some(other) => {
            let listed = ["atomic", "set", "map"].map(go_quote).join(", ");
            errors.push(FieldError::new(
                format!("{path}.x-kubernetes-list-type"),
                FieldErrorKind::NotSupported,
                Some(json!(other)),
                format!("supported values: {listed}"),
            ));
        }
    }
}

fn check_definition(schema: &JSONSchemaProps, path: &str, errors: &mut Vec<FieldError>) {
    const TYPES: [&str; 6] = ["object", "array", "string", "integer", "number", "boolean"];
    if let Some(type_) = schema.type_.as_deref()
        && !TYPES.contains(&type_)
    {
        let listed: Vec<String> = TYPES.iter().map(|t| go_quote(t)).collect();
        errors.push(FieldError::new(
            format!("{path}.type"),
            FieldErrorKind::NotSupported,
            Some(json!(type_)),
            format!("supported values: {}", listed.join(", ")),
        ));
    }
    if let Some(pattern) = schema.pattern.as_deref()
        && let Err(e) = compiled_pattern(pattern)
    {
        errors.push(FieldError::new(
            format!("{path}.pattern"),
            FieldErrorKind::Invalid,
            Some(json!(pattern)),
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    for (i, rule) in schema.x_kubernetes_validations.iter().flatten().enumerate() {
        let rule_path = format!("{path}.x-kubernetes-validations[{i}]");
        if let Err(e) = compile_check(&rule.rule) {
            errors.push(FieldError::new(
                format!("{rule_path}.rule"),
                FieldErrorKind::Invalid,
                Some(json!(rule.rule)),
                format!("compilation failed: {e}"),
            ));
        }
        if let Some(expression) = rule.message_expression.as_deref()
            && let Err(e) = compile_check(expression)
        {
            errors.push(FieldError::new(
                format!("{rule_path}.messageExpression"),
                FieldErrorKind::Invalid,
                Some(json!(expression)),
                format!("messageExpression compilation failed: {e}"),
            ));
        }
    }
    if let Some(default) = schema.default.as_ref() {
        let mut pruned = default.0.clone();
        super::structural::prune(schema, &mut pruned);
        let at = format!("{path}.default");
        if pruned != default.0 {
            errors.push(FieldError::new(
                at.clone(),
                FieldErrorKind::Invalid,
                Some(default.0.clone()),
                "must not have unknown fields",
            ));
        }
        validate_node(schema, &pruned, None, &at, errors);
    }
    for (name, child) in schema.properties.iter().flatten() {
        let at = format!("{path}.properties[{name}]");
        check_type_stated(child, &at, "object fields", errors);
        check_definition(child, &at, errors);
    }
    if let Some(item) = items_schema(schema) {
        let at = format!("{path}.items");
        check_type_stated(item, &at, "array items", errors);
        check_list_type(schema, item, path, errors);
        check_definition(item, &at, errors);
    }
    if let Some(values) = additional_schema(schema) {
        let at = format!("{path}.additionalProperties");
        check_type_stated(values, &at, "object fields", errors);
        check_definition(values, &at, errors);
    }
    for (keyword, branches) in [
        ("allOf", &schema.all_of),
        ("anyOf", &schema.any_of),
        ("oneOf", &schema.one_of),
    ] {
        for (i, branch) in branches.iter().flatten().enumerate() {
            check_definition(branch, &format!("{path}.{keyword}[{i}]"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn schema(v: Value) -> JSONSchemaProps {
        serde_json::from_value(v).expect("test schema is valid")
    }

    #[test]
    fn schema_definition_check_finds_bad_types_patterns_and_rules() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "a": {"type": "strng"},
                "b": {"type": "string", "pattern": "(["},
                "c": {"type": "integer", "x-kubernetes-validations": [
                    {"rule": "self >", "messageExpression": "'x' +"}]}
            }}}
        }));
        let errors = validate_schema_definition(&s, "spec.versions[0].schema.openAPIV3Schema");
        let fields: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].type",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[b].pattern",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[c].x-kubernetes-validations[0].rule",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[c].x-kubernetes-validations[0].messageExpression",
            ]
        );
        let fine = schema(
            json!({"type": "object", "properties": {"n": {"type": "integer",
            "x-kubernetes-validations": [{"rule": "self > 0"}]}}}),
        );
        assert!(validate_schema_definition(&fine, "x").is_empty());
    }

    #[test]
    fn schema_definition_requires_types_and_valid_defaults() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "untyped": {"properties": {}},
                "list": {"type": "array", "items": {"minimum": 1}},
                "free": {"x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true},
                "epochs": {"type": "integer", "minimum": 1, "default": 0},
                "opts": {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}}
            }
        }));
        let errors: Vec<String> = validate_schema_definition(&s, "s")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "s.properties[epochs].default: Invalid value: 0: s.properties[epochs].default in body should be greater than or equal to 1",
                "s.properties[list].items.type: Required value: must not be empty for specified array items",
                "s.properties[opts].default: Invalid value: map[string]interface {}{\"a\":\"x\", \"b\":1}: must not have unknown fields",
                "s.properties[untyped].type: Required value: must not be empty for specified object fields",
            ]
        );
        let lists = schema(json!({
            "type": "object",
            "properties": {
                "m": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "ok": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                       "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
                "s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}},
                "w": {"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}
            }
        }));
        let errors: Vec<String> = validate_schema_definition(&lists, "s")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "s.properties[m].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                "s.properties[s].items.type: Invalid value: \"object\": must be a scalar type if parent array's x-kubernetes-list-type is set",
                "s.properties[w].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\"",
            ]
        );
        let not_object = schema(json!({"type": "array"}));
        assert_eq!(
            validate_schema_definition(&not_object, "s")[0].to_string(),
            "s.type: Invalid value: \"array\": must be object"
        );
    }
}
