//! HTTP front of the API server: the state every request shares,
//! authentication, fault injection and the request log. Routing is in
//! [`super::dispatch`], the verbs in [`super::listwatch`] and
//! [`super::writes`], media types in [`super::negotiation`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::dispatch::dispatch;
use super::error::ApiError;
use super::faults::{FaultInjector, RequestInfo, Verdict};
use super::negotiation::{content_type, parse_body};
use super::request::{Endpoint, parse_path, parse_query};
use super::resources::ResourceType;
use super::store::Store;

/// Largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// State shared by all requests.
pub struct Shared {
    store: Mutex<Store>,
    /// The store's resourceVersion after each change, for watches.
    pub(super) changed: watch::Sender<u64>,
    /// Signalled after every change, for the snapshot writer.
    pub dirty: Notify,
    /// Faults and request log.
    pub faults: FaultInjector,
    token: String,
    /// Where pod logs are read from.
    pub state_dir: PathBuf,
    /// How often an idle watch with bookmarks gets one.
    pub(super) bookmark_interval: Duration,
    /// Set to true when the server shuts down; open watches end.
    pub closing: watch::Sender<bool>,
}

impl Shared {
    /// New shared state around a store.
    pub fn new(
        store: Store,
        token: String,
        state_dir: PathBuf,
        bookmark_interval: Duration,
    ) -> Self {
        let rv = store.resource_version();
        Shared {
            store: Mutex::new(store),
            changed: watch::channel(rv).0,
            dirty: Notify::new(),
            faults: FaultInjector::default(),
            token,
            state_dir,
            bookmark_interval,
            closing: watch::channel(false).0,
        }
    }

    /// Locks the store.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // Store operations keep it consistent even if a panic unwound mid-request.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells watchers and the snapshot writer that something changed.
    fn notify(&self, rv: u64) {
        if *self.changed.borrow() != rv {
            self.changed.send_replace(rv);
            self.dirty.notify_one();
        }
    }

    /// Runs a write under the lock and wakes watchers afterwards.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let (out, rv) = {
            let mut store = self.store();
            let out = f(&mut store);
            (out, store.resource_version())
        };
        self.notify(rv);
        out
    }

    /// Runs a write against a throwaway copy (`dryRun=All`): full validation, nothing kept.
    fn dry_run<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut copy = self.store().clone();
        f(&mut copy)
    }

    /// Writes for real, or to a copy when the request is a dry run.
    pub(super) fn write_or_dry<T>(
        &self,
        dry: bool,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if dry { self.dry_run(f) } else { self.write(f) }
    }

    /// The type used for storage semantics (core events for events.k8s.io).
    pub(super) fn storage_type(&self, ty: &ResourceType) -> ResourceType {
        if ty.group == "events.k8s.io"
            && let Some(core) = self.store().registry.find("", "v1", "events")
        {
            return core.clone();
        }
        ty.clone()
    }

    /// Drops the watch history (etcd-style compaction); older watches get 410.
    pub fn compact(&self) {
        self.store().compact();
    }
}

/// The single entry point: every path goes through here.
pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let received = std::time::SystemTime::now();
    let (parts, body) = req.into_parts();
    let endpoint = parse_path(parts.uri.path());
    if endpoint == Endpoint::Health {
        return (StatusCode::OK, "ok").into_response();
    }
    let query = parse_query(parts.uri.query());
    let mut info = request_info(&parts.method, &parts.uri, &endpoint, &query);
    info.content_type = content_type(&parts.headers);
    info.user_agent = (parts.headers.get(header::USER_AGENT))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .into();
    tracing::trace!(method = %info.method, uri = %info.uri, "request");
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.token);
    let response = if !authorized {
        ApiError::Unauthorized.into_response()
    } else {
        match axum::body::to_bytes(body, MAX_BODY).await {
            Err(e) => ApiError::BadRequest(format!("could not read the request body: {e}"))
                .into_response(),
            Ok(bytes) => {
                // A create names its object in the body; fault rules and the log see that name.
                if info.verb == "create"
                    && info.name.is_empty()
                    && let Ok(v) = parse_body(&parts.headers, &bytes)
                    && let Some(n) = v.pointer("/metadata/name").and_then(Value::as_str)
                {
                    info.name = n.to_string();
                }
                match shared.faults.check(&info) {
                    Verdict::Fail(code) => ApiError::Injected { code }.into_response(),
                    verdict => {
                        if let Verdict::Delay(d) = verdict {
                            tokio::time::sleep(d).await;
                        }
                        dispatch(
                            &shared,
                            &parts.method,
                            &parts.headers,
                            endpoint,
                            &query,
                            bytes,
                        )
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                    }
                }
            }
        }
    };
    tracing::trace!(method = %info.method, uri = %info.uri, status = response.status().as_u16(), "served");
    shared
        .faults
        .log(info, received, response.status().as_u16());
    response
}

fn request_info(
    method: &Method,
    uri: &axum::http::Uri,
    endpoint: &Endpoint,
    query: &HashMap<String, String>,
) -> RequestInfo {
    let mut info = RequestInfo {
        method: method.to_string(),
        uri: uri.to_string(),
        ..Default::default()
    };
    if let Endpoint::Resource(p) = endpoint {
        info.resource = match &p.subresource {
            Some(s) => format!("{}/{s}", p.plural),
            None => p.plural.clone(),
        };
        info.namespace = p.namespace.clone().unwrap_or_default();
        info.name = p.name.clone().unwrap_or_default();
        let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
        info.verb = match (method.as_str(), p.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if watching => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "unknown",
        }
        .into();
    } else {
        info.verb = "get".into();
    }
    info
}

/// A JSON answer.
pub(super) fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Adds one `Warning` header per message, as the API server does.
pub(super) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", Value::String(w.clone()));
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}
