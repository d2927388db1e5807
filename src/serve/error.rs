//! The serve room's error type and how each error answers over HTTP.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::protocol::DecodeError;

/// A cause of another library's kind, kept whole for the error chain.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong in `driftline serve` and `driftline gateway`.
/// Causes stay `#[source]`s and are not repeated in the messages: the
/// answer's body and the logs print the whole chain once
/// ([`crate::error_chain`]).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    BadRequest(#[from] DecodeError),
    #[error("model `{requested}` is not served here; this server serves `{served}`")]
    UnknownModel { requested: String, served: String },
    #[error("model `{model}` has no version `{requested}`; this server serves version `{served}`")]
    UnknownVersion {
        model: String,
        requested: String,
        served: String,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("could not read the request body")]
    Body(#[source] Cause),
    #[error("header {header}: {reason}")]
    BadHeader {
        header: &'static str,
        reason: String,
    },
    #[error("Content-Encoding `{0}` is not supported; send gzip, deflate or an uncompressed body")]
    UnsupportedEncoding(String),
    #[error("request body is not valid {encoding}: {reason}")]
    Inflate { encoding: String, reason: String },
    #[error("server is busy: all {0} inference slots are in use; retry shortly")]
    Overloaded(usize),
    #[error("request did not finish within {0:?}")]
    Timeout(std::time::Duration),
    #[error("model is not ready yet (loading or warming up)")]
    NotReady,
    /// The model's own answer to a batch it could not predict.
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("inference stopped before it finished")]
    InferenceAborted(#[source] tokio::task::JoinError),
    #[error("feedback: {0}")]
    BadFeedback(String),
    #[error(
        "feedback: unknown request id {0}; it expired, was not sampled, or was never served here"
    )]
    UnknownFeedbackId(String),
    #[error("feedback capture is shutting down")]
    FeedbackClosed,
    #[error("cannot load artifact `{uri}`")]
    Load {
        uri: String,
        #[source]
        source: Cause,
    },
    #[error("warm-up inference failed: {0}")]
    WarmUp(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Drift(#[from] crate::drift::DriftError),
    #[error("cannot listen on {addr} (choose another --port, or stop what holds it)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server stopped")]
    Server(#[source] std::io::Error),
    #[error("--feedback `{prefix}` is not a location driftline can write")]
    FeedbackPrefix {
        prefix: String,
        #[source]
        source: Cause,
    },
    #[error("cannot write feedback file `{uri}`")]
    FeedbackWrite {
        uri: String,
        #[source]
        source: Cause,
    },
    #[error("weights file `{path}`: {reason}")]
    Weights {
        path: String,
        reason: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("this image model takes one input `{expected}`; the request has {got}")]
    ImageInputs { expected: String, got: String },
    #[error("input `{input}`: {reason}")]
    ImageTensor { input: String, reason: String },
    #[error("input `{input}` element {index}")]
    BadImage {
        input: String,
        index: usize,
        #[source]
        source: crate::data::ImageError,
    },
    #[error(
        "input `{input}`: images are {width}×{height} pixels; at most {max} pixels are allowed per image"
    )]
    PixelsTooLarge {
        input: String,
        width: i64,
        height: i64,
        max: u64,
    },
    #[error(
        "the request's images have {pixels} pixels in all; at most {max} are allowed per request"
    )]
    BatchTooLarge { pixels: u64, max: u64 },
    #[error("no backend can take the request: every weight is 0")]
    NoBackend,
    #[error("backend `{version}` at {url} failed")]
    Backend {
        version: String,
        url: String,
        #[source]
        source: Cause,
    },
    #[error("Kubernetes: {action}")]
    Kube {
        action: String,
        #[source]
        source: Option<kube::Error>,
    },
}

impl ServeError {
    /// The HTTP status this error answers with. Every variant is named, so a
    /// new one must be given its status here.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadRequest(_)
            | ServeError::Body(_)
            | ServeError::BadFeedback(_)
            | ServeError::BadHeader { .. }
            | ServeError::Inflate { .. }
            | ServeError::ImageInputs { .. }
            | ServeError::ImageTensor { .. } => StatusCode::BAD_REQUEST,
            ServeError::BadImage { source, .. } if source.is_too_large() => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ServeError::BadImage { .. } => StatusCode::BAD_REQUEST,
            ServeError::PixelsTooLarge { .. } | ServeError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ServeError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServeError::UnknownModel { .. }
            | ServeError::UnknownVersion { .. }
            | ServeError::UnknownFeedbackId(_) => StatusCode::NOT_FOUND,
            ServeError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::Overloaded(_)
            | ServeError::NotReady
            | ServeError::FeedbackClosed
            | ServeError::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ServeError::Backend { .. } => StatusCode::BAD_GATEWAY,
            ServeError::Inference(_)
            | ServeError::InferenceAborted(_)
            | ServeError::Load { .. }
            | ServeError::WarmUp(_)
            | ServeError::Config(_)
            | ServeError::Drift(_)
            | ServeError::Bind { .. }
            | ServeError::Server(_)
            | ServeError::FeedbackWrite { .. }
            | ServeError::FeedbackPrefix { .. }
            | ServeError::Weights { .. }
            | ServeError::Kube { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client reads: this error and every cause, once each.
    pub fn message(&self) -> String {
        crate::error_chain(self)
    }

    /// A 5xx is the server's failure, not the client's: it goes to the log,
    /// with its cause, inside the request's span (model, version, trace id).
    fn log_if_server_error(&self, status: StatusCode) {
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self.message(), "request failed");
        }
    }
}

impl From<ServeError> for tonic::Status {
    /// The gRPC code a REST status would be, with the same message.
    fn from(e: ServeError) -> Self {
        let code = match e.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                tonic::Code::InvalidArgument
            }
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => tonic::Code::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Internal,
        };
        e.log_if_server_error(e.status());
        tonic::Status::new(code, e.message())
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.log_if_server_error(status);
        let mut response =
            (status, Json(serde_json::json!({ "error": self.message() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_follow_the_rest_status() {
        let code = |e: ServeError| tonic::Status::from(e).code();
        let bad = DecodeError::MissingData { input: "x".into() };
        assert_eq!(code(bad.into()), tonic::Code::InvalidArgument);
        let unknown = ServeError::UnknownModel {
            requested: "beer".into(),
            served: "wine".into(),
        };
        let status = tonic::Status::from(unknown);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().contains("`beer` is not served here"));
        assert_eq!(code(ServeError::NotReady), tonic::Code::Unavailable);
        assert_eq!(code(ServeError::Overloaded(4)), tonic::Code::Unavailable);
        assert_eq!(
            code(ServeError::Timeout(std::time::Duration::from_secs(1))),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(
            code(ServeError::BodyTooLarge { limit: 1 }),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            code(ServeError::Inference("boom".into())),
            tonic::Code::Internal
        );
    }
}
