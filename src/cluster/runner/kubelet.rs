//! The kubelet half of the node: one worker task per pod that runs its
//! containers as local processes (each in its own process group), restarts
//! them per restartPolicy with CrashLoopBackOff, runs probes, writes the pod
//! status, and stops the processes when the pod is deleted.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus, Probe,
    Secret, ServiceAccount, ServiceAccountTokenProjection, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use super::container::{
    PodEnvironment, ProcessSpec, build_process, projected_files, volume_dirs, write_projected_files,
};
use super::events::{EventNote, EventRecorder, object_ref};
use super::service_account::{
    api_access_volume, pod_kubeconfig_yaml, projected_volume_files, token_sources,
};
use crate::cluster::layout::pod_log_path;

/// What the node tells a pod worker.
#[derive(Debug, Clone, Copy)]
pub enum PodCommand {
    /// Kill the containers' processes (a fault for tests); restartPolicy decides what follows.
    KillProcesses,
    /// Stop the pod: SIGTERM, SIGKILL after `grace`, then remove a pod marked for deletion.
    Terminate {
        /// Grace period before SIGKILL.
        grace: Duration,
        /// Remove the pod object afterwards (it was marked for deletion).
        remove_pod: bool,
    },
}

/// What every pod worker shares.
pub struct WorkerContext {
    /// Client for status writes and lookups.
    pub client: Client,
    /// The node's name.
    pub node_name: String,
    /// State directory (logs, volumes).
    pub state_dir: PathBuf,
    /// What `driftline` as command[0] runs.
    pub driftline_exe: PathBuf,
    /// Base delay of CrashLoopBackOff (Kubernetes: 10 s, doubling to 5 min).
    pub restart_backoff: Duration,
    /// Event recorder shared with the controllers.
    pub events: Arc<Mutex<EventRecorder>>,
    /// The API server URL for pods' ServiceAccount kubeconfigs; `None`: no
    /// tokens are projected (see [`super::NodeConfig::api_server_url`]).
    pub api_server_url: Option<String>,
    /// Mark containers as run without starting them (see
    /// [`super::NodeConfig::simulate_processes`]).
    pub simulate_processes: bool,
}

/// What one pod worker needs to start.
pub struct PodStart {
    /// The pod as last seen.
    pub pod: Pod,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// Service variables, hosts file and kubeconfig.
    pub extra_env: Vec<(String, String)>,
}

struct ContainerRun {
    spec: Container,
    init: bool,
    pid: Option<u32>,
    state: ContainerState,
    last_state: Option<ContainerState>,
    restart_count: i32,
    started_once: bool,
    restart_at: Option<Instant>,
    done: bool,
    ready: bool,
    probe_successes: i32,
    readiness_failures: i32,
    liveness_failures: i32,
    readiness_next: Option<Instant>,
    liveness_next: Option<Instant>,
    /// Marked as running without a process (`simulate_processes`).
    simulated: bool,
}

impl ContainerRun {
    fn new(spec: Container, init: bool) -> ContainerRun {
        ContainerRun {
            spec,
            init,
            pid: None,
            state: waiting("ContainerCreating", None),
            last_state: None,
            restart_count: 0,
            started_once: false,
            restart_at: None,
            done: false,
            ready: false,
            probe_successes: 0,
            readiness_failures: 0,
            liveness_failures: 0,
            readiness_next: None,
            liveness_next: None,
            simulated: false,
        }
    }

    fn running(&self) -> bool {
        self.pid.is_some() || self.simulated
    }

    fn succeeded(&self) -> bool {
        self.done
            && self
                .state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code == 0)
    }

    fn status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready: self.ready,
            started: Some(self.running()),
            restart_count: self.restart_count,
            state: Some(self.state.clone()),
            last_state: self.last_state.clone(),
            ..Default::default()
        }
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

/// Sends `signal` to a container's process group; a group that is gone is fine.
fn signal_group(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

/// A pod's worker: owns its processes until the pod finishes or is deleted.
struct PodWorker {
    ctx: Arc<WorkerContext>,
    pod: Pod,
    ip: Ipv4Addr,
    containers: Vec<ContainerRun>,
    env: Option<PodEnvironment>,
    extra_env: Vec<(String, String)>,
    pod_dir: PathBuf,
    start_time: Timestamp,
    restart_policy: String,
    conditions: BTreeMap<String, PodCondition>,
    last_written: Option<serde_json::Value>,
    exits: mpsc::UnboundedSender<(usize, u32, std::io::Result<ExitStatus>)>,
    config_error: Option<String>,
    /// When the projected ServiceAccount tokens are renewed.
    token_refresh_at: Option<Instant>,
}

/// Runs one pod to completion or deletion. Returns when its processes are gone.
pub async fn run_pod(
    ctx: Arc<WorkerContext>,
    start: PodStart,
    mut commands: mpsc::UnboundedReceiver<PodCommand>,
) {
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let spec = start.pod.spec.clone().unwrap_or_default();
    let namespace = start.pod.metadata.namespace.clone().unwrap_or_default();
    let name = start.pod.metadata.name.clone().unwrap_or_default();
    let uid = start.pod.metadata.uid.clone().unwrap_or_default();
    let pod_dir = ctx
        .state_dir
        .join("pods")
        .join(&namespace)
        .join(format!("{name}-{uid}"));
    let mut containers: Vec<ContainerRun> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ContainerRun::new(c.clone(), true))
        .collect();
    containers.extend(
        spec.containers
            .iter()
            .map(|c| ContainerRun::new(c.clone(), false)),
    );
    let mut worker = PodWorker {
        ctx,
        restart_policy: spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into()),
        pod: start.pod,
        ip: start.ip,
        containers,
        env: None,
        extra_env: start.extra_env,
        pod_dir,
        start_time: Timestamp::now(),
        conditions: BTreeMap::new(),
        last_written: None,
        exits: exit_tx,
        config_error: None,
        token_refresh_at: None,
    };
    worker.write_status().await;
    loop {
        if worker.env.is_none() {
            worker.prepare().await;
        }
        worker.start_due().await;
        if worker.finished() {
            worker.write_final_status().await;
            return;
        }
        worker.write_status().await;
        let wake = worker.next_wake();
        tokio::select! {
            Some((index, pid, result)) = exit_rx.recv() => {
                worker.on_exit(index, pid, result).await;
            }
            command = commands.recv() => match command {
                Some(PodCommand::KillProcesses) => worker.kill_all(Signal::SIGKILL),
                Some(PodCommand::Terminate { grace, remove_pod }) => {
                    worker.terminate(grace, remove_pod, &mut exit_rx).await;
                    return;
                }
                // The node is shutting down.
                None => {
                    worker.terminate(Duration::from_secs(2), false, &mut exit_rx).await;
                    return;
                }
            },
            _ = tokio::time::sleep_until(wake) => {
                worker.refresh_tokens().await;
                worker.run_probes().await;
            }
        }
    }
}

impl PodWorker {
    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    async fn event(&self, note: EventNote) {
        let reference = object_ref("v1", "Pod", &self.pod.metadata);
        self.ctx
            .events
            .lock()
            .await
            .record("kubelet", &reference, &note)
            .await;
    }

    /// Volumes, ConfigMaps and Secrets; on failure the containers wait with
    /// CreateContainerConfigError and preparation is retried.
    async fn prepare(&mut self) {
        match self.try_prepare().await {
            Ok(env) => {
                self.env = Some(env);
                self.config_error = None;
            }
            Err(message) => {
                if self.config_error.as_ref() != Some(&message) {
                    self.event(EventNote::warning("Failed", &message)).await;
                }
                for c in &mut self.containers {
                    c.state = waiting("CreateContainerConfigError", Some(message.clone()));
                }
                self.config_error = Some(message);
            }
        }
    }

    async fn try_prepare(&mut self) -> Result<PodEnvironment, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let namespace = self.namespace();
        let volumes = spec.volumes.clone().unwrap_or_default();
        let dirs = volume_dirs(&volumes, &self.ctx.state_dir, &namespace, &self.pod_dir);
        let mut config_maps = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        let (cm_names, secret_names) = referenced_objects(&self.pod);
        let cm_api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &namespace);
        for name in cm_names {
            if let Some(cm) = cm_api.get_opt(&name).await.map_err(|e| {
                format!("cannot read configmap `{name}` in namespace `{namespace}`: {e}")
            })? {
                config_maps.insert(name, cm.data.unwrap_or_default());
            }
        }
        let secret_api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &namespace);
        for name in secret_names {
            if let Some(secret) = secret_api.get_opt(&name).await.map_err(|e| {
                format!("cannot read secret `{name}` in namespace `{namespace}`: {e}")
            })? {
                let mut data: BTreeMap<String, String> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                data.extend(secret.string_data.unwrap_or_default());
                secrets.insert(name, data);
            }
        }
        for v in &volumes {
            let missing = if let Some(cm) = &v.config_map {
                (!config_maps.contains_key(&cm.name) && cm.optional != Some(true))
                    .then(|| format!("configmap \"{}\" not found", cm.name))
            } else if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                (!secrets.contains_key(&name) && s.optional != Some(true))
                    .then(|| format!("secret \"{name}\" not found"))
            } else {
                None
            };
            if let Some(m) = missing {
                return Err(format!("volume `{}`: {m}", v.name));
            }
        }
        let io = |what: &str, path: &Path, e: std::io::Error| {
            format!("cannot create {what} {}: {e}", path.display())
        };
        std::fs::create_dir_all(&self.pod_dir)
            .map_err(|e| io("pod directory", &self.pod_dir, e))?;
        for (volume, dir) in &dirs {
            let is_host_path = volumes
                .iter()
                .any(|v| &v.name == volume && v.host_path.is_some());
            let must_exist = volumes.iter().any(|v| {
                &v.name == volume
                    && v.host_path
                        .as_ref()
                        .is_some_and(|h| h.type_.as_deref() == Some("Directory"))
            });
            if must_exist && !dir.is_dir() {
                return Err(format!(
                    "hostPath volume `{volume}`: {} is not a directory",
                    dir.display()
                ));
            }
            if !is_host_path || !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| io("volume directory", dir, e))?;
            }
        }
        let files = projected_files(&volumes, &config_maps, &secrets);
        write_projected_files(&files, &dirs)
            .map_err(|e| format!("cannot write volume files: {e}"))?;
        let mut extra_env = self.extra_env.clone();
        extra_env.extend(
            self.project_volumes(&volumes, &dirs, &config_maps, &secrets)
                .await?,
        );
        Ok(PodEnvironment {
            pod_ip: self.ip,
            host_ip: Ipv4Addr::LOCALHOST,
            node_name: self.ctx.node_name.clone(),
            driftline_exe: self.ctx.driftline_exe.clone(),
            pod_dir: self.pod_dir.clone(),
            volumes: dirs,
            config_maps,
            secrets,
            extra_env,
        })
    }

    /// Fills the pod's projected volumes. Where the node gives pods API
    /// access, it asks the TokenRequest API for their ServiceAccount tokens
    /// (bound to the pod, renewed at 80% of their lifetime, as kubelet does)
    /// and returns `KUBECONFIG` for a pod that mounts one at the well-known
    /// path (see [`super::service_account`]).
    async fn project_volumes(
        &mut self,
        volumes: &[Volume],
        dirs: &BTreeMap<String, PathBuf>,
        config_maps: &BTreeMap<String, BTreeMap<String, String>>,
        secrets: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut files = BTreeMap::new();
        let mut shortest: Option<Duration> = None;
        for v in volumes {
            let Some(source) = &v.projected else { continue };
            let mut tokens = BTreeMap::new();
            if self.ctx.api_server_url.is_some() {
                for projection in token_sources(source) {
                    let (token, lifetime) = self.request_token(projection).await?;
                    tokens.insert(projection.path.clone(), token);
                    shortest = Some(shortest.map_or(lifetime, |s| s.min(lifetime)));
                }
            }
            let content = projected_volume_files(source, &self.pod, config_maps, secrets, &tokens)
                .map_err(|m| format!("volume `{}`: {m}", v.name))?;
            files.insert(v.name.clone(), content);
        }
        write_projected_files(&files, dirs)
            .map_err(|e| format!("cannot write volume files: {e}"))?;
        self.token_refresh_at = shortest.map(|l| Instant::now() + l.mul_f64(0.8));
        let (Some(server), Some((volume, token_path))) =
            (&self.ctx.api_server_url, api_access_volume(&self.pod))
        else {
            return Ok(Vec::new());
        };
        let (Some(dir), Some(content)) = (dirs.get(&volume), files.get(&volume)) else {
            return Ok(Vec::new());
        };
        // `ca.crt` is where the admission plugin projects kube-root-ca.crt.
        let ca = content.get("ca.crt").cloned().unwrap_or_default();
        let text = pod_kubeconfig_yaml(server, &ca, &dir.join(token_path), &self.namespace());
        let path = self.pod_dir.join("kubeconfig");
        let tmp = self.pod_dir.join("kubeconfig.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(vec![(
            "KUBECONFIG".into(),
            path.to_string_lossy().into_owned(),
        )])
    }

    /// A token for the pod's ServiceAccount, bound to the pod, and how long it lives.
    async fn request_token(
        &self,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<(String, Duration), String> {
        let namespace = self.namespace();
        let account = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: projection.audience.clone().into_iter().collect(),
                expiration_seconds: projection.expiration_seconds,
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: self.pod.metadata.name.clone(),
                    uid: self.pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let answer = api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!(
                    "cannot request a token for serviceaccount `{account}` in namespace `{namespace}`: {e}"
                )
            })?;
        let status = answer.status.ok_or_else(|| {
            format!("the token request for serviceaccount `{account}` returned no token")
        })?;
        let lifetime = Duration::try_from(
            status
                .expiration_timestamp
                .0
                .duration_since(Timestamp::now()),
        )
        .unwrap_or(Duration::from_secs(60));
        Ok((status.token, lifetime))
    }

    /// Renews the projected tokens when due; a failure is retried in 10 s.
    async fn refresh_tokens(&mut self) {
        if self.token_refresh_at.is_none_or(|t| t > Instant::now()) {
            return;
        }
        let Some(env) = self.env.clone() else { return };
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        if let Err(message) = self
            .project_volumes(&volumes, &env.volumes, &env.config_maps, &env.secrets)
            .await
        {
            tracing::warn!(pod = %self.name(), %message, "cannot renew the pod's token");
            self.token_refresh_at = Some(Instant::now() + Duration::from_secs(10));
        }
    }

    /// Starts every container whose turn it is (init containers one by one first).
    async fn start_due(&mut self) {
        let Some(env) = self.env.clone() else { return };
        loop {
            let now = Instant::now();
            let init_pending = self
                .containers
                .iter()
                .position(|c| c.init && !c.succeeded());
            let candidates: Vec<usize> = match init_pending {
                Some(i) => vec![i],
                None => (0..self.containers.len())
                    .filter(|i| !self.containers[*i].init)
                    .collect(),
            };
            for index in candidates {
                let c = &self.containers[index];
                if c.running() || c.done || c.restart_at.is_some_and(|t| t > now) {
                    continue;
                }
                self.start_container(index, &env).await;
            }
            // A simulated init container finishes as it starts, with no exit
            // to wake the worker: the next container is due at once.
            let init_done = |w: &Self| w.containers.iter().position(|c| c.init && !c.succeeded());
            if !(self.ctx.simulate_processes
                && init_pending.is_some()
                && init_done(self) != init_pending)
            {
                return;
            }
        }
    }

    async fn start_container(&mut self, index: usize, env: &PodEnvironment) {
        let name = self.name();
        let namespace = self.namespace();
        let container_name = self.containers[index].spec.name.clone();
        let log = pod_log_path(&self.ctx.state_dir, &namespace, &name, &container_name);
        let first_start = !self.containers[index].started_once;
        let spec = match build_process(&self.pod, &self.containers[index].spec, env) {
            Ok(spec) => spec,
            Err(err) => {
                let message = err.to_string();
                let c = &mut self.containers[index];
                if c.state.waiting.as_ref().and_then(|w| w.message.as_ref()) != Some(&message) {
                    c.state = waiting("CreateContainerConfigError", Some(message.clone()));
                    self.event(EventNote::warning("Failed", &format!("Error: {message}")))
                        .await;
                }
                // Not retried: the pod spec is immutable.
                self.containers[index].restart_at =
                    Some(Instant::now() + Duration::from_secs(3600));
                return;
            }
        };
        if self.ctx.simulate_processes {
            self.simulate_start(index).await;
            return;
        }
        let now = Timestamp::now();
        match spawn(&spec, &log, first_start) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                let exits = self.exits.clone();
                tokio::spawn(async move {
                    let result = child.wait().await;
                    let _ = exits.send((index, pid, result));
                });
                let c = &mut self.containers[index];
                if c.started_once {
                    c.restart_count += 1;
                }
                c.started_once = true;
                c.pid = Some(pid);
                c.restart_at = None;
                c.state = ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(now)),
                    }),
                    ..Default::default()
                };
                c.ready = c.spec.readiness_probe.is_none();
                c.probe_successes = 0;
                c.readiness_failures = 0;
                c.liveness_failures = 0;
                let delay = |p: &Option<Probe>| {
                    p.as_ref().map(|p| {
                        Instant::now()
                            + Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)
                    })
                };
                c.readiness_next = delay(&c.spec.readiness_probe);
                c.liveness_next = delay(&c.spec.liveness_probe);
                if first_start {
                    self.event(EventNote::normal(
                        "Created",
                        &format!("Created container: {container_name}"),
                    ))
                    .await;
                }
                self.event(EventNote::normal(
                    "Started",
                    &format!("Started container {container_name}"),
                ))
                .await;
            }
            Err(err) => {
                let message = format!("failed to start `{}`: {err}", spec.program.display());
                self.event(EventNote::warning("Failed", &format!("Error: {message}")))
                    .await;
                let c = &mut self.containers[index];
                if c.started_once {
                    c.restart_count += 1;
                }
                c.started_once = true;
                c.state = ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 128,
                        reason: Some("StartError".into()),
                        message: Some(message),
                        started_at: Some(Time(now)),
                        finished_at: Some(Time(now)),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                self.after_termination(index, 128).await;
            }
        }
    }

    /// `simulate_processes`: a container that runs to completion succeeds
    /// at once; any other runs, ready, with no process behind it.
    async fn simulate_start(&mut self, index: usize) {
        let now = Some(Time(Timestamp::now()));
        let to_completion = self.containers[index].init || self.restart_policy != "Always";
        let c = &mut self.containers[index];
        c.started_once = true;
        c.restart_at = None;
        if to_completion {
            c.state = ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    started_at: now.clone(),
                    finished_at: now,
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.after_termination(index, 0).await;
        } else {
            c.simulated = true;
            c.ready = true;
            c.readiness_next = None;
            c.liveness_next = None;
            c.state = ContainerState {
                running: Some(ContainerStateRunning { started_at: now }),
                ..Default::default()
            };
        }
    }

    async fn on_exit(&mut self, index: usize, pid: u32, result: std::io::Result<ExitStatus>) {
        let Some(c) = self.containers.get_mut(index) else {
            return;
        };
        if c.pid != Some(pid) {
            return;
        }
        c.pid = None;
        c.ready = false;
        // Reap anything the container left behind in its process group.
        signal_group(pid, Signal::SIGKILL);
        let (code, signal) = match result {
            Ok(status) => exit_code(status),
            Err(_) => (128, None),
        };
        let started_at = c.state.running.as_ref().and_then(|r| r.started_at.clone());
        c.state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                signal,
                reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                started_at,
                finished_at: Some(Time(Timestamp::now())),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.after_termination(index, code).await;
    }

    /// Decides whether a terminated container runs again, and when.
    async fn after_termination(&mut self, index: usize, code: i32) {
        let restart = match self.restart_policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => !self.containers[index].init || code != 0,
        };
        let name = self.name();
        let namespace = self.namespace();
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let base = self.ctx.restart_backoff;
        let c = &mut self.containers[index];
        if !restart {
            c.done = true;
            return;
        }
        let delay = base
            .saturating_mul(1u32 << c.restart_count.clamp(0, 10))
            .min(Duration::from_secs(300));
        c.restart_at = Some(Instant::now() + delay);
        c.last_state = Some(c.state.clone());
        let container = c.spec.name.clone();
        c.state = waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {}s restarting failed container={container} pod={name}_{namespace}({uid})",
                delay.as_secs()
            )),
        );
        self.event(EventNote::warning(
            "BackOff",
            &format!(
                "Back-off restarting failed container {container} in pod {name}_{namespace}({uid})"
            ),
        ))
        .await;
    }

    fn kill_all(&self, signal: Signal) {
        for c in &self.containers {
            if let Some(pid) = c.pid {
                signal_group(pid, signal);
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; finally removes a pod marked for deletion.
    async fn terminate(
        &mut self,
        grace: Duration,
        remove_pod: bool,
        exits: &mut mpsc::UnboundedReceiver<(usize, u32, std::io::Result<ExitStatus>)>,
    ) {
        for c in &mut self.containers {
            c.restart_at = None;
            c.done = true;
        }
        for c in self.containers.iter().filter(|c| c.running()) {
            self.event(EventNote::normal(
                "Killing",
                &format!("Stopping container {}", c.spec.name),
            ))
            .await;
        }
        // Simulated containers have no process to wait for.
        for c in &mut self.containers {
            if c.simulated {
                c.simulated = false;
                c.ready = false;
            }
        }
        self.kill_all(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut killed = false;
        while self.containers.iter().any(|c| c.running()) {
            let wait_until = if killed {
                Instant::now() + Duration::from_secs(5)
            } else {
                deadline
            };
            match tokio::time::timeout_at(wait_until, exits.recv()).await {
                Ok(Some((index, pid, result))) => self.on_exit(index, pid, result).await,
                Ok(None) => break,
                Err(_) if !killed => {
                    self.kill_all(Signal::SIGKILL);
                    killed = true;
                }
                Err(_) => break,
            }
        }
        for c in &mut self.containers {
            c.done = true;
            c.restart_at = None;
        }
        self.write_status().await;
        if remove_pod {
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            if let Err(err) = api.delete(&self.name(), &params).await {
                tracing::debug!(%err, pod = %self.name(), "pod already removed");
            }
        }
    }

    /// All containers are done and nothing runs: the pod has reached its final phase.
    fn finished(&self) -> bool {
        self.containers.iter().all(|c| c.done && !c.running())
            || (self
                .containers
                .iter()
                .any(|c| c.init && c.done && !c.succeeded()))
                && self.containers.iter().all(|c| !c.running())
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut wake = far;
        for c in &self.containers {
            if !c.running() {
                if let Some(t) = c.restart_at {
                    wake = wake.min(t);
                }
                continue;
            }
            for t in [c.readiness_next, c.liveness_next].into_iter().flatten() {
                wake = wake.min(t);
            }
        }
        if let Some(t) = self.token_refresh_at {
            wake = wake.min(t);
        }
        if self.env.is_none() {
            wake = wake.min(Instant::now() + Duration::from_secs(2));
        }
        wake
    }

    async fn run_probes(&mut self) {
        let now = Instant::now();
        for index in 0..self.containers.len() {
            if !self.containers[index].running() {
                continue;
            }
            let spec = self.containers[index].spec.clone();
            if let Some(probe) = &spec.readiness_probe
                && self.containers[index]
                    .readiness_next
                    .is_some_and(|t| t <= now)
            {
                let outcome = run_probe(probe, &spec, self.ip).await;
                let period = period(probe);
                let c = &mut self.containers[index];
                c.readiness_next = Some(Instant::now() + period);
                match outcome {
                    Ok(()) => {
                        c.readiness_failures = 0;
                        c.probe_successes += 1;
                        if c.probe_successes >= probe.success_threshold.unwrap_or(1) {
                            c.ready = true;
                        }
                    }
                    Err(message) => {
                        c.probe_successes = 0;
                        c.readiness_failures += 1;
                        let was_ready = c.ready;
                        if c.readiness_failures >= probe.failure_threshold.unwrap_or(3)
                            || !was_ready
                        {
                            c.ready = false;
                        }
                        if was_ready || c.readiness_failures == 1 {
                            self.event(EventNote::warning(
                                "Unhealthy",
                                &format!("Readiness probe failed: {message}"),
                            ))
                            .await;
                        }
                    }
                }
            }
            if let Some(probe) = &spec.liveness_probe
                && self.containers[index]
                    .liveness_next
                    .is_some_and(|t| t <= now)
            {
                let outcome = run_probe(probe, &spec, self.ip).await;
                let c = &mut self.containers[index];
                c.liveness_next = Some(Instant::now() + period(probe));
                match outcome {
                    Ok(()) => c.liveness_failures = 0,
                    Err(message) => {
                        c.liveness_failures += 1;
                        if c.liveness_failures >= probe.failure_threshold.unwrap_or(3) {
                            c.liveness_failures = 0;
                            if let Some(pid) = c.pid {
                                signal_group(pid, Signal::SIGKILL);
                            }
                            let name = spec.name.clone();
                            self.event(EventNote::warning(
                                "Unhealthy",
                                &format!("Liveness probe failed: {message}"),
                            ))
                            .await;
                            self.event(EventNote::normal(
                                "Killing",
                                &format!(
                                    "Container {name} failed liveness probe, will be restarted"
                                ),
                            ))
                            .await;
                        }
                    }
                }
            }
        }
    }

    fn phase(&self) -> &'static str {
        let init_failed = self
            .containers
            .iter()
            .any(|c| c.init && c.done && !c.succeeded());
        let main: Vec<&ContainerRun> = self.containers.iter().filter(|c| !c.init).collect();
        if init_failed {
            return "Failed";
        }
        if main.iter().all(|c| c.done && !c.running()) && !main.is_empty() {
            return if main.iter().all(|c| c.succeeded()) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if main.iter().any(|c| c.started_once) {
            "Running"
        } else {
            "Pending"
        }
    }

    fn set_condition(&mut self, type_: &str, value: bool, reason: Option<&str>) {
        let status = if value { "True" } else { "False" };
        let current = self.conditions.get(type_);
        if current.is_some_and(|c| c.status == status) {
            return;
        }
        self.conditions.insert(
            type_.into(),
            PodCondition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.map(Into::into),
                last_transition_time: Some(Time(Timestamp::now())),
                ..Default::default()
            },
        );
    }

    fn status(&mut self) -> PodStatus {
        let phase = self.phase();
        let initialized = self
            .containers
            .iter()
            .filter(|c| c.init)
            .all(|c| c.succeeded());
        let ready =
            phase == "Running" && self.containers.iter().filter(|c| !c.init).all(|c| c.ready);
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let reason = if terminal { Some("PodCompleted") } else { None };
        let not_ready = if terminal {
            reason
        } else {
            Some("ContainersNotReady")
        };
        self.set_condition("PodScheduled", true, None);
        self.set_condition("PodReadyToStartContainers", !terminal, None);
        let init_reason = if initialized {
            reason
        } else {
            Some("ContainersNotInitialized")
        };
        self.set_condition("Initialized", initialized, init_reason);
        self.set_condition(
            "ContainersReady",
            ready,
            if ready { None } else { not_ready },
        );
        self.set_condition("Ready", ready, if ready { None } else { not_ready });
        let order = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ];
        let conditions = order
            .iter()
            .filter_map(|t| self.conditions.get(*t).cloned())
            .collect();
        let statuses = |init: bool| -> Vec<ContainerStatus> {
            self.containers
                .iter()
                .filter(|c| c.init == init)
                .map(ContainerRun::status)
                .collect()
        };
        let init_statuses = statuses(true);
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: Some(Ipv4Addr::LOCALHOST.to_string()),
            host_ips: Some(vec![HostIP {
                ip: Ipv4Addr::LOCALHOST.to_string(),
            }]),
            pod_ip: Some(self.ip.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: self.ip.to_string(),
            }]),
            start_time: Some(Time(self.start_time)),
            container_statuses: Some(statuses(false)),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            qos_class: Some(qos_class(&self.pod)),
            ..Default::default()
        }
    }

    /// The last status must land: Jobs count finished pods from it.
    async fn write_final_status(&mut self) {
        for attempt in 0..20u32 {
            if self.write_status().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100) * (attempt + 1)).await;
        }
        tracing::warn!(pod = %self.name(), "gave up writing the final pod status");
    }

    /// Writes the pod status when it changed since the last write; false when
    /// the write failed and is worth retrying.
    async fn write_status(&mut self) -> bool {
        let status = self.status();
        let Ok(value) = serde_json::to_value(&status) else {
            return true;
        };
        if self.last_written.as_ref() == Some(&value) {
            return true;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let patch = serde_json::json!({"status": value});
        match api
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.last_written = Some(value);
                true
            }
            // The pod is gone: nothing left to report.
            Err(kube::Error::Api(e)) if e.code == 404 => true,
            Err(err) => {
                tracing::debug!(%err, pod = %self.name(), "pod status write failed; retrying on the next change");
                false
            }
        }
    }
}

/// Exit code and signal as Kubernetes reports them (128 + signal when killed).
fn exit_code(status: ExitStatus) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(signal)) => (128 + signal, Some(signal)),
        (None, None) => (128, None),
    }
}

/// BestEffort, Burstable or Guaranteed, from the containers' requests and limits.
fn qos_class(pod: &Pod) -> String {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let resources: Vec<_> = containers
        .iter()
        .filter_map(|c| c.resources.clone())
        .collect();
    let any = resources.iter().any(|r| {
        r.requests.as_ref().is_some_and(|m| !m.is_empty())
            || r.limits.as_ref().is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort".into();
    }
    let guaranteed = containers.len() == resources.len()
        && resources.iter().all(|r| {
            let limits = r.limits.clone().unwrap_or_default();
            ["cpu", "memory"].iter().all(|k| limits.contains_key(*k))
                && r.requests
                    .as_ref()
                    .is_none_or(|req| req.iter().all(|(k, v)| limits.get(k) == Some(v)))
        });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
    .into()
}

/// ConfigMaps and Secrets the pod refers to (env, envFrom, volumes).
fn referenced_objects(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for e in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &e.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &e.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            cms.push(cm.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                cms.push(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Spawns a container process in its own process group, output appended to `log`.
fn spawn(spec: &ProcessSpec, log: &Path, truncate: bool) -> std::io::Result<tokio::process::Child> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(!truncate)
        .write(true)
        .truncate(truncate)
        .open(log)?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .process_group(0)
        .kill_on_drop(true);
    command.spawn()
}

fn period(probe: &Probe) -> Duration {
    Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64)
}

/// Runs one probe attempt; `Err` carries the message kubelet would show.
async fn run_probe(probe: &Probe, container: &Container, pod_ip: Ipv4Addr) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let port_of = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!(
                        "port `{name}` is not a named port of container `{}`",
                        container.name
                    )
                }),
        }
    };
    if let Some(http) = &probe.http_get {
        let host: IpAddr = http
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(IpAddr::V4(pod_ip));
        let addr = SocketAddr::new(host, port_of(&http.port)?);
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return match tokio::time::timeout(timeout, http_get_status(addr, &path, &headers)).await {
            Err(_) => Err(format!(
                "Get \"http://{addr}{path}\": context deadline exceeded"
            )),
            Ok(Err(e)) => Err(format!("Get \"http://{addr}{path}\": {e}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host: IpAddr = tcp
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(IpAddr::V4(pod_ip));
        let addr = SocketAddr::new(host, port_of(&tcp.port)?);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let Some((program, args)) = command.split_first() else {
            return Err("exec probe has no command".into());
        };
        let run = tokio::process::Command::new(program)
            .args(args)
            .env("POD_IP", pod_ip.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        return match tokio::time::timeout(timeout, run).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("command {command:?} exited with {status}")),
            Ok(Err(e)) => Err(format!("command {command:?} could not run: {e}")),
            Err(_) => Err(format!("command {command:?} timed out")),
        };
    }
    Ok(())
}

// Hand-written: a probe only needs the status line of one HTTP/1.1 GET.
async fn http_get_status(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::HTTPGetAction;

    #[tokio::test]
    async fn http_probes_pass_on_2xx_and_fail_with_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let probe = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container::default();
        assert_eq!(
            run_probe(&probe("/ok"), &c, Ipv4Addr::LOCALHOST).await,
            Ok(())
        );
        let err = run_probe(&probe("/bad"), &c, Ipv4Addr::LOCALHOST)
            .await
            .unwrap_err();
        assert_eq!(err, "HTTP probe failed with statuscode: 503");
    }

    #[test]
    fn killed_processes_report_128_plus_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(9)), (137, Some(9)));
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), (3, None));
    }
}
