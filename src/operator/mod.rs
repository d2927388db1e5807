//! The operator: a kube-runtime controller for `Model` that owns its
//! `ModelVersion`s, training Jobs, serving Deployments and Services. Each
//! reconcile ([`reconcile`]) is observe ([`observe`], [`scrape`]) →
//! [`crate::policy::decide`] → act on the decision's actions ([`act`]) →
//! write the status → apply the children the status calls for
//! ([`desired`], built purely by [`children`]) and delete the rest.

mod act;
mod apply;
mod audit;
mod cached;
mod children;
mod clock;
mod context;
mod desired;
mod drift_windows;
mod error;
mod gateway_api;
mod index;
mod leader;
mod network_policy;
mod notify;
mod observe;
mod pod_security;
mod realised;
mod reconcile;
mod scrape;
mod telemetry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::api::names::{
    MANAGED_BY_LABEL, MANAGER, MODEL_LABEL, ROLE_LABEL, ROLE_TRAINING, VERSION_LABEL,
};
use crate::api::{Model, ModelVersion};

pub use apply::install_crds;
pub use cached::{CachedJob, CachedPod, CachedPodStatus};
pub use children::{ChildSettings, GpuPlacement};
// The children the operator builds, for the tests that check them against a
// real API server.
pub use children::{drift_flags, model_version, serving as serving_children, training_job};
pub use clock::{Clock, PublishedClock};
pub use drift_windows::DriftWindows;
pub use error::OperatorError;
pub use leader::{LeaseConfig, LeaseTiming, StoppedLeading};
pub use network_policy::{NetworkPolicySettings, network_policies};
pub use notify::{
    Delivery, DeliveryOptions, Notifier, NotifyConfig, Outcomes, QueueFull, SIGNATURE_HEADER,
    redacted, signature,
};
pub use observe::gateway_urls;
pub use pod_security::RUN_AS_USER;
pub use telemetry::{Telemetry, serve as serve_metrics};

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
    /// Reconciles in flight at once, per watched scope; more wait their
    /// turn. It bounds the API connections, blocking threads and buffers a
    /// burst (a restart, a thousand Models applied at once) holds. See
    /// [`DEFAULT_MAX_CONCURRENT_RECONCILES`].
    pub max_concurrent_reconciles: u16,
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
    /// Operator-wide notification sinks and how deliveries are retried.
    pub notify: NotifyConfig,
}

/// The default bound on reconciles in flight. A reconcile waits on the API
/// server (milliseconds) and on its ready replicas' `/metrics` (at most the
/// scrape timeout). Unbounded, the first resync of 1,000 Models opened about
/// as many API connections and blocking threads, and kept their memory:
/// bench/operator measured 192 MiB RSS unbounded, 129 MiB at 128 and 113 MiB
/// at 32 (a no-op controller: 90–97 MiB), while converging 1,000 new
/// Models took 83 s, 106 s and 196 s. 32 slots still reconcile 6 Models a
/// second if every scrape hung to a 5 s timeout, each of 190 Models once per
/// 30 s drift poll; a scrape normally takes milliseconds. Operators of
/// thousands of Models whose pods may hang raise it
/// (`--max-concurrent-reconciles`); controller-runtime's default is 1.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 32;

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

/// Runs the controller until `shutdown` resolves. With a leader Lease, only
/// the holder reconciles; the others wait to take over, and a leader that
/// stops leading returns [`OperatorError::LeaseLost`] at once ([`leader`]).
pub async fn run(
    client: Client,
    config: OperatorConfig,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), OperatorError> {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    if config.clock.scale() != 1.0 {
        publish_clock(&client, &config.clock).await;
    }
    if let Some(lease) = config.leader.clone() {
        let (me, t) = (config.instance.clone(), telemetry.clone());
        let work = controller(client.clone(), config, telemetry, shutdown.clone());
        leader::lead(&client, &lease, &me, &t, shutdown, work).await
    } else {
        controller(client, config, telemetry, shutdown).await
    }
}

/// Publishes a scaled clock (`--time-scale`) for `driftline status`; a
/// failure only costs its relative times, so it is logged, not fatal.
async fn publish_clock(client: &Client, clock: &Clock) {
    use crate::api::names::{CLOCK_CONFIG_MAP, CLOCK_NAMESPACE, MANAGER};
    let config_map = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CLOCK_CONFIG_MAP, "namespace": CLOCK_NAMESPACE},
        "data": clock.published().to_data(),
    });
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), CLOCK_NAMESPACE);
    let params = kube::api::PatchParams::apply(MANAGER).force();
    if let Err(e) = api
        .patch(
            CLOCK_CONFIG_MAP,
            &params,
            &kube::api::Patch::Apply(&config_map),
        )
        .await
    {
        tracing::warn!(error = %e, "cannot publish the scaled clock; `driftline status` shows wall-clock relative times");
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

/// What the caches never read, dropped as objects arrive: with a thousand
/// Models the caches hold thousands of children, and field managers, other
/// tools' labels and annotations, and unread spec parts are most of each.
/// Children are compared through their applied-hash annotation and the
/// digest of their live content ([`keep_live_digest`]), and found through
/// driftline's own labels; owner references stay (they map a child to its
/// Model).
fn forget_unread(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    // Rebuilt rather than filtered in place: a map keeps its nodes (each
    // a few hundred bytes) after its entries are removed.
    let keep = |map: Option<std::collections::BTreeMap<String, String>>, keys: &[&str]| {
        let kept: std::collections::BTreeMap<String, String> = map?
            .into_iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .collect();
        (!kept.is_empty()).then_some(kept)
    };
    meta.labels = keep(
        meta.labels.take(),
        &[MODEL_LABEL, VERSION_LABEL, ROLE_LABEL],
    );
    meta.annotations = keep(meta.annotations.take(), &[apply::APPLIED_HASH]);
}

/// Keeps, on the cache's copy of a child, the digest of the live object it
/// was made from ([`apply::live_digest`]): an out-of-band edit is told by it
/// after the spec itself is dropped. Call it before trimming the object.
fn keep_live_digest<K: kube::Resource + serde::Serialize>(obj: &K) -> impl FnOnce(&mut K) + use<K> {
    let digest = apply::live_digest(obj);
    move |trimmed: &mut K| {
        trimmed
            .meta_mut()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(apply::LIVE_DIGEST.into(), digest);
    }
}

/// A Deployment as the operator reads it: its replica count (readiness),
/// driftline's labels, the applied hash and the live digest.
fn trim_deployment(d: &mut Deployment) {
    let digest = keep_live_digest(d);
    forget_unread(&mut d.metadata);
    d.spec = d.spec.take().map(|spec| DeploymentSpec {
        replicas: spec.replicas,
        ..Default::default()
    });
    digest(d);
}

/// A Service as the operator reads it: driftline's labels, the applied
/// hash and the live digest.
fn trim_service(svc: &mut Service) {
    let digest = keep_live_digest(svc);
    forget_unread(&mut svc.metadata);
    svc.spec = None;
    digest(svc);
}

/// A pod as the operator keeps it: beyond what [`CachedPod`] decodes, its
/// owner references, generated name and the times of its conditions go.
fn forget_unread_of_pod(pod: &mut CachedPod) {
    forget_unread(&mut pod.metadata);
    pod.metadata.owner_references = None;
    pod.metadata.generate_name = None;
    if let Some(status) = pod.status.as_mut() {
        status.conditions = status.conditions.take().map(|c| {
            c.into_iter()
                .filter(|c| c.type_ == "Ready" || c.type_ == "PodScheduled")
                .map(|c| k8s_openapi::api::core::v1::PodCondition {
                    last_probe_time: None,
                    last_transition_time: None,
                    ..c
                })
                .collect()
        });
    }
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
    let (versions, versions_index) = index::Children::new(versions);
    let (jobs, jobs_writer) = reflector::store::<CachedJob>();
    let (jobs, jobs_index) = index::Children::new(jobs);
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let (deployments, deployments_index) = index::Children::new(deployments);
    let (services, services_writer) = reflector::store::<Service>();
    let (services, services_index) = index::Children::new(services);
    let version_events = watcher(api::<ModelVersion>(&client, ns), children.clone())
        .default_backoff()
        .modify(|v| v.metadata.managed_fields = None)
        .map_ok(versions_index.feed())
        .reflect(versions_writer)
        .touched_objects();
    let job_events = watcher(api::<CachedJob>(&client, ns), children.clone())
        .default_backoff()
        // Only the Job's status is read (`CachedJob` decodes no spec).
        .modify(|job| forget_unread(&mut job.metadata))
        .map_ok(jobs_index.feed())
        .reflect(jobs_writer)
        .touched_objects();
    let applied = Arc::new(apply::Applied::default());
    let deployment_events = watcher(api::<Deployment>(&client, ns), children.clone())
        .default_backoff()
        .modify(trim_deployment)
        .map_ok(applied.forget_deleted())
        .map_ok(deployments_index.feed())
        .reflect(deployments_writer)
        .touched_objects();
    let service_events = watcher(api::<Service>(&client, ns), children)
        .default_backoff()
        .modify(trim_service)
        .map_ok(applied.forget_deleted())
        .map_ok(services_index.feed())
        .reflect(services_writer)
        .touched_objects();
    // Pods are the Jobs' and Deployments' children, not the Model's: they
    // reach their Model through the model label. Training pods say why they
    // are not scheduled; serving pods are the replicas scraped one by one.
    let (pods, pods_writer) = reflector::store::<CachedPod>();
    let (pods, pods_index) = index::Children::new(pods);
    let pod_events = watcher(
        api::<CachedPod>(&client, ns),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}")),
    )
    .default_backoff()
    // Labels and status are read; the spec (a training pod's carries the
    // whole Model as YAML) is not even decoded (`CachedPod`).
    .modify(forget_unread_of_pod)
    .map_ok(pods_index.feed())
    .reflect(pods_writer)
    .touched_objects();

    // Its own client: the scrape client's short timeout and cluster resolver
    // are for pods, a sink is anywhere.
    let notifier = Notifier::start(
        notify::sink_client(),
        config.notify.delivery.clone(),
        Outcomes {
            registry: config.registry.clone(),
            recorder: Some(Recorder::new(
                client.clone(),
                Reporter {
                    controller: MANAGER.into(),
                    instance: Some(config.instance.clone()),
                },
            )),
            telemetry: Some(telemetry.clone()),
        },
    );
    let ctx = Arc::new(context::Context {
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
        stores: context::Stores {
            versions: versions.clone(),
            jobs: jobs.clone(),
            deployments: deployments.clone(),
            services: services.clone(),
            pods: pods.clone(),
        },
        http: crate::net::service_http_client(config.scrape_timeout, config.hosts_file.clone()),
        telemetry: telemetry.clone(),
        baselines: Mutex::new(HashMap::new()),
        shadow_baselines: Mutex::new(HashMap::new()),
        drift_windows: Default::default(),
        realised: Default::default(),
        stale: Mutex::new(HashMap::new()),
        drift_poll: config.drift_poll,
        registry: config.registry.clone(),
        gateway_api: gateway_api::GatewayApiProbe::default(),
        applied,
        dashboard_url: config.dashboard_url.clone(),
        routes_applied: Mutex::new(HashMap::new()),
        notifier: Some(notifier),
        notify: config.notify.clone(),
    });

    // The Models' own cache, without their field managers (kubectl's and
    // the status writer's are each as large as the spec).
    let (models, models_writer) = reflector::store::<Model>();
    let model_events = watcher(api::<Model>(&client, ns), watcher::Config::default())
        .default_backoff()
        .modify(|m| m.metadata.managed_fields = None)
        .reflect(models_writer)
        .applied_objects();
    let controller = Controller::for_stream(model_events, models)
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(config.max_concurrent_reconciles),
        )
        .owns_stream(version_events)
        .owns_stream(job_events)
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        // Only training pods wake their Model (a pod the scheduler cannot
        // place): serving pods change with every probe, and their Deployment's
        // status already says when replicas become ready.
        .watches_stream(pod_events, |pod: CachedPod| {
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
        let _ = versions.store().wait_until_ready().await;
        let _ = jobs.store().wait_until_ready().await;
        let _ = deployments.store().wait_until_ready().await;
        let _ = services.store().wait_until_ready().await;
        let _ = pods.store().wait_until_ready().await;
        info!(%namespace, "caches synced; reconciling");
        if unsynced.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            ready.set_ready(true);
        }
    };
    let gate = futures::future::FutureExt::shared(Box::pin(wait_for_caches));
    // Awaited eagerly, not only by the first reconcile: an operator with no
    // Model yet is ready too (`/readyz`, the chart's probe, `helm --wait`).
    tokio::spawn(gate.clone());
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

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::api::names;

    fn serving_pod(ready: &str, scheduled: Option<&str>) -> CachedPod {
        serde_json::from_value(serving_pod_json(ready, scheduled)).expect("a pod")
    }

    fn serving_pod_json(ready: &str, scheduled: Option<&str>) -> serde_json::Value {
        let mut conditions = vec![
            serde_json::json!({"type": "Initialized", "status": "True"}),
            serde_json::json!({"type": "Ready", "status": ready,
                "lastTransitionTime": "2026-11-29T00:00:00Z"}),
        ];
        if let Some(message) = scheduled {
            conditions.push(
                serde_json::json!({"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": message}),
            );
        }
        serde_json::json!({
            "metadata": {
                "name": "wine-v3-abc", "namespace": "ml", "generateName": "wine-v3-",
                "labels": {
                    names::MODEL_LABEL: "wine", names::VERSION_LABEL: "3",
                    names::ROLE_LABEL: names::ROLE_SERVING,
                    "pod-template-hash": "5d8f", names::MANAGED_BY_LABEL: names::MANAGER,
                },
                "annotations": {"kubectl.kubernetes.io/restartedAt": "now"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "wine-v3-5d8f", "uid": "u1"}],
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
            },
            "spec": {"containers": [{"name": "serve", "image": "driftline:dev",
                "args": ["serve", "--model-yaml", "a long Model"]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "hostIP": "10.0.0.1",
                "conditions": conditions,
                "containerStatuses": [{"name": "serve", "image": "driftline:dev",
                    "imageID": "sha256:1", "ready": true, "restartCount": 0}]},
        })
    }

    #[test]
    fn a_cached_pod_keeps_what_the_operator_reads_and_nothing_else() {
        for (ready, scheduled) in [
            ("True", None),
            ("False", None),
            ("False", Some("0/1 nodes have nvidia.com/gpu")),
        ] {
            let full = serving_pod(ready, scheduled);
            let mut cached = full.clone();
            forget_unread_of_pod(&mut cached);
            let full_pod: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(serving_pod_json(ready, scheduled)).expect("a pod");
            // What the watch decodes is what the full pod says.
            assert_eq!(
                full.status.as_ref().and_then(|s| s.pod_ip.clone()),
                full_pod.status.as_ref().and_then(|s| s.pod_ip.clone())
            );
            assert_eq!(
                observe::replica_urls(&[&cached], 3),
                observe::replica_urls(&[&full], 3)
            );
            assert_eq!(
                observe::unschedulable(&[&cached]),
                observe::unschedulable(&[&full])
            );
            assert_eq!(
                observe::pods_of_version(&[&cached], names::ROLE_SERVING, 3).len(),
                1
            );
            let labels = cached.metadata.labels.as_ref().expect("labels");
            assert_eq!(labels.len(), 3, "only driftline's own labels: {labels:?}");
            assert!(cached.metadata.annotations.is_none());
            assert!(cached.metadata.managed_fields.is_none());
            assert!(cached.metadata.owner_references.is_none());
            let status = cached.status.as_ref().expect("status");
            assert!(
                serde_json::to_value(&cached)
                    .expect("serializes")
                    .get("spec")
                    .is_none()
            );
            assert!(
                status
                    .conditions
                    .iter()
                    .flatten()
                    .all(|c| c.type_ == "Ready" || c.type_ == "PodScheduled")
            );
        }
        assert_eq!(
            observe::replica_urls(&[&serving_pod("True", None)], 3),
            vec![format!("http://10.0.0.7:{}", names::SERVE_PORT)],
            "the fixture is a ready replica"
        );
    }

    #[test]
    fn a_cached_server_tells_an_edit_from_what_was_applied_without_its_spec() {
        let (deployment, service) = children::serving(
            &fixtures::wine(),
            1,
            "s3://models/v1",
            &fixtures::settings(),
        )
        .expect("builds");
        let as_applied = apply::stamp(deployment);
        let mut edited = as_applied.clone();
        if let Some(pod) = edited.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            pod.containers[0].image = Some("someone/else:latest".into());
        }
        let digest = |d: &Deployment| {
            let mut cached = d.clone();
            trim_deployment(&mut cached);
            let spec = cached.spec.clone().expect("spec");
            assert!(spec.template.spec.is_none(), "the pod template is not kept");
            assert_eq!(spec.replicas, Some(2));
            cached
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(apply::LIVE_DIGEST).cloned())
                .expect("the live digest is kept")
        };
        assert_eq!(digest(&as_applied), apply::live_digest(&as_applied));
        assert_ne!(digest(&as_applied), digest(&edited));
        let mut cached = apply::stamp(service);
        trim_service(&mut cached);
        let annotations = cached.metadata.annotations.as_ref().expect("annotations");
        assert!(
            annotations.contains_key(apply::APPLIED_HASH)
                && annotations.contains_key(apply::LIVE_DIGEST)
        );
        assert!(cached.spec.is_none());
    }

    #[test]
    fn a_cached_child_keeps_its_hash_its_labels_and_its_owner() {
        let mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            serde_json::from_value(serde_json::json!({
                "name": "wine-v3",
                "labels": {names::MODEL_LABEL: "wine", "app": "x"},
                "annotations": {apply::APPLIED_HASH: "abc", "deployment.kubernetes.io/revision": "2"},
                "ownerReferences": [{"apiVersion": "driftline.dev/v1alpha1", "kind": "Model",
                    "name": "wine", "uid": "u1", "controller": true}],
                "managedFields": [{"manager": "driftline", "operation": "Apply"}],
            }))
            .expect("metadata");
        forget_unread(&mut meta);
        assert_eq!(
            meta.labels,
            Some([(names::MODEL_LABEL.to_string(), "wine".to_string())].into())
        );
        assert_eq!(
            meta.annotations,
            Some([(apply::APPLIED_HASH.to_string(), "abc".to_string())].into())
        );
        assert_eq!(meta.owner_references.map(|o| o.len()), Some(1));
        assert!(meta.managed_fields.is_none());
        let mut bare = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            annotations: Some([("other".to_string(), "x".to_string())].into()),
            ..Default::default()
        };
        forget_unread(&mut bare);
        assert!(bare.annotations.is_none(), "an emptied map is dropped");
    }
}
