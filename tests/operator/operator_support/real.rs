//! A real control plane (etcd, kube-apiserver with RBAC and admission,
//! kube-controller-manager, kube-scheduler; see `real_control_plane.rs`)
//! with driftline's runner as its one node in kubelet-only mode: the real
//! controllers own Jobs, Deployments, ReplicaSets and Services, the real
//! scheduler binds pods, the runner runs them as local processes, projects
//! their ServiceAccount tokens and proxies Services (cluster IPs are
//! loopback addresses: the control plane's Service range is the upper half
//! of the node's /16).
//!
//! Scenarios share one: it starts with the first and stops when the last
//! drops its handle. Each scenario gets its own namespace, which enforces
//! Pod Security `restricted` (so every pod the operator makes is admitted
//! under it: the scenarios train, serve and canary there), and an operator
//! that watches only it and writes each Model's NetworkPolicies.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use driftline::cluster::{NodeConfig, Runner};
use kube::Client;

use crate::real_control_plane::RealControlPlane;

/// The ServiceAccount the Models' gateways run as, with the chart's rights
/// (list and watch Models in their namespace).
pub const GATEWAY_SERVICE_ACCOUNT: &str = "driftline-gateway";

/// What a scenario's operator gives each Model's NetworkPolicies: the real
/// API server validates them (it has no CNI to enforce them); the operator
/// runs in the test process, so its "pods" are none.
pub fn network_policies() -> driftline::operator::NetworkPolicySettings {
    driftline::operator::NetworkPolicySettings {
        operator_namespace: "driftline-system".into(),
        operator_pod_labels: [(
            "app.kubernetes.io/name".to_string(),
            "driftline".to_string(),
        )]
        .into(),
    }
}

/// Loopback /16s of the real-cluster scenarios (165 and 166, alternating, so
/// that one starting while the last one stops never shares addresses).
const SUBNETS: [u8; 2] = [165, 166];

static SHARED: Mutex<Weak<RealCluster>> = Mutex::new(Weak::new());
static STARTS: AtomicU8 = AtomicU8::new(0);

/// The control plane and the node running beside it.
pub struct RealCluster {
    pub plane: RealControlPlane,
    node_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    node: Option<std::thread::JoinHandle<()>>,
}

impl RealCluster {
    /// The running one, or a new one; `None` where the tools are missing
    /// outside CI (under CI a missing tool fails the test).
    pub fn shared(test: &str) -> Option<Arc<RealCluster>> {
        // Starting takes seconds of blocking work (processes, kubectl).
        tokio::task::block_in_place(|| {
            let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cluster) = slot.upgrade() {
                return Some(cluster);
            }
            let subnet = SUBNETS[STARTS.fetch_add(1, Ordering::Relaxed) as usize % SUBNETS.len()];
            let cidr = format!("127.{subnet}.128.0/17");
            let plane = RealControlPlane::start_or_skip_with(test, &cidr)?;
            eprintln!("{test}: real control plane ready in {:?}", plane.startup);
            let cluster = Arc::new(Self::start_node(plane, subnet));
            *slot = Arc::downgrade(&cluster);
            Some(cluster)
        })
    }

    /// Installs the CRDs and starts the runner, on a thread and runtime of
    /// its own: it outlives the test that started it.
    fn start_node(plane: RealControlPlane, subnet: u8) -> RealCluster {
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/driftline/crds");
        plane.kubectl_ok(&["apply", "--server-side", "-f", crds]);
        plane.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/models.driftline.dev",
            "crd/modelversions.driftline.dev",
            "--timeout=60s",
        ]);
        let node_dir = plane.dir.path().join("node");
        let node = NodeConfig {
            state_dir: node_dir.clone(),
            driftline_exe: env!("CARGO_BIN_EXE_driftline").into(),
            pod_ip_base: Ipv4Addr::new(127, subnet, 0, 0),
            restart_backoff: Duration::from_millis(200),
            kubelet_only: true,
            api_server_url: Some(plane.url.clone()),
            hosts_file_env: Some(driftline::net::HOSTS_FILE_ENV.into()),
            // Scenarios share the node: room for all their pods.
            cpu_millis: 64_000,
            memory_bytes: 256 << 30,
            ..NodeConfig::default()
        };
        let kubeconfig = plane.kubeconfig.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the node's runtime");
            runtime.block_on(async move {
                let client = admin_client(&kubeconfig).await;
                match Runner::start(client, node).await {
                    Ok(runner) => {
                        let _ = ready_tx.send(Ok(()));
                        let _ = stop_rx.await;
                        runner.shutdown().await;
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err.to_string()));
                    }
                }
            });
        });
        ready_rx
            .recv()
            .expect("the node thread answers")
            .expect("the runner registers its Node");
        RealCluster {
            plane,
            node_dir,
            stop: Some(stop_tx),
            node: Some(thread),
        }
    }

    /// An admin client, on the calling test's runtime.
    pub async fn client(&self) -> Client {
        admin_client(&self.plane.kubeconfig).await
    }

    /// The node's hosts file (Service names → cluster IPs).
    pub fn hosts_file(&self) -> PathBuf {
        self.node_dir.join("hosts")
    }

    /// Creates namespace `ns`, enforcing Pod Security `restricted` (the
    /// scenarios' training, serving and gateway pods are admitted there),
    /// with the gateway's ServiceAccount and the
    /// chart's Role for it, and waits for what the controllers add to a
    /// namespace (the `default` ServiceAccount, the `kube-root-ca.crt`
    /// ConfigMap) so that pods are admitted and get their API access.
    pub async fn prepare_namespace(&self, ns: &str) {
        let manifest = format!(
            r#"
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  # Every pod driftline creates meets the restricted profile.
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {sa}, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {sa}, namespace: {ns}}}
rules:
- {{apiGroups: [driftline.dev], resources: [models], verbs: [list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {sa}, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {sa}}}
subjects:
- {{kind: ServiceAccount, name: {sa}, namespace: {ns}}}
"#,
            sa = GATEWAY_SERVICE_ACCOUNT
        );
        tokio::task::block_in_place(|| {
            let file = self.plane.dir.path().join(format!("namespace-{ns}.yaml"));
            std::fs::write(&file, manifest).expect("write the namespace manifest");
            self.plane
                .kubectl_ok(&["apply", "-f", file.to_str().expect("utf-8 path")]);
            // The label is enforced: a pod without the profile is refused.
            let (admitted, out) = self.plane.kubectl(&[
                "run",
                "bare",
                "-n",
                ns,
                "--image=busybox",
                "--restart=Never",
                "--dry-run=server",
            ]);
            assert!(
                !admitted && out.contains("violates PodSecurity \"restricted:latest\""),
                "namespace {ns} must enforce Pod Security restricted: {out}"
            );
            let start = Instant::now();
            loop {
                let sa = self.plane.kubectl(&[
                    "get",
                    "serviceaccount",
                    "default",
                    "-n",
                    ns,
                    "-o",
                    "name",
                ]);
                let ca = self.plane.kubectl(&[
                    "get",
                    "configmap",
                    "kube-root-ca.crt",
                    "-n",
                    ns,
                    "-o",
                    "name",
                ]);
                if sa.0 && ca.0 {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "namespace {ns}: no default ServiceAccount or kube-root-ca.crt: {sa:?} {ca:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    }

    /// Deletes namespace `ns` without waiting: the real namespace controller
    /// deletes its objects, the node stops their pods.
    pub async fn delete_namespace(&self, ns: &str) {
        tokio::task::block_in_place(|| {
            let _ = self
                .plane
                .kubectl(&["delete", "namespace", ns, "--wait=false"]);
        });
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        // The node first (it stops its pods' processes), then the control plane.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(node) = self.node.take() {
            let _ = node.join();
        }
    }
}

async fn admin_client(kubeconfig: &std::path::Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("admin config");
    Client::try_from(config).expect("admin client")
}
