//! `driftline gateway`: a reverse proxy for one Model that splits infer
//! requests across its version backends by weight.
//!
//! Weights come from a file (reloaded when it changes) or from the Model's
//! `status.traffic` through the Kubernetes API. A table swap never touches
//! requests in flight: each request picks its backend once, from the table
//! current when it arrived.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::net::HostsFileResolver;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::error::ServeError;
use super::metrics::{BackendCodeLabels, BackendLabels, GatewayMetrics};
use super::server::read_body;
use super::shadow::{Clients, Mirror, Shadow, Wire, mirror_from_model};
use crate::api::scrape::render_shadow_tallies;
use crate::api::{TrafficWeight, names, routes, version_name, version_number};

/// Response header naming the version that answered.
pub const VERSION_HEADER: &str = "x-driftline-version";

/// One version backend and its share of traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Version name, e.g. `v3`.
    pub version: String,
    /// Base URL, e.g. `http://wine-quality-v3.ml.svc:8080`.
    pub url: String,
    /// Relative weight (percent by convention).
    pub weight: u32,
}

/// The backends of one Model and their weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightTable {
    pub backends: Vec<Backend>,
}

impl WeightTable {
    /// Parses a JSON or YAML weights file and checks it; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ServeError> {
        let table: WeightTable = serde_yaml::from_str(text).map_err(|e| ServeError::Weights {
            path: source.to_string(),
            reason: "expected {\"backends\": [{\"version\", \"url\", \"weight\"}, …]}".into(),
            source: Some(Box::new(e)),
        })?;
        table.validate().map_err(|reason| ServeError::Weights {
            path: source.to_string(),
            reason,
            source: None,
        })?;
        Ok(table)
    }

    /// Checks that versions are unique, URLs are http(s) and some weight is positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("no backends listed".into());
        }
        for (i, b) in self.backends.iter().enumerate() {
            if b.version.is_empty() {
                return Err(format!("backend {i} has an empty version"));
            }
            if self.backends[..i].iter().any(|o| o.version == b.version) {
                return Err(format!("version `{}` is listed twice", b.version));
            }
            let uri: Uri = b.url.parse().map_err(|e| {
                format!("backend `{}`: url `{}` is not a URL: {e}", b.version, b.url)
            })?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(format!(
                    "backend `{}`: url `{}` must be http://host:port",
                    b.version, b.url
                ));
            }
        }
        if self.total_weight() == 0 {
            return Err("every weight is 0; at least one backend must take traffic".into());
        }
        Ok(())
    }

    /// Sum of the weights.
    pub fn total_weight(&self) -> u64 {
        self.backends.iter().map(|b| u64::from(b.weight)).sum()
    }

    /// The backend owning point `r` of `[0, total_weight)`.
    pub fn pick(&self, r: u64) -> Option<&Backend> {
        let total = self.total_weight();
        if total == 0 {
            return None;
        }
        let mut point = r % total;
        for b in &self.backends {
            let w = u64::from(b.weight);
            if point < w {
                return Some(b);
            }
            point -= w;
        }
        None
    }

    /// The backend with the largest weight (the stable version), first on ties.
    pub fn heaviest(&self) -> Option<&Backend> {
        self.backends.iter().rev().max_by_key(|b| b.weight)
    }

    /// The backend serving `version` (`v3`: the one version grammar,
    /// [`version_number`]; anything else names no backend).
    pub fn by_version(&self, version: &str) -> Option<&Backend> {
        let n = version_number(version)?;
        self.backends
            .iter()
            .find(|b| version_number(&b.version) == Some(n))
    }
}

/// Maps a Model's `status` (as JSON, as the watch delivers it) to a weight
/// table: `status.traffic` is read as the API's [`TrafficWeight`] list, so
/// the gateway and the operator share one shape; see [`weights_from_traffic`].
pub fn weights_from_status(
    model: &str,
    namespace: &str,
    status: &serde_json::Value,
    template: Option<&str>,
) -> Result<WeightTable, String> {
    let traffic = status
        .get("traffic")
        .filter(|t| t.is_array())
        .ok_or_else(|| format!("Model {namespace}/{model} has no status.traffic list yet"))?;
    let traffic: Vec<TrafficWeight> = serde_json::from_value(traffic.clone()).map_err(|e| {
        format!("Model {namespace}/{model}: status.traffic is not a list of {{version: v<n>, weight: 0..100}}: {e}")
    })?;
    weights_from_traffic(model, namespace, &traffic, template)
}

/// The weight table of a Model's `status.traffic`: each version `v<n>`
/// resolves to its serving Service ([`names::serving_url`]), or through
/// `template` (`{model}`, `{namespace}`, `{version}` = `n`) when one is given.
pub fn weights_from_traffic(
    model: &str,
    namespace: &str,
    traffic: &[TrafficWeight],
    template: Option<&str>,
) -> Result<WeightTable, String> {
    let mut backends = Vec::with_capacity(traffic.len());
    for (i, entry) in traffic.iter().enumerate() {
        let n = version_number(&entry.version).ok_or_else(|| {
            format!(
                "status.traffic[{i}]: version `{}` is not `v<n>`",
                entry.version
            )
        })?;
        let url = backend_url(model, namespace, n, template);
        backends.push(Backend {
            version: version_name(n),
            url: url.trim_end_matches('/').to_string(),
            weight: entry.weight,
        });
    }
    let table = WeightTable { backends };
    table.validate()?;
    Ok(table)
}

/// Version `n`'s base URL: its serving Service, or `template` with
/// `{model}`, `{namespace}` and `{version}` (= `n`) filled in.
fn backend_url(model: &str, namespace: &str, n: u32, template: Option<&str>) -> String {
    match template {
        Some(t) => t
            .replace("{model}", model)
            .replace("{namespace}", namespace)
            .replace("{version}", &n.to_string()),
        None => names::serving_url(model, namespace, n),
    }
}

/// How the gateway routes.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Route requests with the same `id` to the same backend.
    pub sticky: bool,
    /// Largest request body read when stickiness needs the `id`.
    pub body_limit: usize,
    /// Time allowed for a backend to answer.
    pub backend_timeout: Duration,
    /// What the gateway routes for (`ns/name`, or the weights file), for its logs.
    pub model: String,
    /// Where the rows a shadow candidate disagreed on are kept, if anywhere.
    pub shadow_root: Option<String>,
    /// The feedback prefix whose annotation queue gets disagreeing rows,
    /// and how many a day this gateway queues at most.
    pub annotation_queue: Option<(String, u32)>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            sticky: false,
            body_limit: 8 * 1024 * 1024,
            backend_timeout: Duration::from_secs(30),
            model: String::new(),
            shadow_root: None,
            annotation_queue: None,
        }
    }
}

struct GatewayState {
    weights: watch::Receiver<Arc<WeightTable>>,
    /// The candidate in shadow, while there is one.
    mirror: watch::Receiver<Option<Arc<Mirror>>>,
    shadow: Arc<Shadow>,
    client: Client<HttpConnector<HostsFileResolver>, Body>,
    /// HTTP/2 with prior knowledge, for gRPC calls.
    grpc_client: Client<HttpConnector<HostsFileResolver>, Body>,
    metrics: GatewayMetrics,
    config: GatewayConfig,
}

/// The gateway's request spans name its Model; the version is chosen per request.
#[derive(Clone)]
struct GatewayModel(Arc<str>);

impl super::trace::ServedModel for GatewayModel {
    fn model_and_version(&self) -> (String, String) {
        (self.0.to_string(), "gateway".into())
    }
}

/// Publishes new weight tables to a running gateway.
#[derive(Clone)]
pub struct WeightsHandle {
    sender: Arc<watch::Sender<Arc<WeightTable>>>,
    mirror: Arc<watch::Sender<Option<Arc<Mirror>>>>,
    state: Arc<GatewayState>,
}

impl WeightsHandle {
    /// Replaces the weight table; requests already routed are not affected.
    pub fn set(&self, table: WeightTable) {
        for b in &table.backends {
            self.state
                .metrics
                .weight
                .get_or_create(&BackendLabels {
                    version: b.version.clone(),
                })
                .set(i64::from(b.weight));
        }
        self.state.metrics.reloads.inc();
        tracing::info!(backends = ?table.backends, "gateway weights updated");
        self.sender.send_replace(Arc::new(table));
    }

    /// Starts, changes or stops mirroring to a candidate in shadow.
    pub fn set_mirror(&self, mirror: Option<Mirror>) {
        if self.mirror.borrow().as_deref() == mirror.as_ref() {
            return;
        }
        match &mirror {
            Some(m) => {
                tracing::info!(version = %m.version, sample = m.sample, "gateway mirrors to the shadow candidate")
            }
            None => tracing::info!("gateway mirrors nothing"),
        }
        self.mirror.send_replace(mirror.map(Arc::new));
    }

    /// Counts a refused weight table.
    pub fn refused(&self, reason: &str) {
        self.state.metrics.reload_errors.inc();
        tracing::warn!(%reason, "weight table refused; keeping the previous one");
    }

    /// How many weight tables were refused since start (the
    /// `driftline_gateway_weight_reload_errors_total` metric).
    pub fn refusals(&self) -> u64 {
        self.state.metrics.reload_errors.get()
    }

    /// The current table.
    pub fn current(&self) -> Arc<WeightTable> {
        self.sender.borrow().clone()
    }
}

/// Builds the gateway's router and the handle that changes its weights.
pub fn gateway_router(initial: WeightTable, config: GatewayConfig) -> (Router, WeightsHandle) {
    let (sender, receiver) = watch::channel(Arc::new(WeightTable { backends: vec![] }));
    let (mirror_sender, mirror) = watch::channel(None);
    // Backends are Services: the embedded cluster's hosts file, else DNS.
    let mut connector = HttpConnector::new_with_resolver(HostsFileResolver::default());
    connector.set_nodelay(true);
    let clients = || Clients {
        rest: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector.clone()),
        grpc: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http2_only(true)
            .build(connector.clone()),
    };
    let Clients {
        rest: client,
        grpc: grpc_client,
    } = clients();
    // The shadow's own pools: its connections are driven by its own
    // low-priority thread and never carry a user's request.
    let shadow = Shadow::start(
        clients(),
        config.backend_timeout,
        config.shadow_root.clone(),
        config.annotation_queue.clone(),
    );
    let state = Arc::new(GatewayState {
        weights: receiver,
        mirror,
        shadow: Arc::new(shadow),
        client,
        grpc_client,
        metrics: GatewayMetrics::new(),
        config,
    });
    let handle = WeightsHandle {
        sender: Arc::new(sender),
        mirror: Arc::new(mirror_sender),
        state: state.clone(),
    };
    handle.set(initial);
    let router = Router::new()
        .route(routes::METRICS, get(metrics))
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .route(routes::READYZ, get(|| async { "ok" }))
        .route("/gateway/weights", get(current_weights))
        .fallback(proxy)
        .layer(super::trace::layer(GatewayModel(
            state.config.model.clone().into(),
        )))
        .with_state(state);
    (router, handle)
}

async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    let mut text = state.metrics.render();
    // The shadow tallies are counters of their own families; they go before
    // OpenMetrics' closing `# EOF`.
    let shadow = render_shadow_tallies(&state.shadow.tallies());
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &shadow),
        None => text.push_str(&shadow),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn current_weights(State(state): State<Arc<GatewayState>>) -> Response {
    let table = state.weights.borrow().clone();
    axum::Json(table.as_ref().clone()).into_response()
}

/// Which backend a request goes to.
enum Route {
    /// Split by weight (or by `id` hash when sticky).
    Weighted,
    /// A path naming a version: that version's backend.
    Version(String),
    /// Any other path: the stable (heaviest) backend, or by `id` hash when sticky.
    Stable,
}

fn route_of(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v2", "models", _, "infer"] => Route::Weighted,
        ["inference.GRPCInferenceService", "ModelInfer"] => Route::Weighted,
        ["v2", "models", _, "versions", v, ..] => Route::Version((*v).to_string()),
        _ => Route::Stable,
    }
}

fn sticky_point(id: &str) -> u64 {
    // SipHash with fixed keys: the same id maps to the same point in every gateway replica.
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

#[derive(Deserialize)]
struct RequestId {
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Whether a request is a gRPC call (routed over HTTP/2, answered with gRPC statuses).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    Wire::of(headers) == Wire::Grpc
}

/// Feedback bodies may be `{id, label}` or a batch; the first id decides.
/// A binary infer body's JSON is its first `json_length` bytes.
fn first_id(body: &[u8], json_length: Option<usize>) -> Option<String> {
    let json = match json_length {
        Some(n) => body.get(..n)?,
        None => body,
    };
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let id = match &value {
        serde_json::Value::Array(items) => items.first()?.get("id")?.clone(),
        serde_json::Value::Object(map) => match map.get("feedback") {
            Some(serde_json::Value::Array(items)) => items.first()?.get("id")?.clone(),
            _ => {
                serde_json::from_value::<RequestId>(value.clone())
                    .ok()?
                    .id?
            }
        },
        _ => return None,
    };
    Some(match id {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

async fn proxy(State(state): State<Arc<GatewayState>>, request: Request) -> Response {
    let grpc = is_grpc(request.headers());
    match forward(&state, request).await {
        Ok(response) => response,
        Err(e) if grpc => tonic::Status::from(e).into_http(),
        Err(e) => e.into_response(),
    }
}

async fn forward(state: &GatewayState, request: Request) -> Result<Response, ServeError> {
    let table = state.weights.borrow().clone();
    let (mut parts, body) = request.into_parts();
    let route = route_of(parts.uri.path());
    let grpc = is_grpc(&parts.headers);
    // Mirrored: infer calls over REST (JSON or binary) and gRPC, `sample`
    // of them, while a candidate is in shadow. The request and the
    // champion's answer are copied as they stream through (up to
    // `body_limit`; a larger one is not mirrored), so neither waits.
    let limit = state.config.body_limit;
    let mirror = state
        .mirror
        .borrow()
        .clone()
        .filter(|m| matches!(route, Route::Weighted) && state.shadow.admit(m));
    let sticky = state.config.sticky && !grpc && !matches!(route, Route::Version(_));
    let (body, sticky_id) = if sticky {
        let bytes = read_body(body, limit).await?;
        let json_length = parts
            .headers
            .get(super::binary::HEADER_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let id = first_id(&bytes, json_length);
        (Body::from(bytes), id)
    } else {
        (body, None)
    };
    let (body, in_flight) = match mirror {
        Some(mirror) => {
            let (body, call) = Shadow::copy_request(mirror, &parts.headers, body, limit);
            (body, Some(call))
        }
        None => (body, None),
    };
    let backend = match (&route, &sticky_id) {
        (Route::Version(v), _) => {
            table
                .by_version(v)
                .ok_or_else(|| ServeError::UnknownVersion {
                    model: "this model".into(),
                    requested: v.clone(),
                    served: table
                        .backends
                        .iter()
                        .map(|b| b.version.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
        }
        (_, Some(id)) => table.pick(sticky_point(id)).ok_or(ServeError::NoBackend)?,
        (Route::Weighted, None) => table
            .pick(rand::random::<u64>())
            .ok_or(ServeError::NoBackend)?,
        (Route::Stable, None) => table.heaviest().ok_or(ServeError::NoBackend)?,
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let target = format!("{}{}", backend.url.trim_end_matches('/'), path_and_query);
    parts.uri = target.parse().map_err(|e| ServeError::Backend {
        version: backend.version.clone(),
        url: target.clone(),
        source: Box::new(e),
    })?;
    // Hop-by-hop headers belong to the client's connection, not the backend's.
    for h in [
        header::CONNECTION,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        parts.headers.remove(h);
    }
    parts.headers.remove(HeaderName::from_static("keep-alive"));
    let client = if grpc {
        parts.version = http::Version::HTTP_2;
        &state.grpc_client
    } else {
        parts.version = http::Version::HTTP_11;
        &state.client
    };
    let labels = BackendLabels {
        version: backend.version.clone(),
    };
    let started = Instant::now();
    let sent = tokio::time::timeout(
        state.config.backend_timeout,
        client.request(Request::from_parts(parts, body)),
    )
    .await;
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let response = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            state.metrics.errors.get_or_create(&labels).inc();
            return Err(ServeError::Backend {
                version: backend.version.clone(),
                url: backend.url.clone(),
                source: Box::new(e),
            });
        }
        Err(_) => {
            state.metrics.errors.get_or_create(&labels).inc();
            return Err(ServeError::Timeout(state.config.backend_timeout));
        }
    };
    state
        .metrics
        .requests
        .get_or_create(&BackendCodeLabels {
            version: backend.version.clone(),
            code: response.status().as_u16(),
        })
        .inc();
    let (mut parts, body) = response.into_parts();
    if let Ok(v) = HeaderValue::from_str(&backend.version) {
        parts
            .headers
            .insert(HeaderName::from_static(VERSION_HEADER), v);
    }
    let body = match in_flight {
        Some(call) if parts.status.is_success() => {
            let answer = (&parts.headers, body);
            state
                .shadow
                .copy_answer(call, path_and_query, answer, limit, started)
        }
        _ => Body::new(body),
    };
    Ok(Response::from_parts(parts, body))
}

/// Where the gateway's weights come from.
#[derive(Debug, Clone)]
pub enum WeightsSource {
    /// A JSON/YAML file, polled for changes.
    File { path: PathBuf, poll: Duration },
    /// A Model's `status.traffic`, watched through the Kubernetes API.
    Model {
        namespace: String,
        name: String,
        /// Backend URLs; `None`: each version's serving Service.
        url_template: Option<String>,
    },
}

/// Reads a weights file.
pub async fn read_weights_file(path: &std::path::Path) -> Result<WeightTable, ServeError> {
    weights_from_read(
        path,
        &tokio::fs::read(path).await.map_err(|e| e.to_string()),
    )
}

/// The table in a weights file's bytes, or why there is none.
fn weights_from_read(
    path: &std::path::Path,
    read: &Result<Vec<u8>, String>,
) -> Result<WeightTable, ServeError> {
    let failed = |reason: String| ServeError::Weights {
        path: path.display().to_string(),
        reason,
        source: None,
    };
    let bytes = read.as_ref().map_err(|e| failed(e.clone()))?;
    let text = std::str::from_utf8(bytes).map_err(|e| ServeError::Weights {
        path: path.display().to_string(),
        reason: "not UTF-8".into(),
        source: Some(Box::new(e)),
    })?;
    WeightTable::parse(text, &path.display().to_string())
}

/// Polls a weights file and publishes each valid change; an invalid file
/// keeps the previous table and is counted once per distinct content.
///
/// Changes are found by comparing the file's bytes, not its mtime and size:
/// two writes within one mtime tick can have equal lengths (`0/100` then
/// `90/10`), and a ConfigMap volume swaps a symlink without touching the
/// file's own stamp. Weights files are a few hundred bytes, so reading one
/// per tick costs nothing that matters.
pub async fn watch_weights_file(path: PathBuf, poll: Duration, handle: WeightsHandle) {
    // Nothing is remembered at first: the file may have changed between the
    // caller's initial read and this task's first run, so the first tick
    // always parses and compares with the table being served.
    let mut last = None;
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = tokio::fs::read(&path).await.map_err(|e| e.to_string());
        if last.as_ref() == Some(&now) {
            continue;
        }
        match weights_from_read(&path, &now) {
            Ok(table) if *handle.current() == table => {}
            Ok(table) => handle.set(table),
            Err(e) => handle.refused(&e.to_string()),
        }
        last = Some(now);
    }
}

/// Watches a Model through the Kubernetes API and publishes its traffic
/// weights whenever its status changes. Returns only on a setup error.
pub async fn watch_model_status(
    client: kube::Client,
    namespace: String,
    name: String,
    url_template: Option<String>,
    handle: WeightsHandle,
) -> Result<(), ServeError> {
    use futures::StreamExt;
    use kube::api::{Api, ApiResource, DynamicObject};
    use kube::runtime::watcher;

    // Untyped on purpose: a status the gateway cannot route is counted as a
    // refusal (and the last good table kept), not a watch error.
    let resource = ApiResource::erase::<crate::api::Model>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).boxed();
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching Model {namespace}/{name} failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let status = object
            .data
            .get("status")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        match weights_from_status(&name, &namespace, &status, url_template.as_deref()) {
            Ok(table) if *handle.current() == table => {}
            Ok(table) => handle.set(table),
            Err(reason) => handle.refused(&reason),
        }
        let spec = object.data.get("spec").cloned().unwrap_or_default();
        let url_of = |n| backend_url(&name, &namespace, n, url_template.as_deref());
        match mirror_from_model(&spec, &status, url_of) {
            Ok(mirror) => handle.set_mirror(mirror),
            Err(reason) => {
                // Users keep the champion's answers either way; only the
                // comparison stops until the status reads again.
                tracing::warn!(%reason, "shadow mirror refused; mirroring nothing");
                handle.set_mirror(None);
            }
        }
    }
    Err(ServeError::Kube {
        action: format!("watch of Model {namespace}/{name} ended"),
        source: None,
    })
}

/// Binds the gateway and serves until the process ends.
pub async fn run_gateway(
    addr: SocketAddr,
    source: WeightsSource,
    config: GatewayConfig,
) -> Result<(), ServeError> {
    let initial = match &source {
        WeightsSource::File { path, .. } => read_weights_file(path).await?,
        WeightsSource::Model { .. } => WeightTable { backends: vec![] },
    };
    let (router, handle) = gateway_router(initial, config);
    match source {
        WeightsSource::File { path, poll } => {
            tokio::spawn(watch_weights_file(path, poll, handle.clone()));
        }
        WeightsSource::Model {
            namespace,
            name,
            url_template,
        } => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| ServeError::Kube {
                    action: "cannot connect to the API server".into(),
                    source: Some(e),
                })?;
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    watch_model_status(client, namespace, name, url_template, handle).await
                {
                    tracing::error!(error = %e, "gateway lost its weight source");
                }
            });
        }
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    tracing::info!(%addr, "gateway listening");
    // No Nagle, as for the model server: gRPC answers are several small writes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .await
        .map_err(ServeError::Server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(weights: &[(&str, u32)]) -> WeightTable {
        WeightTable {
            backends: weights
                .iter()
                .map(|(v, w)| Backend {
                    version: v.to_string(),
                    url: format!("http://127.0.0.1:9/{v}"),
                    weight: *w,
                })
                .collect(),
        }
    }

    #[test]
    fn pick_follows_the_weights_exactly_over_one_cycle() {
        let t = table(&[("v1", 90), ("v2", 10)]);
        let picks: Vec<&str> = (0..100)
            .map(|r| t.pick(r).unwrap().version.as_str())
            .collect();
        assert_eq!(picks.iter().filter(|v| **v == "v1").count(), 90);
        assert_eq!(t.heaviest().unwrap().version, "v1");
        assert_eq!(t.by_version("v2").unwrap().version, "v2");
        // One version grammar: a bare number, or a padded one, names no version.
        assert!(t.by_version("2").is_none());
        assert!(t.by_version("v02").is_none());
    }

    #[test]
    fn model_status_maps_to_backends_through_the_url_template() {
        let status =
            json!({"traffic": [{"version": "v3", "weight": 90}, {"version": "v4", "weight": 10}]});
        let t = weights_from_status("wine-quality", "ml", &status, None).unwrap();
        assert_eq!(
            t.backends,
            vec![
                Backend {
                    version: "v3".into(),
                    url: "http://wine-quality-v3.ml.svc:8080".into(),
                    weight: 90
                },
                Backend {
                    version: "v4".into(),
                    url: "http://wine-quality-v4.ml.svc:8080".into(),
                    weight: 10
                },
            ]
        );
        let t =
            weights_from_status("m", "ns", &status, Some("http://127.0.0.1:{version}000")).unwrap();
        assert_eq!(t.backends[0].url, "http://127.0.0.1:3000");
    }

    #[test]
    fn model_status_without_traffic_or_with_bad_entries_is_refused() {
        let err = weights_from_status("m", "ns", &json!({}), None).unwrap_err();
        assert!(err.contains("no status.traffic"), "{err}");
        let err =
            weights_from_status("m", "ns", &json!({"traffic": [{"weight": 1}]}), None).unwrap_err();
        assert!(err.contains("status.traffic is not a list"), "{err}");
        let err = weights_from_status(
            "m",
            "ns",
            &json!({"traffic": [{"version": "3", "weight": 100}]}),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("status.traffic[0]: version `3` is not `v<n>`"),
            "{err}"
        );
        let err = weights_from_status(
            "m",
            "ns",
            &json!({"traffic": [{"version": 1, "weight": -5}]}),
            None,
        )
        .unwrap_err();
        assert!(err.contains("status.traffic is not a list"), "{err}");
        let err = weights_from_status(
            "m",
            "ns",
            &json!({"traffic": [{"version": "v1", "weight": 0}]}),
            None,
        )
        .unwrap_err();
        assert!(err.contains("every weight is 0"), "{err}");
    }

    #[test]
    fn weights_files_are_checked() {
        let ok = WeightTable::parse(
            r#"{"backends":[{"version":"v3","url":"http://a:1","weight":90}]}"#,
            "w.json",
        )
        .unwrap();
        assert_eq!(ok.backends[0].weight, 90);
        let yaml = "backends:\n- {version: v3, url: 'http://a:1', weight: 50}\n- {version: v4, url: 'http://b:1', weight: 50}\n";
        assert_eq!(
            WeightTable::parse(yaml, "w.yaml").unwrap().backends.len(),
            2
        );
        for (text, needle) in [
            (r#"{"backends":[]}"#, "no backends"),
            (
                r#"{"backends":[{"version":"v3","url":"ftp://a","weight":1}]}"#,
                "must be http://",
            ),
            (
                r#"{"backends":[{"version":"v3","url":"http://a:1","weight":1},{"version":"v3","url":"http://b:1","weight":1}]}"#,
                "listed twice",
            ),
            (
                r#"{"backends":[{"version":"v3","url":"http://a:1"}]}"#,
                "missing field `weight`",
            ),
        ] {
            let err = WeightTable::parse(text, "w.json").unwrap_err().message();
            assert!(err.contains("w.json") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn paths_route_by_kind() {
        assert!(matches!(route_of("/v2/models/m/infer"), Route::Weighted));
        assert!(matches!(route_of("/v2/models/m/versions/3/infer"), Route::Version(v) if v == "3"));
        assert!(matches!(route_of("/v2/models/m/ready"), Route::Stable));
        // Feedback follows the id when sticky (see `forward`), else the stable version.
        assert!(matches!(route_of("/v2/models/m/feedback"), Route::Stable));
        // gRPC: inference by weight, health and metadata to the stable version.
        assert!(matches!(
            route_of("/inference.GRPCInferenceService/ModelInfer"),
            Route::Weighted
        ));
        assert!(matches!(
            route_of("/inference.GRPCInferenceService/ModelReady"),
            Route::Stable
        ));
    }

    #[test]
    fn sticky_ids_are_read_from_infer_and_feedback_bodies() {
        assert_eq!(
            first_id(br#"{"id":"a","inputs":[]}"#, None).as_deref(),
            Some("a")
        );
        assert_eq!(
            first_id(br#"[{"id":"b","label":1}]"#, None).as_deref(),
            Some("b")
        );
        assert_eq!(
            first_id(br#"{"feedback":[{"id":"c","label":1}]}"#, None).as_deref(),
            Some("c")
        );
        assert_eq!(first_id(br#"{"inputs":[]}"#, None), None);
        // A binary body: the id is in the JSON before the tensor bytes.
        let mut binary = br#"{"id":"d","inputs":[]}"#.to_vec();
        let json_length = binary.len();
        binary.extend_from_slice(&[0, 0, 128, 63]);
        assert_eq!(first_id(&binary, Some(json_length)).as_deref(), Some("d"));
        assert_eq!(first_id(&binary, Some(binary.len() + 1)), None);
        assert_eq!(sticky_point("a"), sticky_point("a"));
    }
}
