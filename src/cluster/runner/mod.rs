//! The embedded node: scheduling, local container processes and the
//! Job / Deployment / Service controllers.
//!
//! The runner is a separate component that talks to the API server only
//! through a `kube::Client`, as kubelet and kube-controller-manager do: it
//! watches Pods, Jobs, Deployments and Services into reflector caches, and one
//! control loop (woken by any watch event, and at least once a second)
//!
//! 1. plans each Job ([`job`]) and Deployment ([`deployment`]) and creates or
//!    deletes their pods (deterministic names, owner references),
//! 2. schedules pending pods onto the one Node ([`scheduler`]), leaving those
//!    that do not fit Pending with `PodScheduled=False` reason `Unschedulable`
//!    and a `FailedScheduling` Event,
//! 3. gives every bound pod a loopback IP (lower half of the /16 at
//!    [`NodeConfig::pod_ip_base`]) and a worker ([`kubelet`]) that runs its
//!    containers as local processes and writes the pod status,
//! 4. keeps Services reachable ([`service`]): loopback cluster IPs (upper half
//!    of the same /16), Endpoints objects, a TCP proxy per Service port and a
//!    hosts file at `<state_dir>/hosts` whose path pods find in the variable
//!    [`NodeConfig::hosts_file_env`] names,
//! 5. on a real control plane ([`NodeConfig::kubelet_only`]) does only the
//!    node's part: 3., the proxies and hosts file of 4., and pods' API access
//!    through projected ServiceAccount tokens ([`service_account`]).
//!
//! Nothing the node starts outlives it: container processes die with the
//! node's process, and a node starting on a state directory first stops
//! what a crashed one left there ([`processes`]).
//!
//! What a user would see as a failure lands in pod / Job conditions and Events.

pub mod container;
mod controller;
pub mod deployment;
pub mod events;
pub mod job;
pub mod kubelet;
pub mod pods;
pub mod processes;
pub mod quantity;
pub mod revisions;
pub mod scheduler;
pub mod service;
pub mod service_account;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The one node of the embedded cluster.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name ("driftline-node").
    pub name: String,
    /// Allocatable CPU in millicores.
    pub cpu_millis: u64,
    /// Allocatable memory in bytes.
    pub memory_bytes: u64,
    /// Allocatable `nvidia.com/gpu` devices (default 0).
    pub gpus: u64,
    /// Extra node labels (matched by nodeSelector), besides `kubernetes.io/hostname` and `kubernetes.io/os`.
    pub labels: BTreeMap<String, String>,
    /// Where logs, volumes and the hosts file live.
    pub state_dir: PathBuf,
    /// What a container whose `command[0]` is `driftline` runs (default: this
    /// executable when it is driftline, else a `driftline` beside it or on PATH).
    pub driftline_exe: PathBuf,
    /// First address of a loopback /16: pods get addresses from its lower
    /// half, Services' cluster IPs from its upper half.
    pub pod_ip_base: Ipv4Addr,
    /// Kubeconfig handed to pods as `KUBECONFIG`, so in-pod clients reach the API server.
    pub kubeconfig: Option<PathBuf>,
    /// The environment variable that tells pods where the hosts file of
    /// Service names is (`None`: pods are not told). The name belongs to
    /// the clients that read it, so the caller passes it in.
    pub hosts_file_env: Option<String>,
    /// First CrashLoopBackOff delay (Kubernetes: 10 s, doubling up to 5 min).
    pub restart_backoff: Duration,
    /// First delay before a Job replaces a failed pod (Kubernetes: 10 s, doubling up to 6 min).
    pub job_backoff: Duration,
    /// Be only the node, for a real control plane: register the Node, renew
    /// its Lease in `kube-node-lease`, run the pods bound to it and report
    /// their status, and reach Services as kube-proxy and cluster DNS would
    /// (proxies on their cluster IPs, names in the hosts file); leave Jobs,
    /// Deployments, scheduling, cluster IPs and Endpoints to the real
    /// controllers and scheduler. Services are reachable where their cluster
    /// IPs are loopback addresses this machine may bind (a control plane
    /// with `--service-cluster-ip-range` in the upper half of
    /// [`NodeConfig::pod_ip_base`]'s /16); the proxies send to the ready pods
    /// the node sees, since the API server refuses loopback addresses in
    /// Endpoints and EndpointSlices.
    pub kubelet_only: bool,
    /// The API server's URL as pods should reach it. When set, the node
    /// fills `serviceAccountToken` projections through the TokenRequest API
    /// and gives a pod that mounts its ServiceAccount volume a `KUBECONFIG`
    /// with this URL, the projected CA and token (see [`service_account`]).
    pub api_server_url: Option<String>,
    /// For benchmarks of what runs above the node (the operator at a
    /// thousand Models): pods are marked as run without starting
    /// processes. A container of a pod that runs to completion (restart
    /// policy `Never` or `OnFailure`, and init containers) succeeds at once;
    /// others run, ready, until their pod is deleted. Probes are not run.
    pub simulate_processes: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        use rand::Rng;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        NodeConfig {
            name: "driftline-node".into(),
            cpu_millis: cpus * 1000,
            memory_bytes: total_memory().unwrap_or(8 << 30),
            gpus: 0,
            labels: BTreeMap::new(),
            state_dir: std::env::temp_dir().join("driftline-cluster"),
            driftline_exe: default_driftline_exe(),
            // A random /16 so that several embedded clusters on one machine do not collide.
            pod_ip_base: Ipv4Addr::new(127, rand::rng().random_range(16..=250), 0, 0),
            kubeconfig: None,
            hosts_file_env: None,
            restart_backoff: Duration::from_secs(10),
            job_backoff: Duration::from_secs(10),
            kubelet_only: false,
            api_server_url: None,
            simulate_processes: false,
        }
    }
}

/// This process when it is `driftline`; else a `driftline` next to it (test
/// binaries live in `target/<profile>/deps/`); else `driftline` on PATH.
fn default_driftline_exe() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_stem().is_some_and(|s| s == "driftline") {
            return exe;
        }
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("driftline");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("driftline")
}

/// How many NVIDIA GPUs `nvidia-smi -L` lists (0 when it is missing or fails),
/// for a node that should offer this machine's GPUs as `nvidia.com/gpu`.
pub fn detect_gpus() -> u64 {
    let Ok(output) = std::process::Command::new("nvidia-smi").arg("-L").output() else {
        return 0;
    };
    if !output.status.success() {
        return 0;
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("GPU "))
        .count() as u64
}

/// MemTotal from /proc/meminfo, in bytes.
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Errors of the workload runner.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The Node object could not be registered with the API server.
    #[error("cannot register node `{node}` with the API server")]
    RegisterNode {
        /// Node name.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The state directory is not usable.
    #[error("cannot use state directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The records of the node's processes could not be opened.
    #[error(transparent)]
    Processes(#[from] processes::ProcessTableError),
    /// `pod_ip_base` is not a loopback address.
    #[error("pod_ip_base {0} is not in 127.0.0.0/8; pods need loopback addresses")]
    NotLoopback(Ipv4Addr),
    /// No process runs for that pod on this node.
    #[error("pod `{namespace}/{pod}` has no running process on this node")]
    PodNotRunning {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
    },
}

/// Starts the node and its controllers.
pub struct Runner;

impl Runner {
    /// Registers the Node, starts watching and returns a handle; the runner
    /// works in the background until [`RunnerHandle::shutdown`].
    pub async fn start(client: kube::Client, cfg: NodeConfig) -> Result<RunnerHandle, RunnerError> {
        if !cfg.pod_ip_base.is_loopback() {
            return Err(RunnerError::NotLoopback(cfg.pod_ip_base));
        }
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| RunnerError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })?;
        let (processes, stopped) =
            processes::ProcessTable::open(&cfg.state_dir, processes::SURVIVOR_GRACE).await?;
        if !stopped.is_empty() {
            tracing::warn!(
                containers = stopped.len(),
                "stopped the processes an earlier run of this node left behind"
            );
        }
        controller::register_node(&client, &cfg).await?;
        let workers: Workers = Arc::new(Mutex::new(HashMap::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (gpus_tx, gpus_rx) = watch::channel(cfg.gpus);
        let hosts_file = cfg.state_dir.join("hosts");
        let task = tokio::spawn(controller::run(
            client,
            cfg,
            workers.clone(),
            Arc::new(processes),
            gpus_rx,
            stop_rx,
        ));
        Ok(RunnerHandle {
            workers,
            stop: stop_tx,
            gpus: gpus_tx,
            task,
            hosts_file,
        })
    }
}

/// Pod workers by (namespace, name).
pub(crate) type Workers = Arc<Mutex<HashMap<(String, String), controller::WorkerHandle>>>;

/// A running node.
pub struct RunnerHandle {
    workers: Workers,
    stop: watch::Sender<bool>,
    gpus: watch::Sender<u64>,
    task: JoinHandle<()>,
    hosts_file: PathBuf,
}

impl RunnerHandle {
    /// Kills the processes of a pod's containers (SIGKILL), as if they
    /// crashed: the pod restarts them (restartPolicy Always / OnFailure) or fails (Never).
    pub async fn kill_pod_process(&self, namespace: &str, pod: &str) -> Result<(), RunnerError> {
        let not_running = || RunnerError::PodNotRunning {
            namespace: namespace.into(),
            pod: pod.into(),
        };
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let handle = workers
            .get(&(namespace.to_string(), pod.to_string()))
            .ok_or_else(not_running)?;
        handle
            .commands
            .send(kubelet::PodCommand::KillProcesses)
            .map_err(|_| not_running())
    }

    /// Changes how many `nvidia.com/gpu` the node offers, as a device plugin
    /// registering (or losing) GPUs does: the Node's capacity is rewritten and
    /// Pending pods that now fit are scheduled.
    pub fn set_gpus(&self, gpus: u64) {
        let _ = self.gpus.send(gpus);
    }

    /// The hosts file mapping Service names to cluster IPs.
    pub fn hosts_file(&self) -> &Path {
        &self.hosts_file
    }

    /// Stops the controllers, terminates every pod process and the Service proxies.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            tracing::warn!(%err, "runner task ended abnormally");
        }
    }
}
