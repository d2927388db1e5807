//! A real Kubernetes control plane for tests, on loopback in a temp dir:
//! etcd, kube-apiserver (RBAC authorization, the default admission plugins,
//! ServiceAccount tokens signed with a key made at start), and
//! kube-controller-manager and kube-scheduler, built from the pinned Go
//! modules in tools/k8s/ (see [`super::k8s_tools`]). Everything is torn down
//! when the value is dropped.
//!
//! No node runs here: pods are created and scheduled (or found unschedulable)
//! by the real controllers, and run where a test adds driftline's runner as
//! the node (`NodeConfig::kubelet_only`). Processes that must run "in" the
//! cluster (the operator) may also be started by the test beside it, with a
//! kubeconfig holding a ServiceAccount token (see [`RealControlPlane::token_kubeconfig`]).
//!
//! Shared by the `cluster` and `operator` test binaries (`#[path]` modules).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::k8s_tools::tools_or_skip;

/// The tools a control plane needs, in the order [`RealControlPlane::start_with`] takes them.
pub const TOOLS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// Where Services get their cluster IPs unless a test asks otherwise.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/16";

/// One request in the API server's audit log.
#[derive(Debug, Clone)]
pub struct Audited {
    /// `list`, `watch`, `create`, `patch`... (a server-side apply is a `patch`).
    pub verb: String,
    /// Plural resource, with `/subresource`.
    pub resource: String,
    /// HTTP status of the answer (403: refused by the authorizer).
    pub code: u16,
    /// The answer's message (for a 403: `... cannot patch resource "models/status" ...`).
    pub message: String,
}

pub struct RealControlPlane {
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Admin (`system:masters`) kubeconfig.
    pub kubeconfig: PathBuf,
    pub ca_pem: String,
    /// How long from the first process start to a ready API server.
    pub startup: Duration,
    children: Vec<(&'static str, Child)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A CA, the API server's serving certificate signed by it, and the
/// ServiceAccount token signing key, all made for this run.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    sa_key_pem: String,
    sa_pub_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "driftline real-control-plane test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let sa = KeyPair::generate().unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        sa_key_pem: sa.serialize_pem(),
        sa_pub_pem: sa.public_key_pem(),
    }
}

impl RealControlPlane {
    /// Starts a control plane, or `None` (after saying why) where the tools
    /// are not built and CI is not set.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        Self::start_or_skip_with(test, DEFAULT_SERVICE_CIDR)
    }

    /// [`Self::start_or_skip`] with Services' cluster IPs from `service_cidr`
    /// (a loopback range makes them reachable through the runner's proxies,
    /// as kube-proxy makes them on a real node).
    pub fn start_or_skip_with(test: &str, service_cidr: &str) -> Option<Self> {
        let tools = tools_or_skip(test, TOOLS)?;
        Some(Self::start_with(&tools, service_cidr))
    }

    /// Starts a control plane whose Services get cluster IPs in
    /// [`DEFAULT_SERVICE_CIDR`] (bench/k8s starts one so).
    #[allow(dead_code)]
    pub fn start(tools: &[PathBuf; 4]) -> Self {
        Self::start_with(tools, DEFAULT_SERVICE_CIDR)
    }

    /// Starts etcd, then the API server, then the controller manager and
    /// the scheduler; returns once the API server is ready and the default
    /// ServiceAccount exists (the controllers work).
    pub fn start_with(tools: &[PathBuf; 4], service_cidr: &str) -> Self {
        let [etcd, apiserver, controller_manager, scheduler] = tools;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let began = Instant::now();
        let pki = pki();
        for (name, text) in [
            ("ca.crt", &pki.ca_pem),
            ("apiserver.crt", &pki.cert_pem),
            ("apiserver.key", &pki.key_pem),
            ("sa.key", &pki.sa_key_pem),
            ("sa.pub", &pki.sa_pub_pem),
        ] {
            write(&d.join(name), text);
        }
        // ServiceAccounts' requests go to the audit log (the controllers'
        // own, in kube-system, do not): what RBAC let through or refused,
        // call by call.
        write(
            &d.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
             - {level: None, userGroups: [\"system:serviceaccounts:kube-system\"]}\n\
             - {level: Metadata, userGroups: [\"system:serviceaccounts\"]}\n- {level: None}\n",
        );
        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        write(
            &d.join("tokens.csv"),
            &format!("{admin_token},admin,admin,\"system:masters\"\n"),
        );
        let etcd_port = free_port();
        let peer_port = free_port();
        let api_port = free_port();
        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = d.join("admin.kubeconfig");
        write(
            &kubeconfig,
            &driftline::cluster::kubeconfig_yaml(&url, &admin_token, &pki.ca_pem),
        );

        let mut plane = RealControlPlane {
            url: url.clone(),
            kubeconfig: kubeconfig.clone(),
            ca_pem: pki.ca_pem.clone(),
            startup: Duration::ZERO,
            children: Vec::new(),
            dir,
        };
        let d = plane.dir.path().to_path_buf();
        let p = |name: &str| d.join(name).display().to_string();
        plane.spawn(
            "etcd",
            Command::new(etcd).args([
                "--name=default".to_string(),
                format!("--data-dir={}", p("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
                "--log-level=warn".to_string(),
            ]),
        );
        plane.spawn(
            "kube-apiserver",
            Command::new(apiserver).args([
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", p("pki")),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--token-auth-file={}", p("tokens.csv")),
                "--authorization-mode=Node,RBAC".to_string(),
                "--service-account-issuer=https://kubernetes.default.svc".to_string(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                format!("--service-cluster-ip-range={service_cidr}"),
                "--allow-privileged=true".to_string(),
                format!("--audit-policy-file={}", p("audit-policy.yaml")),
                format!("--audit-log-path={}", p("audit.log")),
                "--v=0".to_string(),
            ]),
        );
        plane.wait_ready(Duration::from_secs(120));
        plane.spawn(
            "kube-controller-manager",
            Command::new(controller_manager).args([
                format!("--kubeconfig={}", p("admin.kubeconfig")),
                format!("--authentication-kubeconfig={}", p("admin.kubeconfig")),
                format!("--authorization-kubeconfig={}", p("admin.kubeconfig")),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={}", free_port()),
                format!("--cert-dir={}", p("kcm-pki")),
                "--leader-elect=false".to_string(),
                "--use-service-account-credentials=true".to_string(),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
            ]),
        );
        plane.spawn(
            "kube-scheduler",
            Command::new(scheduler).args([
                format!("--kubeconfig={}", p("admin.kubeconfig")),
                format!("--authentication-kubeconfig={}", p("admin.kubeconfig")),
                format!("--authorization-kubeconfig={}", p("admin.kubeconfig")),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={}", free_port()),
                format!("--cert-dir={}", p("scheduler-pki")),
                "--leader-elect=false".to_string(),
            ]),
        );
        // The ServiceAccount controller runs: it makes `default` in each namespace.
        plane.wait_for(
            Duration::from_secs(120),
            "the default ServiceAccount",
            || {
                plane
                    .kubectl(&[
                        "get",
                        "serviceaccount",
                        "default",
                        "-n",
                        "default",
                        "-o",
                        "name",
                    ])
                    .0
            },
        );
        plane.startup = began.elapsed();
        plane
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name, child));
    }

    /// Each component's name and process id (bench/k8s reads their memory).
    #[allow(dead_code)]
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.children.iter().map(|(n, c)| (*n, c.id())).collect()
    }

    /// The last lines of a component's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn check_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let name = *name;
                panic!("{name} exited ({status}):\n{}", self.log_tail(name));
            }
        }
    }

    fn wait_for(&self, limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < limit,
                "{what} not there after {limit:?}; logs:\n{}",
                self.children
                    .iter()
                    .map(|(n, _)| format!("--- {n}\n{}", self.log_tail(n)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            self.check_alive();
            let (ok, _) = self.kubectl(&["get", "--raw", "/readyz"]);
            if ok {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "kube-apiserver not ready after {limit:?}:\n{}",
                self.log_tail("kube-apiserver")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs kubectl as admin: (success, stdout + stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .expect("kubectl runs (.ci/run makes sure it is on PATH)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Like [`Self::kubectl`], panicking with the output on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.kubectl(args);
        assert!(ok, "kubectl {args:?}: {out}");
        out
    }

    /// The requests of `user` so far, from the API server's audit log (it
    /// logs ServiceAccounts' requests), oldest first.
    pub fn audited(&self, user: &str) -> Vec<Audited> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| e["user"]["username"] == user)
            .map(|e| {
                let object = &e["objectRef"];
                let mut resource = object["resource"].as_str().unwrap_or_default().to_string();
                if let Some(sub) = object["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                Audited {
                    verb: e["verb"].as_str().unwrap_or_default().to_string(),
                    resource,
                    code: e["responseStatus"]["code"].as_u64().unwrap_or_default() as u16,
                    message: e["responseStatus"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                }
            })
            .collect()
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name`
    /// with a token the API server signs (`kubectl create token`): what a pod
    /// running under that ServiceAccount would use.
    pub fn token_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration=1h"]);
        let path = self
            .dir
            .path()
            .join(format!("{namespace}-{name}.kubeconfig"));
        write(
            &path,
            &driftline::cluster::kubeconfig_yaml(&self.url, token.trim(), &self.ca_pem),
        );
        path
    }
}

impl Drop for RealControlPlane {
    fn drop(&mut self) {
        // Controllers first, etcd last.
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
