//! `driftline serve` and `driftline gateway`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use super::flags;
use crate::drift::monitor::{Control, Threshold};
use crate::drift::{DriftConfig, FeatureOverride, Statistic, Trigger};

use crate::serve::error::ServeError;
use crate::serve::feedback::{FeedbackConfig, FeedbackSink};
use crate::serve::gateway::{DEFAULT_URL_TEMPLATE, GatewayConfig, WeightsSource, run_gateway};
use crate::serve::model::{StoreFeedbackSink, load_artifact};
use crate::serve::server::{Predictor, ServerConfig, start};

/// Arguments of `driftline serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Artifact to serve (a version directory URI: file://, s3://, gs://, az://, or a local path).
    #[arg(long, env = "DRIFTLINE_ARTIFACT")]
    pub artifact: String,
    /// Model name served under (default: the manifest's).
    #[arg(long)]
    pub name: Option<String>,
    /// Version served under (default: the manifest's).
    #[arg(long = "model-version")]
    pub model_version: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "DRIFTLINE_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "DRIFTLINE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub body_limit: usize,
    /// Time allowed per request, e.g. `500ms`, `10s`.
    #[arg(long, default_value = "10s", value_parser = flags::duration)]
    pub request_timeout: Duration,
    /// Inferences running at once; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_concurrency: usize,
    /// Threads one inference may use. Requests already run in parallel, so
    /// more than one only helps the latency of large batches on an idle server.
    /// (Not read from `RAYON_NUM_THREADS`: child processes inherit that one.)
    #[arg(long, env = "DRIFTLINE_COMPUTE_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub compute_threads: u16,
    /// Largest number of rows in one request.
    #[arg(long, default_value_t = 65_536)]
    pub max_rows: usize,
    /// Drift statistic compared with the threshold: jensenShannon, psi, ks, wasserstein.
    #[arg(long, default_value = "jensenShannon")]
    pub drift_statistic: Statistic,
    /// A feature drifts when its statistic exceeds this: `auto` (each
    /// feature's null quantile for the window's size, calibrated at
    /// training) or a number for every feature.
    #[arg(long, default_value = "auto")]
    pub drift_threshold: Threshold,
    /// With `--drift-threshold auto`: the false-flag rate allowed per window.
    #[arg(long, default_value_t = 0.01)]
    pub drift_false_alarm_rate: f64,
    /// With `--drift-threshold auto`: which rate that is: `familyWise` (any
    /// feature of a drift-free window), `falseDiscoveryRate` or `perFeature`.
    #[arg(long, default_value = "familyWise")]
    pub drift_control: Control,
    /// Rows per drift window.
    #[arg(long, default_value_t = 1000)]
    pub drift_window: u64,
    /// Also close a drift window after this long, e.g. `10m`.
    #[arg(long, value_parser = flags::duration)]
    pub drift_window_time: Option<Duration>,
    /// Closed drift windows kept.
    #[arg(long, default_value_t = 5)]
    pub drift_recent: usize,
    /// How drifted features add up to a drifted window: `weighted` (by the
    /// model's feature importance; drifted predictions count too), `share`
    /// (of features, as Evidently) or `any`.
    #[arg(long, default_value = "weighted")]
    pub drift_trigger: Trigger,
    /// A window drifts when at least this share of the features (`share`) or
    /// of their importance weight (`weighted`) drifts.
    #[arg(long, default_value_t = 0.5)]
    pub drifted_share: f64,
    /// One feature's own drift threshold, or `ignore` to never count it:
    /// `--drift-feature alcohol=0.2 --drift-feature id=ignore`.
    #[arg(long = "drift-feature", value_name = "NAME=THRESHOLD|ignore", value_parser = parse_drift_feature)]
    pub drift_features: Vec<(String, FeatureOverride)>,
    /// Prefix URI for labelled feedback files (JSON Lines), e.g. file:///store/feedback/wine-quality/.
    #[arg(long, env = "DRIFTLINE_FEEDBACK")]
    pub feedback: Option<String>,
    /// Share of requests remembered for feedback.
    #[arg(long, default_value_t = 1.0)]
    pub feedback_sample_rate: f64,
    /// How long a request waits for its label, e.g. `1h`.
    #[arg(long, default_value = "1h", value_parser = flags::duration)]
    pub feedback_horizon: Duration,
    /// Most requests kept waiting for labels (oldest forgotten first). A
    /// pending 1-row request of the 11-feature wine model takes about 1.3 KB
    /// (measured by RSS); `--feedback-sample-rate 0` remembers none.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub feedback_max_pending: u64,
    /// Most rows kept waiting for labels, over all requests (oldest forgotten first).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub feedback_max_pending_rows: u64,
    /// Labelled rows per feedback file.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub feedback_batch_rows: u64,
    /// Write a partial feedback file after this long.
    #[arg(long, default_value = "60s", value_parser = flags::duration)]
    pub feedback_flush_interval: Duration,
}

/// Arguments of `driftline gateway`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("weights").required(true).args(["weights_file", "model"])))]
pub struct GatewayArgs {
    /// JSON or YAML file `{"backends": [{"version", "url", "weight"}]}`, reloaded when it changes.
    #[arg(long)]
    pub weights_file: Option<PathBuf>,
    /// Read weights from this Model's status.traffic through the Kubernetes API: `namespace/name`.
    #[arg(long)]
    pub model: Option<String>,
    /// Backend URL per version; `{model}`, `{namespace}`, `{version}` are filled in.
    #[arg(long, default_value = DEFAULT_URL_TEMPLATE)]
    pub url_template: String,
    /// Send requests with the same `id` to the same version.
    #[arg(long)]
    pub sticky: bool,
    /// How often the weights file is re-read; any change to its contents is
    /// loaded, including a ConfigMap volume's symlink swap.
    #[arg(long, default_value = "1s", value_parser = flags::duration)]
    pub reload_interval: Duration,
    /// Time allowed for a backend to answer.
    #[arg(long, default_value = "30s", value_parser = flags::duration)]
    pub backend_timeout: Duration,
    /// Largest request body read when stickiness needs the `id`.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub body_limit: usize,
    /// Address to listen on.
    #[arg(long, env = "DRIFTLINE_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "DRIFTLINE_PORT", default_value_t = 8080)]
    pub port: u16,
}

/// Parses `NAME=THRESHOLD` or `NAME=ignore` for `--drift-feature`.
pub fn parse_drift_feature(text: &str) -> Result<(String, FeatureOverride), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=THRESHOLD or NAME=ignore"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}`: the feature name is empty"));
    }
    let value = value.trim();
    let o = if value.eq_ignore_ascii_case("ignore") {
        FeatureOverride {
            threshold: None,
            ignore: true,
        }
    } else {
        let threshold: f64 = value.parse().map_err(|_| {
            format!("`{text}`: `{value}` is neither a threshold number nor `ignore`")
        })?;
        if !threshold.is_finite() || threshold <= 0.0 {
            return Err(format!(
                "`{text}`: the threshold must be a number > 0 (got {value})"
            ));
        }
        FeatureOverride {
            threshold: Some(threshold),
            ignore: false,
        }
    };
    Ok((name.to_string(), o))
}

impl ServeArgs {
    fn drift_overrides(&self) -> Result<BTreeMap<String, FeatureOverride>, ServeError> {
        let mut features = BTreeMap::new();
        for (name, o) in &self.drift_features {
            if features.insert(name.clone(), o.clone()).is_some() {
                return Err(ServeError::Config(format!(
                    "--drift-feature names `{name}` twice"
                )));
            }
        }
        Ok(features)
    }

    fn config(&self) -> Result<ServerConfig, ServeError> {
        if !(0.0..=1.0).contains(&self.feedback_sample_rate) {
            return Err(ServeError::Config(format!(
                "--feedback-sample-rate must be in [0, 1] (got {})",
                self.feedback_sample_rate
            )));
        }
        let feedback_sink: Option<Arc<dyn FeedbackSink>> = match &self.feedback {
            Some(prefix) => Some(Arc::new(StoreFeedbackSink::new(prefix)?)),
            None => None,
        };
        Ok(ServerConfig {
            addr: SocketAddr::new(self.host, self.port),
            name: self.name.clone(),
            version: self.model_version.clone(),
            body_limit: self.body_limit,
            request_timeout: self.request_timeout,
            max_concurrency: self.max_concurrency,
            max_rows: self.max_rows,
            drift: DriftConfig {
                statistic: self.drift_statistic,
                threshold: self.drift_threshold,
                false_alarm_rate: self.drift_false_alarm_rate,
                control: self.drift_control,
                window_rows: self.drift_window,
                window_duration: self.drift_window_time,
                recent_windows: self.drift_recent,
                trigger: self.drift_trigger,
                drifted_share: self.drifted_share,
                // Names the model lacks are refused when it loads.
                features: self.drift_overrides()?,
            },
            feedback: FeedbackConfig {
                sample_rate: self.feedback_sample_rate,
                horizon: self.feedback_horizon,
                batch_rows: usize::try_from(self.feedback_batch_rows).unwrap_or(usize::MAX),
                max_pending: usize::try_from(self.feedback_max_pending).unwrap_or(usize::MAX),
                max_pending_rows: usize::try_from(self.feedback_max_pending_rows)
                    .unwrap_or(usize::MAX),
                flush_interval: self.feedback_flush_interval,
                ..FeedbackConfig::default()
            },
            feedback_sink,
        })
    }
}

/// Runs `driftline serve` until the process is stopped.
pub async fn serve(args: ServeArgs) -> Result<ExitCode, ServeError> {
    let config = args.config()?;
    let uri = args.artifact.clone();
    let name = args.name.clone();
    let version = args.model_version.clone();
    let mut server = start(config, async move {
        let model: Arc<dyn Predictor> = Arc::new(load_artifact(&uri, name, version).await?);
        Ok(model)
    })
    .await?;
    tracing::info!(addr = %server.addr, artifact = %args.artifact, "model server listening (REST and gRPC, Open Inference Protocol v2)");
    tokio::select! {
        result = server.wait() => result?,
        () = server_shutdown_signal() => tracing::info!("shutting down"),
    }
    // Labels already joined are training data: write them before exiting.
    match server.flush_feedback().await {
        Ok(rows) if rows > 0 => tracing::info!(rows, "feedback written at shutdown"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "feedback could not be written at shutdown"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn server_shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Runs `driftline gateway` until the process is stopped.
pub async fn gateway(args: GatewayArgs) -> Result<ExitCode, ServeError> {
    let source = match (&args.weights_file, &args.model) {
        (Some(path), _) => WeightsSource::File {
            path: path.clone(),
            poll: args.reload_interval,
        },
        (None, Some(model)) => {
            let (namespace, name) = model
                .split_once('/')
                .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
                .ok_or_else(|| {
                    ServeError::Config(format!("--model `{model}`: expected namespace/name"))
                })?;
            WeightsSource::Model {
                namespace: namespace.to_string(),
                name: name.to_string(),
                url_template: args.url_template.clone(),
            }
        }
        (None, None) => return Err(ServeError::Config("give --weights-file or --model".into())),
    };
    let config = GatewayConfig {
        sticky: args.sticky,
        body_limit: args.body_limit,
        backend_timeout: args.backend_timeout,
    };
    let addr = SocketAddr::new(args.host, args.port);
    tokio::select! {
        result = run_gateway(addr, source, config) => result?,
        () = server_shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `driftline serve ARGS…` as clap parses it.
    fn parse_serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let argv = std::iter::once("serve").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.serve)
    }

    #[test]
    fn drift_feature_overrides_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_drift_feature("alcohol=0.2"),
            Ok((
                "alcohol".into(),
                FeatureOverride {
                    threshold: Some(0.2),
                    ignore: false
                }
            ))
        );
        assert_eq!(
            parse_drift_feature("id=ignore"),
            Ok((
                "id".into(),
                FeatureOverride {
                    threshold: None,
                    ignore: true
                }
            ))
        );
        assert!(
            parse_drift_feature("alcohol")
                .unwrap_err()
                .contains("NAME=THRESHOLD")
        );
        assert!(
            parse_drift_feature("=0.2")
                .unwrap_err()
                .contains("name is empty")
        );
        assert!(
            parse_drift_feature("alcohol=high")
                .unwrap_err()
                .contains("`high`")
        );
        assert!(
            parse_drift_feature("alcohol=-1")
                .unwrap_err()
                .contains("> 0")
        );
        assert!(
            parse_drift_feature("alcohol=inf")
                .unwrap_err()
                .contains("> 0")
        );
    }

    #[test]
    fn drift_flags_default_to_calibrated_weighted_and_take_a_fixed_threshold() {
        let defaults = parse_serve(&["--artifact", "/a"])
            .unwrap()
            .config()
            .unwrap()
            .drift;
        assert_eq!(defaults.threshold, Threshold::Auto);
        assert_eq!(defaults.trigger, Trigger::Weighted);
        assert_eq!(defaults.control, Control::FamilyWise);
        assert_eq!(defaults.false_alarm_rate, 0.01);
        let set = parse_serve(&[
            "--artifact",
            "/a",
            "--drift-threshold",
            "0.2",
            "--drift-trigger",
            "share",
            "--drift-control",
            "fdr",
        ])
        .unwrap()
        .config()
        .unwrap()
        .drift;
        assert_eq!(set.threshold, Threshold::Fixed(0.2));
        assert_eq!(set.trigger, Trigger::Share);
        assert_eq!(set.control, Control::FalseDiscoveryRate);
        let Err(err) = parse_serve(&["--artifact", "/a", "--drift-threshold", "high"]) else {
            panic!("`high` was accepted as a threshold")
        };
        assert!(
            err.to_string().contains("expected `auto` or a number"),
            "{err}"
        );
        let Err(err) = parse_serve(&["--artifact", "/a", "--drift-trigger", "most"]) else {
            panic!("`most` was accepted as a trigger")
        };
        assert!(err.to_string().contains("weighted, share or any"), "{err}");
    }

    #[test]
    fn a_feature_overridden_twice_is_refused() {
        let parse = |second: &str| {
            parse_serve(&[
                "--artifact",
                "/nowhere",
                "--drift-feature",
                "a=0.2",
                "--drift-feature",
                second,
            ])
            .unwrap()
        };
        let Err(err) = parse("a=ignore").config() else {
            panic!("a feature given twice was accepted")
        };
        assert!(err.to_string().contains("`a` twice"), "{err}");
        let features = parse("b=ignore").config().unwrap().drift.features;
        assert_eq!(features["a"].threshold, Some(0.2));
        assert!(features["b"].ignore);
        // Zero compute threads is a usage error, not a silent default.
        let zero = parse_serve(&["--artifact", "/a", "--compute-threads", "0"]);
        assert!(zero.is_err());
        let two = parse_serve(&["--artifact", "/a", "--compute-threads", "2"]);
        assert_eq!(two.unwrap().compute_threads, 2);
    }

    #[test]
    fn feedback_caps_reach_the_config_and_zero_is_a_usage_error() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["--artifact", "/a"];
            argv.extend_from_slice(extra);
            parse_serve(&argv)
        };
        let defaults = parse(&[]).unwrap().config().unwrap().feedback;
        assert_eq!(
            (
                defaults.max_pending,
                defaults.max_pending_rows,
                defaults.batch_rows
            ),
            (100_000, 1_000_000, 1000)
        );
        let set = parse(&[
            "--feedback-max-pending",
            "5000",
            "--feedback-max-pending-rows",
            "20000",
            "--feedback-batch-rows",
            "50",
        ])
        .unwrap()
        .config()
        .unwrap()
        .feedback;
        assert_eq!(
            (set.max_pending, set.max_pending_rows, set.batch_rows),
            (5000, 20_000, 50)
        );
        for flag in [
            "--feedback-max-pending",
            "--feedback-max-pending-rows",
            "--feedback-batch-rows",
        ] {
            let Err(err) = parse(&[flag, "0"]) else {
                panic!("{flag} 0 was accepted")
            };
            assert!(err.to_string().contains(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn duration_flags_take_the_one_grammar_of_the_crds() {
        let p = |flag: &str, value: &str| parse_serve(&["--artifact", "/a", flag, value]);
        let args = p("--drift-window-time", "1m30s").expect("1m30s");
        assert_eq!(args.drift_window_time, Some(Duration::from_secs(90)));
        let args = p("--drift-window-time", "250ms").expect("250ms");
        assert_eq!(args.drift_window_time, Some(Duration::from_millis(250)));
        let Err(err) = p("--drift-window-time", "2") else {
            panic!("a bare number was accepted")
        };
        assert!(err.to_string().contains("--drift-window-time"), "{err}");
        assert!(err.to_string().contains("unit"), "{err}");
    }
}
