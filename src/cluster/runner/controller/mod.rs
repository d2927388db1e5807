//! The node's control loop: watches into reflector caches, then on every
//! wake-up runs the Job and Deployment controllers, the scheduler, the
//! kubelet sync and the Service sync, in that order.
//!
//! - [`node`]: the Node object, its Lease, and scheduling onto it;
//! - [`pods`]: a worker per bound pod, with its address, GPUs and environment;
//! - [`services`]: cluster IPs, Endpoints, proxies and the hosts file.

mod node;
mod pods;
mod services;

pub use node::register_node;
use node::renew_node_lease;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::events::{EventNote, EventRecorder, object_ref};
use super::kubelet::{PodCommand, WorkerContext};
use super::pods::{Expect, is_owned_by};
use super::processes::ProcessTable;
use super::service::ServiceProxies;
use super::{NodeConfig, Workers, deployment, job, revisions};

const FIELD_MANAGER: &str = "driftline-runner";

/// A running pod worker.
pub struct WorkerHandle {
    /// The pod's uid (a pod re-created under the same name gets a new worker).
    pub uid: String,
    /// Commands to the worker.
    pub commands: mpsc::UnboundedSender<PodCommand>,
    task: JoinHandle<()>,
    terminating: bool,
    grace: Duration,
    ip: Ipv4Addr,
    gpus: Vec<u64>,
}

/// Watches one kind into a cache, waking `notify` on every event.
fn reflect<K>(api: Api<K>, notify: Arc<Notify>) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let task = tokio::spawn(async move {
        stream
            .for_each(|event| {
                if let Err(err) = &event {
                    tracing::debug!(%err, "runner watch error; retrying");
                }
                notify.notify_one();
                futures::future::ready(())
            })
            .await;
    });
    (reader, task)
}

struct Caches {
    pods: Store<Pod>,
    jobs: Store<Job>,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    services: Store<Service>,
}

struct NodeLoop {
    client: Client,
    cfg: NodeConfig,
    caches: Caches,
    events: Arc<AsyncMutex<EventRecorder>>,
    worker_ctx: Arc<WorkerContext>,
    workers: Workers,
    finished: HashSet<String>,
    force_deleted: HashSet<String>,
    bound: HashSet<String>,
    expectations: HashMap<String, Expect>,
    unschedulable: HashMap<String, String>,
    requeue: HashMap<String, Instant>,
    proxies: ServiceProxies,
    hosts_written: Option<String>,
    endpoints_written: HashMap<(String, String), serde_json::Value>,
}

/// Runs the node until `stop` turns true.
pub async fn run(
    client: Client,
    cfg: NodeConfig,
    workers: Workers,
    processes: Arc<ProcessTable>,
    mut gpus: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let notify = Arc::new(Notify::new());
    let (pods, t1) = reflect(Api::<Pod>::all(client.clone()), notify.clone());
    let (jobs, t2) = reflect(Api::<Job>::all(client.clone()), notify.clone());
    let (deployments, t3) = reflect(Api::<Deployment>::all(client.clone()), notify.clone());
    let (services, t4) = reflect(Api::<Service>::all(client.clone()), notify.clone());
    let (replica_sets, t6) = reflect(Api::<ReplicaSet>::all(client.clone()), notify.clone());
    // As a kubelet on a real control plane, the node's Lease is its heartbeat:
    // the node lifecycle controller marks a node without one NotReady.
    let t5 = tokio::spawn(renew_node_lease(
        client.clone(),
        cfg.name.clone(),
        cfg.kubelet_only,
    ));
    let watch_tasks = [t1, t2, t3, t4, t5, t6];
    let events = Arc::new(AsyncMutex::new(EventRecorder::new(
        client.clone(),
        &cfg.name,
    )));
    let worker_ctx = Arc::new(WorkerContext {
        client: client.clone(),
        node_name: cfg.name.clone(),
        state_dir: cfg.state_dir.clone(),
        driftline_exe: cfg.driftline_exe.clone(),
        restart_backoff: cfg.restart_backoff,
        events: events.clone(),
        api_server_url: cfg.api_server_url.clone(),
        simulate_processes: cfg.simulate_processes,
        processes,
    });
    let mut node = NodeLoop {
        client,
        cfg,
        caches: Caches {
            pods,
            jobs,
            deployments,
            replica_sets,
            services,
        },
        events,
        worker_ctx,
        workers,
        finished: HashSet::new(),
        force_deleted: HashSet::new(),
        bound: HashSet::new(),
        expectations: HashMap::new(),
        unschedulable: HashMap::new(),
        requeue: HashMap::new(),
        proxies: ServiceProxies::default(),
        hosts_written: None,
        endpoints_written: HashMap::new(),
    };
    let ready = async {
        let _ = node.caches.pods.wait_until_ready().await;
        let _ = node.caches.jobs.wait_until_ready().await;
        let _ = node.caches.deployments.wait_until_ready().await;
        let _ = node.caches.replica_sets.wait_until_ready().await;
        let _ = node.caches.services.wait_until_ready().await;
    };
    tokio::select! {
        _ = ready => {}
        _ = stop.changed() => {}
    }
    while !*stop.borrow() {
        let offered = *gpus.borrow_and_update();
        if offered != node.cfg.gpus {
            node.cfg.gpus = offered;
            if let Err(err) = register_node(&node.client, &node.cfg).await {
                tracing::warn!(error = ?err, gpus = offered, "cannot update the node's GPU capacity");
            }
        }
        node.tick().await;
        let next = node
            .requeue
            .values()
            .copied()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
            .min(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(next) => {}
            _ = gpus.changed() => {}
            _ = stop.changed() => {}
        }
    }
    for task in watch_tasks {
        task.abort();
    }
    node.shutdown().await;
}

impl NodeLoop {
    async fn tick(&mut self) {
        self.reap_workers();
        let now = Timestamp::now();
        self.requeue.retain(|_, at| *at > Instant::now());
        let pods: Vec<Pod> = self
            .caches
            .pods
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect();
        // Forget pods that no longer exist.
        let uids: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        self.bound.retain(|u| uids.contains(u));
        self.finished.retain(|u| uids.contains(u));
        self.force_deleted.retain(|u| uids.contains(u));
        self.unschedulable.retain(|u, _| uids.contains(u));
        let owners: HashSet<String> = self
            .caches
            .jobs
            .state()
            .iter()
            .filter_map(|j| j.metadata.uid.clone())
            .chain(
                self.caches
                    .deployments
                    .state()
                    .iter()
                    .filter_map(|d| d.metadata.uid.clone()),
            )
            .collect();
        self.expectations.retain(|u, _| owners.contains(u));
        if self.cfg.kubelet_only {
            // The real controllers and scheduler own the rest; the node is
            // also kube-proxy and cluster DNS for its pods.
            self.sync_pods(&pods).await;
            let services = self.services();
            self.serve_services(&services, &pods).await;
            return;
        }
        for job in self.caches.jobs.state() {
            self.sync_job(&job, &pods, now).await;
        }
        for deployment in self.caches.deployments.state() {
            self.sync_deployment(&deployment, &pods, now).await;
        }
        self.schedule(&pods).await;
        self.sync_pods(&pods).await;
        self.sync_services(&pods).await;
    }

    pub(super) async fn record(
        &self,
        component: &str,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        note: &EventNote,
    ) {
        self.events
            .lock()
            .await
            .record(component, reference, note)
            .await;
    }

    /// Creates and deletes pods for a controller; conflicts and missing pods are expected with a stale cache.
    pub(super) async fn apply_pod_changes(
        &self,
        namespace: &str,
        create: &[Pod],
        delete: &[String],
    ) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        for pod in create {
            match api.create(&PostParams::default(), pod).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(err) => tracing::warn!(%err, pod = ?pod.metadata.name, "cannot create pod"),
            }
        }
        for name in delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(err) => tracing::warn!(%err, pod = %name, "cannot delete pod"),
            }
        }
    }

    async fn patch_status_if_changed<K, S>(&self, api: Api<K>, name: &str, old: Option<&S>, new: &S)
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize + Default,
    {
        let default = S::default();
        let before = serde_json::to_value(old.unwrap_or(&default)).unwrap_or_default();
        let after = serde_json::to_value(new).unwrap_or_default();
        if before == after {
            return;
        }
        let patch = serde_json::json!({"status": after});
        if let Err(err) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(%err, %name, "cannot write status");
        }
    }

    /// The identity of a live owner (Job or Deployment) and the pods it owns,
    /// or `None` when it must not be synced now: it is being deleted, or the
    /// cache does not yet show the pods it created or deleted last time.
    fn syncable(
        &self,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        pods: &[Pod],
    ) -> Option<(String, String, String, Vec<Pod>)> {
        let (Some(uid), Some(name), Some(namespace)) =
            (meta.uid.clone(), meta.name.clone(), meta.namespace.clone())
        else {
            return None;
        };
        if meta.deletion_timestamp.is_some() {
            return None;
        }
        let owned: Vec<Pod> = pods
            .iter()
            .filter(|p| is_owned_by(p, &uid))
            .cloned()
            .collect();
        if self
            .expectations
            .get(&uid)
            .is_some_and(|expect| !expect.satisfied(&owned))
        {
            return None;
        }
        Some((uid, name, namespace, owned))
    }

    async fn sync_job(&mut self, job_obj: &Job, pods: &[Pod], now: Timestamp) {
        let Some((uid, name, namespace, owned)) = self.syncable(&job_obj.metadata, pods) else {
            return;
        };
        if job_obj.spec.as_ref().is_some_and(|s| s.selector.is_none()) {
            // The real API server defaults these at creation; kubectl finds a Job's pods by them.
            let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
            let labels = serde_json::json!({
                job::CONTROLLER_UID_LABEL: uid, "batch.kubernetes.io/controller-uid": uid,
                job::JOB_NAME_LABEL: name, "batch.kubernetes.io/job-name": name,
            });
            let patch = serde_json::json!({"spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
                "template": {"metadata": {"labels": labels}},
            }});
            if let Err(err) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(%err, job = %name, "cannot default the Job's selector");
            }
        }
        let plan = job::plan_job(job_obj, &owned, now, self.cfg.job_backoff);
        self.apply_pod_changes(&namespace, &plan.create, &plan.delete)
            .await;
        let reference = object_ref("batch/v1", "Job", &job_obj.metadata);
        for note in &plan.events {
            self.record("job-controller", &reference, note).await;
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        self.patch_status_if_changed(api, &name, job_obj.status.as_ref(), &plan.status)
            .await;
        let expect = job::expectation(&plan);
        if expect.is_empty() {
            self.expectations.remove(&uid);
        } else {
            self.expectations.insert(uid.clone(), expect);
        }
        if let Some(after) = plan.requeue_after {
            self.requeue.insert(uid, Instant::now() + after);
        }
    }

    async fn sync_deployment(&mut self, d: &Deployment, pods: &[Pod], now: Timestamp) {
        let Some((uid, name, namespace, owned)) = self.syncable(&d.metadata, pods) else {
            return;
        };
        let plan = deployment::plan_deployment(d, &owned, now);
        self.apply_pod_changes(&namespace, &plan.create, &plan.delete)
            .await;
        let reference = object_ref("apps/v1", "Deployment", &d.metadata);
        for note in &plan.events {
            self.record("deployment-controller", &reference, note).await;
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        self.patch_status_if_changed(api, &name, d.status.as_ref(), &plan.status)
            .await;
        self.record_revisions(d, &uid, &namespace, &owned, &plan)
            .await;
        let expect = Expect::new(
            plan.create
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect(),
            plan.delete.clone(),
        );
        if expect.is_empty() {
            self.expectations.remove(&uid);
        } else {
            self.expectations.insert(uid, expect);
        }
    }

    /// Keeps the Deployment's ReplicaSets (its revisions) in step with its
    /// template and pods; a stale cache makes a write fail or repeat, never
    /// number a revision twice (the numbers follow from what is stored).
    async fn record_revisions(
        &self,
        d: &Deployment,
        uid: &str,
        namespace: &str,
        pods: &[Pod],
        plan: &deployment::DeploymentPlan,
    ) {
        let owned: Vec<ReplicaSet> = self
            .caches
            .replica_sets
            .state()
            .iter()
            .filter(|rs| {
                rs.metadata.namespace.as_deref() == Some(namespace)
                    && rs
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .map(|rs| (**rs).clone())
            .collect();
        let revisions = revisions::plan_revisions(d, &owned, pods, &plan.create, &plan.delete);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        for rs in &revisions.write {
            let Some(name) = rs.metadata.name.clone() else {
                continue;
            };
            let mut body = rs.clone();
            body.status = None;
            if let Err(err) = api.patch(&name, &apply, &Patch::Apply(&body)).await {
                tracing::warn!(%err, replica_set = %name, "cannot write ReplicaSet");
                continue;
            }
            let stored = owned
                .iter()
                .find(|o| o.metadata.name.as_deref() == Some(&name));
            if let Some(status) = &rs.status {
                self.patch_status_if_changed(
                    api.clone(),
                    &name,
                    stored.and_then(|o| o.status.as_ref()),
                    status,
                )
                .await;
            }
        }
        for name in &revisions.delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(err) => tracing::warn!(%err, replica_set = %name, "cannot delete ReplicaSet"),
            }
        }
        if let (Some(revision), Some(name)) = (&revisions.revision, &d.metadata.name) {
            let patch = serde_json::json!({"metadata": {"annotations": {
                revisions::REVISION_ANNOTATION: revision,
            }}});
            let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
            if let Err(err) = deployments
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(%err, deployment = %name, "cannot record the Deployment's revision");
            }
        }
    }

    fn reap_workers(&mut self) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.retain(|_, handle| {
            let done = handle.task.is_finished();
            if done {
                self.finished.insert(handle.uid.clone());
            }
            !done
        });
    }

    async fn shutdown(&mut self) {
        let handles: Vec<WorkerHandle> = {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            workers.drain().map(|(_, h)| h).collect()
        };
        for handle in &handles {
            let _ = handle.commands.send(PodCommand::Terminate {
                grace: handle.grace.min(Duration::from_secs(5)),
                remove_pod: false,
            });
        }
        for handle in handles {
            let _ = handle.task.await;
        }
        self.proxies.stop();
    }
}
