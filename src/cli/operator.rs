//! `driftline operator`: the Model controller, with metrics and health.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::operator::{
    ChildSettings, Clock, GpuPlacement, LeaseConfig, LeaseTiming, NetworkPolicySettings,
    OperatorConfig, Telemetry,
};

/// Flags of `driftline operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Where artifacts go: `s3://bucket/prefix`, `gs://…`, `az://…`, or a
    /// directory every node can reach. Version n of Model m in namespace ns
    /// lands in `<root>/<ns>/<m>/v<n>/`.
    #[arg(long, env = "DRIFTLINE_ARTIFACT_ROOT")]
    pub artifact_root: String,
    /// Image of training Jobs, model servers and gateways when a Model names none.
    #[arg(long, env = "DRIFTLINE_IMAGE", default_value_t = ChildSettings::default().image)]
    pub image: String,
    /// Secret (in each Model's namespace) whose keys become the environment of
    /// training and serving pods: object-store credentials. Never logged.
    #[arg(long, env = "DRIFTLINE_CREDENTIALS_SECRET")]
    pub credentials_secret: Option<String>,
    /// ServiceAccount of gateway pods (they read their Model's status).
    #[arg(long, env = "DRIFTLINE_GATEWAY_SERVICE_ACCOUNT")]
    pub gateway_service_account: Option<String>,
    /// Where the cluster serves the Gateway API, attach each Model's HTTPRoute
    /// (weighted like its gateway) to this Gateway: `NAMESPACE/NAME`.
    #[arg(long, env = "DRIFTLINE_HTTP_ROUTE_PARENT", value_parser = super::flags::namespaced_name)]
    pub http_route_parent: Option<(String, String)>,
    /// Watch only these namespaces (repeat the flag or separate with commas;
    /// default: all namespaces).
    #[arg(
        long = "namespace",
        env = "DRIFTLINE_WATCH_NAMESPACE",
        value_delimiter = ',',
        value_parser = super::flags::namespace
    )]
    pub namespaces: Vec<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "DRIFTLINE_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader on this Lease (for more than one replica).
    #[arg(long, env = "DRIFTLINE_LEADER_LEASE")]
    pub leader_lease: Option<String>,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// A leader whose Lease has not been renewed for this long (as another
    /// replica sees it) is replaced.
    #[arg(long, default_value = "15s", value_parser = super::flags::duration)]
    pub lease_duration: Duration,
    /// A leader that has not renewed its Lease for this long stops
    /// reconciling and exits (shorter than --lease-duration: it stops before
    /// another replica may take over).
    #[arg(long, default_value = "10s", value_parser = super::flags::duration)]
    pub lease_renew_deadline: Duration,
    /// How often the leader renews its Lease and the others try to take it.
    #[arg(long, default_value = "2s", value_parser = super::flags::duration)]
    pub lease_retry_period: Duration,
    /// This replica's name (Events, Lease holder).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Run the operator's clock this many times faster than the wall clock,
    /// for demos and tests (`60`: a 10m canary pause passes in 10 s).
    #[arg(long, default_value = "1", value_parser = super::flags::positive_scale)]
    pub time_scale: f64,
    /// Longest wait for a model server's `/metrics`.
    #[arg(long, default_value = "5s", value_parser = super::flags::duration)]
    pub scrape_timeout: Duration,
    /// Reconciles in flight at once (per watched namespace); more wait their
    /// turn. Each slot holds an API connection and a thread while busy; raise
    /// it for thousands of Models whose replicas' scrapes may hang to
    /// --scrape-timeout.
    #[arg(long, env = "DRIFTLINE_MAX_CONCURRENT_RECONCILES", default_value_t = crate::operator::DEFAULT_MAX_CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
    /// How often to read the champion's drift windows (`retrain.onDrift`),
    /// the data source's version (`retrain.onNewData`) and, for classifiers
    /// with `data.includeFeedback`, the feedback prefix for new labels.
    #[arg(long, default_value = "30s", value_parser = super::flags::duration)]
    pub drift_poll: Duration,
    /// The embedded cluster's hosts file (`driftline up` sets it); in a real
    /// cluster Services resolve through DNS.
    #[arg(long, env = crate::net::HOSTS_FILE_ENV)]
    pub hosts_file: Option<std::path::PathBuf>,
    /// Record lineage, evaluations, training curves, drift series, canary
    /// analyses and every champion change here: `sqlite://PATH` or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`. A registry that is
    /// down never blocks reconciles (Models show `RegistryAvailable=False`).
    #[arg(long, env = "DRIFTLINE_REGISTRY")]
    pub registry: Option<String>,
    /// Where the read-only dashboard listens (`off`: nowhere). Loopback by
    /// default: reach it with `kubectl port-forward`.
    #[arg(long, env = "DRIFTLINE_DASHBOARD_ADDR", default_value = "127.0.0.1:9091", value_parser = super::flags::listen)]
    pub dashboard_addr: super::flags::Listen,
    /// The dashboard's address as users open it (`https://ml.example.com/driftline`),
    /// for the links in Events; default: `http://<dashboard-addr>` when that is
    /// a loopback address (reached through `kubectl port-forward`).
    #[arg(long, env = "DRIFTLINE_DASHBOARD_URL")]
    pub dashboard_url: Option<String>,
    /// Notification sinks for every Model, beside each Model's `spec.notify`:
    /// a JSON or YAML list of `{url, events, format, secretRef}`; their
    /// secretRefs name Secrets in the operator's namespace (`POD_NAMESPACE`).
    #[arg(long, env = "DRIFTLINE_NOTIFY", default_value = "", hide_default_value = true, allow_hyphen_values = true, value_parser = super::flags::notify_sinks)]
    pub notify: super::flags::NotifySinks,
    /// Attempts per notification, the first included, before it becomes a
    /// dead letter in the registry.
    #[arg(long, env = "DRIFTLINE_NOTIFY_ATTEMPTS", default_value_t = crate::operator::DeliveryOptions::default().attempts, value_parser = clap::value_parser!(u32).range(1..))]
    pub notify_attempts: u32,
    /// Wait before a notification's first retry, doubled after each failed
    /// attempt (with jitter) up to --notify-max-backoff.
    #[arg(long, env = "DRIFTLINE_NOTIFY_BACKOFF", default_value = "1s", value_parser = super::flags::duration)]
    pub notify_backoff: std::time::Duration,
    /// Longest wait between two attempts of one notification.
    #[arg(long, env = "DRIFTLINE_NOTIFY_MAX_BACKOFF", default_value = "60s", value_parser = super::flags::duration)]
    pub notify_max_backoff: std::time::Duration,
    /// Longest one delivery attempt may take.
    #[arg(long, env = "DRIFTLINE_NOTIFY_TIMEOUT", default_value = "10s", value_parser = super::flags::duration)]
    pub notify_timeout: std::time::Duration,
    /// Where training Jobs that request a GPU go when their Model names no
    /// placement: `{"nodeSelector": {"pool": "gpu"}, "tolerations": [...]}`.
    #[arg(long, env = "DRIFTLINE_GPU_PLACEMENT", value_parser = gpu_placement)]
    pub gpu_placement: Option<GpuPlacement>,
    /// Give each Model NetworkPolicies: its model servers accept only its
    /// gateway and the operator's pods, its gateway any pod of its namespace
    /// and the operator's pods: `{"operatorNamespace": "driftline-system",
    /// "operatorPodLabels": {"app.kubernetes.io/name": "driftline", ...}}`
    /// (the chart sets it with `networkPolicy.enabled`).
    #[arg(long, env = "DRIFTLINE_NETWORK_POLICIES", value_parser = network_policies)]
    pub network_policies: Option<NetworkPolicySettings>,
}

fn network_policies(text: &str) -> Result<NetworkPolicySettings, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "expected {{\"operatorNamespace\": \"...\", \"operatorPodLabels\": {{...}}}} as JSON: {e}"
        )
    })
}

fn gpu_placement(text: &str) -> Result<GpuPlacement, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("expected {{\"nodeSelector\": {{...}}, \"tolerations\": [...]}} as JSON: {e}")
    })
}

impl OperatorArgs {
    /// The namespaces to watch, each once, in the order given (empty: all).
    pub fn watched_namespaces(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for ns in &self.namespaces {
            if !seen.contains(ns) {
                seen.push(ns.clone());
            }
        }
        seen
    }

    /// The operator's configuration from these flags; refused when the
    /// Lease timing could let two leaders act at once.
    pub fn config(&self) -> Result<OperatorConfig, crate::operator::OperatorError> {
        let instance = self
            .instance
            .clone()
            .unwrap_or_else(|| format!("driftline-operator-{}", std::process::id()));
        let leader = match &self.leader_lease {
            Some(name) => Some(LeaseConfig {
                name: name.clone(),
                namespace: self.lease_namespace.clone(),
                timing: LeaseTiming::new(
                    self.lease_duration,
                    self.lease_renew_deadline,
                    self.lease_retry_period,
                )?,
            }),
            None => None,
        };
        Ok(OperatorConfig {
            settings: ChildSettings {
                artifact_root: self.artifact_root.clone(),
                image: self.image.clone(),
                credentials_secret: self.credentials_secret.clone(),
                gateway_service_account: self.gateway_service_account.clone(),
                http_route_parent: self.http_route_parent.clone(),
                gpu_placement: self.gpu_placement.clone().unwrap_or_default(),
                network_policies: self.network_policies.clone(),
            },
            namespaces: self.watched_namespaces(),
            clock: Arc::new(Clock::scaled(self.time_scale)),
            leader,
            instance,
            scrape_timeout: self.scrape_timeout,
            max_concurrent_reconciles: self.max_concurrent_reconciles,
            hosts_file: self.hosts_file.clone(),
            drift_poll: self.drift_poll,
            registry: None,
            dashboard_url: self.dashboard_url.clone().or_else(|| {
                let addr = self.dashboard_addr.0?;
                addr.ip().is_loopback().then(|| format!("http://{addr}"))
            }),
            notify: crate::operator::NotifyConfig {
                sinks: self.notify.0.clone(),
                namespace: self.lease_namespace.clone(),
                delivery: crate::operator::DeliveryOptions {
                    attempts: self.notify_attempts,
                    base_delay: self.notify_backoff,
                    max_delay: self.notify_max_backoff.max(self.notify_backoff),
                    timeout: self.notify_timeout,
                    ..Default::default()
                },
            },
        })
    }
}

/// Runs the operator until SIGINT/SIGTERM.
pub async fn run(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    crate::data::store::check(&args.artifact_root)
        .with_context(|| format!("--artifact-root `{}`", args.artifact_root))?;
    let client = kube::Client::try_default()
        .await
        .context("cannot reach a Kubernetes API server (set KUBECONFIG or run in a pod)")?;
    let telemetry = Arc::new(Telemetry::new());
    let addr = crate::operator::serve_metrics(args.metrics_addr, telemetry.clone())
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {}", args.metrics_addr))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let mut config = args
        .config()
        .context("--lease-duration, --lease-renew-deadline, --lease-retry-period")?;
    if let Some(url) = &args.registry {
        config.registry = Some(Arc::new(
            crate::registry::RegistryWriter::start(url, Default::default())
                .context("--registry")?,
        ));
    }
    if let Some(addr) = args.dashboard_addr.0 {
        let dashboard = crate::dashboard::DashboardConfig {
            client: client.clone(),
            // The dashboard reads one namespace or all of them.
            namespace: match args.namespaces.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            },
            registry: args.registry.clone(),
            hosts_file: args.hosts_file.clone(),
        };
        // A read-only view: a taken port must not keep the controller from running.
        match crate::dashboard::serve(addr, dashboard).await {
            Ok((addr, _)) => {
                tracing::info!(url = %format!("http://{addr}/"), "serving the dashboard")
            }
            Err(e) => tracing::warn!(
                %addr, error = %e,
                "cannot listen on --dashboard-addr; running without the dashboard"
            ),
        }
    }
    crate::operator::run(client, config, telemetry, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        operator: OperatorArgs,
    }

    fn parse(argv: &[&str]) -> Result<OperatorArgs, clap::Error> {
        let argv = ["driftline", "--artifact-root", "/tmp/a"]
            .iter()
            .chain(argv);
        <Cli as clap::Parser>::try_parse_from(argv).map(|cli| cli.operator)
    }

    #[test]
    fn a_renew_deadline_not_shorter_than_the_lease_is_refused() {
        let lease = |extra: &[&str]| {
            let mut argv = vec!["--leader-lease", "ops"];
            argv.extend(extra);
            parse(&argv).unwrap().config()
        };
        let timing = lease(&[]).unwrap().leader.expect("a Lease").timing;
        assert_eq!(timing, LeaseTiming::default());
        let Err(err) = lease(&["--lease-duration", "10s"]) else {
            panic!("a renew deadline as long as the lease is refused")
        };
        let err = crate::error_chain(&err);
        assert!(
            err.contains("renew deadline (10s) must be shorter than the lease duration (10s)"),
            "{err}"
        );
        let ok = lease(&[
            "--lease-duration",
            "6s",
            "--lease-renew-deadline",
            "4s",
            "--lease-retry-period",
            "1s",
        ]);
        assert_eq!(
            ok.unwrap().leader.unwrap().timing.renew_deadline(),
            Duration::from_secs(4)
        );
        // Without a Lease the timing is not read.
        assert!(parse(&["--lease-duration", "1s"]).unwrap().config().is_ok());
    }

    #[test]
    fn operator_wide_sinks_are_read_by_the_spec_notify_parser_and_refused_by_it() {
        let config = parse(&[
            "--notify",
            r#"[{"url": "https://hooks.example.com/d", "events": ["rolledBack"], "secretRef": {"name": "hooks", "key": "hmac"}}]"#,
            "--lease-namespace",
            "ops",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(config.notify.sinks.len(), 1);
        assert_eq!(config.notify.sinks[0].events, ["rolledBack"]);
        assert_eq!(
            config.notify.namespace, "ops",
            "secretRefs name the operator's Secrets"
        );
        assert!(
            parse(&[])
                .unwrap()
                .config()
                .unwrap()
                .notify
                .sinks
                .is_empty()
        );
        let err = parse(&["--notify", "- url: ftp://hooks.example.com/d"])
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains(
                "--notify[0].url: a notify url must be an absolute http:// or https:// URL"
            ),
            "{err}"
        );
        let err = parse(&[
            "--notify",
            "- url: https://h.example.com/d\n  events: [rolledback]",
        ])
        .expect_err("refused")
        .to_string();
        assert!(err.contains("(got `rolledback`)"), "{err}");
    }

    #[test]
    fn reconciles_in_flight_are_bounded_by_default_and_by_the_flag() {
        let bound =
            |argv: &[&str]| parse(argv).map(|a| a.config().unwrap().max_concurrent_reconciles);
        assert_eq!(bound(&[]).unwrap(), 32);
        assert_eq!(bound(&["--max-concurrent-reconciles", "200"]).unwrap(), 200);
        for wrong in ["0", "many", "70000"] {
            let err = bound(&["--max-concurrent-reconciles", wrong])
                .expect_err("refused")
                .to_string();
            assert!(
                err.contains("--max-concurrent-reconciles"),
                "{wrong}: {err}"
            );
        }
    }

    #[test]
    fn notification_retries_come_from_flags_and_default_to_the_notifiers_own() {
        let defaults = parse(&[]).unwrap().config().unwrap().notify.delivery;
        assert_eq!(defaults, crate::operator::DeliveryOptions::default());
        let set = parse(&[
            "--notify-attempts",
            "3",
            "--notify-backoff",
            "250ms",
            "--notify-max-backoff",
            "2s",
            "--notify-timeout",
            "1s",
        ])
        .unwrap()
        .config()
        .unwrap()
        .notify
        .delivery;
        assert_eq!(
            (set.attempts, set.base_delay, set.max_delay, set.timeout),
            (
                3,
                Duration::from_millis(250),
                Duration::from_secs(2),
                Duration::from_secs(1)
            )
        );
        assert_eq!(set.queue, defaults.queue);
        let err = parse(&["--notify-attempts", "0"])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("--notify-attempts"), "{err}");
        let err = parse(&["--notify-backoff", "soon"])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("--notify-backoff"), "{err}");
    }

    #[test]
    fn network_policies_name_the_operators_namespace_and_pod_labels() {
        let json = r#"{"operatorNamespace": "ops", "operatorPodLabels": {"app": "driftline"}}"#;
        let settings = parse(&["--network-policies", json])
            .unwrap()
            .config()
            .unwrap()
            .settings
            .network_policies
            .expect("asked for");
        assert_eq!(settings.operator_namespace, "ops");
        assert_eq!(settings.operator_pod_labels["app"], "driftline");
        let err = parse(&["--network-policies", r#"{"operatorNamespace": "ops"}"#])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("operatorPodLabels"), "{err}");
        assert!(parse(&[]).unwrap().network_policies.is_none());
    }

    #[test]
    fn watched_namespaces_repeat_or_separate_with_commas_each_once() {
        let args = parse(&["--namespace", "a,b", "--namespace", "c", "--namespace", "a"]).unwrap();
        assert_eq!(args.watched_namespaces(), ["a", "b", "c"]);
        assert_eq!(args.config().unwrap().namespaces, ["a", "b", "c"]);
        assert!(parse(&[]).unwrap().watched_namespaces().is_empty());
        let error = parse(&["--namespace", "a,Bad_One"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("`Bad_One` is not a namespace name"),
            "{error}"
        );
    }
}
