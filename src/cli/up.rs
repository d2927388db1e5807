//! `driftline up`: the product on a laptop. Starts the embedded cluster,
//! installs the CRDs, runs the operator (the same code as `driftline
//! operator`) and applies the bundled (or given) Models. Ctrl-C stops it all;
//! a rerun resumes from the state directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};

use crate::api::names::{self, MANAGER};
use crate::api::{Model, ModelFile, load_model_file};
use crate::cluster::NodeConfig;
use crate::cluster::{ClusterConfig, EmbeddedCluster};
use crate::operator::{ChildSettings, Clock, OperatorConfig, Telemetry};

/// Flags of `driftline up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Model YAML files, or directories of them.
    #[arg(
        short = 'f',
        long = "file",
        default_value = "pipelines/wine-quality.yaml"
    )]
    pub files: Vec<PathBuf>,
    /// Where the cluster's state, the artifacts and the kubeconfig live.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Port of the API server on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// `nvidia.com/gpu` devices the node offers (default: those detected).
    #[arg(long)]
    pub gpus: Option<u64>,
    /// Run the operator's clock this many times faster (a 10m canary pause
    /// passes in 10 s at 60): watch a whole rollout in minutes.
    #[arg(long, default_value = "1", value_parser = super::flags::positive_scale)]
    pub time_scale: f64,
    /// Drive each Model's gateway with its test rows (labelled, so online
    /// accuracy and feedback retraining have data) once it serves.
    #[arg(long)]
    pub load: bool,
    /// Requests per second into each gateway with `--load`.
    #[arg(long, default_value = "20", value_parser = super::flags::rate)]
    pub load_rate: f64,
    /// With `--load`: after this long, send the same rows with every numeric
    /// feature moved up by one standard deviation, so drift-triggered
    /// retraining can be watched (`--drift-after 5m`).
    #[arg(long, value_parser = super::flags::duration, requires = "load")]
    pub drift_after: Option<Duration>,
    /// The model registry (default: `sqlite://<state-dir>/registry.db`);
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` for PostgreSQL.
    #[arg(long, env = "DRIFTLINE_REGISTRY")]
    pub registry: Option<String>,
    /// Where the read-only dashboard listens (`off`: nowhere); by default a
    /// free loopback port, printed at start.
    #[arg(long, default_value = "127.0.0.1:0", value_parser = super::flags::listen)]
    pub dashboard_addr: super::flags::Listen,
    /// Notification sinks for every Model (as `driftline operator --notify`);
    /// their secretRefs name Secrets in the `default` namespace.
    #[arg(long, env = "DRIFTLINE_NOTIFY", default_value = "", hide_default_value = true, allow_hyphen_values = true, value_parser = super::flags::notify_sinks)]
    pub notify: super::flags::NotifySinks,
}

/// Where `up` keeps its state unless told (`--state-dir`).
pub const DEFAULT_STATE_DIR: &str = ".driftline";

/// The artifact root `driftline up` gives its operator for a state
/// directory: the one place `up` and the user commands (`driftline
/// disagreements`) derive it from.
pub fn default_artifact_root(state_dir: &Path) -> String {
    state_dir.join("artifacts").display().to_string()
}

/// The artifact root a user command was given, else the one `driftline up`
/// keeps in its default state directory.
pub fn artifact_root_or_up(given: Option<&str>) -> String {
    given.map_or_else(
        || default_artifact_root(Path::new(DEFAULT_STATE_DIR)),
        str::to_string,
    )
}

/// The registry `driftline up` uses for a state directory: the one place
/// both `up` and the user commands (`driftline history`) derive it from.
pub fn default_registry(state_dir: &Path) -> String {
    format!("sqlite://{}", state_dir.join("registry.db").display())
}

/// The `driftline history` line `up` prints: `history` finds the registry
/// of `.driftline` in the directory it runs in by itself; any other state
/// directory (`--state-dir X`) is named, absolute, so the command works
/// from wherever it is pasted.
fn history_command(state: &Path, given: &Path) -> String {
    if given == Path::new(DEFAULT_STATE_DIR) {
        "driftline history -n <namespace> <name>".into()
    } else {
        format!(
            "driftline history --registry {} -n <namespace> <name>",
            default_registry(state)
        )
    }
}

/// kubectl's client-side apply keeps what was last applied in this
/// annotation and warns on an object without it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The Model as `up` applies it, carrying what it applied the way `kubectl
/// apply` records it (the object without the annotation, as one line of
/// JSON): a user's later `kubectl apply -f` of the same file then patches
/// from it without a warning.
fn with_last_applied(model: &Model) -> anyhow::Result<serde_json::Value> {
    let mut object = serde_json::to_value(model)?;
    object["apiVersion"] = crate::api::API_VERSION.into();
    object["kind"] = "Model".into();
    let applied = format!("{}\n", serde_json::to_string(&object)?);
    object["metadata"]["annotations"][LAST_APPLIED] = applied.into();
    Ok(object)
}

/// Model YAML files named by `-f` (directories: their `*.yaml`/`*.yml`, sorted).
fn model_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            bail!("-f {}: no such file or directory", p.display());
        }
    }
    if files.is_empty() {
        bail!("no Model YAML found in {:?}", paths);
    }
    Ok(files)
}

/// Reads a Model YAML and makes its local data paths absolute against the
/// current directory: pods run elsewhere and would not find `pipelines/…`.
fn read_model(file: &Path, cwd: &Path) -> anyhow::Result<Model> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let ModelFile {
        name,
        namespace,
        mut spec,
    } = load_model_file(&text).with_context(|| file.display().to_string())?;
    let absolute = |uri: &str| crate::data::store::absolute(uri, cwd);
    spec.data.source = absolute(&spec.data.source);
    if let Some(gate) = spec.gate.as_mut() {
        gate.test_set = absolute(&gate.test_set);
        gate.must_pass = gate.must_pass.as_deref().map(absolute);
    }
    let name = name.with_context(|| format!("{}: metadata.name is missing", file.display()))?;
    let mut model = Model::new(&name, spec);
    model.metadata.namespace = Some(namespace.unwrap_or_else(|| "default".into()));
    Ok(model)
}

/// Runs `driftline up` until Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    // Listen for Ctrl-C from the start: without a handler the first signal
    // kills the process mid-startup, and pods the resumed cluster already
    // started would be left behind. A Ctrl-C during startup stops us once
    // everything is up, through the same clean shutdown.
    let interrupted = tokio::spawn(crate::cli::operator::shutdown_signal());
    let cwd = std::env::current_dir()?;
    let models: Vec<Model> = model_files(&args.files)?
        .iter()
        .map(|f| read_model(f, &cwd))
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let state = args.state_dir.canonicalize()?;
    let exe = std::env::current_exe().context("cannot find the driftline binary")?;

    let mut cfg = ClusterConfig::new(state.join("cluster"));
    cfg.port = args.port;
    cfg.kubeconfig = Some(state.join("kubeconfig"));
    cfg.snapshot = Some(state.join("cluster").join("snapshot.json"));
    cfg.node = Some(NodeConfig {
        gpus: args.gpus.unwrap_or_else(crate::cluster::detect_gpus),
        driftline_exe: exe,
        hosts_file_env: Some(crate::net::HOSTS_FILE_ENV.into()),
        ..Default::default()
    });
    let cluster = EmbeddedCluster::start(cfg).await?;
    let client = cluster.client().await;

    let ssa = PatchParams::apply(MANAGER).force();
    crate::operator::install_crds(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for m in &models {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let object: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
        }))?;
        namespaces
            .patch(&ns, &ssa, &Patch::Apply(&object))
            .await
            .with_context(|| format!("cannot create namespace {ns}"))?;
    }

    let registry_url = args
        .registry
        .clone()
        .unwrap_or_else(|| default_registry(&state));
    let registry = Arc::new(
        crate::registry::RegistryWriter::start(&registry_url, Default::default())
            .context("--registry")?,
    );
    let hosts = state.join("cluster").join("hosts");
    let telemetry = Arc::new(Telemetry::new());
    let dashboard = match args.dashboard_addr.0 {
        None => None,
        Some(addr) => {
            let config = crate::dashboard::DashboardConfig {
                client: client.clone(),
                namespace: None,
                registry: Some(registry_url.clone()),
                hosts_file: Some(hosts.clone()),
            };
            let (addr, _) = crate::dashboard::serve(addr, config)
                .await
                .with_context(|| format!("cannot listen on --dashboard-addr {addr}"))?;
            Some(format!("http://{addr}"))
        }
    };
    let config = OperatorConfig {
        settings: ChildSettings {
            artifact_root: default_artifact_root(&state),
            image: ChildSettings::default().image,
            credentials_secret: None,
            gateway_service_account: None,
            http_route_parent: None,
            gpu_placement: Default::default(),
            network_policies: None,
        },
        namespaces: Vec::new(),
        clock: Arc::new(Clock::scaled(args.time_scale)),
        instance: "driftline-up".into(),
        leader: None,
        scrape_timeout: Duration::from_secs(5),
        max_concurrent_reconciles: crate::operator::DEFAULT_MAX_CONCURRENT_RECONCILES,
        hosts_file: Some(hosts.clone()),
        drift_poll: Duration::from_secs(10),
        registry: Some(registry.clone()),
        dashboard_url: dashboard.clone(),
        notify: crate::operator::NotifyConfig {
            sinks: args.notify.0.clone(),
            namespace: "default".into(),
            delivery: Default::default(),
        },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(crate::operator::run(
        client.clone(),
        config,
        telemetry,
        async {
            let _ = stopped.await;
        },
    ));

    for m in &models {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let name = m.metadata.name.clone().unwrap_or_default();
        let api: Api<Model> = Api::namespaced(client.clone(), &ns);
        let object = with_last_applied(m)?;
        api.patch(&name, &ssa, &Patch::Apply(&object))
            .await
            .with_context(|| format!("cannot apply Model {ns}/{name}"))?;
    }

    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    println!("driftline is up: embedded cluster at {}", cluster.url());
    println!();
    println!("    export KUBECONFIG={kubeconfig}");
    println!("    kubectl get models -A -w");
    println!("    kubectl get modelversions -A");
    println!("    kubectl describe model -n <namespace> <name>");
    println!(
        "    driftline status -A                        # phase, champion, traffic, drift, training"
    );
    println!(
        "    {}    # versions, gate results, champion changes",
        history_command(&state, &args.state_dir)
    );
    println!();
    for m in &models {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let name = m.metadata.name.clone().unwrap_or_default();
        println!(
            "Model {ns}/{name}: gateway {} (from this machine: {}={} driftline load --url {} -f <model.yaml>)",
            names::service_url(&names::gateway_service(&name), &ns),
            crate::net::HOSTS_FILE_ENV,
            hosts.display(),
            names::service_url(&names::gateway_service(&name), &ns),
        );
    }
    println!();
    println!("Artifacts: {}", default_artifact_root(&state));
    println!("Registry:  {}", registry.url());
    if let Some(url) = &dashboard {
        println!("Dashboard: {url}/");
        println!(
            "    export {}={url}    # driftline status links each Model to its page",
            crate::dashboard::links::DASHBOARD_ENV
        );
    }
    println!(
        "Press Ctrl-C to stop; run again to resume from {}.",
        state.display()
    );

    let mut loads = Vec::new();
    if args.load {
        for m in &models {
            loads.push(tokio::spawn(drive(
                client.clone(),
                m.clone(),
                hosts.clone(),
                args.load_rate,
                args.drift_after,
            )));
        }
        println!(
            "Load: {} requests/s into each gateway once it serves{}.",
            args.load_rate,
            args.drift_after.map_or(String::new(), |d| format!(
                "; shifted rows after {}s (watch `kubectl get models -A -w` for the drift retrain)",
                d.as_secs()
            ))
        );
    }

    tokio::select! {
        _ = interrupted => {}
        result = operator => {
            match result {
                Ok(Ok(())) => bail!("the operator stopped"),
                Ok(Err(e)) => return Err(e).context("the operator failed"),
                Err(e) => bail!("the operator task failed: {e}"),
            }
        }
    }
    for load in &loads {
        load.abort();
    }
    println!("stopping: operator, model servers, embedded cluster");
    let _ = stop.send(());
    // Rows still queued reach the registry before the process ends.
    registry.flush().await;
    cluster.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `--load`: waits until the Model serves, then sends its test rows (and,
/// after `drift_after`, shifted ones) through its gateway until stopped.
async fn drive(
    client: kube::Client,
    model: Model,
    hosts: PathBuf,
    rate: f64,
    drift_after: Option<Duration>,
) {
    let ns = model.metadata.namespace.clone().unwrap_or_default();
    let name = model.metadata.name.clone().unwrap_or_default();
    let api: Api<Model> = Api::namespaced(client, &ns);
    loop {
        let serving = api
            .get(&name)
            .await
            .ok()
            .and_then(|m| m.status)
            .is_some_and(|s| s.champion.is_some() && !s.traffic.is_empty());
        if serving {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let spec = &model.spec;
    let source = spec
        .gate
        .as_ref()
        .map_or_else(|| spec.data.source.clone(), |g| g.test_set.clone());
    let data = match crate::data::read_table(&source, None).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(model = %name, error = %e, "--load: cannot read rows; no load for this Model");
            return;
        }
    };
    let shifted = drift_after
        .map(|_| std::sync::Arc::new(crate::serve::shifted(&data, &spec.data.target, 1.0)));
    let plan = crate::serve::LoadPlan {
        base: names::service_url(&names::gateway_service(&name), &ns),
        model: name.clone(),
        data: std::sync::Arc::new(data),
        shifted,
        shift_after: drift_after.unwrap_or_default(),
        rate,
        // Until Ctrl-C aborts it.
        duration: Duration::from_secs(10 * 365 * 24 * 3600),
        requests: None,
        batch: 1,
        order: crate::serve::RowOrder::default(),
        label: Some((spec.data.target.clone(), spec.task)),
        concurrency: 16,
    };
    let http = crate::net::service_http_client(Duration::from_secs(30), Some(hosts));
    // The status says "serving" a moment before the gateway's Service
    // resolves and its pod answers: wait for the model's metadata.
    let metadata = crate::api::routes::url(&plan.base, crate::api::routes::MODEL, &name);
    while !http
        .get(&metadata)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Err(e) = crate::serve::run_load(&http, plan).await {
        tracing::warn!(model = %name, error = %e, "--load stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_line_names_any_state_dir_but_the_default() {
        let state = Path::new("/home/u/project/.driftline");
        assert_eq!(
            history_command(state, Path::new(".driftline")),
            "driftline history -n <namespace> <name>"
        );
        assert_eq!(
            history_command(Path::new("/tmp/x"), Path::new("x")),
            "driftline history --registry sqlite:///tmp/x/registry.db -n <namespace> <name>"
        );
    }

    #[test]
    fn up_records_what_it_applied_as_kubectl_apply_does() {
        let spec = crate::api::load_model_config(
            "task: classification\ndata: {source: /d/wine.csv, target: quality}\n",
        )
        .unwrap();
        let mut model = Model::new("wine", spec);
        model.metadata.namespace = Some("ml".into());
        let object = with_last_applied(&model).unwrap();
        let recorded = object["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .expect("annotation");
        let mut without = object.clone();
        without["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        let parsed: serde_json::Value = serde_json::from_str(recorded).unwrap();
        assert_eq!(parsed, without, "the object itself, minus the annotation");
        assert_eq!(parsed["kind"], "Model");
        assert_eq!(parsed["spec"]["data"]["source"], "/d/wine.csv");
    }
}
