//! The operator: a kube-runtime controller for `Model` that owns its
//! `ModelVersion`s, training Jobs, serving Deployments and Services. Each
//! reconcile is observe → [`crate::policy::decide`] → apply → status
//! ([`reconcile`]); building children is pure ([`children`]).

pub mod apply;
pub mod audit;
pub mod children;
pub mod clock;
pub mod drift_windows;
pub mod error;
pub mod gateway_api;
pub mod leader;
pub mod observe;
pub mod reconcile;
pub mod telemetry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::api::names::{MANAGED_BY_LABEL, MANAGER, MODEL_LABEL, ROLE_LABEL, ROLE_TRAINING};
use crate::api::{Model, ModelVersion};

pub use children::ChildSettings;
pub use clock::Clock;
pub use error::OperatorError;
pub use telemetry::Telemetry;

/// How the operator runs.
pub struct OperatorConfig {
    /// What shapes the children (artifact root, image, credentials).
    pub settings: ChildSettings,
    /// Watch only these namespaces (each once); all namespaces when empty.
    pub namespaces: Vec<String>,
    /// The operator's clock (scaled in tests and demos).
    pub clock: Arc<Clock>,
    /// This replica's name, for Events and the leader Lease.
    pub instance: String,
    /// Leader election on a Lease, for more than one replica.
    pub leader: Option<leader::LeaseConfig>,
    /// Longest wait for a model server's `/metrics`.
    pub scrape_timeout: Duration,
    /// How often to read the champion's drift windows when the Model retrains
    /// on drift (a server keeps its last few closed windows).
    pub drift_poll: Duration,
    /// The embedded cluster's hosts file, to reach its Services from outside
    /// (`None`: `DRIFTLINE_HOSTS_FILE`, then DNS).
    pub hosts_file: Option<std::path::PathBuf>,
    /// Where decisions are recorded: lineage, evaluations, training curves,
    /// drift series, canary analyses and the audit trail (`None`: nowhere).
    pub registry: Option<Arc<crate::registry::RegistryWriter>>,
    /// Base URL of the dashboard as users open it: decision Events end with
    /// a link to the Model's page (`None`: no links).
    pub dashboard_url: Option<String>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// An HTTP client that finds Services of the embedded cluster by its hosts
/// file and everything else by DNS.
pub fn service_http_client(
    timeout: Duration,
    hosts_file: Option<std::path::PathBuf>,
) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .dns_resolver(Arc::new(
            crate::cluster::runner::service::HostsFileResolver { path: hosts_file },
        ))
        .build()
        .unwrap_or_default()
}

/// Runs the controller until `shutdown` resolves. With a leader Lease, only
/// the holder reconciles; the others wait to take over.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), OperatorError> {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    if let Some(lease) = &config.leader {
        telemetry.set_ready(true);
        let acquired = leader::acquire(&client, lease, &config.instance, shutdown.clone()).await?;
        if !acquired {
            return Ok(());
        }
        let renew = leader::keep(client.clone(), lease.clone(), config.instance.clone());
        tokio::select! {
            result = controller(client, config, telemetry, shutdown) => result,
            lost = renew => Err(lost),
        }
    } else {
        controller(client, config, telemetry, shutdown).await
    }
}

/// One controller per watched namespace (or one for all), under one leader
/// and one metrics registry; namespaces do not overlap, so no Model is
/// reconciled twice. Ready once every controller's caches are complete.
async fn controller(
    client: Client,
    config: OperatorConfig,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), OperatorError> {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let mut scopes: Vec<Option<String>> = Vec::new();
    for ns in &config.namespaces {
        if !scopes.iter().flatten().any(|s| s == ns) {
            scopes.push(Some(ns.clone()));
        }
    }
    if scopes.is_empty() {
        scopes.push(None);
    }
    let unsynced = Arc::new(std::sync::atomic::AtomicUsize::new(scopes.len()));
    let config = Arc::new(config);
    let controllers = scopes.into_iter().map(|ns| {
        scope_controller(
            client.clone(),
            config.clone(),
            ns,
            telemetry.clone(),
            unsynced.clone(),
            shutdown.clone(),
        )
    });
    for result in futures::future::join_all(controllers).await {
        result?;
    }
    Ok(())
}

/// What the caches of children never need: the field managers (often the
/// largest part of an object's metadata). Children are compared through
/// their applied-hash annotation, and only labels, names, owners, status and
/// a Deployment's replica count are read, so each watcher also drops the
/// spec parts nothing reads: with a thousand Models the caches hold
/// thousands of pods.
fn forget_unread(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
}

/// The controller of one namespace (`None`: all of them).
async fn scope_controller(
    client: Client,
    config: Arc<OperatorConfig>,
    scope: Option<String>,
    telemetry: Arc<Telemetry>,
    unsynced: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), OperatorError> {
    let ns = scope.as_deref();
    let children = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));

    let (versions, versions_writer) = reflector::store::<ModelVersion>();
    let (jobs, jobs_writer) = reflector::store::<Job>();
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let (services, services_writer) = reflector::store::<Service>();
    let version_events = watcher(api::<ModelVersion>(&client, ns), children.clone())
        .default_backoff()
        .reflect(versions_writer)
        .touched_objects();
    let job_events = watcher(api::<Job>(&client, ns), children.clone())
        .default_backoff()
        .modify(|job| {
            forget_unread(&mut job.metadata);
            if let Some(spec) = job.spec.as_mut() {
                spec.template = Default::default();
            }
        })
        .reflect(jobs_writer)
        .touched_objects();
    let deployment_events = watcher(api::<Deployment>(&client, ns), children.clone())
        .default_backoff()
        .modify(|d| {
            forget_unread(&mut d.metadata);
            // `spec.replicas` is read (readiness); the pod template is
            // compared through the applied-hash annotation.
            if let Some(spec) = d.spec.as_mut() {
                spec.template = Default::default();
            }
        })
        .reflect(deployments_writer)
        .touched_objects();
    let service_events = watcher(api::<Service>(&client, ns), children)
        .default_backoff()
        .modify(|svc| {
            forget_unread(&mut svc.metadata);
            svc.spec = None;
        })
        .reflect(services_writer)
        .touched_objects();
    // Pods are the Jobs' and Deployments' children, not the Model's: they
    // reach their Model through the model label. Training pods say why they
    // are not scheduled; serving pods are the replicas scraped one by one.
    let (pods, pods_writer) = reflector::store::<Pod>();
    let pod_events = watcher(
        api::<Pod>(&client, ns),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}")),
    )
    .default_backoff()
    // Labels and status are read; the spec (a training pod's carries the
    // whole Model as YAML) is not.
    .modify(|pod| {
        forget_unread(&mut pod.metadata);
        pod.spec = None;
    })
    .reflect(pods_writer)
    .touched_objects();

    let ctx = Arc::new(reconcile::Context {
        client: client.clone(),
        settings: config.settings.clone(),
        clock: config.clock.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(config.instance.clone()),
            },
        ),
        stores: reconcile::Stores {
            versions: versions.clone(),
            jobs: jobs.clone(),
            deployments: deployments.clone(),
            services: services.clone(),
            pods: pods.clone(),
        },
        http: service_http_client(config.scrape_timeout, config.hosts_file.clone()),
        telemetry: telemetry.clone(),
        baselines: Mutex::new(HashMap::new()),
        drift_windows: Default::default(),
        stale: Mutex::new(HashMap::new()),
        drift_poll: config.drift_poll,
        registry: config.registry.clone(),
        gateway_api: gateway_api::GatewayApiProbe::default(),
        dashboard_url: config.dashboard_url.clone(),
        routes_applied: Mutex::new(HashMap::new()),
    });

    let controller = Controller::new(api::<Model>(&client, ns), watcher::Config::default())
        .owns_stream(version_events)
        .owns_stream(job_events)
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        // Only training pods wake their Model (a pod the scheduler cannot
        // place): serving pods change with every probe, and their Deployment's
        // status already says when replicas become ready.
        .watches_stream(pod_events, |pod: Pod| {
            let labels = pod.metadata.labels.as_ref()?;
            if labels.get(ROLE_LABEL).map(String::as_str) != Some(ROLE_TRAINING) {
                return None;
            }
            let model = labels.get(MODEL_LABEL)?.clone();
            let ns = pod.metadata.namespace.clone()?;
            Some(ObjectRef::<Model>::new(&model).within(&ns))
        });
    // A registry going down or coming back changes every Model's
    // `RegistryAvailable` condition: look at each one again.
    let controller = match &config.registry {
        Some(registry) => {
            let changes = futures::stream::unfold(registry.subscribe(), |mut rx| async move {
                rx.changed().await.ok()?;
                Some(((), rx))
            });
            controller.reconcile_all_on(changes)
        }
        None => controller,
    };
    let controller = controller.graceful_shutdown_on(shutdown);
    // No decision before every child cache is complete: an empty cache would
    // look like a Model with no versions and start a duplicate training.
    let ready = telemetry.clone();
    let namespace = scope.unwrap_or_else(|| "all namespaces".into());
    let wait_for_caches = async move {
        let _ = versions.wait_until_ready().await;
        let _ = jobs.wait_until_ready().await;
        let _ = deployments.wait_until_ready().await;
        let _ = services.wait_until_ready().await;
        let _ = pods.wait_until_ready().await;
        info!(%namespace, "caches synced; reconciling");
        if unsynced.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            ready.set_ready(true);
        }
    };
    let gate = futures::future::FutureExt::shared(Box::pin(wait_for_caches));
    controller
        .run(
            move |model, ctx| {
                let gate = gate.clone();
                async move {
                    gate.await;
                    reconcile::reconcile(model, ctx).await
                }
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|result| {
            // A watch the API server refuses (RBAC, a missing CRD) would
            // otherwise retry in silence: say which and why. Reconcile
            // errors are logged by the error policy.
            if let Err(kube::runtime::controller::Error::QueueError(error)) = result {
                warn!(%error, "watch failed; retrying with backoff");
            }
            futures::future::ready(())
        })
        .await;
    Ok(())
}
