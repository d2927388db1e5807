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
