//! The node's control loop: watches into reflector caches, then on every
//! wake-up runs the Job and Deployment controllers, the scheduler, the
//! kubelet sync and the Service sync, in that order.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
use super::kubelet::{PodCommand, PodStart, WorkerContext, run_pod};
use super::pods::{Expect, is_owned_by, is_terminal};
use super::quantity::{GPU_RESOURCE, Resources, format_bytes, format_cpu, pod_requests};
use super::scheduler::{NodeView, Placement, place};
use super::service::{
    ProxyTarget, ServiceProxies, backends, cluster_ip, endpoints_object, hosts_file_text,
    service_env,
};
use super::{NodeConfig, RunnerError, Workers, deployment, job};

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

/// Creates or updates the Node object with capacity, allocatable and a Ready condition.
pub async fn register_node(client: &Client, cfg: &NodeConfig) -> Result<(), RunnerError> {
    let err = |source| RunnerError::RegisterNode {
        node: cfg.name.clone(),
        source,
    };
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = cfg.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), cfg.name.clone());
    labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    let resources = serde_json::json!({
        "cpu": format_cpu(cfg.cpu_millis),
        "memory": format_bytes(cfg.memory_bytes),
        GPU_RESOURCE: cfg.gpus.to_string(),
        "pods": "110",
    });
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.name, "labels": labels},
        "spec": {"podCIDR": format!("{}/17", cfg.pod_ip_base)},
    });
    let now = Time(Timestamp::now());
    let status = serde_json::json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": cfg.name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"kubeletVersion": "v1.33.0-driftline", "operatingSystem": std::env::consts::OS,
            "architecture": go_arch(), "containerRuntimeVersion": "driftline-process://1",
            "kernelVersion": "", "osImage": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
    }});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&cfg.name, &params, &Patch::Apply(&node))
        .await
        .map_err(err)?;
    api.patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(err)?;
    Ok(())
}

/// Renews `kube-node-lease/<node>` every 10 s (40 s duration), as kubelet
/// does; nothing when `enabled` is false (the embedded cluster has no node
/// lifecycle controller).
async fn renew_node_lease(client: Client, node: String, enabled: bool) {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    if !enabled {
        return;
    }
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": node},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                "renewTime": MicroTime(Timestamp::now())},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(err) = api.patch(&node, &params, &Patch::Apply(&lease)).await {
            tracing::warn!(%err, node, "cannot renew the node Lease");
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
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
    mut gpus: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let notify = Arc::new(Notify::new());
    let (pods, t1) = reflect(Api::<Pod>::all(client.clone()), notify.clone());
    let (jobs, t2) = reflect(Api::<Job>::all(client.clone()), notify.clone());
    let (deployments, t3) = reflect(Api::<Deployment>::all(client.clone()), notify.clone());
    let (services, t4) = reflect(Api::<Service>::all(client.clone()), notify.clone());
    // As a kubelet on a real control plane, the node's Lease is its heartbeat:
    // the node lifecycle controller marks a node without one NotReady.
    let t5 = tokio::spawn(renew_node_lease(
        client.clone(),
        cfg.name.clone(),
        cfg.kubelet_only,
    ));
    let watch_tasks = [t1, t2, t3, t4, t5];
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
    });
    let mut node = NodeLoop {
        client,
        cfg,
        caches: Caches {
            pods,
            jobs,
            deployments,
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
                tracing::warn!(%err, gpus = offered, "cannot update the node's GPU capacity");
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

    async fn record(
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
    async fn apply_pod_changes(&self, namespace: &str, create: &[Pod], delete: &[String]) {
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

    fn node_view(&self) -> NodeView {
        let mut labels = self.cfg.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), self.cfg.name.clone());
        labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
        labels.insert("kubernetes.io/arch".into(), go_arch().into());
        NodeView {
            name: self.cfg.name.clone(),
            labels,
            allocatable: Resources {
                cpu_millis: self.cfg.cpu_millis,
                memory_bytes: self.cfg.memory_bytes,
                gpus: self.cfg.gpus,
            },
        }
    }

    /// Binds pending pods that fit, oldest first; marks the rest Unschedulable.
    async fn schedule(&mut self, pods: &[Pod]) {
        let node = self.node_view();
        let mut used = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str())
                    && !is_terminal(p)
            })
            .filter_map(|p| pod_requests(p.spec.as_ref()?).ok())
            .fold(Resources::default(), Resources::plus);
        let mut pending: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && !is_terminal(p)
                    && p.spec.as_ref().is_some_and(|s| s.node_name.is_none())
            })
            .collect();
        pending.sort_by_key(|p| p.metadata.creation_timestamp.clone());
        for pod in pending {
            let (Some(name), Some(namespace), Some(spec)) = (
                pod.metadata.name.clone(),
                pod.metadata.namespace.clone(),
                pod.spec.as_ref(),
            ) else {
                continue;
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            // Bound already; the cache has not caught up yet.
            if self.bound.contains(&uid) {
                continue;
            }
            let reference = object_ref("v1", "Pod", &pod.metadata);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let placement =
                place(spec, &node, used).unwrap_or_else(|err| Placement::Unschedulable {
                    message: format!(
                        "0/1 nodes are available: pod has an invalid resource request: {err}."
                    ),
                });
            match placement {
                Placement::Fits(taken) => {
                    let bind = serde_json::json!({"spec": {"nodeName": node.name}});
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&bind))
                        .await
                    {
                        Ok(_) => {
                            used = used.plus(taken);
                            self.unschedulable.remove(&uid);
                            self.bound.insert(uid.clone());
                            let message = format!(
                                "Successfully assigned {namespace}/{name} to {}",
                                node.name
                            );
                            self.record(
                                "default-scheduler",
                                &reference,
                                &EventNote::normal("Scheduled", &message),
                            )
                            .await;
                        }
                        Err(err) => tracing::warn!(%err, pod = %name, "cannot bind pod"),
                    }
                }
                Placement::Unschedulable { message } => {
                    if self.unschedulable.get(&uid) == Some(&message) {
                        continue;
                    }
                    let status = serde_json::json!({"status": {
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message, "lastTransitionTime": Time(Timestamp::now()), "lastProbeTime": null}],
                    }});
                    match api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                    {
                        Ok(_) => {
                            self.record(
                                "default-scheduler",
                                &reference,
                                &EventNote::warning("FailedScheduling", &message),
                            )
                            .await;
                            self.unschedulable.insert(uid, message);
                        }
                        Err(err) => {
                            tracing::warn!(%err, pod = %name, "cannot mark pod unschedulable")
                        }
                    }
                }
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

    fn free_ip(&self, pods: &[Pod]) -> Option<Ipv4Addr> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut used: HashSet<Ipv4Addr> = workers.values().map(|w| w.ip).collect();
        used.extend(pods.iter().filter(|p| !is_terminal(p)).filter_map(|p| {
            p.status
                .as_ref()?
                .pod_ip
                .as_deref()?
                .parse::<Ipv4Addr>()
                .ok()
        }));
        let base = u32::from(self.cfg.pod_ip_base);
        (1..0x7fff_u32)
            .map(|n| Ipv4Addr::from(base + n))
            .find(|ip| !used.contains(ip))
    }

    /// Starts workers for bound pods and stops those of deleted pods.
    async fn sync_pods(&mut self, pods: &[Pod]) {
        let services: Vec<Service> = self
            .caches
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.cfg.name.as_str())
            })
            .collect();
        let present: HashMap<(String, String), String> = mine
            .iter()
            .filter_map(|p| {
                Some((
                    (p.metadata.namespace.clone()?, p.metadata.name.clone()?),
                    p.metadata.uid.clone()?,
                ))
            })
            .collect();
        {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            for (key, handle) in workers.iter_mut() {
                let gone = present.get(key) != Some(&handle.uid);
                if gone && !handle.terminating {
                    handle.terminating = true;
                    let _ = handle.commands.send(PodCommand::Terminate {
                        grace: handle.grace,
                        remove_pod: false,
                    });
                }
            }
        }
        for pod in mine {
            let (Some(name), Some(namespace), Some(uid)) = (
                pod.metadata.name.clone(),
                pod.metadata.namespace.clone(),
                pod.metadata.uid.clone(),
            ) else {
                continue;
            };
            let key = (namespace.clone(), name.clone());
            let grace = Duration::from_secs(
                pod.metadata
                    .deletion_grace_period_seconds
                    .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0) as u64,
            );
            let has_worker = {
                let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
                match workers.get_mut(&key) {
                    Some(handle) => {
                        if pod.metadata.deletion_timestamp.is_some()
                            && !handle.terminating
                            && handle.uid == uid
                        {
                            handle.terminating = true;
                            let _ = handle.commands.send(PodCommand::Terminate {
                                grace,
                                remove_pod: true,
                            });
                        }
                        true
                    }
                    None => false,
                }
            };
            if has_worker {
                continue;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                // Nothing runs for it any more: finish the deletion.
                if self.force_deleted.insert(uid) {
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                    let params = DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    };
                    if let Err(err) = api.delete(&name, &params).await {
                        tracing::debug!(%err, pod = %name, "pod already removed");
                    }
                }
                continue;
            }
            if self.finished.contains(&uid) || is_terminal(pod) {
                continue;
            }
            let Some(ip) = self.free_ip(pods) else {
                tracing::warn!(pod = %name, "no free pod address left in the node's range");
                continue;
            };
            let wanted_gpus = pod
                .spec
                .as_ref()
                .and_then(|s| pod_requests(s).ok())
                .map_or(0, |r| r.gpus);
            let Some(gpus) = self.free_gpus(wanted_gpus) else {
                // The scheduler counted them free; a terminating pod still holds them.
                continue;
            };
            let mut extra_env = service_env(&services, &namespace);
            if self.cfg.gpus > 0 {
                // Like the NVIDIA device plugin: a pod sees only the devices it was given.
                let devices: Vec<String> = gpus.iter().map(u64::to_string).collect();
                extra_env.push(("CUDA_VISIBLE_DEVICES".into(), devices.join(",")));
                let nvidia = if devices.is_empty() {
                    "void".to_string()
                } else {
                    devices.join(",")
                };
                extra_env.push(("NVIDIA_VISIBLE_DEVICES".into(), nvidia));
            }
            if let Some(var) = &self.cfg.hosts_file_env {
                let hosts = self.cfg.state_dir.join("hosts");
                extra_env.push((var.clone(), hosts.to_string_lossy().into_owned()));
            }
            if let Some(kubeconfig) = &self.cfg.kubeconfig {
                extra_env.push((
                    "KUBECONFIG".into(),
                    kubeconfig.to_string_lossy().into_owned(),
                ));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let start = PodStart {
                pod: pod.clone(),
                ip,
                extra_env,
            };
            let task = tokio::spawn(run_pod(self.worker_ctx.clone(), start, rx));
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            workers.insert(
                key,
                WorkerHandle {
                    uid,
                    commands: tx,
                    task,
                    terminating: false,
                    grace,
                    ip,
                    gpus,
                },
            );
        }
    }

    /// Device indices for a pod asking for `count` GPUs, if that many are not held by other pods.
    fn free_gpus(&self, count: u64) -> Option<Vec<u64>> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let held: HashSet<u64> = workers
            .values()
            .flat_map(|w| w.gpus.iter().copied())
            .collect();
        let free: Vec<u64> = (0..self.cfg.gpus)
            .filter(|i| !held.contains(i))
            .take(count as usize)
            .collect();
        (free.len() as u64 == count).then_some(free)
    }

    fn free_service_ip(&self, services: &[Service]) -> Ipv4Addr {
        let used: HashSet<IpAddr> = services.iter().filter_map(cluster_ip).collect();
        let base = u32::from(self.cfg.pod_ip_base) + 0x8000;
        (1..0x7fff_u32)
            .map(|n| Ipv4Addr::from(base + n))
            .find(|ip| !used.contains(&IpAddr::V4(*ip)))
            .unwrap_or(Ipv4Addr::from(base + 0x7fff))
    }

    fn services(&self) -> Vec<Service> {
        self.caches
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect()
    }

    /// Cluster IPs, Endpoints, proxies and the hosts file.
    async fn sync_services(&mut self, pods: &[Pod]) {
        let mut services = self.services();
        for index in 0..services.len() {
            let svc = &services[index];
            let spec = svc.spec.clone().unwrap_or_default();
            let wants_ip = spec.type_.as_deref() != Some("ExternalName")
                && spec.cluster_ip.as_deref().is_none_or(|ip| ip.is_empty());
            if !wants_ip || svc.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let (Some(name), Some(namespace)) =
                (svc.metadata.name.clone(), svc.metadata.namespace.clone())
            else {
                continue;
            };
            let ip = self.free_service_ip(&services).to_string();
            let api: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({"spec": {"clusterIP": ip, "clusterIPs": [ip]}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => services[index] = updated,
                Err(err) => tracing::warn!(%err, service = %name, "cannot assign a cluster IP"),
            }
        }
        self.serve_services(&services, pods).await;
        self.write_endpoints(&services, pods).await;
    }

    /// A proxy on each Service port's cluster IP to the ready pods, and the
    /// hosts file naming the Services (what kube-proxy and DNS give pods).
    async fn serve_services(&mut self, services: &[Service], pods: &[Pod]) {
        let mut targets = Vec::new();
        for svc in services {
            let Some(ip) = cluster_ip(svc) else { continue };
            for (port, addrs) in backends(svc, pods) {
                targets.push(ProxyTarget {
                    listen: SocketAddr::new(ip, port),
                    backends: addrs,
                });
            }
        }
        self.proxies.sync(&targets).await;
        let text = hosts_file_text(services);
        if self.hosts_written.as_ref() != Some(&text) {
            let path = self.cfg.state_dir.join("hosts");
            let tmp = self.cfg.state_dir.join("hosts.tmp");
            match std::fs::write(&tmp, &text).and_then(|_| std::fs::rename(&tmp, &path)) {
                Ok(()) => self.hosts_written = Some(text),
                Err(err) => {
                    tracing::warn!(%err, path = %path.display(), "cannot write the hosts file")
                }
            }
        }
    }

    /// One Endpoints object per Service with a selector, from the pods it selects.
    async fn write_endpoints(&mut self, services: &[Service], pods: &[Pod]) {
        let mut live = HashSet::new();
        for svc in services
            .iter()
            .filter(|s| s.spec.as_ref().is_some_and(|s| s.selector.is_some()))
        {
            let (Some(name), Some(namespace)) =
                (svc.metadata.name.clone(), svc.metadata.namespace.clone())
            else {
                continue;
            };
            let key = (namespace.clone(), name.clone());
            live.insert(key.clone());
            let object = endpoints_object(svc, pods);
            if self.endpoints_written.get(&key) == Some(&object) {
                continue;
            }
            let api: Api<k8s_openapi::api::core::v1::Endpoints> =
                Api::namespaced(self.client.clone(), &namespace);
            let params = PatchParams::apply("endpoints-controller").force();
            match api.patch(&name, &params, &Patch::Apply(&object)).await {
                Ok(_) => {
                    self.endpoints_written.insert(key, object);
                }
                Err(err) => tracing::debug!(%err, service = %name, "cannot write Endpoints"),
            }
        }
        self.endpoints_written.retain(|k, _| live.contains(k));
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
