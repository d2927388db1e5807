//! Field errors worded as kube-apiserver words them, and the 422 `Status`
//! body that carries them.

use serde_json::{Value, json};

/// What is wrong with a field; mirrors `field.ErrorType` of k8s apimachinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A required field is missing.
    Required,
    /// The value is not valid (range, pattern, CEL rule, ...).
    Invalid,
    /// The value is not one of the enumerated values.
    NotSupported,
    /// A string is longer than `maxLength`.
    TooLong,
    /// A list or map has more entries than allowed.
    TooMany,
    /// The value has the wrong JSON type or format.
    TypeInvalid,
    /// The field may not be set (or changed) this way.
    Forbidden,
    /// A set or map list holds the same entry twice.
    Duplicate,
}

impl FieldErrorKind {
    /// Whether the apiserver skips CEL rules after an error of this kind
    /// (apiextensions-apiserver's `hasBlockingErr`).
    pub fn blocks_rules(self) -> bool {
        matches!(
            self,
            Self::NotSupported | Self::Required | Self::TooLong | Self::TooMany | Self::TypeInvalid
        )
    }

    /// The phrase the apiserver prints, e.g. `Invalid value`.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
        }
    }

    /// The `StatusCause.reason` (a `CauseType`), e.g. `FieldValueInvalid`.
    pub fn cause_type(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
        }
    }

    /// The kind a CEL rule's `reason` asks for; anything unknown is `Invalid`.
    pub fn from_cel_reason(reason: Option<&str>) -> Self {
        match reason {
            Some("FieldValueRequired") => Self::Required,
            Some("FieldValueForbidden") => Self::Forbidden,
            Some("FieldValueDuplicate") => Self::Duplicate,
            _ => Self::Invalid,
        }
    }

    /// Kinds whose message omits the offending value, as apimachinery does.
    fn omits_value(self) -> bool {
        matches!(self, Self::Required | Self::Forbidden | Self::TooLong)
    }
}

/// One invalid field of a request object.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path with list indices, e.g. `spec.rollout.steps[1].weight`.
    pub path: String,
    /// What kind of problem it is.
    pub kind: FieldErrorKind,
    /// The detail, e.g. `spec.training.epochs in body should be greater than or equal to 1`.
    pub message: String,
    /// The offending value, printed in the message where the apiserver prints it.
    pub value: Option<Value>,
}

impl FieldError {
    /// A new field error.
    pub fn new(
        path: impl Into<String>,
        kind: FieldErrorKind,
        value: Option<Value>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            kind,
            message: message.into(),
            value,
        }
    }

    /// The path as the apiserver prints it; the object itself (a rule on the
    /// root schema) prints as `<nil>`, like Go's nil `field.Path`.
    pub fn field(&self) -> &str {
        if self.path.is_empty() {
            "<nil>"
        } else {
            &self.path
        }
    }

    /// The message without the path, as `StatusCause.message` carries it:
    /// `Invalid value: 0: spec.training.epochs in body should be ...`.
    pub fn body(&self) -> String {
        let mut body = self.kind.phrase().to_string();
        if !self.kind.omits_value()
            && let Some(value) = &self.value
        {
            body.push_str(": ");
            body.push_str(&go_value(value));
        }
        if !self.message.is_empty() {
            body.push_str(": ");
            body.push_str(&self.message);
        }
        body
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field(), self.body())
    }
}

/// Errors of this room that are not per-field validation results.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The CRD does not serve the requested version.
    #[error("CustomResourceDefinition `{crd}` has no version `{version}`; it serves: {served}")]
    UnknownVersion {
        /// The CRD's name.
        crd: String,
        /// The version asked for.
        version: String,
        /// The versions it has, comma separated.
        served: String,
    },
    /// The CRD version has no `openAPIV3Schema`.
    #[error("CustomResourceDefinition `{crd}` version `{version}` has no schema.openAPIV3Schema")]
    MissingSchema {
        /// The CRD's name.
        crd: String,
        /// The version.
        version: String,
    },
    /// A schema could not be turned into JSON for the CEL engine.
    #[error("schema at `{path}` cannot be serialized for CEL evaluation")]
    SchemaJson {
        /// Where in the schema.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Prints a value as Go's `field.Error` does: numbers and booleans bare,
/// strings quoted, lists and maps with `%#v` as unstructured data prints.
pub(crate) fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        other => go_sharp_v(other),
    }
}

/// Go's `%#v` of a value decoded into `interface{}`.
fn go_sharp_v(value: &Value) -> String {
    match value {
        Value::Null => "interface {}(nil)".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_sharp_v).collect();
            format!("[]interface {{}}{{{}}}", parts.join(", "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", go_quote(k), go_sharp_v(&map[k])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", parts.join(", "))
        }
    }
}

/// Formats a JSON number like Go's `%v` of an int64/float64.
pub(crate) fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    go_float(n.as_f64().unwrap_or(f64::NAN))
}

/// Formats a float like Go's `%v` (`%g` with the shortest representation).
pub(crate) fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{f:.0}");
    }
    let exp = if f == 0.0 {
        0
    } else {
        f.abs().log10().floor() as i32
    };
    if (-4..21).contains(&exp) {
        format!("{f}")
    } else {
        // Go prints e.g. 1e-05 and 1e+21.
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

/// Quotes a string like Go's `%q`.
pub(crate) fn go_quote(s: &str) -> String {
    // JSON string escaping matches `%q` for the printable text we meet here.
    Value::String(s.to_string()).to_string()
}

/// The 422 `Status` the apiserver answers when an object is invalid:
/// `Model.driftline.dev "x" is invalid: [spec.a: Required value, ...]`.
pub fn invalid_status(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Value {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({
                "reason": e.kind.cause_type(),
                "message": e.body(),
                "field": e.field(),
            })
        })
        .collect();
    // utilerrors.Aggregate prints distinct messages, bracketed when several.
    let mut seen = std::collections::HashSet::new();
    let messages: Vec<String> = errors
        .iter()
        .map(ToString::to_string)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    let message = match messages.as_slice() {
        [] => format!("{qualified} {} is invalid", go_quote(name)),
        [one] => format!("{qualified} {} is invalid: {one}", go_quote(name)),
        many => format!(
            "{qualified} {} is invalid: [{}]",
            go_quote(name),
            many.join(", ")
        ),
    };
    let mut details = json!({ "name": name, "kind": kind, "causes": causes });
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_prints_value_and_detail_like_the_apiserver() {
        let e = FieldError::new(
            "spec.training.epochs",
            FieldErrorKind::Invalid,
            Some(json!(0)),
            "spec.training.epochs in body should be greater than or equal to 1",
        );
        assert_eq!(
            e.to_string(),
            "spec.training.epochs: Invalid value: 0: spec.training.epochs in body should be greater than or equal to 1"
        );
    }

    #[test]
    fn required_and_too_long_omit_the_value() {
        let r = FieldError::new("spec.data", FieldErrorKind::Required, None, "");
        assert_eq!(r.to_string(), "spec.data: Required value");
        let t = FieldError::new(
            "spec.name",
            FieldErrorKind::TooLong,
            Some(json!("abcdef")),
            "may not be more than 5 bytes",
        );
        assert_eq!(
            t.to_string(),
            "spec.name: Too long: may not be more than 5 bytes"
        );
    }

    #[test]
    fn strings_are_quoted_and_floats_printed_like_go() {
        assert_eq!(go_value(&json!("a\"b")), r#""a\"b""#);
        assert_eq!(go_value(&json!(0.5)), "0.5");
        assert_eq!(go_value(&json!(2.0)), "2");
        assert_eq!(go_value(&json!(true)), "true");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1e22), "1e+22");
        assert_eq!(go_value(&json!([])), "[]interface {}{}");
        assert_eq!(
            go_value(&json!({"b": [1, "x"], "a": null})),
            r#"map[string]interface {}{"a":interface {}(nil), "b":[]interface {}{1, "x"}}"#
        );
    }

    #[test]
    fn invalid_status_has_code_reason_causes_and_aggregated_message() {
        let errors = vec![
            FieldError::new("spec.data", FieldErrorKind::Required, None, ""),
            FieldError::new(
                "spec.task",
                FieldErrorKind::NotSupported,
                Some(json!("ranking")),
                "supported values: \"classification\", \"regression\"",
            ),
        ];
        let s = invalid_status("driftline.dev", "Model", "wine", &errors);
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["status"], "Failure");
        assert_eq!(
            s["message"],
            "Model.driftline.dev \"wine\" is invalid: [spec.data: Required value, spec.task: Unsupported value: \"ranking\": supported values: \"classification\", \"regression\"]"
        );
        assert_eq!(s["details"]["group"], "driftline.dev");
        assert_eq!(s["details"]["kind"], "Model");
        assert_eq!(s["details"]["name"], "wine");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(s["details"]["causes"][0]["field"], "spec.data");
        assert_eq!(s["details"]["causes"][0]["message"], "Required value");
        assert_eq!(
            s["details"]["causes"][1]["reason"],
            "FieldValueNotSupported"
        );
    }

    #[test]
    fn invalid_status_with_one_error_has_no_brackets_and_core_group_has_bare_kind() {
        let errors = vec![FieldError::new(
            "metadata.name",
            FieldErrorKind::Required,
            None,
            "",
        )];
        let s = invalid_status("", "ConfigMap", "c", &errors);
        assert_eq!(
            s["message"],
            "ConfigMap \"c\" is invalid: metadata.name: Required value"
        );
        assert!(s["details"].get("group").is_none());
    }

    #[test]
    fn root_errors_print_a_nil_path_like_go() {
        let e = FieldError::new(
            "",
            FieldErrorKind::Invalid,
            Some(json!("object")),
            "name must start with a",
        );
        assert_eq!(
            e.to_string(),
            "<nil>: Invalid value: \"object\": name must start with a"
        );
        let s = invalid_status("g", "K", "n", &[e]);
        assert_eq!(s["details"]["causes"][0]["field"], "<nil>");
    }

    #[test]
    fn duplicate_messages_are_printed_once() {
        let e = FieldError::new(
            "spec",
            FieldErrorKind::Invalid,
            Some(json!("object")),
            "bad",
        );
        let s = invalid_status("g", "K", "n", &[e.clone(), e]);
        assert_eq!(
            s["message"],
            "K.g \"n\" is invalid: spec: Invalid value: \"object\": bad"
        );
        assert_eq!(s["details"]["causes"].as_array().map(Vec::len), Some(2));
    }
}
