//! The dashboard's HTTP edge: reads the cluster (Models, ModelVersions),
//! the registry, the champion's artifact manifest and its server's drift
//! windows, builds a page with [`super::view`] and answers HTML, or JSON with
//! `?format=json`. Only GET and HEAD are routed; anything else is 405.
//!
//! The cluster is read per request (a list of Models, of one namespace's
//! ModelVersions) rather than through the controller's caches: a page view
//! is rare next to reconciles, and this keeps the operator untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kube::Api;
use kube::api::ListParams;
use serde::Deserialize;

use crate::api::names::MODEL_LABEL;
use crate::api::{Model, ModelVersion, version_number};
use crate::drift::{DriftReport, FeatureProfile};
use crate::registry::{ModelRef, Registry, RegistryError};

use super::html;
use super::view::{self, ModelPage, VersionPage};

/// Canary analyses the traffic timeline reads.
const CANARY_HISTORY: u32 = 500;
/// Time columns of the drift heatmap.
const DRIFT_COLUMNS: u32 = 100;
/// Drift windows the heatmap folds unless `?windows=N` asks for more: the
/// newest 2 000 read in ~30 ms on SQLite, all of 10 000 in ~140 ms.
const DRIFT_WINDOWS: u32 = 2_000;
/// Versions whose training curves the Model page draws.
const CURVES: usize = 3;

/// What the dashboard reads.
pub struct DashboardConfig {
    pub client: kube::Client,
    /// Only this namespace's Models (`None`: all).
    pub namespace: Option<String>,
    /// The registry's URL (`None`: pages show the cluster's view only).
    pub registry: Option<String>,
    /// The embedded cluster's hosts file, to reach model servers from outside.
    pub hosts_file: Option<PathBuf>,
}

struct Dashboard {
    client: kube::Client,
    namespace: Option<String>,
    registry_url: Option<String>,
    registry: tokio::sync::Mutex<Option<Registry>>,
    http: reqwest::Client,
    /// Reference profiles by artifact URI: artifacts never change.
    references: std::sync::Mutex<HashMap<String, Arc<Vec<FeatureProfile>>>>,
}

/// Starts serving on `addr`; returns the bound address (port 0: any free)
/// and the server's task.
pub async fn serve(
    addr: SocketAddr,
    config: DashboardConfig,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(config);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the dashboard stopped");
        }
    });
    Ok((bound, task))
}

/// The dashboard's routes (GET and HEAD only).
pub fn router(config: DashboardConfig) -> Router {
    let state = Arc::new(Dashboard {
        client: config.client,
        namespace: config.namespace,
        registry_url: config.registry,
        registry: tokio::sync::Mutex::new(None),
        http: crate::net::service_http_client(Duration::from_secs(2), config.hosts_file),
        references: std::sync::Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(models))
        .route("/models/{namespace}/{name}", get(model))
        .route(
            "/models/{namespace}/{name}/versions/{version}",
            get(version),
        )
        .fallback(not_found)
        .with_state(state)
}

/// Query parameters every page accepts.
#[derive(Deserialize, Default)]
struct PageQuery {
    /// `json` for the page's JSON twin.
    format: Option<String>,
    /// The Model page's histogram feature.
    feature: Option<String>,
    /// `all=1`: every version and every champion change in the Model
    /// page's tables (the JSON twin always has them all).
    all: Option<String>,
    /// The drift heatmap's newest windows.
    windows: Option<u32>,
}

impl PageQuery {
    fn json(&self) -> bool {
        self.format.as_deref() == Some("json")
    }
}

fn answer<T: serde::Serialize>(
    query: &PageQuery,
    data: &T,
    html: impl FnOnce(&T) -> String,
) -> Response {
    if query.json() {
        axum::Json(data).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html(data),
        )
            .into_response()
    }
}

fn failure(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>driftline</title></head>\
             <body><p><a href=\"/\">driftline</a></p><p>{}</p></body></html>",
            html::escape(message)
        ),
    )
        .into_response()
}

async fn not_found() -> Response {
    failure(StatusCode::NOT_FOUND, "no such page")
}

async fn models(State(d): State<Arc<Dashboard>>, Query(q): Query<PageQuery>) -> Response {
    let api: Api<Model> = match &d.namespace {
        Some(ns) => Api::namespaced(d.client.clone(), ns),
        None => Api::all(d.client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => answer(&q, &view::models_page(&list.items), html::models_page),
        Err(e) => failure(
            StatusCode::BAD_GATEWAY,
            &format!("cannot list Models from the Kubernetes API: {e}"),
        ),
    }
}

impl Dashboard {
    /// The registry, connected on first use (and again after a failure).
    async fn registry(&self) -> Result<Option<Registry>, RegistryError> {
        let Some(url) = &self.registry_url else {
            return Ok(None);
        };
        let mut slot = self.registry.lock().await;
        if slot.is_none() {
            *slot = Some(Registry::connect(url).await?);
        }
        Ok(slot.clone())
    }

    async fn model(&self, ns: &str, name: &str) -> Result<Option<Model>, Response> {
        if self.namespace.as_deref().is_some_and(|w| w != ns) {
            return Ok(None);
        }
        Api::<Model>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| {
                failure(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot read Model {ns}/{name}: {e}"),
                )
            })
    }

    async fn versions(&self, ns: &str, name: &str) -> Vec<ModelVersion> {
        let api: Api<ModelVersion> = Api::namespaced(self.client.clone(), ns);
        let params = ListParams::default().labels(&format!("{MODEL_LABEL}={name}"));
        let mut versions: Vec<ModelVersion> = api
            .list(&params)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.spec.model == name)
            .collect();
        versions.sort_by_key(|v| v.spec.version);
        versions
    }

    /// The feature profiles in an artifact's manifest.
    async fn reference(&self, artifact: &str) -> Result<Arc<Vec<FeatureProfile>>, String> {
        if let Some(found) = self
            .references
            .lock()
            .ok()
            .and_then(|r| r.get(artifact).cloned())
        {
            return Ok(found);
        }
        let uri = crate::api::names::manifest_uri(artifact);
        let manifest = crate::ml::read_manifest(artifact)
            .await
            .map_err(|e| format!("cannot read {uri}: {e}"))?;
        let features = Arc::new(manifest.reference.features);
        if let Ok(mut r) = self.references.lock() {
            r.insert(artifact.to_string(), features.clone());
        }
        Ok(features)
    }

    /// The live sketch of one feature from the newest closed window of the
    /// version's server (the window being filled when none closed yet).
    async fn live_sketch(
        &self,
        ns: &str,
        model: &str,
        version: u32,
        feature: &str,
    ) -> Option<crate::drift::ColumnSketch> {
        let base = crate::api::names::serving_url(model, ns, version);
        let url = crate::api::routes::url(&base, crate::api::routes::DRIFT, model);
        let report: DriftReport = self.http.get(&url).send().await.ok()?.json().await.ok()?;
        let window = report.recent.first().unwrap_or(&report.current);
        window
            .sketch
            .features
            .iter()
            .find(|s| s.name == feature)
            .cloned()
    }
}

async fn model(
    State(d): State<Arc<Dashboard>>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let model = match d.model(&ns, &name).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return failure(
                StatusCode::NOT_FOUND,
                &format!("no Model {name} in namespace {ns}"),
            );
        }
        Err(r) => return r,
    };
    let windows = q.windows.unwrap_or(DRIFT_WINDOWS).clamp(1, 10_000_000);
    let page = model_page(&d, &model, q.feature.as_deref(), windows).await;
    let all = q.all.as_deref().is_some_and(|a| a != "0");
    answer(&q, &page, |p| html::model_page(p, all))
}

/// Everything the Model page shows, read from the cluster, the registry, the
/// champion's artifact and its server.
async fn model_page(
    d: &Dashboard,
    model: &Model,
    feature: Option<&str>,
    windows: u32,
) -> ModelPage {
    let row = view::ModelRow::of(model);
    let (ns, name) = (row.namespace.clone(), row.name.clone());
    let objects = d.versions(&ns, &name).await;
    let mut notes = Vec::new();
    let mut page = ModelPage {
        analysis: model.spec.rollout.analysis.clone(),
        model: row,
        notes: Vec::new(),
        traffic: Vec::new(),
        canary_analyses: Vec::new(),
        drift: Default::default(),
        histogram: None,
        features: Vec::new(),
        curves: Vec::new(),
        versions: Vec::new(),
        audit: Vec::new(),
        annotation_queue: None,
        shadow: Default::default(),
    };
    let key = ModelRef::new(&ns, &name);
    let mut history = Vec::new();
    match d.registry().await {
        Ok(None) => notes.push(
            "No registry configured: history, drift series and the audit trail are not recorded."
                .to_string(),
        ),
        Err(e) => notes.push(format!("The registry cannot be read: {e}")),
        Ok(Some(registry)) => {
            if let Err(e) =
                registry_views(&registry, &key, windows, &objects, &mut page, &mut history).await
            {
                notes.push(format!("The registry cannot be read: {e}"));
            }
        }
    }
    if history.is_empty() {
        // No registry rows: the cluster's objects still give the versions.
        page.versions = objects
            .iter()
            .map(|v| view::VersionRow {
                version: crate::api::version_name(v.spec.version),
                url: super::links::version_path(&ns, &name, v.spec.version),
                phase: v.status.as_ref().map(|s| s.phase),
                trigger: v.spec.lineage.trigger.to_string(),
                reason: v.spec.lineage.reason.clone(),
                created_at: view::created_at(v).unwrap_or_default(),
                gate_passed: v
                    .status
                    .as_ref()
                    .and_then(|s| s.gate.as_ref())
                    .map(|g| g.passed),
                gate_summary: v
                    .status
                    .as_ref()
                    .and_then(|s| s.gate.as_ref())
                    .map(|g| g.summary.clone()),
                metrics: Default::default(),
                vs_champion: Default::default(),
            })
            .collect();
    }
    // A candidate in shadow now: its flip matrix from the gateway's tally.
    if let Some(shadow) = model.status.as_ref().and_then(|s| s.shadow.as_ref())
        && shadow.started_at.is_some()
    {
        let base = crate::api::names::service_url(&crate::api::names::gateway_service(&name), &ns);
        let tallies = match d.http.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.ok(),
            Err(_) => None,
        };
        match tallies.map(|t| crate::api::scrape::parse_shadow_tallies(&t)) {
            Some(t) => {
                page.shadow.live = t
                    .get(&shadow.version)
                    .and_then(|tally| super::shadow::flip_matrix(&shadow.version, tally));
            }
            None => notes.push(format!(
                "The gateway's shadow tally of {} cannot be read.",
                shadow.version
            )),
        }
    }
    // The histogram: the champion's reference against its live traffic.
    let champion = page.model.champion.as_deref().and_then(version_number);
    let any_artifact = objects
        .iter()
        .rev()
        .find_map(|v| v.status.as_ref()?.artifact.as_ref().map(|a| a.uri.clone()));
    if model.spec.annotation().is_some()
        && let Some(prefix) = any_artifact
            .as_deref()
            .and_then(crate::api::names::feedback_prefix_of_artifact)
    {
        let read = async {
            let queue = crate::data::read_queue(&prefix).await?;
            let labels = crate::data::annotated_labels(&prefix).await?;
            Ok::<_, crate::data::DataError>(super::queue::queue_view(&queue, &labels, &ns, &name))
        };
        match read.await {
            Ok(view) => page.annotation_queue = Some(view),
            Err(e) => notes.push(format!("The annotation queue cannot be read: {e}")),
        }
    }
    if let Some(n) = champion {
        let artifact = objects
            .iter()
            .find(|v| v.spec.version == n)
            .and_then(|v| v.status.as_ref()?.artifact.as_ref().map(|a| a.uri.clone()))
            .or_else(|| {
                history
                    .iter()
                    .find(|h| h.version.version == n)
                    .and_then(|h| h.version.artifact_uri.clone())
            });
        match artifact {
            None => notes.push(format!("No artifact recorded for the champion v{n}.")),
            Some(artifact) => match d.reference(&artifact).await {
                Err(e) => notes.push(e),
                Ok(profiles) => {
                    page.features = view::feature_names(&profiles);
                    if let Some(chosen) = view::chosen_feature(feature, &page.features, &page.drift)
                        && let Some(profile) = profiles.iter().find(|p| p.name() == chosen)
                    {
                        let live = d.live_sketch(&ns, &name, n, &chosen).await;
                        page.histogram = Some(view::histogram(
                            &crate::api::version_name(n),
                            profile,
                            live.as_ref(),
                        ));
                    }
                }
            },
        }
    }
    page.notes = notes;
    page
}

async fn registry_views(
    registry: &Registry,
    key: &ModelRef,
    windows: u32,
    objects: &[ModelVersion],
    page: &mut ModelPage,
    history: &mut Vec<crate::registry::VersionHistory>,
) -> Result<(), RegistryError> {
    // Independent reads, side by side on the pool's connections.
    let (read_history, analyses, changes, heatmap) = tokio::try_join!(
        registry.history(key, None),
        registry.canary_history(key, CANARY_HISTORY),
        registry.audit_trail(key),
        registry.drift_heatmap(key, windows, DRIFT_COLUMNS),
    )?;
    *history = read_history;
    // Shadow reads (weight 0) are no canary steps: no user traffic moved.
    page.shadow.reads = super::shadow::shadow_reads(&analyses);
    let (_, canary): (Vec<_>, Vec<_>) = analyses.into_iter().partition(super::shadow::is_shadow);
    page.traffic = view::traffic_timeline(&canary, &changes);
    page.canary_analyses = canary
        .iter()
        .map(|a| view::canary_view(a, &page.analysis))
        .collect();
    page.drift = view::drift_view(&heatmap);
    page.audit = view::audit_rows(&changes);
    let champion = page.model.champion.clone();
    page.versions = view::version_rows(
        &key.namespace,
        &key.name,
        history,
        objects,
        champion.as_deref(),
    );
    for n in view::curve_versions(history, champion.as_deref(), CURVES) {
        let epochs = registry.training_curve(key, n).await?;
        if !epochs.is_empty() {
            page.curves.push(view::curve_view(n, &epochs));
        }
    }
    Ok(())
}

async fn version(
    State(d): State<Arc<Dashboard>>,
    Path((ns, name, version)): Path<(String, String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(n) = version_number(&version) else {
        return failure(
            StatusCode::NOT_FOUND,
            &format!("`{version}` is not a version name (v1, v2, …)"),
        );
    };
    match d.model(&ns, &name).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return failure(
                StatusCode::NOT_FOUND,
                &format!("no Model {name} in namespace {ns}"),
            );
        }
        Err(r) => return r,
    }
    let objects = d.versions(&ns, &name).await;
    let object = objects.iter().find(|v| v.spec.version == n);
    let key = ModelRef::new(&ns, &name);
    let mut notes = Vec::new();
    let (mut record, mut evaluation, mut analyses, mut curve) = (None, None, Vec::new(), None);
    let mut reference = None;
    match d.registry().await {
        Ok(None) => notes.push(
            "No registry configured: lineage and gate come from the ModelVersion.".to_string(),
        ),
        Err(e) => notes.push(format!("The registry cannot be read: {e}")),
        Ok(Some(r)) => {
            let read = async {
                record = r.version(&key, n).await?;
                evaluation = r.evaluation(&key, n).await?;
                analyses = r.canary_analyses(&key, n).await?;
                let epochs = r.training_curve(&key, n).await?;
                curve = (!epochs.is_empty()).then(|| view::curve_view(n, &epochs));
                // A warm retrain is compared with the version it started from.
                let parent = view::lineage_view(record.as_ref(), object)
                    .and_then(|l| l.start?.parent_version());
                if let Some(p) = parent {
                    let epochs = r.training_curve(&key, p).await?;
                    if !epochs.is_empty() {
                        let parent_object = objects.iter().find(|v| v.spec.version == p);
                        let lineage =
                            view::lineage_view(r.version(&key, p).await?.as_ref(), parent_object);
                        reference =
                            Some((view::curve_view(p, &epochs), lineage.and_then(|l| l.start)));
                    }
                }
                Ok::<(), RegistryError>(())
            };
            if let Err(e) = read.await {
                notes.push(format!("The registry cannot be read: {e}"));
            }
        }
    }
    if object.is_none() && record.is_none() {
        return failure(
            StatusCode::NOT_FOUND,
            &format!("Model {ns}/{name} has no version {version}"),
        );
    }
    let model = d.model(&ns, &name).await.ok().flatten();
    let spec = model
        .as_ref()
        .map(|m| m.spec.rollout.analysis.clone())
        .unwrap_or_default();
    let status = object.and_then(|o| o.status.as_ref());
    let page = VersionPage {
        model_url: super::links::model_path(&ns, &name),
        namespace: ns.clone(),
        model: name.clone(),
        version: crate::api::version_name(n),
        notes,
        phase: status.map(|s| s.phase),
        message: status.and_then(|s| s.message.clone()),
        lineage: view::lineage_view(record.as_ref(), object),
        gate: view::gate_view(evaluation.as_ref(), object),
        rollout: status.and_then(|s| s.rollout.clone()),
        champion_since: status.and_then(|s| s.champion_since),
        champion_until: status.and_then(|s| s.champion_until),
        canary_analyses: analyses
            .iter()
            .map(|a| view::canary_view(a, &spec))
            .collect(),
        warm_start: curve
            .as_ref()
            .zip(reference)
            .map(|(c, (r, start))| view::start_comparison(c, r, start)),
        curve,
    };
    answer(&q, &page, html::version_page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt as _;

    fn offline_router() -> Router {
        // A client for an API server that is not there: routing and method
        // checks never reach it; pages that need it answer 502.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        router(DashboardConfig {
            client: kube::Client::try_from(config).unwrap(),
            namespace: None,
            registry: None,
            hosts_file: None,
        })
    }

    async fn status(method: Method, uri: &str) -> StatusCode {
        offline_router()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn only_get_and_head_are_served() {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(
                status(method.clone(), "/").await,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(
                status(method.clone(), "/models/ml/wine").await,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
        }
        // GET and HEAD reach the handler, which cannot reach the API server.
        assert_eq!(status(Method::GET, "/").await, StatusCode::BAD_GATEWAY);
        assert_eq!(status(Method::HEAD, "/").await, StatusCode::BAD_GATEWAY);
        assert_eq!(status(Method::GET, "/nope").await, StatusCode::NOT_FOUND);
        assert_eq!(
            status(Method::GET, "/models/ml/wine/versions/latest").await,
            StatusCode::NOT_FOUND
        );
    }
}
