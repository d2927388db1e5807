//! Errors of the API server, each rendered as the meta/v1 `Status` body a
//! real Kubernetes API server would send.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A request the API server refuses, with the HTTP code and `Status` reason
/// that clients such as kube-rs and kubectl understand.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong bearer token.
    #[error("Unauthorized")]
    Unauthorized,
    /// The object or the resource type does not exist.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Group of the resource (empty for core).
        group: String,
        /// Plural resource name, e.g. `configmaps`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The URL names no resource this server knows.
    #[error("the server could not find the requested resource")]
    UnknownPath,
    /// A create of a name that already exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Group of the resource.
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// A stale resourceVersion or a server-side apply conflict.
    #[error("{message}")]
    Conflict {
        /// Group of the resource.
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// What conflicted, for the user.
        message: String,
    },
    /// Server-side apply touched fields another manager owns.
    #[error("{message}")]
    ApplyConflict {
        /// Group of the resource.
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// Conflicting fields and their managers.
        message: String,
        /// One `FieldManagerConflict` cause per field.
        causes: Vec<Value>,
    },
    /// A malformed request (bad JSON, wrong kind, bad selector).
    #[error("{0}")]
    BadRequest(String),
    /// The object fails validation; `status` is the complete 422 body.
    #[error("{message}")]
    Invalid {
        /// Human message.
        message: String,
        /// Full meta/v1 Status body with field causes.
        status: Value,
    },
    /// A body content type the endpoint does not accept.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    )]
    UnsupportedMediaType {
        /// Media types that would be accepted.
        accepted: String,
    },
    /// The client accepts no response media type this server writes.
    #[error(
        "only application/json responses are served, and the request's Accept header (`{requested}`) does not allow them; add application/json"
    )]
    NotAcceptable {
        /// The Accept header as sent.
        requested: String,
    },
    /// The verb is not supported on this path.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// A watch or list from a resourceVersion that was compacted away.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// The version the client asked for.
        requested: u64,
        /// The oldest version still available.
        oldest: u64,
    },
    /// A request failed by the test fault injector.
    #[error("injected fault: {code}")]
    Injected {
        /// HTTP status code to answer with.
        code: u16,
    },
    /// The server could not complete the request.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Builds a `NotFound` for an object.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::NotFound {
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
        }
    }

    /// Builds the optimistic-concurrency `Conflict` a stale write gets.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        ApiError::Conflict {
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::NotFound { .. } | ApiError::UnknownPath => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::Invalid { .. } => 422,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::NotAcceptable { .. } => 406,
            ApiError::MethodNotAllowed => 405,
            ApiError::Gone { .. } => 410,
            ApiError::Injected { code } => *code,
            ApiError::Internal(_) => 500,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "Unauthorized",
            ApiError::NotFound { .. } | ApiError::UnknownPath => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::NotAcceptable { .. } => "NotAcceptable",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Gone { .. } => "Expired",
            ApiError::Injected { code } => reason_for_code(*code),
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The meta/v1 `Status` body.
    pub fn status(&self) -> Value {
        if let ApiError::Invalid { status, .. } = self {
            return status.clone();
        }
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            }
            | ApiError::ApplyConflict {
                group,
                resource,
                name,
                ..
            } => {
                body["details"] = json!({"name": name, "group": group, "kind": resource});
                if let ApiError::NotFound { .. } | ApiError::AlreadyExists { .. } = self {
                    body["message"] = json!(format!(
                        "{} \"{name}\" {}",
                        qualified(group, resource),
                        if matches!(self, ApiError::NotFound { .. }) {
                            "not found"
                        } else {
                            "already exists"
                        }
                    ));
                }
            }
            _ => {}
        }
        if let ApiError::ApplyConflict { causes, .. } = self {
            body["details"]["causes"] = Value::Array(causes.clone());
        }
        body
    }
}

/// `jobs.batch` style name used in real error messages.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, axum::Json(self.status())).into_response();
        if code == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
