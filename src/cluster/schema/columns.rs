//! Printer columns as a CRD declares them: checked when the CRD is written.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::json;

use super::errors::{FieldError, FieldErrorKind, go_quote};
use super::jsonpath::JsonPath;

/// Checks printer columns as the apiserver does when a CRD is written: a
/// name, a supported type and format, and a JSONPath starting with `.` that
/// parses. `base` is e.g. `spec.versions[0].additionalPrinterColumns`.
pub fn validate_printer_columns(
    columns: &[CustomResourceColumnDefinition],
    base: &str,
) -> Vec<FieldError> {
    const TYPES: [&str; 5] = ["boolean", "date", "integer", "number", "string"];
    const FORMATS: [&str; 8] = [
        "byte",
        "date",
        "date-time",
        "double",
        "float",
        "int32",
        "int64",
        "password",
    ];
    let supported = |values: &[&str]| {
        let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    let mut errors = Vec::new();
    for (i, col) in columns.iter().enumerate() {
        let at = format!("{base}[{i}]");
        if col.name.is_empty() {
            errors.push(FieldError::new(
                format!("{at}.name"),
                FieldErrorKind::Required,
                None,
                "",
            ));
        }
        if !TYPES.contains(&col.type_.as_str()) {
            errors.push(FieldError::new(
                format!("{at}.type"),
                FieldErrorKind::NotSupported,
                Some(json!(col.type_)),
                supported(&TYPES),
            ));
        }
        if let Some(format) = col.format.as_deref().filter(|f| !f.is_empty())
            && !FORMATS.contains(&format)
        {
            errors.push(FieldError::new(
                format!("{at}.format"),
                FieldErrorKind::NotSupported,
                Some(json!(format)),
                supported(&FORMATS),
            ));
        }
        if col.json_path.is_empty() {
            errors.push(FieldError::new(
                format!("{at}.jsonPath"),
                FieldErrorKind::Required,
                None,
                "",
            ));
        } else if !col.json_path.starts_with('.') {
            errors.push(FieldError::new(
                format!("{at}.jsonPath"),
                FieldErrorKind::Invalid,
                Some(json!(col.json_path)),
                "must be a simple json path starting with .",
            ));
        } else if let Err(e) = JsonPath::parse(&col.json_path) {
            errors.push(FieldError::new(
                format!("{at}.jsonPath"),
                FieldErrorKind::Invalid,
                Some(json!(col.json_path)),
                format!("invalid JSONPath: {e}"),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, type_: &str, path: &str, priority: i32) -> CustomResourceColumnDefinition {
        CustomResourceColumnDefinition {
            name: name.to_string(),
            type_: type_.to_string(),
            json_path: path.to_string(),
            priority: Some(priority),
            format: None,
            description: None,
        }
    }

    #[test]
    fn printer_columns_are_checked_like_crd_creation() {
        let mut bad_format = col("F", "integer", ".spec.n", 0);
        bad_format.format = Some("percent".to_string());
        let columns = vec![
            col("Phase", "string", ".status.phase", 0),
            col("Odd", "color", ".spec.c", 0),
            col("Rel", "string", "status.phase", 0),
            col("Broken", "string", ".spec[", 0),
            bad_format,
        ];
        let errors: Vec<String> = validate_printer_columns(&columns, "cols")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with(
            "cols[1].type: Unsupported value: \"color\": supported values: \"boolean\""
        ));
        assert_eq!(
            errors[1],
            "cols[2].jsonPath: Invalid value: \"status.phase\": must be a simple json path starting with ."
        );
        assert!(
            errors[2].starts_with("cols[3].jsonPath: Invalid value: \".spec[\": invalid JSONPath")
        );
        assert!(errors[3].starts_with("cols[4].format: Unsupported value: \"percent\""));
    }
}
