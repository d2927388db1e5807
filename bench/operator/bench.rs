//! The operator at N Models in steady state, side by side with a no-op
//! kube-runtime controller watching the same objects (the floor), in one run
//! on one embedded cluster; and the time from applying the bundled Model to
//! its champion answering through the gateway.
//!
//! `cargo run --example operator_bench -- [models] [window seconds]`
//! (bench/operator/run.sh). Every controller runs as its own child process
//! of this example, so its RSS is its own; the cluster stays in this process.
//!
//! The 1,000-Model part runs on a node that marks pods as run without
//! starting processes (`NodeConfig::simulate_processes`): data check and
//! training Jobs succeed at once over a pre-made data check report, artifact
//! and gate report (one real run of each, hard-linked under every Model's
//! `v1`), serving and gateway pods
//! are Ready with nothing behind them, so the operator's drift and canary
//! scrapes find no server (connection refused). The bundled-Model part runs
//! real processes.
//!
//! Each child times every reconcile as the span `reconcile` from creation
//! to close (a tracing layer), and counts the API writes (every non-GET
//! request of its client, through a tower layer) inside each reconcile.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftline::api::{Model, ModelPhase, ModelVersion, load_model_config, names};
use driftline::cluster::NodeConfig;
use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, filter::Targets};

#[path = "../common/rss.rs"]
mod rss;
use rss::rss_kib;

const NS: &str = "bench";

/// Live heap bytes, so the record tells the objects a process holds from
/// what the allocator keeps around them (RSS counts both).
static LIVE_HEAP: AtomicU64 = AtomicU64::new(0);

struct CountingAlloc;

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only adds and subtracts the sizes it was given.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE_HEAP.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(new as u64, Ordering::Relaxed);
            LIVE_HEAP.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;
const DRIFT_POLL: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.get(1).map(String::as_str) == Some("child") {
        runtime.block_on(child(
            &args[2],
            Path::new(&args[3]),
            &args[4],
            Path::new(&args[5]),
        ));
    } else {
        let number = |i: usize, what: &str, default: u64| -> u64 {
            args.get(i).map_or(default, |a| {
                a.parse().unwrap_or_else(|_| {
                    eprintln!("operator_bench: {what} must be a whole number, not `{a}`");
                    std::process::exit(2)
                })
            })
        };
        let models = number(1, "the number of Models (first argument)", 1000) as usize;
        let window = number(2, "the steady window in seconds (second argument)", 60);
        runtime.block_on(orchestrate(models, Duration::from_secs(window)));
    }
}

fn driftline_bin() -> PathBuf {
    std::env::var_os("DRIFTLINE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/debug/driftline"))
}

// ---------------------------------------------------------------- child --

/// One reconcile as the child saw it.
struct Timing {
    started: Instant,
    writes: Vec<String>,
    model: String,
}

/// What a write request changes: method and resource (`PATCH models/status`).
struct WriteField(String);

impl tracing::field::Visit for WriteField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "what" {
            self.0 = format!("{value:?}");
        }
    }
}

struct ModelField(String);

impl tracing::field::Visit for ModelField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "model" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Times `reconcile` spans and counts the `bench_write` events inside them;
/// each closed reconcile is a line in the child's record.
struct ReconcileTimer {
    out: Arc<Mutex<std::io::BufWriter<std::fs::File>>>,
    epoch: Instant,
    outside: Arc<AtomicU64>,
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ReconcileTimer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != "reconcile" {
            return;
        }
        let mut model = ModelField(String::new());
        attrs.record(&mut model);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Timing {
                started: Instant::now(),
                writes: Vec::new(),
                model: model.0,
            });
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "bench_write" {
            return;
        }
        let mut what = WriteField(String::new());
        event.record(&mut what);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(t) = span.extensions_mut().get_mut::<Timing>() {
                    t.writes.push(what.0.replace(' ', "_"));
                    return;
                }
            }
        }
        self.outside.fetch_add(1, Ordering::Relaxed);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(t) = span.extensions_mut().remove::<Timing>() else {
            return;
        };
        let end = self.epoch.elapsed().as_micros();
        let took = t.started.elapsed().as_micros();
        let mut out = self.out.lock().unwrap();
        let writes = if t.writes.is_empty() {
            "-".to_string()
        } else {
            t.writes.join(",")
        };
        let _ = writeln!(
            out,
            "r {end} {took} {} {} {writes}",
            t.writes.len(),
            t.model
        );
    }
}

/// A client whose every non-GET request is a `bench_write` event in the
/// span that made it.
async fn counting_client(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    let count = tower::util::MapRequestLayer::new(|req: http::Request<kube::client::Body>| {
        if req.method() != http::Method::GET {
            // `/apis/G/V/namespaces/NS/KIND[/NAME[/SUB]]` → `KIND[/SUB]`.
            let path: Vec<&str> = req.uri().path().split('/').collect();
            let at = path
                .iter()
                .position(|p| *p == "namespaces")
                .map_or(0, |i| i + 2);
            let kind = path.get(at).copied().unwrap_or("?");
            let sub = path
                .get(at + 2)
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            tracing::event!(target: "bench_write", tracing::Level::TRACE,
                what = %format!("{} {kind}{sub}", req.method()));
        }
        req
    });
    kube::client::ClientBuilder::try_from(config)
        .expect("client")
        .with_layer(&count)
        .build()
}

async fn child(kind: &str, kubeconfig: &Path, artifact_root: &str, record: &Path) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(
        std::fs::File::create(record).expect("record file"),
    )));
    let epoch = Instant::now();
    let outside = Arc::new(AtomicU64::new(0));
    let targets = Targets::new()
        .with_target("driftline::operator::reconcile", tracing::Level::INFO)
        .with_target("operator_bench", tracing::Level::INFO)
        .with_target("bench_write", tracing::Level::TRACE);
    let timer = ReconcileTimer {
        out: out.clone(),
        epoch,
        outside: outside.clone(),
    };
    // `BENCH_LOG=driftline=debug` also writes the child's log beside its
    // record, for finding where a slow reconcile spends its time.
    let log = std::env::var("BENCH_LOG").ok().map(|filter| {
        let file = std::fs::File::create(record.with_extension("log")).expect("log file");
        tracing_subscriber::fmt::layer()
            .with_writer(Mutex::new(file))
            .with_ansi(false)
            .with_filter(tracing_subscriber::EnvFilter::new(filter))
    });
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(timer.with_filter(targets))
            .with(log),
    )
    .expect("subscriber");
    {
        let out = out.clone();
        let outside = outside.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut o = out.lock().unwrap();
                let _ = writeln!(
                    o,
                    "m {} {} {} {}",
                    epoch.elapsed().as_micros(),
                    rss_kib(std::process::id()),
                    outside.load(Ordering::Relaxed),
                    LIVE_HEAP.load(Ordering::Relaxed) / 1024
                );
                let _ = o.flush();
            }
        });
    }
    let client = counting_client(kubeconfig).await;
    match kind {
        "operator" => {
            let config = driftline::operator::OperatorConfig {
                settings: driftline::operator::ChildSettings {
                    artifact_root: artifact_root.into(),
                    image: "driftline:bench".into(),
                    credentials_secret: None,
                    gateway_service_account: None,
                    http_route_parent: None,
                    gpu_placement: Default::default(),
                    network_policies: None,
                },
                namespaces: Vec::new(),
                clock: Arc::new(driftline::operator::Clock::scaled(1.0)),
                instance: "bench".into(),
                leader: None,
                scrape_timeout: Duration::from_secs(5),
                max_concurrent_reconciles: std::env::var("BENCH_MAX_RECONCILES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(driftline::operator::DEFAULT_MAX_CONCURRENT_RECONCILES),
                // As `driftline up` does: the runner's hosts file names
                // every Service (the cluster's DNS).
                hosts_file: Some(kubeconfig.with_file_name("hosts")),
                drift_poll: DRIFT_POLL,
                registry: None,
                dashboard_url: None,
                notify: Default::default(),
            };
            let telemetry = Arc::new(driftline::operator::Telemetry::new());
            driftline::operator::run(client, config, telemetry, futures::future::pending())
                .await
                .expect("operator runs");
        }
        _ => noop(client).await,
    }
}

/// The floor: a kube-runtime controller for Models that owns and watches
/// the same kinds as the operator (ModelVersions, Jobs, Deployments,
/// Services, and the managed pods) and requeues each Model at the drift
/// poll, as the operator does in steady state; its reconcile does nothing.
async fn noop(client: Client) {
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        names::MANAGED_BY_LABEL,
        names::MANAGER
    ));
    let pods = Api::<Pod>::all(client.clone());
    Controller::new(Api::<Model>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ModelVersion>::all(client.clone()), managed.clone())
        .owns(Api::<Job>::all(client.clone()), managed.clone())
        .owns(Api::<Deployment>::all(client.clone()), managed.clone())
        .owns(Api::<Service>::all(client.clone()), managed.clone())
        .watches(pods, managed, |_pod: Pod| None::<kube::runtime::reflector::ObjectRef<Model>>)
        .run(
            |model: Arc<Model>, _ctx: Arc<()>| {
                let span = tracing::info_span!(target: "operator_bench", "reconcile",
                    model = %format!("{}/{}", model.namespace().unwrap_or_default(), model.name_any()));
                async move { Ok::<_, kube::Error>(Action::requeue(DRIFT_POLL)) }.instrument(span)
            },
            |_model, _err: &kube::Error, _ctx| Action::requeue(Duration::from_secs(5)),
            Arc::new(()),
        )
        .for_each(|_| async {})
        .await;
}

// --------------------------------------------------------- orchestrator --

struct ChildRun {
    child: std::process::Child,
    record: PathBuf,
    started: Instant,
}

struct Reconcile {
    end_s: f64,
    took_ms: f64,
    writes: u64,
    model: String,
    kinds: Vec<String>,
}

struct Record {
    reconciles: Vec<Reconcile>,
    /// (seconds since start, RSS KiB, writes outside any reconcile, live heap KiB)
    samples: Vec<(f64, u64, u64, u64)>,
}

fn spawn_child(kind: &str, dir: &Path, kubeconfig: &Path, artifacts: &Path, tag: &str) -> ChildRun {
    let record = dir.join(format!("{tag}.record"));
    let child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["child", kind])
        .arg(kubeconfig)
        .arg(artifacts)
        .arg(&record)
        .spawn()
        .expect("child starts");
    ChildRun {
        child,
        record,
        started: Instant::now(),
    }
}

impl Drop for ChildRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildRun {
    fn stop(mut self) -> Record {
        let _ = self.child.kill();
        let _ = self.child.wait();
        read_record(&self.record)
    }

    fn rss_mib(&self) -> f64 {
        rss_kib(self.child.id()) as f64 / 1024.0
    }
}

fn read_record(path: &Path) -> Record {
    let mut r = Record {
        reconciles: Vec::new(),
        samples: Vec::new(),
    };
    // A child that has not written yet has no record.
    let Ok(file) = std::fs::File::open(path) else {
        return r;
    };
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["r", end, took, writes, model, kinds] => r.reconciles.push(Reconcile {
                end_s: end.parse::<f64>().unwrap_or(0.0) / 1e6,
                took_ms: took.parse::<f64>().unwrap_or(0.0) / 1e3,
                writes: writes.parse().unwrap_or(0),
                model: model.to_string(),
                kinds: kinds
                    .split(',')
                    .filter(|k| *k != "-")
                    .map(|k| k.replace('_', " "))
                    .collect(),
            }),
            ["m", t, rss, outside, heap] => r.samples.push((
                t.parse::<f64>().unwrap_or(0.0) / 1e6,
                rss.parse().unwrap_or(0),
                outside.parse().unwrap_or(0),
                heap.parse().unwrap_or(0),
            )),
            _ => {}
        }
    }
    r
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

/// Reconciles that ended in `[from, to)` seconds since the child started.
fn window(r: &Record, from: f64, to: f64) -> Vec<&Reconcile> {
    r.reconciles
        .iter()
        .filter(|x| x.end_s >= from && x.end_s < to)
        .collect()
}

/// When every one of `n` Models had finished a reconcile (seconds since start).
fn full_resync_s(r: &Record, n: usize) -> Option<f64> {
    let mut seen = HashSet::new();
    for x in &r.reconciles {
        seen.insert(x.model.as_str());
        if seen.len() >= n {
            return Some(x.end_s);
        }
    }
    None
}

fn print(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

fn steady_stats(tag: &str, r: &Record, from: f64, to: f64) {
    let w = window(r, from, to);
    let mut took: Vec<f64> = w.iter().map(|x| x.took_ms).collect();
    took.sort_by(f64::total_cmp);
    let writes: u64 = w.iter().map(|x| x.writes).sum();
    print(&format!("{tag}.steady_reconciles"), w.len());
    print(
        &format!("{tag}.steady_reconciles_per_s"),
        format!("{:.1}", w.len() as f64 / (to - from)),
    );
    print(
        &format!("{tag}.reconcile_p50_ms"),
        format!("{:.3}", quantile(&took, 0.5)),
    );
    print(
        &format!("{tag}.reconcile_p99_ms"),
        format!("{:.3}", quantile(&took, 0.99)),
    );
    print(
        &format!("{tag}.reconcile_max_ms"),
        format!("{:.3}", took.last().copied().unwrap_or(f64::NAN)),
    );
    print(&format!("{tag}.steady_api_writes"), writes);
    let heap = r
        .samples
        .iter()
        .filter(|s| s.0 <= to)
        .map(|s| s.3)
        .next_back()
        .unwrap_or(0);
    print(
        &format!("{tag}.heap_mib"),
        format!("{:.1}", heap as f64 / 1024.0),
    );
    let outside = |t: f64| {
        r.samples
            .iter()
            .filter(|s| s.0 <= t)
            .map(|s| s.2)
            .next_back()
            .unwrap_or(0)
    };
    print(
        &format!("{tag}.steady_writes_outside_reconciles"),
        outside(to) - outside(from),
    );
}

async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    start.elapsed()
}

/// Deployments with every replica ready.
async fn ready_deployments(client: &Client) -> usize {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let Ok(list) = deployments.list(&ListParams::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|d| {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            d.status.as_ref().and_then(|s| s.ready_replicas) == Some(want)
        })
        .count()
}

async fn serving_models(client: &Client) -> usize {
    let models: Api<Model> = Api::namespaced(client.clone(), NS);
    let Ok(list) = models.list(&ListParams::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|m| {
            m.status
                .as_ref()
                .is_some_and(|s| s.phase == ModelPhase::Serving && s.champion.is_some())
        })
        .count()
}

async fn start_cluster(dir: &Path, node: NodeConfig) -> (EmbeddedCluster, Client) {
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir).with_node(node))
        .await
        .expect("embedded cluster starts");
    let client = cluster.client().await;
    driftline::operator::install_crds(&client)
        .await
        .expect("CRDs install");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    (cluster, client)
}

/// The bundled Model, its local data paths made absolute (as `driftline up`
/// does): pods run in their own directories.
fn bundled_spec() -> driftline::api::ModelSpec {
    let mut spec = load_model_config(include_str!("../../pipelines/wine-quality.yaml"))
        .expect("bundled Model");
    let cwd = std::env::current_dir().expect("cwd");
    let absolute = |uri: &str| driftline::data::store::absolute(uri, &cwd);
    spec.data.source = absolute(&spec.data.source);
    if let Some(gate) = spec.gate.as_mut() {
        gate.test_set = absolute(&gate.test_set);
    }
    spec
}

/// One real training and gate report, under `<root>/bench/m-0000/v1`, then
/// hard-linked under every other Model's `v1`.
fn prepare_artifacts(root: &Path, n: usize) -> Duration {
    let started = Instant::now();
    let first = root.join(NS).join("m-0000").join("v1");
    let config = root.join("model.yaml");
    std::fs::create_dir_all(root).expect("artifact root");
    let mut model = Model::new("m-0000", bundled_spec());
    model.metadata.namespace = Some(NS.into());
    std::fs::write(&config, serde_yaml::to_string(&model).expect("yaml")).expect("write config");
    let run = |args: &[&str]| {
        let status = std::process::Command::new(driftline_bin())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("driftline runs");
        assert!(status.success(), "driftline {args:?} failed");
    };
    let uri = first.display().to_string();
    let report = names::gate_report_uri(&uri);
    let config = config.display().to_string();
    run(&["train", "--config", &config, "--out", &uri]);
    // The data check the operator runs before each training Job: its Job
    // "succeeds" on the simulated node, so the report must already be there.
    let data_check = names::data_check_report_uri(&uri);
    run(&["datacheck", "--config", &config, "--report", &data_check]);
    run(&[
        "evaluate",
        "--config",
        &config,
        "--candidate",
        &uri,
        "--report",
        &report,
        "--report-only",
    ]);
    for i in 1..n {
        let dir = root.join(NS).join(format!("m-{i:04}")).join("v1");
        std::fs::create_dir_all(&dir).expect("dir");
        for entry in std::fs::read_dir(&first).expect("artifact") {
            let entry = entry.expect("entry");
            std::fs::hard_link(entry.path(), dir.join(entry.file_name())).expect("link");
        }
        let report = names::data_check_report_uri(&dir.display().to_string());
        std::fs::hard_link(&data_check, &report).expect("link the data check report");
    }
    started.elapsed()
}

async fn orchestrate(n: usize, steady: Duration) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    if let Ok(keep) = std::env::var("BENCH_KEEP") {
        std::fs::write(&keep, dir.path().display().to_string()).expect("BENCH_KEEP");
    }
    if n == 0 {
        apply_to_serving(dir.path()).await;
        return;
    }
    let artifacts = dir.path().join("artifacts");
    let prep = prepare_artifacts(&artifacts, n);
    print("artifact_prep_s", format!("{:.1}", prep.as_secs_f64()));

    // --- N Models on a node that runs no processes.
    let node = NodeConfig {
        state_dir: dir.path().to_path_buf(),
        pod_ip_base: Ipv4Addr::new(127, 231, 0, 0),
        cpu_millis: 100_000_000,
        memory_bytes: 1 << 50,
        simulate_processes: true,
        restart_backoff: Duration::from_millis(200),
        job_backoff: Duration::from_millis(200),
        ..NodeConfig::default()
    };
    let (cluster, client) = start_cluster(dir.path(), node).await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let models: Api<Model> = Api::namespaced(client.clone(), NS);
    let spec = bundled_spec();
    let t = Instant::now();
    let creates = futures::stream::iter(0..n)
        .map(|i| {
            let models = models.clone();
            let mut m = Model::new(&format!("m-{i:04}"), spec.clone());
            m.metadata.namespace = Some(NS.into());
            async move {
                models
                    .create(&PostParams::default(), &m)
                    .await
                    .expect("Model")
            }
        })
        .buffer_unordered(16)
        .count()
        .await;
    print("models", creates);
    print(
        "models_create_s",
        format!("{:.1}", t.elapsed().as_secs_f64()),
    );

    // Operator, cold: from no children to every Model serving its champion.
    let op = spawn_child(
        "operator",
        dir.path(),
        &kubeconfig,
        &artifacts,
        "operator-cold",
    );
    let converged = wait_for(
        "every Model serving, every replica ready",
        Duration::from_secs(1800),
        // Each Model's champion and gateway Deployments.
        async || serving_models(&client).await >= n && ready_deployments(&client).await >= 2 * n,
    )
    .await;
    print(
        "operator.converge_s",
        format!("{:.1}", converged.as_secs_f64()),
    );
    // Settle (the last status writes and their watch events), then the window.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let from = op.started.elapsed().as_secs_f64();
    tokio::time::sleep(steady).await;
    let to = op.started.elapsed().as_secs_f64();
    let rss = op.rss_mib();
    let record = op.stop();
    print("operator.rss_mib", format!("{rss:.1}"));
    steady_stats("operator", &record, from, to);
    // Writes while converging: per reconcile that wrote anything.
    let converge_window = window(&record, 0.0, from);
    let mut per: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &converge_window {
        *per.entry(r.writes).or_default() += 1;
    }
    let writing: Vec<u64> = converge_window
        .iter()
        .map(|r| r.writes)
        .filter(|w| *w > 0)
        .collect();
    print("operator.converge_reconciles", converge_window.len());
    print(
        "operator.converge_writes_per_writing_reconcile_mean",
        format!(
            "{:.2}",
            writing.iter().sum::<u64>() as f64 / writing.len().max(1) as f64
        ),
    );
    print(
        "operator.converge_writes_per_reconcile_max",
        writing.iter().max().copied().unwrap_or(0),
    );
    print(
        "operator.converge_writes_histogram",
        per.iter()
            .map(|(w, c)| format!("{w}:{c}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &converge_window {
        for k in &r.kinds {
            *kinds.entry(k.as_str()).or_default() += 1;
        }
    }
    print(
        "operator.converge_writes_by_kind",
        kinds
            .iter()
            .map(|(k, c)| format!("{k}:{c}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    // The heaviest reconcile's writes, in order.
    if let Some(r) = converge_window.iter().max_by_key(|r| r.writes) {
        print("operator.converge_heaviest_reconcile", r.kinds.join(","));
    }

    // Operator, restarted on the converged cluster: a full resync.
    let op = spawn_child(
        "operator",
        dir.path(),
        &kubeconfig,
        &artifacts,
        "operator-resync",
    );
    let mut resync_rss = 0.0;
    wait_for(
        "the operator's resync",
        Duration::from_secs(600),
        async || {
            resync_rss = op.rss_mib();
            full_resync_s(&read_record(&op.record), n).is_some()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let record = op.stop();
    let resync = full_resync_s(&record, n).expect("resync");
    print("operator.full_resync_s", format!("{resync:.2}"));
    let first_pass = window(&record, 0.0, resync + 1e-9);
    print(
        "operator.resync_api_writes",
        first_pass.iter().map(|r| r.writes).sum::<u64>(),
    );
    print("operator.resync_rss_mib", format!("{resync_rss:.1}"));

    // The floor: the no-op controller on the same objects.
    let noop = spawn_child("noop", dir.path(), &kubeconfig, &artifacts, "noop");
    wait_for(
        "the no-op controller's resync",
        Duration::from_secs(600),
        async || full_resync_s(&read_record(&noop.record), n).is_some(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let from = noop.started.elapsed().as_secs_f64();
    tokio::time::sleep(steady).await;
    let to = noop.started.elapsed().as_secs_f64();
    let rss = noop.rss_mib();
    let record = noop.stop();
    print("noop.rss_mib", format!("{rss:.1}"));
    print(
        "noop.full_resync_s",
        format!("{:.2}", full_resync_s(&record, n).expect("resync")),
    );
    steady_stats("noop", &record, from, to);
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    print("cluster.pods", pods);
    cluster.shutdown().await;

    // --- The bundled Model with real processes: apply → champion serving.
    apply_to_serving(dir.path()).await;
}

/// `kubectl apply` of the bundled Model to its champion answering an
/// inference through the gateway, on a node that runs real processes.
async fn apply_to_serving(dir: &Path) {
    let state = dir.join("real");
    std::fs::create_dir_all(&state).expect("state dir");
    let node = NodeConfig {
        state_dir: state.clone(),
        driftline_exe: std::fs::canonicalize(driftline_bin()).expect("driftline binary"),
        pod_ip_base: Ipv4Addr::new(127, 232, 0, 0),
        // The gateway finds the model servers' Services through the node's
        // hosts file, named by the variable driftline's resolver reads.
        hosts_file_env: Some(driftline::net::HOSTS_FILE_ENV.into()),
        ..NodeConfig::default()
    };
    let (cluster, client) = start_cluster(&state, node).await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let artifacts = state.join("artifacts");
    let op = spawn_child("operator", dir, &kubeconfig, &artifacts, "operator-single");
    let models: Api<Model> = Api::namespaced(client.clone(), NS);
    let mut m = Model::new("wine", bundled_spec());
    m.metadata.namespace = Some(NS.into());
    models
        .create(&PostParams::default(), &m)
        .await
        .expect("Model");
    let champion = wait_for(
        "the bundled Model's champion",
        Duration::from_secs(900),
        async || {
            let m = models.get("wine").await.expect("Model");
            let phase = m.status.as_ref().map(|s| s.phase);
            assert_ne!(
                phase,
                Some(ModelPhase::Failed),
                "the bundled Model failed: {:?}",
                m.status
            );
            serving_models(&client).await >= 1
        },
    )
    .await;
    print(
        "single.apply_to_champion_s",
        format!("{:.1}", champion.as_secs_f64()),
    );
    let m = models.get("wine").await.expect("Model");
    let status = m.status.unwrap_or_default();
    print("single.champion", status.champion.unwrap_or_default());
    print("single.phase", format!("{:?}", status.phase));
    // The gateway's pod address (the hosts file maps the Service there too).
    let http = reqwest::Client::new();
    let row = include_str!("../../pipelines/data/wine-quality/test.csv")
        .lines()
        .take(2)
        .collect::<Vec<_>>();
    let body = infer_body(row[0], row[1]);
    let answered = wait_for(
        "an answer through the gateway",
        Duration::from_secs(300),
        async || {
            let Some(base) = gateway_url(&client).await else {
                return false;
            };
            let url = format!("{base}/v2/models/wine/infer");
            matches!(http.post(&url).json(&body).send().await, Ok(r) if r.status().is_success())
        },
    )
    .await;
    print(
        "single.apply_to_first_answer_s",
        format!("{:.1}", (champion + answered).as_secs_f64()),
    );
    op.stop();
    cluster.shutdown().await;
}

/// Base URL of a ready gateway pod, as the operator itself finds it.
async fn gateway_url(client: &Client) -> Option<String> {
    let pods: Api<driftline::operator::CachedPod> = Api::namespaced(client.clone(), NS);
    let list = pods
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            names::ROLE_LABEL,
            names::ROLE_GATEWAY
        )))
        .await
        .ok()?;
    let pods: Vec<&driftline::operator::CachedPod> = list.items.iter().collect();
    driftline::operator::gateway_urls(&pods).into_iter().next()
}

/// An Open Inference Protocol v2 request for one CSV row (header, row),
/// without the target column.
fn infer_body(header: &str, row: &str) -> serde_json::Value {
    let inputs: Vec<serde_json::Value> = header
        .split(',')
        .zip(row.split(','))
        .filter(|(name, _)| *name != "quality")
        .map(|(name, value)| {
            let v: f64 = value.trim().parse().unwrap_or(0.0);
            serde_json::json!({"name": name, "shape": [1], "datatype": "FP64", "data": [v]})
        })
        .collect();
    serde_json::json!({ "inputs": inputs })
}
