//! The model server: Open Inference Protocol v2 endpoints, drift, feedback,
//! health and metrics for one loaded model.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::drift::{DriftConfig, DriftMonitor, ReferenceProfile};

use super::watch::{drift, feedback, feedback_stats, observe};

use super::error::ServeError;
use super::feedback::{
    FeedbackConfig, FeedbackHandle, FeedbackSink, LabelKind, ServedModel, ServedPredictions,
    ServedRecord, start_feedback,
};
use super::metrics::{ClassCounters, CodeLabels, RequestLabels, ServeMetrics};
use crate::api::{FeatureKind, Task};

use super::protocol::{
    DecodeError, DecodedBatch, InferRequest, InferResponse, InputSchema, ModelMetadata, OutputData,
    ResponseOutput, ServerMetadata, TensorMetadata,
};

/// Everything the server needs to know about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub task: Task,
    /// The classes a classifier chooses from, in its output order (empty for regression).
    pub classes: Vec<String>,
    /// The label column (the key labels are written under in feedback files).
    pub target: String,
    /// Features in the model's order (none for an image model).
    pub features: Vec<(String, FeatureKind)>,
    /// Image models: the name of the one input that carries images.
    pub image_input: Option<String>,
    pub reference: ReferenceProfile,
}

/// A model's answer for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// Class name per row (classification).
    pub labels: Vec<String>,
    /// Value per row (regression).
    pub values: Vec<f64>,
    /// Class probabilities per row (classification).
    pub probabilities: Option<Vec<Vec<f32>>>,
    /// Image models: what the drift monitor observes instead of input
    /// columns (image statistics, embedding directions), one vector per
    /// reference column; never sent to the client.
    pub monitored: Option<Vec<Vec<f64>>>,
}

/// A loaded model the server can run.
pub trait Predictor: Send + Sync + 'static {
    /// Name, version, task and schema.
    fn info(&self) -> &ModelInfo;
    /// Predicts every row of the batch.
    fn predict(&self, batch: &DecodedBatch) -> Result<ModelOutput, String>;
    /// Image models: predicts decoded images.
    fn predict_images(&self, _images: &[crate::data::Pixels]) -> Result<ModelOutput, String> {
        Err("this model reads table columns, not images".into())
    }
}

/// How the server runs.
#[derive(Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Name served under (default: the model's).
    pub name: Option<String>,
    /// Version served under (default: the model's).
    pub version: Option<String>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// Inferences running at once; more get 503 with Retry-After.
    pub max_concurrency: usize,
    pub max_rows: usize,
    /// Bounds on decoded images (image models).
    pub images: super::images::ImageLimits,
    pub drift: DriftConfig,
    pub feedback: FeedbackConfig,
    pub feedback_sink: Option<Arc<dyn FeedbackSink>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], crate::api::names::SERVE_PORT)),
            name: None,
            version: None,
            body_limit: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrency: 256,
            max_rows: 65_536,
            images: super::images::ImageLimits::default(),
            drift: DriftConfig::default(),
            feedback: FeedbackConfig::default(),
            feedback_sink: None,
        }
    }
}

pub(super) struct Loaded {
    pub(super) model: Arc<dyn Predictor>,
    pub(super) name: String,
    pub(super) version: String,
    pub(super) schema: InputSchema,
    pub(super) drift: Mutex<DriftMonitor>,
    pub(super) feedback: FeedbackHandle,
    /// A classifier's prediction counters, one per class.
    pub(super) class_counters: ClassCounters,
}

pub(super) struct AppState {
    loaded: OnceLock<Loaded>,
    pub(super) config: ServerConfig,
    pub(super) metrics: Arc<ServeMetrics>,
    /// Inference slots, borrowed for each inference (no shared count
    /// touched to hold one beyond the semaphore's own).
    permits: Semaphore,
    /// The `infer`/200 request counter, found once: most requests count
    /// here, and finding it in the family took a shared lock each time.
    infer_ok: OnceLock<prometheus_client::metrics::counter::Counter>,
}

/// A server bound to its address; it loads the model in the background.
/// Dropping it stops the server.
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    state: Arc<AppState>,
    serve: tokio::task::JoinHandle<Result<(), ServeError>>,
    load: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl RunningServer {
    /// Waits until the model is loaded and warmed up, or says why it failed.
    pub async fn ready(&mut self) -> Result<(), ServeError> {
        if let Some(load) = self.load.take() {
            load.await.map_err(|e| ServeError::Load {
                uri: "model".into(),
                source: Box::new(e),
            })??;
        }
        self.state
            .loaded
            .get()
            .map(|_| ())
            .ok_or(ServeError::NotReady)
    }

    /// Writes buffered feedback now; returns the rows written.
    pub async fn flush_feedback(&self) -> Result<usize, ServeError> {
        match self.state.loaded.get() {
            Some(l) => l.feedback.flush().await,
            None => Ok(0),
        }
    }

    /// Serves until the listener fails; a load failure ends the server too.
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        self.ready().await?;
        (&mut self.serve)
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e.to_string())))?
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.serve.abort();
        if let Some(load) = &self.load {
            load.abort();
        }
    }
}

/// Binds, then loads and warms the model in the background; `/readyz`
/// answers 200 only once the warm-up inference succeeded.
pub async fn start<F>(config: ServerConfig, load: F) -> Result<RunningServer, ServeError>
where
    F: Future<Output = Result<Arc<dyn Predictor>, ServeError>> + Send + 'static,
{
    let metrics = Arc::new(ServeMetrics::new());
    let state = Arc::new(AppState {
        loaded: OnceLock::new(),
        permits: Semaphore::new(config.max_concurrency.max(1)),
        infer_ok: OnceLock::new(),
        config,
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(state.config.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: state.config.addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    let app = super::front::Front::new(state.clone(), router(state.clone()));
    let serve = tokio::spawn(async move {
        super::listen::serve(listener, app).await;
        Ok(())
    });
    let load_state = state.clone();
    let load = tokio::spawn(async move {
        let model = load.await?;
        let loaded = prepare(&load_state, model).await?;
        let _ = load_state.loaded.set(loaded);
        tracing::info!("model loaded and warmed up; ready");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        state,
        serve,
        load: Some(load),
    })
}

async fn prepare(state: &AppState, model: Arc<dyn Predictor>) -> Result<Loaded, ServeError> {
    let info = model.info().clone();
    let output = super::predict::warm_up(model.clone()).await?;
    let answered = match info.task {
        Task::Classification => output.labels.len(),
        Task::Regression => output.values.len(),
    };
    if answered != 1 {
        return Err(ServeError::WarmUp(format!(
            "one row in, {answered} predictions out"
        )));
    }
    let drift = DriftMonitor::new(
        info.reference.clone(),
        state.config.drift.clone(),
        Utc::now(),
    )?;
    let labels = match info.task {
        Task::Classification => LabelKind::Class(info.classes.clone()),
        Task::Regression => LabelKind::Value,
    };
    let version = state
        .config
        .version
        .clone()
        .unwrap_or_else(|| info.version.clone());
    let feedback = start_feedback(
        state.config.feedback.clone(),
        ServedModel {
            version: version.clone(),
            features: info.features.iter().map(|(n, _)| n.clone()).collect(),
            target: info.target.clone(),
            labels,
        },
        state.config.feedback_sink.clone(),
        state.metrics.clone(),
    );
    Ok(Loaded {
        name: state
            .config
            .name
            .clone()
            .unwrap_or_else(|| info.name.clone()),
        version,
        schema: InputSchema::new(info.features.clone(), state.config.max_rows),
        model,
        drift: Mutex::new(drift),
        feedback,
        class_counters: ClassCounters::new(&state.metrics.predictions, &info.classes),
    })
}

fn router(state: Arc<AppState>) -> Router {
    use crate::api::routes;
    Router::new()
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .route(routes::READYZ, get(readyz))
        .route(routes::METRICS, get(metrics))
        .route(routes::SERVER_METADATA, get(server_metadata))
        .route(
            routes::LIVE,
            get(|| async { Json(serde_json::json!({ "live": true })) }),
        )
        .route(routes::READY, get(health_ready))
        .route(routes::MODEL, get(model_metadata))
        .route(routes::MODEL_VERSION, get(model_metadata))
        .route(routes::MODEL_READY, get(model_ready))
        .route(routes::MODEL_VERSION_READY, get(model_ready))
        .route(routes::INFER, post(infer))
        .route(routes::VERSION_INFER, post(infer))
        .route(routes::FEEDBACK, post(feedback).get(feedback_stats))
        .route(routes::DRIFT, get(drift))
        .route_service(
            "/inference.GRPCInferenceService/{*method}",
            super::grpc::service(state.clone()),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(super::trace::layer(state.clone()))
        .with_state(state)
}

impl super::trace::ServedModel for Arc<AppState> {
    fn model_and_version(&self) -> (String, String) {
        match self.loaded.get() {
            Some(loaded) => {
                let info = loaded.model.info();
                (info.name.clone(), info.version.clone())
            }
            // Still loading: what the flags named, if anything.
            None => (
                self.config.name.clone().unwrap_or_default(),
                self.config.version.clone().unwrap_or_default(),
            ),
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": format!("no endpoint {method} {}", uri.path()) })),
    )
        .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({ "error": format!("{method} is not allowed on {}", uri.path()) })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct ModelPath {
    pub(super) name: String,
    #[serde(default)]
    pub(super) version: Option<String>,
}

impl AppState {
    pub(super) fn loaded(&self) -> Result<&Loaded, ServeError> {
        self.loaded.get().ok_or(ServeError::NotReady)
    }

    /// The loaded model, if `path` names it (and its version).
    pub(super) fn model_for(&self, path: &ModelPath) -> Result<&Loaded, ServeError> {
        let loaded = self.loaded()?;
        if path.name != loaded.name {
            return Err(ServeError::UnknownModel {
                requested: path.name.clone(),
                served: loaded.name.clone(),
            });
        }
        if let Some(v) = &path.version
            && *v != loaded.version
        {
            return Err(ServeError::UnknownVersion {
                model: loaded.name.clone(),
                requested: v.clone(),
                served: loaded.version.clone(),
            });
        }
        Ok(loaded)
    }

    fn count(&self, endpoint: &'static str, status: StatusCode) {
        let code = status.as_u16();
        self.metrics
            .requests
            .get_or_create(&RequestLabels { endpoint, code })
            .inc();
        if status.is_client_error() || status.is_server_error() {
            self.metrics
                .errors
                .get_or_create(&CodeLabels { code })
                .inc();
        }
    }
}

pub(super) fn answer<T: serde::Serialize>(
    state: &AppState,
    endpoint: &'static str,
    result: Result<T, ServeError>,
) -> Response {
    let response = match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    };
    state.count(endpoint, response.status());
    response
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.loaded.get() {
        Some(_) => (StatusCode::OK, "ready").into_response(),
        None => ServeError::NotReady.into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn server_metadata() -> Json<ServerMetadata> {
    Json(server_metadata_value())
}

/// The server's name, version and protocol extensions.
pub(super) fn server_metadata_value() -> ServerMetadata {
    ServerMetadata {
        name: "driftline".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec!["binary_tensor_data".into()],
    }
}

async fn health_ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.loaded.get().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({ "ready": ready }))).into_response()
}

async fn model_ready(State(state): State<Arc<AppState>>, Path(path): Path<ModelPath>) -> Response {
    match state.model_for(&path) {
        Ok(loaded) => {
            Json(serde_json::json!({ "name": loaded.name, "ready": true })).into_response()
        }
        Err(ServeError::NotReady) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "name": path.name, "ready": false })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(path): Path<ModelPath>,
) -> Response {
    let result = state.model_for(&path).map(metadata_of);
    answer(&state, "metadata", result)
}

/// A loaded model's metadata, as both front ends report it.
pub(super) fn metadata_of(loaded: &Loaded) -> ModelMetadata {
    {
        let info = loaded.model.info();
        let image = info.image_input.iter().map(|name| TensorMetadata {
            name: name.clone(),
            datatype: "BYTES".into(),
            shape: vec![-1],
        });
        let inputs = image
            .chain(info.features.iter().map(|(name, kind)| TensorMetadata {
                name: name.clone(),
                datatype: match kind {
                    FeatureKind::Numeric => "FP32".into(),
                    FeatureKind::Categorical => "BYTES".into(),
                    FeatureKind::Boolean => "BOOL".into(),
                },
                shape: vec![-1],
            }))
            .collect();
        let mut outputs = vec![TensorMetadata {
            name: "predictions".into(),
            datatype: match info.task {
                Task::Classification => "BYTES".into(),
                Task::Regression => "FP64".into(),
            },
            shape: vec![-1],
        }];
        if info.task == Task::Classification {
            let classes = &info.classes;
            outputs.push(TensorMetadata {
                name: "probabilities".into(),
                datatype: "FP32".into(),
                shape: vec![-1, classes.len() as i64],
            });
        }
        ModelMetadata {
            name: loaded.name.clone(),
            versions: vec![loaded.version.clone()],
            platform: "driftline".into(),
            inputs,
            outputs,
        }
    }
}

/// Reads a whole request body (axum's, or hyper's as the front door takes
/// it), refusing more than `limit` bytes (413).
pub(super) async fn read_body<B>(body: B, limit: usize) -> Result<bytes::Bytes, ServeError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<super::error::Cause>,
{
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ServeError::BodyTooLarge { limit }
            } else {
                ServeError::Body(e)
            }
        })
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(path): Path<ModelPath>,
    request: Request,
) -> Response {
    super::front::infer_response(&state, &path, request).await
}

/// Runs one inference under the inference slots and the request timeout, and
/// counts its latency and status: the same for the REST and gRPC front ends.
pub(super) async fn guarded<T>(
    state: &AppState,
    work: impl Future<Output = Result<T, ServeError>>,
) -> Result<T, ServeError> {
    let started = Instant::now();
    let result = match state.permits.try_acquire() {
        Err(_) => Err(ServeError::Overloaded(state.config.max_concurrency)),
        Ok(_permit) => match tokio::time::timeout(state.config.request_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ServeError::Timeout(state.config.request_timeout)),
        },
    };
    state
        .metrics
        .infer_latency
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            state
                .infer_ok
                .get_or_init(|| {
                    state
                        .metrics
                        .requests
                        .get_or_create(&RequestLabels {
                            endpoint: "infer",
                            code: StatusCode::OK.as_u16(),
                        })
                        .clone()
                })
                .inc();
        }
        Err(e) => state.count("infer", e.status()),
    }
    result
}

/// One inference on the loaded model, shared by both front ends: decoding to
/// columns (unless the body was read straight into them: `decoded`), the
/// model, drift, feedback and metrics.
pub(super) async fn run_inference<'l>(
    state: &AppState,
    loaded: &'l Loaded,
    request: &mut InferRequest<'_>,
    decoded: Option<DecodedBatch>,
) -> Result<InferResponse<'l>, ServeError> {
    let info = loaded.model.info();
    let wanted = requested_outputs(&request.outputs, info.task)?;
    let (batch, output) = match &info.image_input {
        Some(name) => super::predict::images(state, loaded, request, name).await?,
        None => super::predict::columns(loaded, request, decoded).await?,
    };
    check_output(&output, info.task, batch.rows())?;
    let id = request
        .id
        .clone()
        // Encoded on the stack, not through `Display`'s formatter.
        .unwrap_or_else(|| {
            uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .to_owned()
        });
    // One clock read for the drift window and the remembered record.
    let now = Utc::now();
    observe(state, loaded, &batch, &output, now);
    let rows = batch.rows();
    if loaded.feedback.should_sample() {
        let predictions = match info.task {
            Task::Classification => {
                ServedPredictions::Labels(output.labels.iter().cloned().collect())
            }
            Task::Regression => ServedPredictions::Values(output.values.iter().copied().collect()),
        };
        loaded.feedback.record(ServedRecord {
            id: id.clone(),
            time: now,
            cells: batch,
            predictions,
            confidence: (0..rows)
                .filter_map(|i| super::watch::confidence(&output, i))
                .collect(),
            margins: match &output.probabilities {
                Some(p) if loaded.feedback.annotating() => p
                    .iter()
                    .filter_map(|row| super::annotation::margin(row))
                    .collect(),
                _ => Vec::new(),
            },
        });
    }
    let mut outputs = Vec::with_capacity(2);
    if wanted.predictions {
        outputs.push(match info.task {
            Task::Classification => ResponseOutput {
                name: "predictions".into(),
                shape: smallvec::smallvec![rows],
                datatype: "BYTES".into(),
                data: OutputData::Texts(output.labels),
            },
            Task::Regression => ResponseOutput {
                name: "predictions".into(),
                shape: smallvec::smallvec![rows],
                datatype: "FP64".into(),
                data: OutputData::Doubles(output.values),
            },
        });
    }
    if wanted.probabilities
        && let Some(p) = output.probabilities
    {
        let classes = p.first().map(Vec::len).unwrap_or(0);
        outputs.push(ResponseOutput {
            name: "probabilities".into(),
            shape: smallvec::smallvec![rows, classes],
            datatype: "FP32".into(),
            // A one-row answer's row as it is, not copied.
            data: OutputData::Numbers(match <[Vec<f32>; 1]>::try_from(p) {
                Ok([row]) => row,
                Err(p) => p.into_iter().flatten().collect(),
            }),
        });
    }
    Ok(InferResponse {
        model_name: Cow::Borrowed(&loaded.name),
        model_version: Some(Cow::Borrowed(&loaded.version)),
        id: Some(id),
        parameters: None,
        outputs,
    })
}

struct WantedOutputs {
    predictions: bool,
    probabilities: bool,
}

fn requested_outputs(
    outputs: &Option<Vec<super::protocol::RequestOutput>>,
    task: Task,
) -> Result<WantedOutputs, ServeError> {
    let classification = task == Task::Classification;
    let Some(list) = outputs else {
        return Ok(WantedOutputs {
            predictions: true,
            probabilities: classification,
        });
    };
    let mut wanted = WantedOutputs {
        predictions: false,
        probabilities: false,
    };
    for o in list {
        match o.name.as_str() {
            "predictions" => wanted.predictions = true,
            "probabilities" if classification => wanted.probabilities = true,
            other => {
                let outputs = if classification {
                    "`predictions`, `probabilities`"
                } else {
                    "`predictions`"
                };
                return Err(DecodeError::UnknownOutput {
                    output: other.to_string(),
                    outputs: outputs.into(),
                }
                .into());
            }
        }
    }
    Ok(wanted)
}

fn check_output(output: &ModelOutput, task: Task, rows: usize) -> Result<(), ServeError> {
    let n = match task {
        Task::Classification => output.labels.len(),
        Task::Regression => output.values.len(),
    };
    if n != rows {
        return Err(ServeError::Inference(format!(
            "model returned {n} predictions for {rows} rows"
        )));
    }
    Ok(())
}
