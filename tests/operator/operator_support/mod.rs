//! A running operator on a cluster — the embedded one, or a real control
//! plane with driftline's runner as its node ([`real`]) — with the real
//! driftline binary in every pod, and helpers to wait on what users would
//! watch. Scenarios take a [`Harness`] and run unchanged on either.

#![allow(dead_code)]

pub mod real;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use driftline::api::{Model, ModelSpec, ModelVersion, load_model_config};
use driftline::cluster::NodeConfig;
use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use driftline::operator::{ChildSettings, Clock, OperatorConfig, Telemetry};
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

/// The namespace of the scenarios on the embedded cluster.
pub const NS: &str = "ml";

/// Where the Harness's cluster runs.
pub enum Plane {
    /// The embedded API server and runner, this test's alone.
    Embedded(Box<EmbeddedCluster>),
    /// A real control plane shared with other scenarios (each in its own
    /// namespace, with its own operator watching only that namespace).
    Real(Arc<real::RealCluster>),
}

/// How long an e2e waits for a step of the loop (training, promotion, a
/// retrain) before it fails with the status it saw.
pub const MINUTES: Duration = Duration::from_secs(240);

/// A cluster plus one in-process operator.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub plane: Plane,
    pub client: Client,
    /// The namespace the scenario's Models live in.
    pub ns: String,
    pub clock: Arc<Clock>,
    pub telemetry: Arc<Telemetry>,
    pub artifacts: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    operator: Option<tokio::task::JoinHandle<()>>,
    /// Elect a leader on this Lease when set (before `start_operator`).
    pub lease: Option<driftline::operator::LeaseConfig>,
    pub instance: String,
    /// Where the operator records decisions (set before `start_operator`).
    pub registry: Option<Arc<driftline::registry::RegistryWriter>>,
    /// The Gateway HTTPRoutes attach to (set before `start_operator`).
    pub http_route_parent: Option<(String, String)>,
    /// The dashboard Events link to (set before `start_operator`).
    pub dashboard_url: Option<String>,
    /// The namespaces the operator watches (set before `start_operator`;
    /// default: all on the embedded cluster, the scenario's on a real one).
    pub watch_namespaces: Option<Vec<String>>,
    /// Operator-wide notification sinks (set before `start_operator`).
    pub notify: driftline::operator::NotifyConfig,
}

fn init_test_logging() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `DRIFTLINE_TEST_LOG=driftline=debug` writes the operator's and the
    // cluster's logs to stderr, for diagnosing a failure.
    if let Ok(filter) = std::env::var("DRIFTLINE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

impl Harness {
    /// Starts a cluster on its own loopback /16 and an operator whose clock
    /// runs `time_scale` times as fast as the wall clock.
    pub async fn start(subnet: u8, time_scale: f64) -> Harness {
        let mut h = Self::start_idle(subnet, time_scale).await;
        h.start_operator();
        h
    }

    /// The cluster without an operator yet.
    pub async fn start_idle(subnet: u8, time_scale: f64) -> Harness {
        init_test_logging();
        let dir = tempfile::tempdir().expect("temp dir");
        let node = NodeConfig {
            state_dir: dir.path().to_path_buf(),
            driftline_exe: env!("CARGO_BIN_EXE_driftline").into(),
            pod_ip_base: Ipv4Addr::new(127, subnet, 0, 0),
            restart_backoff: Duration::from_millis(200),
            job_backoff: Duration::from_millis(200),
            hosts_file_env: Some(driftline::net::HOSTS_FILE_ENV.into()),
            ..NodeConfig::default()
        };
        let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path()).with_node(node))
            .await
            .expect("embedded cluster starts");
        let client = cluster.client().await;
        driftline::operator::install_crds(&client)
            .await
            .expect("CRDs install");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))
            .expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace ml");
        Self::new(
            dir,
            Plane::Embedded(Box::new(cluster)),
            client,
            NS,
            time_scale,
        )
    }

    /// On the shared real control plane (started if none runs), in a fresh
    /// namespace `ns`, with an operator running; `None` (after saying why)
    /// where the tools are missing outside CI.
    pub async fn start_real(test: &str, ns: &str, time_scale: f64) -> Option<Harness> {
        init_test_logging();
        let cluster = real::RealCluster::shared(test)?;
        let client = cluster.client().await;
        cluster.prepare_namespace(ns).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut h = Self::new(dir, Plane::Real(cluster), client, ns, time_scale);
        h.start_operator();
        Some(h)
    }

    fn new(
        dir: tempfile::TempDir,
        plane: Plane,
        client: Client,
        ns: &str,
        time_scale: f64,
    ) -> Harness {
        let artifacts = dir.path().join("artifacts");
        Harness {
            dir,
            plane,
            client,
            ns: ns.into(),
            clock: Arc::new(Clock::scaled(time_scale)),
            telemetry: Arc::new(Telemetry::new()),
            artifacts,
            stop: None,
            operator: None,
            lease: None,
            instance: "test-operator".into(),
            registry: None,
            http_route_parent: None,
            dashboard_url: None,
            watch_namespaces: None,
            notify: Default::default(),
        }
    }

    /// The embedded cluster (fault injection, the node's GPUs); scenarios
    /// that need it run on the embedded cluster only.
    pub fn cluster(&self) -> &EmbeddedCluster {
        match &self.plane {
            Plane::Embedded(cluster) => cluster,
            Plane::Real(_) => panic!("this scenario needs the embedded cluster"),
        }
    }

    /// The hosts file the node writes for Service names.
    pub fn hosts_file(&self) -> PathBuf {
        match &self.plane {
            Plane::Embedded(_) => self.dir.path().join("hosts"),
            Plane::Real(cluster) => cluster.hosts_file(),
        }
    }

    /// The operator's configuration for replica `instance` of this harness.
    pub fn operator_config(&self, instance: &str) -> OperatorConfig {
        OperatorConfig {
            settings: ChildSettings {
                artifact_root: self.artifacts.display().to_string(),
                image: "driftline:test".into(),
                credentials_secret: None,
                gateway_service_account: match self.plane {
                    Plane::Embedded(_) => None,
                    Plane::Real(_) => Some(real::GATEWAY_SERVICE_ACCOUNT.into()),
                },
                http_route_parent: self.http_route_parent.clone(),
                gpu_placement: Default::default(),
                network_policies: match self.plane {
                    Plane::Embedded(_) => None,
                    Plane::Real(_) => Some(real::network_policies()),
                },
            },
            // On a shared cluster each scenario's operator keeps to its namespace.
            namespaces: match (&self.watch_namespaces, &self.plane) {
                (Some(watched), _) => watched.clone(),
                (None, Plane::Embedded(_)) => Vec::new(),
                (None, Plane::Real(_)) => vec![self.ns.clone()],
            },
            clock: self.clock.clone(),
            instance: instance.into(),
            leader: self.lease.clone(),
            scrape_timeout: Duration::from_secs(2),
            max_concurrent_reconciles: driftline::operator::DEFAULT_MAX_CONCURRENT_RECONCILES,
            hosts_file: Some(self.hosts_file()),
            drift_poll: Duration::from_millis(500),
            registry: self.registry.clone(),
            dashboard_url: self.dashboard_url.clone(),
            notify: self.notify.clone(),
        }
    }

    /// A second operator replica on the same cluster, started now.
    pub fn spawn_replica(
        &self,
        instance: &str,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let config = self.operator_config(instance);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = self.client.clone();
        let telemetry = Arc::new(Telemetry::new());
        let task = tokio::spawn(async move {
            let _ = driftline::operator::run(client, config, telemetry, async {
                let _ = rx.await;
            })
            .await;
        });
        (tx, task)
    }

    /// (Re)starts the operator in this process.
    pub fn start_operator(&mut self) {
        let config = self.operator_config(&self.instance);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = self.client.clone();
        let telemetry = self.telemetry.clone();
        self.operator = Some(tokio::spawn(async move {
            driftline::operator::run(client, config, telemetry, async {
                let _ = rx.await;
            })
            .await
            .expect("operator runs");
        }));
        self.stop = Some(tx);
    }

    /// Kills the operator (abort: no graceful end, as a crash).
    pub async fn kill_operator(&mut self) {
        self.stop.take();
        if let Some(task) = self.operator.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn models(&self) -> Api<Model> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn versions(&self) -> Api<ModelVersion> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn apply(&self, name: &str, spec: ModelSpec) -> Model {
        let mut m = Model::new(name, spec);
        m.metadata.namespace = Some(self.ns.clone());
        self.models()
            .create(&PostParams::default(), &m)
            .await
            .expect("Model created")
    }

    /// Polls `check` on the Model until it returns `Some`, or panics with the
    /// last status after `timeout`.
    pub async fn wait_model<T>(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Model) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Ok(m) = self.models().get(name).await {
                if let Some(t) = check(&m) {
                    return t;
                }
                last = Some(m);
            }
            if tokio::time::Instant::now() > deadline {
                let status = last
                    .and_then(|m| m.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
                let events = self.events(name).await.join("\n");
                panic!("timed out waiting for {what}; status: {status:?}\nevents:\n{events}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `reason: message` of every Event on the Model, oldest first.
    pub async fn events(&self, name: &str) -> Vec<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let list = api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        list.into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                )
            })
            .collect()
    }

    pub async fn shutdown(mut self) {
        self.kill_operator().await;
        match self.plane {
            Plane::Embedded(cluster) => cluster.shutdown().await,
            // The namespace goes, and with it the scenario's pods; the
            // control plane stops with the last scenario using it.
            Plane::Real(cluster) => cluster.delete_namespace(&self.ns).await,
        }
    }
}

/// Canary steps from `(weight, pause)` pairs.
pub fn steps(list: &[(u32, &str)]) -> Vec<driftline::api::CanaryStep> {
    list.iter()
        .map(|(weight, pause)| driftline::api::CanaryStep {
            weight: *weight,
            pause: pause.parse().expect("a test pause is a duration"),
        })
        .collect()
}

/// The wine-quality pipeline, quick to train, one server per version, no
/// automatic retraining (tests turn on what they exercise).
pub fn quick_wine() -> ModelSpec {
    let mut spec = live_evidence_wine();
    spec.retrain = None;
    spec
}

/// [`quick_wine`] with the pipeline's retrain settings but no schedule and
/// no cooldown: only live evidence retrains it (tests pick which).
pub fn live_evidence_wine() -> ModelSpec {
    let mut spec = pipeline("wine-quality.yaml");
    spec.training.epochs = 20;
    spec.serving.replicas = 1;
    let retrain = spec.retrain.as_mut().expect("retrain");
    retrain.schedule = None;
    retrain.time_zone = None;
    retrain.cooldown = None;
    spec
}

/// A bundled pipeline with data paths made absolute (pods run elsewhere) and
/// training kept short.
pub fn pipeline(file: &str) -> ModelSpec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("pipelines").join(file)).expect("pipeline");
    let text = text.replace(
        "file://pipelines/",
        &format!("file://{}/pipelines/", root.display()),
    );
    load_model_config(&text).expect("bundled pipeline is valid")
}

impl Harness {
    /// Asks for a retraining the way `driftline retrain` does: an annotation.
    pub async fn retrain(&self, name: &str, id: &str) {
        self.annotate(name, &[(driftline::api::names::RETRAIN_ANNOTATION, id)])
            .await;
    }

    /// Sets annotations on a Model, as `kubectl annotate` (and the user
    /// commands) do.
    pub async fn annotate(&self, name: &str, annotations: &[(&str, &str)]) {
        use kube::api::{Patch, PatchParams};
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        self.models()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate the Model");
    }

    /// Waits until `v<n>` is champion.
    /// The run of `version` (`v2`) once it started, running or finished.
    pub async fn wait_run(
        &self,
        name: &str,
        version: &str,
        what: &str,
    ) -> driftline::api::TrainingRun {
        self.wait_model(name, MINUTES, what, |m| {
            let s = m.status.as_ref()?;
            let t = s.training.as_ref().or(s.last_training.as_ref())?;
            (t.version == version).then(|| t.clone())
        })
        .await
    }

    pub async fn wait_champion(&self, name: &str, n: u32) {
        let want = format!("v{n}");
        self.wait_model(name, MINUTES, &format!("{want} champion"), |m| {
            (m.status.as_ref()?.champion.as_deref() == Some(want.as_str())).then_some(())
        })
        .await
    }

    /// Reconciles the operator has finished so far (its
    /// `driftline_operator_reconciles_total`).
    pub fn reconciles(&self) -> u64 {
        let metrics = self.telemetry.render();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("driftline_operator_reconciles_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no reconcile counter in:\n{metrics}"))
    }

    /// Waits until the operator has finished `count` reconciles in all.
    pub async fn wait_reconciles(&self, count: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.reconciles() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} reconciles after {timeout:?}",
                self.reconciles()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the operator look at the Model now (a watch event), as any edit would.
    pub async fn poke(&self, name: &str) {
        let at = self.clock.now().timestamp_millis().to_string();
        self.annotate(name, &[("test.driftline.dev/poke", &at)])
            .await;
    }

    /// Base URL of a Service, through the cluster's hosts file. The runner
    /// writes the file shortly after the Service exists (the Model's status
    /// may say "serving" first), so this waits for the entry.
    pub async fn service_url(&self, service: &str) -> String {
        let host = format!("{service}.{}.svc", self.ns);
        for _ in 0..600 {
            if let Some(ip) = driftline::net::resolve_service_host(&self.hosts_file(), &host) {
                return format!("http://{ip}:8080");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Service {service} has no cluster IP")
    }

    /// The status of Model `name`, which must have one.
    pub async fn model_status(&self, name: &str) -> driftline::api::ModelStatus {
        self.models()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("Model {name}: {e}"))
            .status
            .unwrap_or_else(|| panic!("Model {name} has no status"))
    }

    /// Sends `spec`'s labelled test rows to Model `name` through `gateway`
    /// at `rate` for up to 15 minutes, in the background (abort it when done).
    pub fn load_in_background(
        &self,
        gateway: &str,
        name: &str,
        spec: &ModelSpec,
        rate: f64,
    ) -> tokio::task::JoinHandle<driftline::serve::LoadReport> {
        let (http, gateway, name, spec) = (
            self.http(),
            gateway.to_string(),
            name.to_string(),
            spec.clone(),
        );
        tokio::spawn(async move { load(http, gateway, &name, &spec, rate, 900, None).await })
    }

    /// The status of ModelVersion `v<n>` of Model `name`, which must have one.
    pub async fn version_status(&self, name: &str, n: u32) -> driftline::api::ModelVersionStatus {
        let object = format!("{name}-v{n}");
        self.versions()
            .get(&object)
            .await
            .unwrap_or_else(|e| panic!("ModelVersion {object}: {e}"))
            .status
            .unwrap_or_else(|| panic!("ModelVersion {object} has no status"))
    }

    /// An HTTP client that resolves the cluster's Services.
    pub fn http(&self) -> reqwest::Client {
        driftline::net::service_http_client(Duration::from_secs(10), Some(self.hosts_file()))
    }
}

/// Waits until `base` answers the model's metadata (its pods are ready).
/// `driftline history MODEL -n NS --registry URL` as a user runs it: the
/// line of `version` (it must succeed and show that version), and the whole
/// output for the failure message.
pub fn history_line(model: &str, ns: &str, registry_url: &str, version: &str) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["history", model, "-n", ns, "--registry", registry_url])
        .output()
        .expect("driftline history");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = shown
        .lines()
        .find(|l| l.starts_with(&format!("{version} ")))
        .unwrap_or_else(|| panic!("no {version} in the history:\n{shown}"))
        .to_string();
    (line, shown)
}

/// A copy of the spec's gate test set with `column` moved by `by` in every
/// row, written as `name` in the harness's directory: the spec to load
/// traffic from that copy with.
pub fn shifted_test_set(
    h: &Harness,
    spec: &ModelSpec,
    column: &str,
    by: f64,
    name: &str,
) -> ModelSpec {
    let test_set = spec.gate.as_ref().expect("gate").test_set.clone();
    let text = std::fs::read_to_string(test_set.trim_start_matches("file://")).expect("test set");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let at = header
        .split(',')
        .position(|c| c == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    let mut shifted = format!("{header}\n");
    for line in lines {
        let mut cells: Vec<String> = line.split(',').map(String::from).collect();
        let v: f64 = cells[at].parse().expect("number");
        cells[at] = format!("{}", v + by);
        shifted.push_str(&cells.join(","));
        shifted.push('\n');
    }
    let path = h.dir.path().join(name);
    std::fs::write(&path, shifted).expect("write shifted rows");
    let mut shifted_spec = spec.clone();
    shifted_spec.gate.as_mut().expect("gate").test_set = path.display().to_string();
    shifted_spec
}

pub async fn wait_serving(http: &reqwest::Client, base: &str, model: &str) {
    let url = format!("{base}/v2/models/{model}");
    for _ in 0..240 {
        if http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{url} never answered");
}

/// Sends `spec`'s test rows through `base` for `seconds` at `rate`, labelled.
pub async fn load(
    http: reqwest::Client,
    base: String,
    model: &str,
    spec: &ModelSpec,
    rate: f64,
    seconds: u64,
    requests: Option<u64>,
) -> driftline::serve::LoadReport {
    load_labelled(http, base, model, spec, (rate, seconds, requests), true).await
}

/// As [`load`], labelling every request through the feedback endpoint or,
/// with `labelled` false, none: traffic whose accuracy only an estimate knows.
pub async fn load_labelled(
    http: reqwest::Client,
    base: String,
    model: &str,
    spec: &ModelSpec,
    (rate, seconds, requests): (f64, u64, Option<u64>),
    labelled: bool,
) -> driftline::serve::LoadReport {
    wait_serving(&http, &base, model).await;
    let test_set = spec.gate.as_ref().expect("gate").test_set.clone();
    let table = driftline::data::read_table(&test_set, None)
        .await
        .expect("test set");
    let plan = driftline::serve::LoadPlan {
        base,
        model: model.into(),
        data: Arc::new(table),
        shifted: None,
        shift_after: Duration::MAX,
        rate,
        duration: Duration::from_secs(seconds),
        requests,
        batch: 1,
        // In-distribution traffic is a random sample of the rows: the test
        // set's own order has stretches (rows 180-320 run high in alcohol)
        // that a 100-row window rightly reads as drift.
        order: driftline::serve::RowOrder::Shuffled { seed: 1 },
        label: labelled.then(|| (spec.data.target.clone(), spec.task)),
        concurrency: 32,
    };
    driftline::serve::run_load(&http, plan)
        .await
        .expect("load runs")
}
