//! CRD structural schemas: validation, defaulting, pruning, CEL rules, and
//! server-side Table rendering of printer columns.
//!
//! Everything here is a pure function of its inputs, so the API server calls
//! these in its request path and the tests drive them with small JSON schemas.
//! The order the real kube-apiserver uses for a create or update is:
//! [`prune`] → [`apply_defaults`] → [`validate`] (which includes the CEL rules)
//! → on failure [`invalid_status`] (422).

mod cel;
mod errors;
mod jsonpath;
mod openapi;
mod structural;
mod table;
mod validation;

pub use errors::{FieldError, FieldErrorKind, SchemaError, invalid_status};
pub use jsonpath::{JsonPath, JsonPathError};
pub use openapi::openapi_v3_for_crd;
pub use structural::{apply_defaults, prune};
pub use table::{
    IncludeObject, builtin_columns, crd_columns, human_duration, table, table_at,
    table_with_options,
};
pub use validation::{validate, validate_schema_definition};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

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
