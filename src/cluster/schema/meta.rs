//! ObjectMeta and embedded-resource checks the apiserver applies to every
//! object, worded as apimachinery's validation words them.

use serde_json::{Value, json};

use super::errors::{FieldError, FieldErrorKind};

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower)
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
}

/// Dot-separated RFC 1123 labels, at most 253 characters.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(is_dns1123_label)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_qualified_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Problems with a label key (`prefix/name`), as apimachinery words them.
fn qualified_name_problems(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut problems = Vec::new();
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        problems.push("name part must be no more than 63 characters".to_string());
    } else if !is_qualified_part(name) {
        problems.push(QUALIFIED_NAME.to_string());
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            problems.push("prefix part must be non-empty".to_string());
        } else if !is_dns1123_subdomain(prefix) {
            problems.push(format!("prefix part {DNS1123_SUBDOMAIN}"));
        }
    }
    problems
}

/// Refuses finalizers added to an object that is being deleted, as the
/// apiserver does on every update (`ValidateObjectMetaUpdate`).
pub fn validate_finalizers_update(meta: &Value, old_meta: &Value) -> Vec<FieldError> {
    if old_meta.get("deletionTimestamp").is_none_or(Value::is_null) {
        return Vec::new();
    }
    let list = |m: &Value| -> Vec<String> {
        m.get("finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(String::from))
            .collect()
    };
    let old = list(old_meta);
    let added: Vec<String> = list(meta)
        .into_iter()
        .filter(|f| !old.contains(f))
        .map(|f| super::errors::go_quote(&f))
        .collect();
    if added.is_empty() {
        return Vec::new();
    }
    vec![FieldError::new(
        "metadata.finalizers",
        FieldErrorKind::Forbidden,
        None,
        format!(
            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            added.join(", ")
        ),
    )]
}

/// Checks `metadata` as the apiserver does for every object: a name (or
/// generateName) that is a DNS-1123 subdomain, a DNS-1123 label namespace,
/// and well-formed label keys and values. `path` is usually `metadata`.
pub fn validate_object_meta(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |key: &str| meta.get(key).and_then(Value::as_str).unwrap_or_default();
    let (name, generate_name) = (text("name"), text("generateName"));
    if name.is_empty() && generate_name.is_empty() {
        errors.push(FieldError::new(
            format!("{path}.name"),
            FieldErrorKind::Required,
            None,
            "name or generateName is required",
        ));
    } else if !name.is_empty() && !is_dns1123_subdomain(name) {
        let detail = if name.len() > 253 {
            "must be no more than 253 characters"
        } else {
            DNS1123_SUBDOMAIN
        };
        errors.push(FieldError::new(
            format!("{path}.name"),
            FieldErrorKind::Invalid,
            Some(json!(name)),
            detail,
        ));
    }
    let namespace = text("namespace");
    if !namespace.is_empty() && !is_dns1123_label(namespace) {
        errors.push(FieldError::new(
            format!("{path}.namespace"),
            FieldErrorKind::Invalid,
            Some(json!(namespace)),
            DNS1123_LABEL,
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (key, value) in labels {
            for problem in qualified_name_problems(key) {
                errors.push(FieldError::new(
                    format!("{path}.labels"),
                    FieldErrorKind::Invalid,
                    Some(json!(key)),
                    problem,
                ));
            }
            let value = value.as_str().unwrap_or_default();
            let alnum = |c: char| c.is_ascii_alphanumeric();
            let valid_value = value.is_empty()
                || (value.len() <= 63
                    && value.starts_with(alnum)
                    && value.ends_with(alnum)
                    && value
                        .chars()
                        .all(|c| alnum(c) || matches!(c, '-' | '_' | '.')));
            if !valid_value {
                let detail = if value.len() > 63 {
                    "must be no more than 63 characters"
                } else {
                    LABEL_VALUE
                };
                errors.push(FieldError::new(
                    format!("{path}.labels"),
                    FieldErrorKind::Invalid,
                    Some(json!(value)),
                    detail,
                ));
            }
        }
    }
    errors
}

/// `x-kubernetes-embedded-resource` objects need a string `apiVersion` and `kind`.
pub(crate) fn check_embedded(
    map: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    for key in ["apiVersion", "kind"] {
        match map.get(key) {
            None => errors.push(FieldError::new(
                at(key),
                FieldErrorKind::Required,
                None,
                "must not be empty",
            )),
            Some(Value::String(s)) if s.is_empty() => errors.push(FieldError::new(
                at(key),
                FieldErrorKind::Invalid,
                Some(json!(s)),
                "must not be empty",
            )),
            Some(Value::String(s)) if key == "kind" && !is_dns1035_label(&s.to_lowercase()) => {
                errors.push(FieldError::new(
                    at(key),
                    FieldErrorKind::Invalid,
                    Some(json!(s)),
                    format!("may have mixed case, but should otherwise match: {DNS1035_LABEL}"),
                ));
            }
            Some(Value::String(s)) if key == "apiVersion" && s.matches('/').count() > 1 => {
                errors.push(FieldError::new(
                    at(key),
                    FieldErrorKind::Invalid,
                    Some(json!(s)),
                    format!("unexpected GroupVersion string: {s}"),
                ));
            }
            Some(Value::String(_)) => {}
            Some(other) => errors.push(FieldError::new(
                at(key),
                FieldErrorKind::Invalid,
                Some(other.clone()),
                "must be a string",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(meta: Value) -> Vec<String> {
        validate_object_meta(&meta, "metadata")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn names_must_be_dns_subdomains() {
        assert!(messages(json!({"name": "wine-quality.v2"})).is_empty());
        assert!(messages(json!({"generateName": "wine-"})).is_empty());
        assert_eq!(
            messages(json!({})),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert_eq!(
            messages(json!({"name": "Wine_Quality"})),
            vec![format!(
                "metadata.name: Invalid value: \"Wine_Quality\": {DNS1123_SUBDOMAIN}"
            )]
        );
        assert_eq!(
            messages(json!({"name": "a".repeat(254)}))[0],
            format!(
                "metadata.name: Invalid value: \"{}\": must be no more than 253 characters",
                "a".repeat(254)
            )
        );
    }

    #[test]
    fn namespaces_and_labels_are_checked() {
        assert!(messages(json!({"name": "m", "namespace": "ml", "labels": {"app.kubernetes.io/name": "wine", "tier": ""}})).is_empty());
        assert_eq!(messages(json!({"name": "m", "namespace": "ML"})).len(), 1);
        let bad = messages(json!({"name": "m", "labels": {"-bad": "ok", "good": "not ok!"}}));
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0].starts_with("metadata.labels: Invalid value: \"-bad\": name part must consist"),
            "{}",
            bad[0]
        );
        assert!(
            bad[1].starts_with("metadata.labels: Invalid value: \"not ok!\": a valid label"),
            "{}",
            bad[1]
        );
    }

    #[test]
    fn embedded_resources_need_api_version_and_kind() {
        let mut errors = Vec::new();
        let map = json!({"metadata": {}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        check_embedded(&map, "spec.template", &mut errors);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "spec.template.apiVersion: Required value: must not be empty",
                "spec.template.kind: Required value: must not be empty",
            ]
        );
        let mut errors = Vec::new();
        let map = json!({"apiVersion": "a/b/c", "kind": "Pod"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        check_embedded(&map, "t", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "t.apiVersion");
        let mut errors = Vec::new();
        let map = json!({"apiVersion": "v1", "kind": "Not A Kind"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        check_embedded(&map, "t", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "t.kind");
    }

    #[test]
    fn no_finalizer_may_be_added_to_an_object_being_deleted() {
        let deleting = json!({"deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["a"]});
        let more = json!({"finalizers": ["a", "b", "c"]});
        let errors = validate_finalizers_update(&more, &deleting);
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object \
              is being deleted, found new finalizers []string{\"b\", \"c\"}"
            ]
        );
        // Removing finalizers is fine, and so is adding them before deletion.
        assert!(validate_finalizers_update(&json!({"finalizers": []}), &deleting).is_empty());
        assert!(validate_finalizers_update(&more, &json!({"finalizers": ["a"]})).is_empty());
    }
}
