//! CRD structural schemas: validation, defaulting, pruning and CEL rules.
//!
//! Everything here is a pure function of its inputs, so the API server calls
//! these in its request path and the tests drive them with small JSON schemas.
//! The order the real kube-apiserver uses for a create or update is:
//! [`prune`] → [`apply_defaults`] → [`validate`] (which includes the CEL rules)
//! → on failure [`invalid_status`] (422). [`admit`] does the first three;
//! [`CrdSchema`] does the same with the CEL rules compiled once per version.
//!
//! - Writing a CRD: [`validate_crd`] (schema shape, patterns, CEL compiles,
//!   defaults, printer columns: [`validate_printer_columns`]).
//! - `fieldValidation=Strict|Warn`: [`unknown_fields`] lists what pruning drops.
//! - Every object: [`validate_object_meta`] (name, namespace, labels).
//! - `/openapi/v3/apis/{group}/{version}`: [`openapi_v3_for_crd`].

mod cel;
mod columns;
mod definition;
mod errors;
mod jsonpath;
mod meta;
mod openapi;
mod structural;
mod validation;

pub use columns::validate_printer_columns;
pub use definition::validate_schema_definition;
pub(crate) use errors::go_number;
pub use errors::{FieldError, FieldErrorKind, SchemaError, invalid_status};
pub use jsonpath::{JsonPath, JsonPathError};
pub use meta::{validate_finalizers_update, validate_object_meta};
pub use openapi::openapi_v3_for_crd;
pub use structural::{apply_defaults, prune, unknown_fields};
pub use validation::validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps,
};

/// Everything [`validate_schema_definition`] and [`validate_printer_columns`]
/// find in every version of a CRD, with field paths from the CRD's root, so a
/// CRD create or update can be answered with [`invalid_status`].
pub fn validate_crd(crd: &CustomResourceDefinition) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, version) in crd.spec.versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        match version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            Some(schema) => errors.extend(validate_schema_definition(
                schema,
                &format!("{base}.schema.openAPIV3Schema"),
            )),
            None => errors.push(FieldError::new(
                format!("{base}.schema.openAPIV3Schema"),
                FieldErrorKind::Required,
                None,
                "schemas are required",
            )),
        }
        if let Some(columns) = version.additional_printer_columns.as_deref() {
            errors.extend(validate_printer_columns(
                columns,
                &format!("{base}.additionalPrinterColumns"),
            ));
        }
    }
    errors
}

/// One CRD version's structural schema with its CEL rules compiled once:
/// keep one per served version and call [`CrdSchema::admit`] per write.
#[derive(Debug)]
pub struct CrdSchema {
    schema: JSONSchemaProps,
    rules: cel::RuleTree,
}

impl CrdSchema {
    /// Compiles the CEL rules of `schema` (a rule that does not compile is
    /// reported on each validation; see [`validate_schema_definition`]).
    pub fn new(schema: JSONSchemaProps) -> Self {
        let rules = cel::RuleTree::compile(&schema);
        Self { schema, rules }
    }

    /// The schema of `version` of `crd`.
    pub fn for_version(crd: &CustomResourceDefinition, version: &str) -> Result<Self, SchemaError> {
        let crd_name = crd.metadata.name.clone().unwrap_or_default();
        let found = crd_version(crd, version)?;
        let schema = found
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.clone())
            .ok_or_else(|| SchemaError::MissingSchema {
                crd: crd_name,
                version: version.to_string(),
            })?;
        Ok(Self::new(schema))
    }

    /// The structural schema.
    pub fn schema(&self) -> &JSONSchemaProps {
        &self.schema
    }

    /// [`validate`] with the precompiled rules.
    pub fn validate(
        &self,
        obj: &serde_json::Value,
        old: Option<&serde_json::Value>,
    ) -> Vec<FieldError> {
        validation::validate_with_rules(&self.schema, &self.rules, obj, old)
    }

    /// [`admit`] with the precompiled rules.
    pub fn admit(
        &self,
        obj: &mut serde_json::Value,
        old: Option<&serde_json::Value>,
    ) -> Vec<FieldError> {
        prune(&self.schema, obj);
        apply_defaults(&self.schema, obj);
        self.validate(obj, old)
    }
}

/// What the apiserver does with a custom object on create or update, in its
/// order: [`prune`], [`apply_defaults`], then [`validate`] (with ratcheting and
/// transition rules against `old`). `obj` is left pruned and defaulted; an
/// empty result means it may be stored, otherwise answer [`invalid_status`].
pub fn admit(
    schema: &JSONSchemaProps,
    obj: &mut serde_json::Value,
    old: Option<&serde_json::Value>,
) -> Vec<FieldError> {
    prune(schema, obj);
    apply_defaults(schema, obj);
    validate(schema, obj, old)
}

/// `version` of `crd`, or the error naming the versions it serves: the one
/// lookup behind schemas, printer columns and conversion.
pub fn crd_version<'a>(
    crd: &'a CustomResourceDefinition,
    version: &str,
) -> Result<&'a CustomResourceDefinitionVersion, SchemaError> {
    crd.spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .ok_or_else(|| SchemaError::UnknownVersion {
            crd: crd.metadata.name.clone().unwrap_or_default(),
            version: version.to_string(),
            served: crd
                .spec
                .versions
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_schema_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<CrdSchema>();
    }

    #[test]
    fn crd_schema_admits_like_the_free_functions() {
        let schema: JSONSchemaProps = serde_json::from_value(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "n": {"type": "integer", "default": 3, "x-kubernetes-validations": [{"rule": "self < 10", "message": "n too big"}]}
            }}}
        }))
        .expect("valid schema");
        let compiled = CrdSchema::new(schema.clone());
        let mut obj = json!({"spec": {"junk": 1}});
        assert!(compiled.admit(&mut obj, None).is_empty());
        assert_eq!(obj, json!({"spec": {"n": 3}}));
        let mut bad = json!({"spec": {"n": 12}});
        let errors = compiled.admit(&mut bad, None);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "spec.n: Invalid value: \"integer\": n too big"
        );
        assert_eq!(
            errors,
            admit(&schema, &mut json!({"spec": {"n": 12}}), None)
        );
    }
}
