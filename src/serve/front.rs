//! The model server's front door: inference requests go straight to the
//! inference handler, everything else through the router.
//!
//! On a one-row request axum's routing (the route table, the path
//! parameters deserialized into an extension, the matched path, a boxed
//! service and future per layer) was about a tenth of driftline's own work.
//! Inference paths are matched by `api::routes::match_route` against the
//! same route templates the router registers, and run under the same
//! request span; anything else (and an inference path the router must
//! percent-decode) is the router's, so every other answer (404, 405, the
//! other endpoints) is unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use futures::future::{BoxFuture, Either};
use http::Method;
use tower::Service;
use tower_http::trace::MakeSpan;
use tracing::Instrument;

use super::server::{AppState, ModelPath, infer_response};
use super::trace::RequestSpan;
use crate::api::routes;

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

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        <Router as Service<Request>>::Future,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Neither side ever waits: the router is always ready, and
        // inference is bounded by its permits, not by back-pressure here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::POST
            && let Some(path) = infer_path(request.uri().path())
        {
            let span = RequestSpan(self.state.clone()).make_span(&request);
            let state = self.state.clone();
            return Either::Left(Box::pin(
                async move { Ok(infer_response(&state, &path, request).await) }.instrument(span),
            ));
        }
        Either::Right(self.router.call(request))
    }
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
