//! One span per request for the model server and the gateway: the Model,
//! the version and a trace id, so every log line a request causes (a 5xx
//! with its cause, most of all) says which model and which request it was.
//! JSON logs (`--log-json`) carry these fields on each line.

use http::{HeaderMap, Request};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};

/// The W3C trace context header a caller may send.
pub const TRACEPARENT: &str = "traceparent";

/// The trace id of a request: the one in its `traceparent` header
/// (`00-<32 hex>-<16 hex>-<2 hex>`), else a new random one, so a caller's
/// trace and driftline's logs join up when the caller sends one.
pub fn trace_id(headers: &HeaderMap) -> String {
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let id = v.split('-').nth(1)?;
            let valid = id.len() == 32
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && id.bytes().any(|b| b != b'0');
            valid.then(|| id.to_ascii_lowercase())
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Names the Model and version a request is for, read when the request
/// arrives (a server knows its version only once the model is loaded).
pub trait ServedModel: Clone + Send + Sync + 'static {
    fn model_and_version(&self) -> (String, String);
}

/// Makes the `request` span.
#[derive(Clone)]
pub struct RequestSpan<M>(pub M);

impl<M: ServedModel, B> MakeSpan<B> for RequestSpan<M> {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let span = tracing::info_span!(
            "request",
            model = tracing::field::Empty,
            version = tracing::field::Empty,
            method = %request.method(),
            path = %request.uri().path(),
            trace_id = %trace_id(request.headers()),
        );
        // Named only when the span is kept: at a level that drops it, the
        // two strings were a request's cost for nothing.
        if !span.is_disabled() {
            let (model, version) = self.0.model_and_version();
            span.record("model", tracing::field::display(model));
            span.record("version", tracing::field::display(version));
        }
        span
    }
}

/// The tracing layer: spans only. Failures are logged once, by the error
/// that caused them (`ServeError`), with its cause; tower-http's own
/// per-response and per-failure lines would repeat them.
pub fn layer<M: ServedModel>(
    model: M,
) -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan<M>, (), (), (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan(model))
        .on_request(())
        .on_response(())
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_trace_id_is_kept_and_a_missing_one_is_made() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(trace_id(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
        let made = trace_id(&HeaderMap::new());
        assert_eq!(made.len(), 32);
        assert_ne!(made, trace_id(&HeaderMap::new()), "each request its own");
        h.insert(
            TRACEPARENT,
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_ne!(
            trace_id(&h),
            "00000000000000000000000000000000",
            "an all-zero id is invalid"
        );
    }
}
