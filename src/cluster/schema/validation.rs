//! Structural-schema validation of custom objects, worded as kube-apiserver
//! (kube-openapi's validator plus `apiextensions-apiserver`) words it.

use std::{cell::RefCell, collections::HashMap};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrBool,
};
use regex::Regex;
use serde_json::{Value, json};

use super::{
    cel::{RuleTree, evaluate_node_rules, rule_tree_for},
    errors::{FieldError, FieldErrorKind, go_float, go_quote},
    meta::check_embedded,
    structural::{additional_schema, items_schema},
};

/// Compiled `pattern`s kept per thread; CRDs have few distinct patterns.
const PATTERN_CACHE_LIMIT: usize = 1024;

thread_local! {
    static PATTERNS: RefCell<HashMap<String, Result<Regex, String>>> = RefCell::new(HashMap::new());
}

/// Validates `obj` (already pruned and defaulted) against `schema`: types,
/// nullable, required, enum, numeric bounds, lengths, item counts, pattern,
/// formats, int-or-string, list types, `additionalProperties`, `allOf`/`anyOf`/
/// `oneOf`/`not`, and the `x-kubernetes-validations` CEL rules (transition
/// rules see `oldSelf` when `old` is given). An empty result means valid.
///
/// On update (`old` given) errors ratchet as in kube-apiserver 1.30+: a part
/// of the object that is unchanged from `old` is not re-validated, so objects
/// stored before a schema was tightened can still be edited elsewhere.
pub fn validate(schema: &JSONSchemaProps, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    validate_with_rules(schema, &rule_tree_for(schema), obj, old)
}

/// [`validate`] with the schema's CEL rules compiled beforehand.
pub(crate) fn validate_with_rules(
    schema: &JSONSchemaProps,
    rules: &RuleTree,
    obj: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_node(schema, obj, old, "", &mut errors);
    // The apiserver runs the CEL rules as a second pass, after schema
    // validation, and only when no error makes the object unfit for them.
    if rules.is_empty() {
        return errors;
    }
    if errors.iter().any(|e| e.kind.blocks_rules()) {
        errors.push(FieldError::new(
            "",
            FieldErrorKind::Invalid,
            Some(Value::Null),
            RULES_NOT_CHECKED,
        ));
        return errors;
    }
    walk_rules(schema, rules, obj, old, "", &mut errors);
    errors
}

/// What the apiserver adds when schema errors keep the CEL rules from running.
const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object \
    was invalid; correct the existing errors to complete validation";

/// Evaluates CEL rules top-down, each node before its children, correlating
/// the old object by field name, map key, or list-map key for `oldSelf`.
fn walk_rules(
    schema: &JSONSchemaProps,
    rules: &RuleTree,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let unchanged = old.is_some_and(|o| json_equal(o, value));
    if rules.is_empty() || value.is_null() || unchanged || !has_expected_type(schema, value) {
        return;
    }
    errors.extend(evaluate_node_rules(schema, rules, value, old, path));
    match value {
        Value::Object(map) => {
            let properties = schema.properties.as_ref();
            for (key, child_schema) in properties.into_iter().flatten() {
                if let (Some(child), Some(child_rules)) = (map.get(key), rules.property(key)) {
                    let old_child = old.and_then(|o| o.get(key));
                    let at = child_path(path, key);
                    walk_rules(child_schema, child_rules, child, old_child, &at, errors);
                }
            }
            if let (Some(values), Some(value_rules)) =
                (additional_schema(schema), rules.additional())
            {
                for (key, child) in map {
                    if properties.is_some_and(|p| p.contains_key(key)) {
                        continue;
                    }
                    let old_child = old.and_then(|o| o.get(key));
                    let at = child_path(path, key);
                    walk_rules(values, value_rules, child, old_child, &at, errors);
                }
            }
        }
        Value::Array(items) => {
            let (Some(item_schema), Some(item_rules)) = (items_schema(schema), rules.items())
            else {
                return;
            };
            for (i, item) in items.iter().enumerate() {
                let old_item = correlated_item(schema, item, old);
                let at = index_path(path, i);
                walk_rules(item_schema, item_rules, item, old_item, &at, errors);
            }
        }
        _ => {}
    }
}

/// The old list entry matching `item`: by key in map lists, by value in
/// sets; atomic lists do not correlate, as in the apiserver.
fn correlated_item<'a>(
    schema: &JSONSchemaProps,
    item: &Value,
    old: Option<&'a Value>,
) -> Option<&'a Value> {
    let olds = old.and_then(Value::as_array)?;
    match schema.x_kubernetes_list_type.as_deref() {
        Some("map") => {
            let keys = schema.x_kubernetes_list_map_keys.as_deref().unwrap_or(&[]);
            if keys.is_empty() {
                return None;
            }
            olds.iter()
                .find(|o| keys.iter().all(|k| o.get(k) == item.get(k)))
        }
        Some("set") => olds.iter().find(|o| json_equal(o, item)),
        _ => None,
    }
}

fn has_expected_type(schema: &JSONSchemaProps, value: &Value) -> bool {
    if schema.x_kubernetes_int_or_string == Some(true) {
        return is_integer(value) || value.is_string();
    }
    schema
        .type_
        .as_deref()
        .is_none_or(|t| matches_type(t, value))
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The JSON type name go-openapi reports for a value.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        _ => false,
    }
}

fn matches_type(type_: &str, value: &Value) -> bool {
    match type_ {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        "integer" => is_integer(value),
        _ => true,
    }
}

fn type_error(path: &str, expected: &str, value: &Value) -> FieldError {
    let actual = json_type(value);
    FieldError::new(
        path,
        FieldErrorKind::TypeInvalid,
        Some(json!(actual)),
        format!(
            "{path} in body must be of type {expected}: {}",
            go_quote(actual)
        ),
    )
}

/// JSON equality with numbers compared by value (1 == 1.0), as Go's decoder sees them.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

pub(super) fn validate_node(
    schema: &JSONSchemaProps,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    // Ratcheting: an unchanged subtree keeps whatever it was stored with.
    if old.is_some_and(|o| json_equal(o, value)) {
        return;
    }
    if value.is_null() {
        if schema.nullable != Some(true)
            && let Some(type_) = schema.type_.as_deref()
        {
            errors.push(type_error(path, type_, value));
        }
        return;
    }
    if schema.x_kubernetes_int_or_string == Some(true) {
        if !(is_integer(value) || value.is_string()) {
            errors.push(type_error(path, "integer,string", value));
            return;
        }
    } else if let Some(type_) = schema.type_.as_deref()
        && !matches_type(type_, value)
    {
        errors.push(type_error(path, type_, value));
        // The apiserver's enum check runs whatever the type.
        check_enum(schema, value, path, errors);
        return;
    }

    check_enum(schema, value, path, errors);
    match value {
        Value::Number(n) => check_number(schema, value, n, path, errors),
        Value::String(s) => check_string(schema, value, s, path, errors),
        Value::Array(items) => check_array(schema, items, old, path, errors),
        Value::Object(map) => check_object(schema, map, old, path, errors),
        _ => {}
    }
    check_branches(schema, value, path, errors);
}

fn check_enum(schema: &JSONSchemaProps, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(allowed) = schema.enum_.as_ref() else {
        return;
    };
    if allowed.iter().any(|a| json_equal(&a.0, value)) {
        return;
    }
    let listed: Vec<String> = allowed
        .iter()
        .map(|a| match &a.0 {
            Value::String(s) => go_quote(s),
            other => go_quote(&other.to_string()),
        })
        .collect();
    errors.push(FieldError::new(
        path,
        FieldErrorKind::NotSupported,
        Some(value.clone()),
        format!("supported values: {}", listed.join(", ")),
    ));
}

fn check_number(
    schema: &JSONSchemaProps,
    value: &Value,
    n: &serde_json::Number,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(x) = n.as_f64() else {
        return;
    };
    let invalid = |message: String| {
        FieldError::new(path, FieldErrorKind::Invalid, Some(value.clone()), message)
    };
    if let Some(min) = schema.minimum {
        if schema.exclusive_minimum == Some(true) && x <= min {
            errors.push(invalid(format!(
                "{path} in body should be greater than {}",
                go_float(min)
            )));
        } else if x < min {
            errors.push(invalid(format!(
                "{path} in body should be greater than or equal to {}",
                go_float(min)
            )));
        }
    }
    if let Some(max) = schema.maximum {
        if schema.exclusive_maximum == Some(true) && x >= max {
            errors.push(invalid(format!(
                "{path} in body should be less than {}",
                go_float(max)
            )));
        } else if x > max {
            errors.push(invalid(format!(
                "{path} in body should be less than or equal to {}",
                go_float(max)
            )));
        }
    }
    if let Some(factor) = schema.multiple_of
        && factor > 0.0
    {
        let ratio = x / factor;
        if (ratio - ratio.round()).abs() > 1e-9 {
            errors.push(invalid(format!(
                "{path} in body should be a multiple of {}",
                go_float(factor)
            )));
        }
    }
    let out_of_range = match schema.format.as_deref() {
        Some("int32") => n.as_i64().is_none_or(|i| i32::try_from(i).is_err()),
        Some("int64") => {
            n.as_i64().is_none()
                && !n
                    .as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
        }
        _ => false,
    };
    if out_of_range && let Some(format) = schema.format.as_deref() {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TypeInvalid,
            Some(value.clone()),
            format!(
                "{path} in body must be of type {format}: {}",
                go_quote(&n.to_string())
            ),
        ));
    }
}

pub(super) fn compiled_pattern(pattern: &str) -> Result<Regex, String> {
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache.get(pattern) {
            return found.clone();
        }
        if cache.len() >= PATTERN_CACHE_LIMIT {
            cache.clear();
        }
        let compiled = Regex::new(pattern).map_err(|e| e.to_string());
        cache.insert(pattern.to_string(), compiled.clone());
        compiled
    })
}

fn check_string(
    schema: &JSONSchemaProps,
    value: &Value,
    s: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let chars = s.chars().count() as i64;
    if let Some(max) = schema.max_length
        && chars > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TooLong,
            Some(value.clone()),
            format!("may not be more than {max} {unit}"),
        ));
    }
    if let Some(min) = schema.min_length
        && chars < min
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::Invalid,
            Some(value.clone()),
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.pattern.as_deref() {
        match compiled_pattern(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                Some(value.clone()),
                format!("{path} in body should match '{pattern}'"),
            )),
            Err(e) => errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid,
                Some(value.clone()),
                format!("the schema's pattern '{pattern}' does not compile: {e}"),
            )),
        }
    }
    if let Some(format) = schema.format.as_deref()
        && !string_has_format(format, s)
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TypeInvalid,
            Some(value.clone()),
            format!("{path} in body must be of type {format}: {}", go_quote(s)),
        ));
    }
}

/// The string formats the apiserver checks; unknown formats pass, as there.
fn string_has_format(format: &str, s: &str) -> bool {
    const UUID: &str = r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$";
    const BASE64: &str = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";
    const HOSTNAME: &str =
        r"^(?i)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";
    const EMAIL: &str = r"^[^@\s]+@[^@\s]+\.[^@\s]+$";
    const MAC: &str = r"^(?i)([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$";
    let matches = |pattern: &str| compiled_pattern(pattern).is_ok_and(|re| re.is_match(s));
    match format {
        "date-time" | "datetime" => {
            chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        }
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => matches(UUID),
        "byte" => matches(BASE64),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            let bits: Option<u8> = bits.parse().ok();
            match (ip.parse::<std::net::IpAddr>(), bits) {
                (Ok(std::net::IpAddr::V4(_)), Some(b)) => b <= 32,
                (Ok(std::net::IpAddr::V6(_)), Some(b)) => b <= 128,
                _ => false,
            }
        }),
        "hostname" => s.len() <= 253 && matches(HOSTNAME),
        "email" => matches(EMAIL),
        "mac" => matches(MAC),
        _ => true,
    }
}

fn check_array(
    schema: &JSONSchemaProps,
    items: &[Value],
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let len = items.len() as i64;
    check_count(
        len,
        schema.max_items,
        schema.min_items,
        "items",
        path,
        errors,
    );
    let list_type = schema.x_kubernetes_list_type.as_deref();
    let map_keys = schema.x_kubernetes_list_map_keys.as_deref().unwrap_or(&[]);
    let key_of = |item: &Value| -> Value {
        let mut key = serde_json::Map::new();
        for k in map_keys {
            key.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
        }
        Value::Object(key)
    };
    if list_type == Some("set") || schema.unique_items == Some(true) {
        for (i, item) in items.iter().enumerate() {
            if items[..i].iter().any(|earlier| json_equal(earlier, item)) {
                errors.push(FieldError::new(
                    index_path(path, i),
                    FieldErrorKind::Duplicate,
                    Some(item.clone()),
                    "",
                ));
            }
        }
    } else if list_type == Some("map") && !map_keys.is_empty() {
        for (i, item) in items.iter().enumerate() {
            let key = key_of(item);
            if items[..i]
                .iter()
                .any(|earlier| json_equal(&key_of(earlier), &key))
            {
                errors.push(FieldError::new(
                    index_path(path, i),
                    FieldErrorKind::Duplicate,
                    Some(key),
                    "",
                ));
            }
        }
    }
    if let Some(item_schema) = items_schema(schema) {
        for (i, item) in items.iter().enumerate() {
            let old_item = correlated_item(schema, item, old);
            validate_node(item_schema, item, old_item, &index_path(path, i), errors);
        }
    }
}

fn check_object(
    schema: &JSONSchemaProps,
    map: &serde_json::Map<String, Value>,
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if schema.x_kubernetes_embedded_resource == Some(true) {
        check_embedded(map, path, errors);
    }
    for name in schema.required.iter().flatten() {
        if !map.contains_key(name) {
            errors.push(FieldError::new(
                child_path(path, name),
                FieldErrorKind::Required,
                None,
                "",
            ));
        }
    }
    let count = map.len() as i64;
    check_count(
        count,
        schema.max_properties,
        schema.min_properties,
        "properties",
        path,
        errors,
    );
    let properties = schema.properties.as_ref();
    let additional = additional_schema(schema);
    let forbids_others = matches!(
        schema.additional_properties,
        Some(JSONSchemaPropsOrBool::Bool(false))
    );
    // Declared properties in schema (sorted) order, so errors come out deterministically.
    for (key, child_schema) in properties.into_iter().flatten() {
        if let Some(child) = map.get(key) {
            let old_child = old.and_then(|o| o.get(key));
            validate_node(
                child_schema,
                child,
                old_child,
                &child_path(path, key),
                errors,
            );
        }
    }
    for (key, child) in map {
        if properties.is_some_and(|p| p.contains_key(key)) {
            continue;
        }
        if let Some(values) = additional {
            let old_child = old.and_then(|o| o.get(key));
            validate_node(values, child, old_child, &child_path(path, key), errors);
        } else if forbids_others {
            errors.push(FieldError::new(
                child_path(path, key),
                FieldErrorKind::Forbidden,
                None,
                format!("{} in body is a forbidden property", child_path(path, key)),
            ));
        }
    }
}

/// `allOf`/`anyOf`/`oneOf`/`not` carry value validations only in structural
/// schemas; CEL rules inside them are not evaluated, as in the apiserver.
fn check_branches(
    schema: &JSONSchemaProps,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let branch_errors = |branch: &JSONSchemaProps| {
        let mut found = Vec::new();
        validate_node(branch, value, None, path, &mut found);
        found
    };
    for branch in schema.all_of.iter().flatten() {
        errors.extend(branch_errors(branch));
    }
    let composite = |message: String| {
        FieldError::new(path, FieldErrorKind::Invalid, Some(value.clone()), message)
    };
    if let Some(any_of) = schema.any_of.as_ref().filter(|b| !b.is_empty())
        && !any_of.iter().any(|b| branch_errors(b).is_empty())
    {
        errors.push(composite(format!(
            "{path} in body must validate at least one schema (anyOf)"
        )));
    }
    if let Some(one_of) = schema.one_of.as_ref().filter(|b| !b.is_empty()) {
        let passing = one_of
            .iter()
            .filter(|b| branch_errors(b).is_empty())
            .count();
        if passing != 1 {
            errors.push(composite(format!(
                "{path} in body must validate one and only one schema (oneOf)"
            )));
        }
    }
    if let Some(not) = schema.not.as_deref()
        && branch_errors(not).is_empty()
    {
        errors.push(composite(format!(
            "{path} in body must not validate the schema (not)"
        )));
    }
}

/// maxItems/minItems and maxProperties/minProperties, worded as kube-apiserver words them.
fn check_count(
    count: i64,
    max: Option<i64>,
    min: Option<i64>,
    noun: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(max) = max
        && count > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TooMany,
            Some(json!(count)),
            format!("must have at most {max} {unit}"),
        ));
    }
    if let Some(min) = min
        && count < min
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::Invalid,
            Some(json!(count)),
            format!("{path} in body should have at least {min} {noun}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(v: Value) -> JSONSchemaProps {
        serde_json::from_value(v).expect("test schema is valid")
    }

    fn messages(s: &JSONSchemaProps, obj: Value) -> Vec<String> {
        validate(s, &obj, None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn spec_with(field: Value) -> JSONSchemaProps {
        schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"f": field}}}
        }))
    }

    #[test]
    fn minimum_is_worded_like_the_apiserver() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"training": {"type": "object",
                "properties": {"epochs": {"type": "integer", "minimum": 1}}}}}}
        }));
        assert_eq!(
            messages(&s, json!({"spec": {"training": {"epochs": 0}}})),
            vec![
                "spec.training.epochs: Invalid value: 0: spec.training.epochs in body should be greater than or equal to 1"
            ]
        );
        assert!(messages(&s, json!({"spec": {"training": {"epochs": 1}}})).is_empty());
    }

    #[test]
    fn exclusive_bounds_and_maximum_and_multiple_of() {
        let s = spec_with(
            json!({"type": "number", "minimum": 0, "exclusiveMinimum": true,
                                 "maximum": 1, "exclusiveMaximum": true}),
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": 0}})),
            vec!["spec.f: Invalid value: 0: spec.f in body should be greater than 0"]
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": 1}})),
            vec!["spec.f: Invalid value: 1: spec.f in body should be less than 1"]
        );
        assert!(messages(&s, json!({"spec": {"f": 0.5}})).is_empty());
        let s = spec_with(json!({"type": "integer", "maximum": 100, "multipleOf": 5}));
        assert_eq!(
            messages(&s, json!({"spec": {"f": 101}})),
            vec![
                "spec.f: Invalid value: 101: spec.f in body should be less than or equal to 100",
                "spec.f: Invalid value: 101: spec.f in body should be a multiple of 5"
            ]
        );
    }

    #[test]
    fn wrong_types_are_reported_with_the_actual_type() {
        let s = spec_with(json!({"type": "integer"}));
        assert_eq!(
            messages(&s, json!({"spec": {"f": "ten"}})),
            vec![
                r#"spec.f: Invalid value: "string": spec.f in body must be of type integer: "string""#
            ]
        );
        assert_eq!(
            validate(&s, &json!({"spec": {"f": "ten"}}), None)[0].kind,
            FieldErrorKind::TypeInvalid
        );
        assert!(
            messages(&s, json!({"spec": {"f": 3.0}})).is_empty(),
            "integral floats are integers"
        );
        assert_eq!(messages(&s, json!({"spec": {"f": 3.5}})).len(), 1);
        let s = schema(json!({"type": "object", "properties": {"spec": {"type": "object"}}}));
        assert_eq!(
            messages(&s, json!({"spec": [1]})),
            vec![r#"spec: Invalid value: "array": spec in body must be of type object: "array""#]
        );
    }

    #[test]
    fn null_is_rejected_unless_nullable() {
        let s = spec_with(json!({"type": "string"}));
        assert_eq!(
            messages(&s, json!({"spec": {"f": null}})),
            vec![r#"spec.f: Invalid value: "null": spec.f in body must be of type string: "null""#]
        );
        let s = spec_with(json!({"type": "string", "nullable": true}));
        assert!(messages(&s, json!({"spec": {"f": null}})).is_empty());
    }

    #[test]
    fn required_fields_are_named_by_path() {
        let s = schema(json!({
            "type": "object", "required": ["spec"],
            "properties": {"spec": {"type": "object", "required": ["data", "task"],
                "properties": {"data": {"type": "object"}, "task": {"type": "string"}}}}
        }));
        assert_eq!(messages(&s, json!({})), vec!["spec: Required value"]);
        assert_eq!(
            messages(&s, json!({"spec": {}})),
            vec!["spec.data: Required value", "spec.task: Required value"]
        );
        assert_eq!(
            validate(&s, &json!({}), None)[0].kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn schema_errors_that_block_cel_rules_say_the_rules_were_not_checked() {
        let s = schema(json!({"type": "object", "properties": {
            "task": {"type": "string", "enum": ["classification", "regression"]},
            "dropout": {"type": "number", "multipleOf": 0.5,
                        "x-kubernetes-validations": [{"rule": "self < 1.0", "message": "dropout below 1"}]}}}));
        assert_eq!(
            messages(&s, json!({"task": 5, "dropout": 2.0})),
            [
                "task: Invalid value: \"integer\": task in body must be of type string: \"integer\"",
                "task: Unsupported value: 5: supported values: \"classification\", \"regression\"",
                format!("<nil>: Invalid value: null: {RULES_NOT_CHECKED}").as_str(),
            ]
        );
        // A range error does not block the rules (as in the apiserver).
        let both = messages(&s, json!({"dropout": 1.25}));
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[0].contains("multiple of 0.5"), "{both:?}");
        assert_eq!(
            both[1],
            "dropout: Invalid value: \"number\": dropout below 1"
        );
    }

    #[test]
    fn enum_lists_supported_values() {
        let s = spec_with(json!({"type": "string", "enum": ["classification", "regression"]}));
        assert_eq!(
            messages(&s, json!({"spec": {"f": "ranking"}})),
            vec![
                r#"spec.f: Unsupported value: "ranking": supported values: "classification", "regression""#
            ]
        );
        let s = spec_with(json!({"type": "integer", "enum": [1, 2]}));
        assert_eq!(
            messages(&s, json!({"spec": {"f": 3}})),
            vec![r#"spec.f: Unsupported value: 3: supported values: "1", "2""#]
        );
        assert!(messages(&s, json!({"spec": {"f": 2}})).is_empty());
    }

    #[test]
    fn string_lengths_and_pattern() {
        let s = spec_with(
            json!({"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"}),
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": "a"}})),
            vec![r#"spec.f: Invalid value: "a": spec.f in body should be at least 2 chars long"#]
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": "abcdef"}})),
            vec!["spec.f: Too long: may not be more than 5 bytes"]
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": "ab1"}})),
            vec![r#"spec.f: Invalid value: "ab1": spec.f in body should match '^[a-z]+$'"#]
        );
        assert!(messages(&s, json!({"spec": {"f": "abc"}})).is_empty());
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_reported_not_panicked() {
        let s = spec_with(json!({"type": "string", "pattern": "([a-z"}));
        let errors = messages(&s, json!({"spec": {"f": "x"}}));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("does not compile"), "{}", errors[0]);
    }

    #[test]
    fn formats_int32_date_time_and_friends() {
        let s = spec_with(json!({"type": "integer", "format": "int32"}));
        assert_eq!(
            messages(&s, json!({"spec": {"f": 3_000_000_000_i64}})),
            vec![
                r#"spec.f: Invalid value: 3000000000: spec.f in body must be of type int32: "3000000000""#
            ]
        );
        assert!(messages(&s, json!({"spec": {"f": -5}})).is_empty());
        let s = spec_with(json!({"type": "string", "format": "date-time"}));
        assert!(messages(&s, json!({"spec": {"f": "2026-01-02T03:04:05Z"}})).is_empty());
        assert_eq!(
            messages(&s, json!({"spec": {"f": "yesterday"}})),
            vec![
                r#"spec.f: Invalid value: "yesterday": spec.f in body must be of type date-time: "yesterday""#
            ]
        );
        for (format, good, bad) in [
            ("date", "2026-11-26", "26/11/2026"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123"),
            ("byte", "aGVsbG8=", "not base64!"),
            ("ipv4", "10.0.0.1", "10.0.0.256"),
            ("ipv6", "::1", "1:::2"),
            ("cidr", "10.0.0.0/8", "10.0.0.0/33"),
            ("hostname", "api.example.com", "-bad-"),
        ] {
            let s = spec_with(json!({"type": "string", "format": format}));
            assert!(
                messages(&s, json!({"spec": {"f": good}})).is_empty(),
                "{format} {good}"
            );
            assert_eq!(
                messages(&s, json!({"spec": {"f": bad}})).len(),
                1,
                "{format} {bad}"
            );
        }
        let s = spec_with(json!({"type": "string", "format": "some-unknown-format"}));
        assert!(messages(&s, json!({"spec": {"f": "anything"}})).is_empty());
    }

    #[test]
    fn int_or_string_accepts_both_and_nothing_else() {
        let s = spec_with(json!({"x-kubernetes-int-or-string": true}));
        assert!(messages(&s, json!({"spec": {"f": 80}})).is_empty());
        assert!(messages(&s, json!({"spec": {"f": "http"}})).is_empty());
        assert_eq!(
            messages(&s, json!({"spec": {"f": true}})),
            vec![
                r#"spec.f: Invalid value: "boolean": spec.f in body must be of type integer,string: "boolean""#
            ]
        );
    }

    #[test]
    fn item_counts_and_indexed_paths_into_lists() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"rollout": {"type": "object", "properties": {
                "steps": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object",
                    "properties": {"weight": {"type": "integer", "minimum": 0, "maximum": 100}}}}}}}}}
        }));
        assert_eq!(
            messages(
                &s,
                json!({"spec": {"rollout": {"steps": [{"weight": 5}, {"weight": 500}]}}})
            ),
            vec![
                "spec.rollout.steps[1].weight: Invalid value: 500: spec.rollout.steps[1].weight in body should be less than or equal to 100"
            ]
        );
        assert_eq!(
            messages(
                &s,
                json!({"spec": {"rollout": {"steps": [{}, {}, {}, {}]}}})
            ),
            vec!["spec.rollout.steps: Too many: 4: must have at most 3 items"]
        );
        assert_eq!(
            messages(&s, json!({"spec": {"rollout": {"steps": []}}})),
            vec![
                "spec.rollout.steps: Invalid value: 0: spec.rollout.steps in body should have at least 1 items"
            ]
        );
    }

    #[test]
    fn set_and_map_lists_reject_duplicates() {
        let s = spec_with(
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}),
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": ["a", "b", "a"]}})),
            vec![r#"spec.f[2]: Duplicate value: "a""#]
        );
        let s = spec_with(json!({"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}));
        assert_eq!(
            messages(
                &s,
                json!({"spec": {"f": [{"name": "a", "v": 1}, {"name": "a", "v": 2}]}})
            ),
            vec![r#"spec.f[1]: Duplicate value: map[string]interface {}{"name":"a"}"#]
        );
    }

    #[test]
    fn map_values_and_property_counts() {
        let s = spec_with(json!({"type": "object", "maxProperties": 2,
            "additionalProperties": {"type": "number", "minimum": 0}}));
        assert_eq!(
            messages(&s, json!({"spec": {"f": {"red": -1}}})),
            vec![
                "spec.f.red: Invalid value: -1: spec.f.red in body should be greater than or equal to 0"
            ]
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": {"a": 1, "b": 2, "c": 3}}})),
            vec!["spec.f: Too many: 3: must have at most 2 items"]
        );
        let s = spec_with(
            json!({"type": "object", "properties": {"a": {"type": "string"}},
            "additionalProperties": false}),
        );
        assert_eq!(
            messages(&s, json!({"spec": {"f": {"a": "x", "b": 1}}})),
            vec!["spec.f.b: Forbidden: spec.f.b in body is a forbidden property"]
        );
    }

    #[test]
    fn any_of_one_of_all_of_and_not() {
        let s = spec_with(json!({"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]}));
        assert!(messages(&s, json!({"spec": {"f": 12}})).is_empty());
        assert_eq!(
            messages(&s, json!({"spec": {"f": 5}})),
            vec![
                "spec.f: Invalid value: 5: spec.f in body must validate at least one schema (anyOf)"
            ]
        );
        let s = spec_with(json!({"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]}));
        assert!(messages(&s, json!({"spec": {"f": 20}})).is_empty());
        assert_eq!(messages(&s, json!({"spec": {"f": 5}})).len(), 1);
        let s =
            spec_with(json!({"type": "integer", "allOf": [{"minimum": 0}], "not": {"enum": [3]}}));
        assert_eq!(messages(&s, json!({"spec": {"f": -1}})).len(), 1);
        assert_eq!(
            messages(&s, json!({"spec": {"f": 3}})),
            vec!["spec.f: Invalid value: 3: spec.f in body must not validate the schema (not)"]
        );
    }

    #[test]
    fn cel_rules_at_every_level_with_paths_and_transition_rules() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "!has(self.gpu) || self.gpu <= 8", "message": "at most 8 GPUs", "fieldPath": ".gpu"}
                ],
                "properties": {
                    "gpu": {"type": "integer"},
                    "task": {"type": "string", "x-kubernetes-validations": [
                        {"rule": "self == oldSelf", "message": "task is immutable"}]},
                    "steps": {"type": "array", "items": {"type": "object",
                        "properties": {"weight": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.weight > 0", "message": "weight must be positive"}]}}
                }
            }}
        }));
        let obj = json!({"spec": {"gpu": 9, "task": "regression", "steps": [{"weight": 1}, {"weight": 0}]}});
        assert_eq!(
            messages(&s, obj.clone()),
            vec![
                "spec.gpu: Invalid value: \"object\": at most 8 GPUs",
                "spec.steps[1]: Invalid value: \"object\": weight must be positive",
            ]
        );
        let old = json!({"spec": {"gpu": 1, "task": "classification", "steps": []}});
        let errors: Vec<String> = validate(&s, &obj, Some(&old))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errors.contains(&"spec.task: Invalid value: \"string\": task is immutable".to_string()),
            "{errors:?}"
        );
    }

    #[test]
    fn unchanged_invalid_fields_ratchet_on_update_but_changed_ones_are_checked() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "required": ["data"], "properties": {
                "epochs": {"type": "integer", "minimum": 1},
                "data": {"type": "string"},
                "note": {"type": "string"},
                "steps": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "integer", "maximum": 100}},
                              "x-kubernetes-validations": [{"rule": "self.weight > 0", "message": "weight must be positive"}]}}
            }}}
        }));
        // Stored before the schema was tightened: epochs 0, no data, a bad step.
        let stored = json!({"spec": {"epochs": 0, "note": "a", "steps": [{"name": "x", "weight": 500}, {"name": "y", "weight": 0}]}});
        assert_eq!(
            validate(&s, &stored, None).len(),
            4,
            "fresh creates are fully checked"
        );
        let mut edit = stored.clone();
        edit["spec"]["note"] = json!("b");
        edit["spec"]["steps"] = json!([{"name": "y", "weight": 0}, {"name": "x", "weight": 500}]);
        // spec changed (note) so its own Required check runs; the unchanged fields and reordered
        // map-list entries ratchet.
        assert_eq!(
            validate(&s, &edit, Some(&stored))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "spec.data: Required value".to_string(),
                // A missing field keeps the CEL rules from running, as in the apiserver.
                format!("<nil>: Invalid value: null: {RULES_NOT_CHECKED}"),
            ]
        );
        edit["spec"]["epochs"] = json!(-1);
        edit["spec"]["steps"][0]["weight"] = json!(-2);
        let messages: Vec<String> = validate(&s, &edit, Some(&stored))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            vec![
                "spec.data: Required value".to_string(),
                "spec.epochs: Invalid value: -1: spec.epochs in body should be greater than or equal to 1"
                    .to_string(),
                // The missing field blocks the CEL rule on the changed step.
                format!("<nil>: Invalid value: null: {RULES_NOT_CHECKED}"),
            ]
        );
    }
}
