//! The model server's front door: inference requests go straight to the
//! inference handler, everything else through the router.
//!
//! On a one-row request axum's routing (the route table, the path
//! parameters deserialized into an extension, the matched path, a boxed
//! service and future per layer) was ~3 % of the CPU a request took (`perf`, 2026-12-06).
//! Inference paths are matched by `api::routes::match_route` against the
//! same route templates the router registers, and run under the same
//! request span; anything else (and an inference path the router must
//! percent-decode) is the router's, so every other answer (404, 405, the
//! other endpoints) is unchanged.
//!
//! Also the REST inference handler itself (the router's inference route
//! calls it too): the body read, inflated and decoded, the answer encoded
//! as JSON or binary.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::{BoxFuture, Either};
use http::Method;
use hyper::body::{Body as HttpBody, Incoming};
use tower::Service;
use tower_http::trace::MakeSpan;
use tracing::Instrument;

use axum::body::Body;
use http::{HeaderValue, header};

use super::binary::HEADER_LENGTH;
use super::error::{Cause, ServeError};
use super::protocol::{
    InferRequest, encode_response, parse_infer_body, read_columns, wants_binary,
};
use super::server::{AppState, ModelPath, guarded, read_body, run_inference};
use super::trace::RequestSpan;
use crate::api::routes;

/// The inference id's header, parsed once (`api::routes` names it).
const INFERENCE_ID: http::HeaderName = http::HeaderName::from_static(routes::INFERENCE_ID_HEADER);

/// The server's service: the inference fast path, then the router.
#[derive(Clone)]
pub(super) struct Front {
    state: Arc<AppState>,
    router: Router,
}

impl Front {
    pub(super) fn new(state: Arc<AppState>, router: Router) -> Front {
        Front { state, router }
    }
}

/// The model (and version) an inference path names, by the routes the
/// router registers for inference.
fn infer_path(path: &str) -> Option<ModelPath> {
    [routes::INFER, routes::VERSION_INFER]
        .into_iter()
        .find_map(|route| routes::match_route(route, path))
        .map(|p| ModelPath {
            name: p.name.to_string(),
            version: p.version.map(str::to_string),
        })
}

impl Service<http::Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        <Router as Service<axum::extract::Request>>::Future,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Neither side ever waits: the router is always ready, and
        // inference is bounded by its permits, not by back-pressure here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        if request.method() == Method::POST
            && let Some(path) = infer_path(request.uri().path())
        {
            let span = RequestSpan(self.state.clone()).make_span(&request);
            let state = self.state.clone();
            let answer = async move { Ok(infer_response(&state, &path, request).await) };
            // A span the log level turns off is not entered on every poll.
            return Either::Left(if span.is_disabled() {
                Box::pin(answer)
            } else {
                Box::pin(answer.instrument(span))
            });
        }
        // The router (and every handler in it) reads axum's body.
        Either::Right(self.router.call(request.map(Body::new)))
    }
}

/// `POST` an inference: the router's handler and the front door's fast
/// path (`serve::front`) both answer through this.
pub(super) async fn infer_response<B>(
    state: &AppState,
    path: &ModelPath,
    request: http::Request<B>,
) -> Response
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Cause>,
{
    // Boxed: the inference's state machine is kilobytes, and every move
    // of it (into the timeout, into the answer's future) was a copy.
    match guarded(state, Box::pin(infer_rest(state, path, request))).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The REST front end: reads (and inflates) the body, JSON or binary, and
/// answers in JSON or binary as the request asks.
async fn infer_rest<B>(
    state: &AppState,
    path: &ModelPath,
    request: http::Request<B>,
) -> Result<Response, ServeError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Cause>,
{
    let loaded = state.model_for(path)?;
    let limit = state.config.body_limit;
    if declared_too_large(request.headers(), limit) {
        return Err(ServeError::BodyTooLarge { limit });
    }
    let header_length = header_length(request.headers())?;
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)").to_ascii_lowercase());
    let body = read_body(request.into_body(), limit).await?;
    let body = super::encoding::inflate(body, encoding.as_deref(), limit)?;
    // A table model's common body is read straight into its columns; an
    // image model reads its tensor from the request.
    let table = loaded.model.info().image_input.is_none();
    let (mut request, decoded) = match table
        .then(|| read_columns(&body, header_length, &loaded.schema))
        .flatten()
    {
        Some((id, batch)) => (InferRequest::with_id(id), Some(batch)),
        None => (parse_infer_body(&body, header_length)?, None),
    };
    let binary = [
        wants_binary(&request, "predictions")?,
        wants_binary(&request, "probabilities")?,
    ];
    let response = run_inference(state, loaded, &mut request, decoded).await?;
    let flags: smallvec::SmallVec<[bool; 2]> = response
        .outputs
        .iter()
        .map(|o| binary[usize::from(o.name == "probabilities")])
        .collect();
    let (body, json_length) = encode_response(&response, &flags);
    let mut answer = Response::new(Body::from(body));
    let headers = answer.headers_mut();
    // A client id that is no valid header value stays in the body alone.
    if let Some(id) = response
        .id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        headers.insert(INFERENCE_ID, id);
    }
    match json_length {
        Some(n) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(answer)
}

/// The `Inference-Header-Content-Length` header, if present.
fn header_length(headers: &http::HeaderMap) -> Result<Option<usize>, ServeError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| ServeError::BadHeader {
            header: "Inference-Header-Content-Length",
            reason: format!(
                "`{}` is not a length in bytes",
                String::from_utf8_lossy(value.as_bytes())
            ),
        })
}

fn declared_too_large(headers: &http::HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_paths_name_the_model_and_version() {
        let p = infer_path("/v2/models/wine/infer").expect("an inference path");
        assert_eq!((p.name.as_str(), p.version), ("wine", None));
        let p = infer_path("/v2/models/wine/versions/v3/infer").expect("a version's path");
        assert_eq!(
            (p.name.as_str(), p.version.as_deref()),
            ("wine", Some("v3"))
        );
        for other in [
            "/v2/models/wine",
            "/v2/models/wine/feedback",
            "/v2/models/wine/versions/v3",
            "/v2/models/w%20ine/infer",
        ] {
            assert!(infer_path(other).is_none(), "{other}");
        }
    }
}
