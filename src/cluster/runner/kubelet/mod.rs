//! The kubelet half of the node: one worker task per pod that runs its
//! containers as local processes (each in its own process group), restarts
//! them per restartPolicy with CrashLoopBackOff, runs probes, writes the pod
//! status, and stops the processes when the pod is deleted.
//!
//! - [`volumes`]: volumes, ConfigMaps, Secrets and projected tokens, before
//!   the containers start;
//! - [`process`]: starting, restarting and stopping container processes;
//! - [`probes`]: readiness and liveness probes;
//! - [`status`]: the pod's phase, conditions and status writes.

mod probes;
mod process;
mod status;
mod volumes;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition,
};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use nix::sys::signal::Signal;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use super::container::PodEnvironment;
use super::events::{EventNote, EventRecorder, object_ref};

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
}
