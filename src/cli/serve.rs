//! `driftline serve` and `driftline gateway`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::drift_flags::DriftFlags;
use super::flags;

use crate::api::AnnotationSpec;
use crate::serve::ImageLimits;
use crate::serve::ServeError;
use crate::serve::{FeedbackConfig, FeedbackSink};
use crate::serve::{GatewayConfig, WeightsSource, run_gateway};
use crate::serve::{Predictor, ServerConfig, start};
use crate::serve::{StoreFeedbackSink, load_artifact};

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
    #[arg(long, env = "DRIFTLINE_PORT", default_value_t = crate::api::names::SERVE_PORT)]
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
    /// Image models: most pixels one image may have (larger ones get 413 before decoding).
    #[arg(long, default_value_t = ImageLimits::default().max_pixels)]
    pub max_image_pixels: u64,
    /// Image models: most pixels all images of one request may have together (else 413).
    #[arg(long, default_value_t = ImageLimits::default().max_batch_pixels)]
    pub max_batch_pixels: u64,
    #[command(flatten)]
    pub drift: DriftFlags,
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
    /// Rows a day this server sets aside for a person's label under
    /// `<feedback>/queue/` (`spec.feedback.annotation.perDay`, this
    /// replica's share); unset: none. Needs --feedback.
    #[arg(long, requires = "feedback")]
    pub annotation_per_day: Option<u32>,
    /// Share of --annotation-per-day for the least certain answers.
    #[arg(long, default_value_t = crate::api::DEFAULT_UNCERTAINTY_SHARE)]
    pub annotation_uncertainty_share: f64,
    /// Share of --annotation-per-day for rows where a drifted window moved.
    #[arg(long, default_value_t = crate::api::DEFAULT_DRIFT_SHARE)]
    pub annotation_drift_share: f64,
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
    /// Backend URL per version; `{model}`, `{namespace}`, `{version}` are
    /// filled in (default: each version's serving Service in the cluster).
    #[arg(long)]
    pub url_template: Option<String>,
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
    /// Largest request body read when stickiness needs the `id`, and the
    /// largest request or answer copied for a shadow candidate (a larger
    /// call is served, not mirrored).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub body_limit: usize,
    /// Where the rows a shadow candidate disagreed on are kept
    /// (`<this>/v<n>/disagreements.jsonl`); unset: not kept.
    #[arg(long)]
    pub shadow_root: Option<String>,
    /// A Model's feedback prefix: the rows a shadow candidate disagreed on
    /// also go to its annotation queue (`<this>/queue/`), at most
    /// --annotation-per-day a day.
    #[arg(long, requires = "annotation_per_day")]
    pub annotation_queue: Option<String>,
    /// Disagreeing rows queued a day (the disagreement share of
    /// `spec.feedback.annotation.perDay`).
    #[arg(long, requires = "annotation_queue", value_parser = clap::value_parser!(u32).range(1..))]
    pub annotation_per_day: Option<u32>,
    /// Address to listen on.
    #[arg(long, env = "DRIFTLINE_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "DRIFTLINE_PORT", default_value_t = crate::api::names::SERVE_PORT)]
    pub port: u16,
}

impl ServeArgs {
    fn config(&self) -> Result<ServerConfig, ServeError> {
        if !(0.0..=1.0).contains(&self.feedback_sample_rate) {
            return Err(ServeError::Config(format!(
                "--feedback-sample-rate must be in [0, 1] (got {})",
                self.feedback_sample_rate
            )));
        }
        let annotation = self.annotation_per_day.map(|per_day| AnnotationSpec {
            per_day,
            uncertainty_share: self.annotation_uncertainty_share,
            drift_share: self.annotation_drift_share,
        });
        if let Some((field, message)) = annotation.iter().flat_map(AnnotationSpec::problems).next()
        {
            return Err(ServeError::Config(format!(
                "--annotation-* flags{}: {message}",
                if field.is_empty() {
                    String::new()
                } else {
                    format!(" ({field})")
                }
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
            images: ImageLimits {
                max_pixels: self.max_image_pixels,
                max_batch_pixels: self.max_batch_pixels,
            },
            drift: self.drift.config().map_err(ServeError::Config)?,
            feedback: FeedbackConfig {
                sample_rate: self.feedback_sample_rate,
                horizon: self.feedback_horizon,
                batch_rows: usize::try_from(self.feedback_batch_rows).unwrap_or(usize::MAX),
                max_pending: usize::try_from(self.feedback_max_pending).unwrap_or(usize::MAX),
                max_pending_rows: usize::try_from(self.feedback_max_pending_rows)
                    .unwrap_or(usize::MAX),
                flush_interval: self.feedback_flush_interval,
                annotation,
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
    if let Some(root) = &args.shadow_root {
        crate::data::store::check(root)
            .map_err(|e| ServeError::Config(format!("--shadow-root `{root}`: {e}")))?;
    }
    if let Some(prefix) = &args.annotation_queue {
        crate::data::store::check(prefix)
            .map_err(|e| ServeError::Config(format!("--annotation-queue `{prefix}`: {e}")))?;
    }
    let config = GatewayConfig {
        sticky: args.sticky,
        shadow_root: args.shadow_root.clone(),
        annotation_queue: args.annotation_queue.clone().zip(args.annotation_per_day),
        body_limit: args.body_limit,
        backend_timeout: args.backend_timeout,
        model: match &source {
            WeightsSource::File { path, .. } => path.display().to_string(),
            WeightsSource::Model {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
        },
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
    fn zero_compute_threads_is_a_usage_error() {
        assert!(parse_serve(&["--artifact", "/a", "--compute-threads", "0"]).is_err());
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
        assert_eq!(args.drift.window_time, Some(Duration::from_secs(90)));
        let args = p("--drift-window-time", "250ms").expect("250ms");
        assert_eq!(args.drift.window_time, Some(Duration::from_millis(250)));
        let Err(err) = p("--drift-window-time", "2") else {
            panic!("a bare number was accepted")
        };
        assert!(err.to_string().contains("--drift-window-time"), "{err}");
        assert!(err.to_string().contains("unit"), "{err}");
    }
}
